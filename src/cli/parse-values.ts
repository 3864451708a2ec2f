// Values people type: sizes ("256MiB", "8GiB", "4096"), migration flags
// ("7", "0x5", "STOP_COPY|PRE_COPY", "all") and state names.
import { MigFlags, parseState, type MigState } from '../v2/states.js';
import { UsageError } from './usage-error.js';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gib: 2 ** 30,
  t: 2 ** 40,
  tib: 2 ** 40,
  p: 2 ** 50,
  pib: 2 ** 50,
};

export interface SizeLimit {
  /** The largest size accepted, in bytes. */
  max: number;
  /** Why, for the message. */
  why: string;
}

/**
 * "256MiB" as bytes. The unit never decides the verdict, the value does:
 * 1TiB and 1024GiB are the same size, accepted or refused alike. `context`
 * follows the quoted text in messages (e.g. " in 'sim:v2?size=...'").
 */
export function parseSize(text: string, what = 'size', limit?: SizeLimit, context = ''): number {
  const bad = (why: string) => new UsageError(`bad ${what} '${text}'${context}: ${why}`);
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw bad('use a byte count or a number with KiB, MiB, GiB, TiB or PiB');
  const bytes = Number(m[1]) * unit;
  if (!Number.isInteger(bytes)) throw bad('not a whole number of bytes');
  if (bytes <= 0) throw bad('must be a positive size');
  if (limit && bytes > limit.max) throw bad(`at most ${formatSize(limit.max)}: ${limit.why}`);
  if (!Number.isSafeInteger(bytes)) throw bad('too large');
  return bytes;
}

export function formatSize(bytes: number | bigint): string {
  const n = Number(bytes);
  for (const [unit, scale] of [
    ['GiB', 1 << 30],
    ['MiB', 1 << 20],
    ['KiB', 1024],
  ] as const) {
    if (n >= scale) return `${(n / scale).toFixed(n % scale === 0 ? 0 : unit === 'GiB' ? 2 : 1)} ${unit}`;
  }
  return `${n} B`;
}

export function parseFlags(text: string): number {
  const t = text.trim();
  if (/^(0x[0-9a-f]+|\d+)$/i.test(t)) {
    const n = Number(t);
    if (n < 0 || n > 7) throw new UsageError(`bad flags '${text}': VFIO_MIGRATION_* flags are 1 (STOP_COPY), 2 (P2P), 4 (PRE_COPY)`);
    return n;
  }
  if (t.toLowerCase() === 'all') return MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY;
  let flags = 0;
  for (const name of t.split(/[|,+]/)) {
    const v = (MigFlags as Record<string, number>)[name.trim().toUpperCase()];
    if (v === undefined) throw new UsageError(`bad flag '${name}' in '${text}': use STOP_COPY, P2P, PRE_COPY or a number`);
    flags |= v;
  }
  return flags;
}

export function parseStateArg(text: string, option: string): MigState {
  const s = parseState(text);
  if (s === undefined) {
    throw new UsageError(
      `bad ${option} '${text}': use a state name (STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P) or 0..7`,
    );
  }
  return s;
}
