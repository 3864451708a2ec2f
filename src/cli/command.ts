// The shape every subcommand has, so main.ts can parse, document and run them alike.
import type { ParseArgsConfig } from 'node:util';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface CliContext {
  json: boolean;
  debug: boolean;
  /** Human-readable output (stdout). */
  print(text: string): void;
  /** Diagnostics and progress (stderr). */
  note(text: string): void;
  /** Whether progress bars make sense (stderr is a TTY, not --json). */
  interactive: boolean;
}

export interface Command {
  name: string;
  summary: string;
  /** Usage lines after `vfio-mig <name>`, then option help. */
  usage: string;
  options: OptionSpec;
  /** Returns the JSON document printed with --json (human output goes through ctx.print). */
  run(values: Record<string, string | boolean | undefined>, positionals: string[], ctx: CliContext): Promise<unknown>;
}
