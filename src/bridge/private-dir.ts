// The bridge's private directory: a fresh mkdtemp directory (mode 0700, ours)
// under $XDG_RUNTIME_DIR, else /dev/shm, else the OS temp dir — the first
// one where it can be made (a minimal system may have /dev/shm read-only or
// missing). The socket and the window files live in it, so no other user can
// even reach them.
import { lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MigrationError } from '../uapi/errors.js';

/** Where the directory may be made, in order of preference. */
export function privateDirBases(env: NodeJS.ProcessEnv = process.env): string[] {
  return [...new Set([env.XDG_RUNTIME_DIR, '/dev/shm', tmpdir()].filter((b): b is string => Boolean(b)))];
}

export interface PrivateDir {
  readonly path: string;
  /** Remove it and everything in it. Idempotent. */
  remove(): void;
}

/** Make the directory under the first of `bases` that takes it. */
export function makePrivateDir(bases: string[] = privateDirBases()): PrivateDir {
  const tried: string[] = [];
  for (const base of bases) {
    let path: string;
    try {
      path = mkdtempSync(join(base, 'vfio-mig-bridge-'));
    } catch (e) {
      tried.push(`${base}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      continue;
    }
    // mkdtemp makes it 0700; check rather than trust (a foreign owner or wider mode would be a bug).
    const st = lstatSync(path);
    if (!st.isDirectory() || (st.mode & 0o777) !== 0o700 || st.uid !== process.getuid?.()) {
      rmSync(path, { recursive: true, force: true });
      throw new MigrationError('EPERM', `${path} is not a private directory (mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid})`);
    }
    return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
  }
  throw new MigrationError(
    'EACCES',
    `cannot make the bridge's private directory (${tried.join('; ')}): set XDG_RUNTIME_DIR to a writable directory`,
  );
}
