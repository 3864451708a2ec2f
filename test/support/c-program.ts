// Compile and run a small C program with the machine's gcc; returns stdout.
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
