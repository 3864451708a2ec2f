// Compile and run a small C program with the machine's gcc; build a small shared library.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function runC(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-c-'));
  try {
    const src = join(dir, 'prog.c');
    const exe = join(dir, 'prog');
    writeFileSync(src, source);
    execFileSync('gcc', ['-std=gnu11', '-Wall', '-Werror', '-Wno-unused-variable', '-o', exe, src], { stdio: ['ignore', 'pipe', 'pipe'] });
    return execFileSync(exe, { encoding: 'utf8' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Compile `source` into `dir`/`name`.so (-shared -fPIC, warnings are errors); returns its path. */
export function buildSharedLibrary(dir: string, name: string, source: string): string {
  const src = join(dir, `${name}.c`);
  const so = join(dir, `${name}.so`);
  writeFileSync(src, source);
  execFileSync('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-o', so, src, '-ldl'], { stdio: ['ignore', 'pipe', 'pipe'] });
  return so;
}

/** The `name value` lines a C oracle prints, as a map of name -> value. */
export function parseNameValues(out: string): Map<string, bigint> {
  return new Map(
    out
      .trim()
      .split('\n')
      .map((l) => {
        const [k, v] = l.split(' ');
        return [k, BigInt(v)] as const;
      }),
  );
}
