// The shape every subcommand has, so main.ts can parse, document and run them alike.
import type { ParseArgsConfig } from 'node:util';
import type { Syscalls } from '../kernel/syscalls.js';
import type { ProgressOut } from './progress.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface CliContext {
  json: boolean;
  debug: boolean;
  /** Human-readable output (stdout). */
  print(text: string): void;
  /** Diagnostics and progress (stderr). */
  note(text: string): void;
  /** "vfio-mig: warning: <text>" on stderr: the command goes on, but not quite as asked. */
  warn(text: string): void;
  /** Progress on stderr: a bar, a line per 10% or nothing (progress.ts decides). */
  progress: ProgressOut;
  /** The width of stdout when it is a terminal (tables fit it); undefined for a pipe or file. */
  columns?: number;
  /** The OS boundary for kernel device addresses (tests pass a FakeSyscalls); default koffi. */
  syscalls?: Syscalls;
  /**
   * Standard output for a migration file (`--out -`): from now on print()
   * goes to stderr. UsageError when stdout is a terminal.
   */
  stateOut(): NodeJS.WritableStream;
  /** Standard input for a migration file (`--in -`). UsageError when stdin is a terminal. */
  stateIn(): NodeJS.ReadableStream;
}

export interface Command {
  name: string;
  summary: string;
  /** Usage lines after `vfio-mig <name>`, then option help. */
  usage: string;
  options: OptionSpec;
  /** Returns the JSON document printed with --json (human output goes through ctx.print). */
  run(values: Record<string, string | boolean | undefined>, positionals: string[], ctx: CliContext): unknown;
}

/**
 * The command ran but its answer is "no" (a differential mismatch, fingerprints
 * that differ): exit status 1, and --json still carries `result`.
 */
export class CommandFailed extends Error {
  constructor(
    message: string,
    readonly result: unknown,
  ) {
    super(message);
    this.name = 'CommandFailed';
  }
}

/**
 * A command that exits with another program's status (bridge: the command
 * it ran) rather than 0; `result` is what --json would print.
 */
export class ExitWith {
  constructor(
    readonly status: number,
    readonly result: unknown,
  ) {}
}
