// Finding the LD_PRELOAD interposer for `vfio-mig bridge`: the library named
// by $VFIO_MIG_INTERPOSER (a packager's prebuilt one), else the library the
// install step built next to the package (build/), else one built earlier
// on first use in ${XDG_CACHE_HOME:-~/.cache}/vfio-mig-shim/, else build it
// there now; both named by a hash of src/bridge/interposer.c. Without a
// compiler the error says exactly what to install. The compile itself lives
// in scripts/build-interposer.mjs, shared with the install step.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MigrationError } from '../uapi/errors.js';

interface BuildScript {
  SOURCE: string;
  PREBUILT_DIR: string;
  interposerFileName(source: string): string;
  compileInterposer(source: string, out: string, cc?: string): { ok: true } | { ok: false; missingCompiler: boolean; message: string };
}

export const INSTALL_HINT = 'apt install gcc libc6-dev (Debian, Ubuntu)';
/** Names a prebuilt interposer library to use as it is. */
export const INTERPOSER_ENV = 'VFIO_MIG_INTERPOSER';

/** The directory holding this package's package.json (dist/src/bridge or src/bridge lie below it). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'vfio-mig-shim') return dir;
    const up = dirname(dir);
    if (up === dir) throw new MigrationError('ENOENT', 'cannot find the vfio-mig-shim package directory');
    dir = up;
  }
}

export function interposerCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'vfio-mig-shim');
}

export interface LocateOptions {
  /** The C source (default: the package's src/bridge/interposer.c). */
  source?: string;
  /** Where the install step puts its build (default: the package's build/). */
  prebuiltDir?: string;
  cacheDir?: string;
  /** The compiler (default $CC, else cc). */
  cc?: string;
  env?: NodeJS.ProcessEnv;
}

/** The path of an interposer library built from the current source: found, or built now. */
export async function locateInterposer(options: LocateOptions = {}): Promise<string> {
  const given = (options.env ?? process.env)[INTERPOSER_ENV];
  if (given) {
    if (!existsSync(given)) throw new MigrationError('ENOENT', `${INTERPOSER_ENV}=${given}: no such file`);
    return given;
  }
  const root = packageRoot();
  const script = (await import(pathToFileURL(join(root, 'scripts/build-interposer.mjs')).href)) as BuildScript;
  const source = options.source ?? join(root, script.SOURCE);
  if (!existsSync(source)) {
    throw new MigrationError('ENOENT', `the bridge's interposer source ${source} is missing: reinstall vfio-mig-shim`);
  }
  const name = script.interposerFileName(source);
  const prebuilt = join(options.prebuiltDir ?? join(root, script.PREBUILT_DIR), name);
  if (existsSync(prebuilt)) return prebuilt;
  const cacheDir = options.cacheDir ?? interposerCacheDir(options.env);
  const cached = join(cacheDir, name);
  if (existsSync(cached)) return cached;
  let result;
  try {
    result = script.compileInterposer(source, cached, options.cc ?? (process.env.CC || 'cc'));
  } catch (e) {
    throw new MigrationError(
      'EACCES',
      `cannot build the bridge's interposer in ${cacheDir}: ${(e as Error).message}; set XDG_CACHE_HOME to a writable directory`,
    );
  }
  if (!result.ok) {
    if (result.missingCompiler) {
      throw new MigrationError(
        'ENOENT',
        `vfio-mig bridge builds its LD_PRELOAD interposer (${source}) with the machine's C compiler once, and there is none (${result.message.split('\n')[0]}): install one with ${INSTALL_HINT}, then run the command again`,
      );
    }
    const lines = result.message.split('\n').slice(0, 6).join(' / ');
    throw new MigrationError(
      'EIO',
      `building the bridge's interposer failed: ${lines}; it needs a C compiler and the C library headers: ${INSTALL_HINT}`,
    );
  }
  return cached;
}
