// Runs the CLI in-process with captured stdout/stderr.
import { Writable } from 'node:stream';
import type { Syscalls } from '../../src/kernel/syscalls.js';
import { main } from '../../src/cli/main.js';

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
  json?: any;
}

function sink(chunks: string[]): Writable {
  return new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  });
}

/** Run with options: `syscalls` stands in for the kernel (a FakeSyscalls) on kernel device addresses. */
export async function runCliWith(options: { syscalls?: Syscalls }, ...args: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const status = await main(args, { stdout: sink(out), stderr: sink(err), syscalls: options.syscalls });
  const stdout = out.join('');
  const result: CliResult = { status, stdout, stderr: err.join('') };
  if (args.includes('--json')) result.json = JSON.parse(stdout);
  return result;
}

export async function runCli(...args: string[]): Promise<CliResult> {
  return runCliWith({}, ...args);
}
