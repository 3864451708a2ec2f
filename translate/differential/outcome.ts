// The vocabulary of the differential runs: what one call did (a value or an
// errno) and the error raised when two implementations of one face disagree.
import type { SimDevice } from '../../src/sim/sim-device.js';
import { MigrationError } from '../../src/uapi/errors.js';

export type Outcome<T> = { ok: true; value: T } | { ok: false; code: string };

/** Run `f`; a MigrationError becomes its errno name. Anything else is a bug and is rethrown. */
export async function attempt<T>(f: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await f() };
  } catch (err) {
    if (err instanceof MigrationError) return { ok: false, code: err.code };
    throw err;
  }
}

export function describeOutcome(o: Outcome<unknown>): string {
  if (!o.ok) return o.code;
  const v = o.value;
  if (v instanceof Uint8Array) return `ok(${v.length} bytes)`;
  if (typeof v === 'bigint') return `ok(${v}n)`;
  if (v === undefined) return 'ok()';
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return `ok(${v})`;
  // Sessions and read results are objects without a toString of their own: '[object Object]'.
  return `ok(${Object.prototype.toString.call(v)})`;
}

/** Two implementations of one face observed different things. */
export class DifferentialMismatch extends Error {
  constructor(what: string, reference: string, candidate: string) {
    super(`${what}: reference ${reference}, translated ${candidate}`);
    this.name = 'DifferentialMismatch';
  }
}

/** Same success-or-errno; returns true when both succeeded. */
export function sameStatus(what: string, a: Outcome<unknown>, b: Outcome<unknown>): boolean {
  if (a.ok !== b.ok || (!a.ok && !b.ok && a.code !== b.code)) {
    throw new DifferentialMismatch(what, describeOutcome(a), describeOutcome(b));
  }
  return a.ok;
}

export function sameValue(what: string, a: unknown, b: unknown): void {
  if (a !== b) throw new DifferentialMismatch(what, String(a), String(b));
}

export function sameBytes(what: string, a: Uint8Array, b: Uint8Array): void {
  if (a.length !== b.length) throw new DifferentialMismatch(`${what} (length)`, String(a.length), String(b.length));
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) throw new DifferentialMismatch(`${what} (byte ${i} of ${a.length})`, String(a[i]), String(b[i]));
  }
}

/** Deterministic filler bytes for window/data writes (the same on both sides). */
export function patternBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761 + 1) >>> 0;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Event counts of a differential run (what the random sequences reached). */
export type DiffStats = Map<string, number>;

export function count(stats: DiffStats, event: string): void {
  stats.set(event, (stats.get(event) ?? 0) + 1);
}

/** The same device work on both sides' SimDevices; returns how many pages changed (the same on both). */
export function stepBoth(reference: SimDevice, candidate: SimDevice, n: number): number {
  const a = reference.step(n);
  sameValue('step', a, candidate.step(n));
  return a;
}
