// Values people type: sizes ("256MiB", "8GiB", "4096"), migration flags
// ("7", "0x5", "STOP_COPY|PRE_COPY", "all") and state names.
import { MigFlags, parseState, type MigState } from '../v2/states.js';
import { UsageError } from './usage-error.js';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1 << 20, mib: 1 << 20, g: 1 << 30, gib: 1 << 30 };

export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(`bad ${what} '${text}': use a byte count or a number with KiB, MiB or GiB`);
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new UsageError(`bad ${what} '${text}': must be a positive size`);
  return bytes;
}

export function formatSize(bytes: number | bigint): string {
  const n = Number(bytes);
  for (const [unit, scale] of [['GiB', 1 << 30], ['MiB', 1 << 20], ['KiB', 1024]] as const) {
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
    throw new UsageError(`bad ${option} '${text}': use a state name (STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P) or 0..7`);
  }
  return s;
}
