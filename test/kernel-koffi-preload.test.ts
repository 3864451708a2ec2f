// KoffiSyscalls looks its libc functions up in the process's global scope
// (dlopen(NULL)), so an LD_PRELOAD library — the bridge's interposer — sees
// the calls: `vfio-mig bridge -- vfio-mig save ...` depends on it. A symbol
// taken from a dlopen("libc.so.6") handle would skip the preloaded library.
// The child runs the built package (dist/), as the CLI would.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildSharedLibrary } from './support/c-program.js';

const ROOT = join(import.meta.dirname, '..');
const BUILT = join(ROOT, 'dist/src/kernel/koffi-syscalls.js');
const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-preload-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Answers one made-up ioctl request itself; everything else goes to libc's ioctl.
const PRELOAD_SOURCE = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  if (request == 0x7e57beefUL) return 4242;
  int (*real)(int, unsigned long, ...) = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
  return real(fd, request, arg);
}
`;

function child(env: NodeJS.ProcessEnv): string {
  const script = `import { KoffiSyscalls } from ${JSON.stringify(BUILT)};
const sys = new KoffiSyscalls();
try { console.log(String(sys.ioctl(-1, 0x7e57beef))); } catch (e) { console.log(e.code); }`;
  return execFileSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8' }).trim();
}

describe('KoffiSyscalls symbol lookup', () => {
  it('goes through an LD_PRELOAD library (global scope), and straight to libc without one', () => {
    expect(existsSync(BUILT), 'run npm run build first').toBe(true);
    const so = buildSharedLibrary(dir, 'preload', PRELOAD_SOURCE);
    expect(child({ ...process.env, LD_PRELOAD: so })).toBe('4242');
    expect(child({ ...process.env, LD_PRELOAD: '' })).toBe('EBADF');
  });
});
