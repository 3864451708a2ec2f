// `vfio-mig load --in -`: standard input is copied to a private temporary
// file, then verified whole and loaded exactly like a file given by name.
// Why not verify the bytes as they stream into the device: a pipe cannot be
// read twice, so a stream cut short (ssh died) or damaged would be found only
// after a real device had taken part of it in RESUMING; the whole-file check
// before the device is opened is what keeps bad bytes away from drivers that
// handle them badly. The price: room in $TMPDIR for the whole file, and the
// load starts once the input has ended.
import { createWriteStream, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fsProblem } from './migration-file.js';
import { cleanUpOnInterrupt } from './on-interrupt.js';

/**
 * Copy `input` into a fresh private directory (mode 0700, file 0600), run
 * `body` with the copy's path, remove the directory on every path (Ctrl-C
 * included). `name` names the input in errors.
 */
export async function withPrivateCopy<T>(input: NodeJS.ReadableStream, name: string, body: (path: string) => Promise<T>): Promise<T> {
  let dir: string;
  try {
    dir = await mkdtemp(join(tmpdir(), 'vfio-mig-in-'));
  } catch (e) {
    throw fsProblem(tmpdir(), e, true);
  }
  const removeSync = () => rmSync(dir, { recursive: true, force: true });
  try {
    return await cleanUpOnInterrupt(removeSync, async () => {
      const path = join(dir, 'state.vmig');
      const file = createWriteStream(path, { flags: 'wx', mode: 0o600 });
      let writeError: unknown;
      file.on('error', (e) => {
        writeError = e;
      });
      try {
        await pipeline(input, file);
      } catch (e) {
        throw writeError ? fsProblem(path, writeError, true) : fsProblem(name, e, false);
      }
      return body(path);
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
