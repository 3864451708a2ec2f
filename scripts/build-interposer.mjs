#!/usr/bin/env node
// Builds the LD_PRELOAD interposer of `vfio-mig bridge` (src/bridge/interposer.c,
// the product's only C) with the machine's C compiler. Run by the package's
// install step; the bridge also imports it to build on first use when no
// prebuilt library is there. The library's name carries a hash of the source,
// so a stale build is never picked up. As an install step it never fails:
// without a compiler the package still installs, and `vfio-mig bridge` says
// what to install when it is used.
//
//   node scripts/build-interposer.mjs [PACKAGE_ROOT]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Where things are, relative to the package root. */
export const SOURCE = 'src/bridge/interposer.c';
export const PREBUILT_DIR = 'build';

/** The library's file name for this source: vfio-mig-interposer-<first 16 hex of its SHA-256>.so */
export function interposerFileName(source) {
  const hash = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 16);
  return `vfio-mig-interposer-${hash}.so`;
}

/** The compiler command line (CC may name another compiler). */
export function compilerArgs(source, out) {
  return ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', '-o', out, source, '-ldl', '-lpthread'];
}

/**
 * Compile `source` into `out` (written under a temporary name, then renamed:
 * two bridges building at once never see half a library).
 * Returns { ok: true } or { ok: false, missingCompiler, message }.
 */
export function compileInterposer(source, out, cc = process.env.CC || 'cc') {
  mkdirSync(dirname(out), { recursive: true, mode: 0o755 });
  const tmp = `${out}.${process.pid}.tmp`;
  const r = spawnSync(cc, compilerArgs(source, tmp), { encoding: 'utf8' });
  if (r.error) {
    rmSync(tmp, { force: true });
    return { ok: false, missingCompiler: r.error.code === 'ENOENT', message: `${cc}: ${r.error.message}` };
  }
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    return { ok: false, missingCompiler: false, message: (r.stderr || r.stdout || `${cc} exited with ${r.status}`).trim() };
  }
  renameSync(tmp, out);
  return { ok: true };
}

function main(root) {
  const source = join(root, SOURCE);
  if (!existsSync(source)) {
    console.log(`vfio-mig-shim: no ${SOURCE}: the bridge interposer is not built`);
    return;
  }
  const out = join(root, PREBUILT_DIR, interposerFileName(source));
  if (existsSync(out)) {
    console.log(`vfio-mig-shim: bridge interposer up to date (${out})`);
    return;
  }
  const result = compileInterposer(source, out);
  if (result.ok) {
    console.log(`vfio-mig-shim: built the bridge interposer ${out}`);
  } else {
    console.warn(
      `vfio-mig-shim: could not build the bridge interposer (${result.message.split('\n')[0]}); ` +
        "'vfio-mig bridge' will try again on first use (it needs a C compiler: apt install gcc libc6-dev)",
    );
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    main(resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..')));
  } catch (e) {
    console.warn(`vfio-mig-shim: bridge interposer not built: ${e instanceof Error ? e.message : e}`);
  }
  process.exitCode = 0;
}
