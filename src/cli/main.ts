// vfio-mig: the command-line face of vfio-mig-shim (bin.ts runs it).
// Exit status: 0 ok, 1 failure, 2 usage error, and 141 (128 + SIGPIPE, what a
// shell reports for a filter the signal ends) when the reader of stdout went
// away before the output was written (`vfio-mig diff | head -1`).
import { parseArgs } from 'node:util';
import type { Syscalls } from '../kernel/syscalls.js';
import { ExitWith, type CliContext, type Command, type OptionSpec } from './command.js';
import { COMMANDS } from './commands/index.js';
import { explainError } from './explain-error.js';
import { progressMode } from './progress.js';
import { UsageError } from './usage-error.js';
import { packageVersion } from './version.js';

const GLOBAL_HELP = `vfio-mig: bridge VFIO migration v1 (region, QEMU <= 7.2) and v2 (FSM + data_fd, QEMU >= 8.0)

usage: vfio-mig <command> [options]

commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(9)}${c.summary}`).join('\n')}

global options (before or after the command): --json (machine-readable output), --quiet (no progress),
--debug (stack traces)
run 'vfio-mig help <command>' (or 'vfio-mig <command> --help') for a command's options;
'vfio-mig --version' prints the version.`;

/** Options every command takes; they may also come before the command (`vfio-mig --json fsm`). */
const GLOBAL_OPTIONS: OptionSpec = { json: { type: 'boolean' }, quiet: { type: 'boolean' }, debug: { type: 'boolean' } };
const GLOBAL_FLAGS = Object.keys(GLOBAL_OPTIONS).map((o) => `--${o}`);

function commandHelp(c: Command): string {
  return `usage: vfio-mig ${c.usage}\n\n  --json           machine-readable output on stdout (no progress)\n  --quiet          no progress on stderr (errors and warnings still)\n  --debug          stack traces on failure\n  --help           this text`;
}

export const EXIT_BROKEN_PIPE = 141;

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** For `--in -` (default process.stdin). */
  stdin?: NodeJS.ReadableStream;
  /** The OS boundary for kernel devices (tests: a FakeSyscalls); default koffi. */
  syscalls?: Syscalls;
  /**
   * Ends the process (bin.ts) when stdout fails while it carries only text:
   * EXIT_BROKEN_PIPE for EPIPE, 1 for other errors. Without it the command
   * runs on and prints nothing more.
   */
  exit?: (status: number) => void;
}

const isTerminal = (s: unknown): boolean => Boolean((s as { isTTY?: boolean }).isTTY);

export async function main(argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let leading = 0;
  while (leading < argv.length && GLOBAL_FLAGS.includes(argv[leading])) leading++;
  const [name, ...after] = argv.slice(leading);
  const rest = [...argv.slice(0, leading), ...after];
  // After `--` the words are another program's (vfio-mig bridge -- CMD ...): its --help or --json are not ours.
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  const json = own.includes('--json');
  const debug = own.includes('--debug');
  const quiet = own.includes('--quiet');
  let stdoutCarriesState = false;
  let stdoutFailed = false;
  // A write error on stdout arrives as an 'error' event; unhandled, it would end the process with a stack.
  io.stdout.on('error', (e: NodeJS.ErrnoException) => {
    // A save to `--out -` sees the error in its own write callback and fails properly (device reset, exit 1).
    if (stdoutCarriesState || stdoutFailed) return;
    stdoutFailed = true;
    if (e.code !== 'EPIPE') io.stderr.write(`vfio-mig: cannot write to standard output: ${e.code ?? e.message}\n`);
    io.exit?.(e.code === 'EPIPE' ? EXIT_BROKEN_PIPE : 1);
  });
  io.stderr.on('error', () => undefined); // nowhere left to report it
  const ctx: CliContext = {
    json,
    debug,
    print: (text) => {
      if (json || stdoutFailed) return;
      (stdoutCarriesState ? io.stderr : io.stdout).write(`${text}\n`);
    },
    note: (text) => {
      io.stderr.write(`${text}\n`);
    },
    warn: (text) => {
      io.stderr.write(`vfio-mig: warning: ${text}\n`);
    },
    progress: {
      mode: progressMode({ quiet, json, stderrIsTerminal: isTerminal(io.stderr), term: process.env.TERM }),
      columns: (io.stderr as { columns?: number }).columns ?? 80,
      write: (text) => {
        io.stderr.write(text);
      },
    },
    columns: isTerminal(io.stdout) ? (io.stdout as { columns?: number }).columns : undefined,
    syscalls: io.syscalls,
    stateOut: () => {
      if (isTerminal(io.stdout))
        throw new UsageError(
          "standard output is a terminal, not a place for binary state: redirect it ('> state.vmig', '| ssh host vfio-mig load ... --in -') or give --out FILE",
        );
      stdoutCarriesState = true;
      return io.stdout;
    },
    stateIn: () => {
      const stdin = io.stdin ?? process.stdin;
      if (isTerminal(stdin))
        throw new UsageError(
          "standard input is a terminal: pipe the state in ('< state.vmig', 'ssh host vfio-mig save ... --out - |') or give --in FILE",
        );
      return stdin;
    },
  };
  if (name === '--version' || name === '-V') {
    io.stdout.write(`vfio-mig ${packageVersion()}\n`);
    return 0;
  }
  // `vfio-mig help <command>` is `vfio-mig <command> --help`.
  const helpOnly = name === 'help' && after.length > 0;
  if (name === undefined || name === '--help' || name === '-h' || (name === 'help' && !helpOnly)) {
    io.stdout.write(`${GLOBAL_HELP}\n`);
    return name === undefined ? 2 : 0;
  }
  const commandName = helpOnly ? after[0] : name;
  const command = COMMANDS.find((c) => c.name === commandName);
  try {
    if (!command) throw new UsageError(`unknown command '${commandName}'; commands: ${COMMANDS.map((c) => c.name).join(', ')}`);
    if (helpOnly || own.includes('--help') || own.includes('-h')) {
      io.stdout.write(`${commandHelp(command)}\n`);
      return 0;
    }
    const options = { ...command.options, ...GLOBAL_OPTIONS };
    let parsed;
    try {
      parsed = parseArgs({ args: withNegativeValues(rest, options), allowPositionals: true, strict: true, options });
    } catch (e) {
      const first = (e as Error).message
        .replace(/\. To specify a positional.*$/s, '')
        .split('\n')
        .join(' ');
      throw new UsageError(`${first} (see vfio-mig ${name} --help)`);
    }
    const result = await command.run(parsed.values as Record<string, string | boolean | undefined>, parsed.positionals, ctx);
    if (result instanceof ExitWith) {
      if (json) io.stdout.write(`${JSON.stringify({ ok: result.status === 0, command: name, result: result.result }, jsonBigint, 2)}\n`);
      return result.status;
    }
    if (json) io.stdout.write(`${JSON.stringify({ ok: true, command: name, result }, jsonBigint, 2)}\n`);
    return 0;
  } catch (e) {
    const { message, code, problem, usage, result } = explainError(e);
    if (json) {
      const error = { message, ...(code ? { code } : {}), ...(problem ? { problem } : {}), usage };
      io.stdout.write(
        `${JSON.stringify({ ok: false, command: name, ...(result === undefined ? {} : { result }), error }, jsonBigint, 2)}\n`,
      );
    }
    io.stderr.write(`vfio-mig: ${message}\n`);
    if (debug) writeStacks(io.stderr, e);
    return usage ? 2 : 1;
  }
}

/**
 * `--size -1`, `--seed -5`: a word that reads as a negative number after an
 * option that takes a value is that value (parseArgs would call it an
 * "ambiguous argument"), so the option's own check judges it.
 */
function withNegativeValues(args: string[], options: OptionSpec): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') return [...out, ...args.slice(i)];
    const long = arg.startsWith('--') ? arg.slice(2) : Object.keys(options).find((k) => arg === `-${options[k].short}`);
    const next = args[i + 1];
    if (long !== undefined && options[long]?.type === 'string' && next !== undefined && /^-\.?\d/.test(next)) {
      out.push(`--${long}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** The error's stack, then its causes' (a wrapped kernel or file error keeps its origin). */
function writeStacks(out: NodeJS.WritableStream, e: unknown): void {
  for (let cur: unknown = e, depth = 0; cur instanceof Error && depth < 5; cur = (cur as { cause?: unknown }).cause, depth++) {
    out.write(`${depth ? 'caused by: ' : ''}${cur.stack ?? cur.message}\n`);
  }
}

function jsonBigint(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? (value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString()) : value;
}
