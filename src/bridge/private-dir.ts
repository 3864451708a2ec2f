// The bridge's private directory: a fresh mkdtemp directory (mode 0700, ours)
// under $XDG_RUNTIME_DIR, else /dev/shm, else the OS temp dir. The socket and
// the window files live in it, so no other user can even reach them.
import { existsSync, lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MigrationError } from '../uapi/errors.js';

/** Where the directory is made: the first base that exists. */
export function privateDirBase(env: NodeJS.ProcessEnv = process.env): string {
  for (const base of [env.XDG_RUNTIME_DIR, '/dev/shm']) {
    if (base && existsSync(base)) return base;
  }
  return tmpdir();
}

export interface PrivateDir {
  readonly path: string;
  /** Remove it and everything in it. Idempotent. */
  remove(): void;
}

export function makePrivateDir(base: string = privateDirBase()): PrivateDir {
  const path = mkdtempSync(join(base, 'vfio-mig-bridge-'));
  // mkdtemp makes it 0700; check rather than trust (an odd umask cannot widen it, a foreign owner would be a bug).
  const st = lstatSync(path);
  if (!st.isDirectory() || (st.mode & 0o777) !== 0o700 || st.uid !== process.getuid?.()) {
    rmSync(path, { recursive: true, force: true });
    throw new MigrationError('EPERM', `${path} is not a private directory (mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid})`);
  }
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
