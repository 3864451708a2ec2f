// Finding or building the bridge's LD_PRELOAD interposer, with small C
// files standing in for src/bridge/interposer.c: the install step's build
// next to the package wins, then a cached first-use build, then a fresh
// build; names follow the source's hash; no compiler or a broken source
// gives a message that says what to install; the install step never fails.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { interposerCacheDir, locateInterposer, packageRoot } from '../src/bridge/interposer-location.js';
import { failure } from './support/errno.js';

const ROOT = join(import.meta.dirname, '..');
const SCRIPT = join(ROOT, 'scripts/build-interposer.mjs');
const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-shim-build-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GOOD_C = '#include <unistd.h>\nint vfio_mig_probe(void) { return (int)getpid() > 0; }\n';
let n = 0;
function case_(source: string) {
  const d = join(dir, `case-${n++}`);
  mkdirSync(join(d, 'src/bridge'), { recursive: true });
  const src = join(d, 'src/bridge/interposer.c');
  writeFileSync(src, source);
  return { d, src, prebuiltDir: join(d, 'build'), cacheDir: join(d, 'cache') };
}

const isElfSharedObject = (path: string) => {
  const b = readFileSync(path);
  return b.subarray(0, 4).toString('latin1') === '\x7fELF' && b.readUInt16LE(16) === 3; // ET_DYN
};

describe('locateInterposer', () => {
  it('builds on first use into the cache, named by the source hash, then reuses it without a compiler', async () => {
    const c = case_(GOOD_C);
    const so = await locateInterposer({ source: c.src, prebuiltDir: c.prebuiltDir, cacheDir: c.cacheDir });
    expect(so).toMatch(new RegExp(`^${c.cacheDir}/vfio-mig-interposer-[0-9a-f]{16}\\.so$`));
    expect(isElfSharedObject(so)).toBe(true);
    expect(await locateInterposer({ source: c.src, prebuiltDir: c.prebuiltDir, cacheDir: c.cacheDir, cc: '/nonexistent/cc' })).toBe(so);
    expect(readdirSync(c.cacheDir)).toEqual([so.slice(c.cacheDir.length + 1)]); // no temporary left behind
    // A changed source is a different library.
    writeFileSync(c.src, `${GOOD_C}int vfio_mig_other(void) { return 1; }\n`);
    const again = await locateInterposer({ source: c.src, prebuiltDir: c.prebuiltDir, cacheDir: c.cacheDir });
    expect(again).not.toBe(so);
  });

  it("prefers the install step's build next to the package", async () => {
    const c = case_(GOOD_C);
    execFileSync(process.execPath, [SCRIPT, c.d]);
    const [built] = readdirSync(c.prebuiltDir);
    expect(await locateInterposer({ source: c.src, prebuiltDir: c.prebuiltDir, cacheDir: c.cacheDir, cc: '/nonexistent/cc' })).toBe(
      join(c.prebuiltDir, built),
    );
    expect(existsSync(c.cacheDir)).toBe(false);
  });

  it('without a compiler: says exactly what to install', async () => {
    const c = case_(GOOD_C);
    const e = await failure(locateInterposer({ source: c.src, prebuiltDir: c.prebuiltDir, cacheDir: c.cacheDir, cc: '/nonexistent/cc' }));
    expect(e.code).toBe('ENOENT');
    expect(e.message).toContain('apt install gcc libc6-dev');
  });

  it("compiles with -Wall -Wextra -Werror: a warning fails the build, with the compiler's words and the hint", async () => {
    const c = case_('int vfio_mig_probe(int unused) { return 0; }\n'); // -Wextra: unused parameter
    const e = await failure(locateInterposer({ source: c.src, prebuiltDir: c.prebuiltDir, cacheDir: c.cacheDir }));
    expect(e.code).toBe('EIO');
    expect(e.message).toMatch(/unused parameter/);
    expect(e.message).toContain('apt install gcc libc6-dev');
    expect(readdirSync(c.cacheDir)).toEqual([]); // nothing half-built
  });

  it('takes $VFIO_MIG_INTERPOSER as it is, if it exists', async () => {
    const c = case_(GOOD_C);
    expect(await locateInterposer({ env: { VFIO_MIG_INTERPOSER: c.src }, cc: '/nonexistent/cc' })).toBe(c.src);
    expect((await failure(locateInterposer({ env: { VFIO_MIG_INTERPOSER: join(dir, 'nope.so') } }))).code).toBe('ENOENT');
  });

  it('a missing source says reinstall', async () => {
    const e = await failure(locateInterposer({ source: join(dir, 'nope.c'), env: {} }));
    expect(e.message).toMatch(/missing: reinstall/);
  });

  it('knows its package and its cache directory', () => {
    expect(packageRoot()).toBe(ROOT);
    expect(interposerCacheDir({ XDG_CACHE_HOME: '/x/cache' })).toBe('/x/cache/vfio-mig-shim');
    expect(interposerCacheDir({ HOME: '/h' })).toMatch(/\/\.cache\/vfio-mig-shim$/);
  });
});

describe('the install step (scripts/build-interposer.mjs)', () => {
  const run = (root: string, env: NodeJS.ProcessEnv = {}) =>
    execFileSync(process.execPath, [SCRIPT, root], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });

  it('builds into build/, and says so when it is already there', () => {
    const c = case_(GOOD_C);
    expect(run(c.d)).toMatch(/built the bridge interposer .*build\/vfio-mig-interposer-[0-9a-f]{16}\.so/);
    expect(run(c.d)).toMatch(/up to date/);
  });

  it('never fails the install: no source, no compiler, a broken source', () => {
    expect(run(join(dir, 'empty-root'))).toMatch(/not built/);
    const c = case_(GOOD_C);
    expect(() => run(c.d, { CC: '/nonexistent/cc' })).not.toThrow();
    expect(existsSync(c.prebuiltDir) ? readdirSync(c.prebuiltDir) : []).toEqual([]);
    const bad = case_('this is not C');
    expect(() => run(bad.d)).not.toThrow();
  });
});
