// The migration trace format (docs/trace-format.md): JSON lines, one event
// each, written by `vfio-mig bridge --trace` (every v1 register access QEMU
// 7.2 makes and every v2 call behind it), converted from QEMU 8+'s own
// `-trace vfio_*` events (qemu-trace-events.ts), and read back by the replay
// (v1-replay.ts) and the tests that hold the client models to real QEMU.
// It sits in legacy/ because that is the lowest floor that knows both
// protocols' words: v1 registers and v2 states.
//
// Every line has `v` (format version), `t` (ms since the trace started) and
// `ev`. u64 values are "0x..." strings (JSON numbers lose bits past 2^53).
// Version 2 adds to version 1 only (the `device` and `client` events, `field`
// on v1 lines, `repeat` on polls, `derived` on converted lines), so a reader of
// version 2 reads version 1 too, and skips events and fields it does not know.
import { MigrationError } from '../../../src/uapi/errors.js';
import { fieldAt, type FieldName } from '../../region-layout.js';

export const TRACE_FORMAT_VERSION = 2;
/** Versions this reader understands. */
export const READABLE_TRACE_VERSIONS: readonly number[] = [1, 2];

interface LineBase {
  v: number;
  t: number;
  /** 1-based line number in the file it was read from (not written). */
  line: number;
}

/** A v1 region access: a header field (with its value) or window bytes (with their count, `width`). */
export interface V1Line extends LineBase {
  ev: 'v1';
  dev: number;
  op: 'read' | 'write' | 'reset';
  /** Offset inside the migration region (read/write). */
  off?: bigint;
  /** Bytes accessed (read/write). */
  width?: number;
  /** The header field at `off`, when it is one (version 2; derivable from off/width). */
  field?: FieldName;
  /** The field's value, little-endian: written, or read when the read succeeded. */
  value?: bigint;
  /** 'ok' or an errno name. */
  result: string;
  /** A poll in a normalised trace: made one or more times (version 2). */
  repeat?: boolean;
}

/** A call on a v2 device (VFIO_DEVICE_FEATURE / VFIO_DEVICE_RESET / PRECOPY_INFO). */
export interface V2Line extends LineBase {
  ev: 'v2';
  dev: number;
  call: string;
  /** setState: the target state's name. */
  arg?: string;
  result: string;
  /** state name, 'session', a size ("0x..."), {initial, dirty}. */
  ret?: unknown;
  us?: number;
  /** Not traced by the client itself but implied by its code at that point (converted traces, version 2). */
  derived?: boolean;
  /** A poll in a normalised trace: made one or more times (version 2). */
  repeat?: boolean;
}

/** A data_fd call. */
export interface DataLine extends LineBase {
  ev: 'data';
  dev: number;
  op: 'read' | 'write' | 'close';
  /** Buffer bytes offered to read/write. */
  size?: number;
  result: string;
  /** Bytes moved. */
  ret?: number;
  us?: number;
  derived?: boolean;
  /** A poll in a normalised trace: made one or more times (version 2). */
  repeat?: boolean;
}

/** Which device `dev` is (version 2). */
export interface DeviceLine extends LineBase {
  ev: 'device';
  dev: number;
  name: string;
  /** The protocol the client spoke to it. */
  protocol: 'v1' | 'v2';
  bus?: string;
  type?: string;
  driver?: string;
}

/** Which program made the calls (version 2). */
export interface ClientLine extends LineBase {
  ev: 'client';
  name: string;
  version?: string;
  exe?: string;
}

/** Any other event (start, register, release, exit, end, ...): kept as read. */
export interface OtherLine extends LineBase {
  ev: string;
  [field: string]: unknown;
}

export type TraceLine = V1Line | V2Line | DataLine | DeviceLine | ClientLine | OtherLine;

export const isV1 = (l: TraceLine): l is V1Line => l.ev === 'v1';
export const isV2 = (l: TraceLine): l is V2Line => l.ev === 'v2';
export const isData = (l: TraceLine): l is DataLine => l.ev === 'data';
export const isDevice = (l: TraceLine): l is DeviceLine => l.ev === 'device';
export const isClient = (l: TraceLine): l is ClientLine => l.ev === 'client';

/** One line of JSON: bigint as "0x...". No `line` (that is where it was read, not what it says). */
export function traceJson(fields: Record<string, unknown>): string {
  const { line: _line, ...rest } = fields;
  return JSON.stringify(rest, (_key, value: unknown) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value));
}

/** A whole trace as text, one line each. */
export function formatTrace(lines: readonly TraceLine[]): string {
  return lines.map((l) => `${traceJson(l as unknown as Record<string, unknown>)}\n`).join('');
}

/** Parse a trace; EINVAL with the line number for anything that is not a trace line of a readable version. */
export function parseTrace(text: string): TraceLine[] {
  const out: TraceLine[] = [];
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return;
    out.push(parseTraceLine(raw, i + 1));
  });
  return out;
}

export function parseTraceLine(raw: string, line: number): TraceLine {
  const bad = (why: string): never => {
    throw new MigrationError('EINVAL', `trace line ${line}: ${why}`);
  };
  let o: unknown;
  try {
    o = JSON.parse(raw);
  } catch (e) {
    return bad(`not JSON (${(e as Error).message})`);
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return bad('not a JSON object');
  const r = o as Record<string, unknown>;
  if (typeof r.v !== 'number' || !READABLE_TRACE_VERSIONS.includes(r.v)) {
    return bad(`format version ${JSON.stringify(r.v)} is not one this reader knows (${READABLE_TRACE_VERSIONS.join(', ')})`);
  }
  if (typeof r.t !== 'number' || !Number.isFinite(r.t)) bad('no time t');
  if (typeof r.ev !== 'string' || r.ev === '') bad('no event ev');
  const base = { ...r, line } as Record<string, unknown>;
  switch (r.ev) {
    case 'v1':
      return parseV1(base, bad);
    case 'v2':
      need(base, 'dev', 'number', bad);
      need(base, 'call', 'string', bad);
      need(base, 'result', 'string', bad);
      return base as unknown as V2Line;
    case 'data':
      need(base, 'dev', 'number', bad);
      oneOf(base.op, ['read', 'write', 'close'], 'op', bad);
      need(base, 'result', 'string', bad);
      return base as unknown as DataLine;
    case 'device':
      need(base, 'dev', 'number', bad);
      need(base, 'name', 'string', bad);
      oneOf(base.protocol, ['v1', 'v2'], 'protocol', bad);
      return base as unknown as DeviceLine;
    case 'client':
      need(base, 'name', 'string', bad);
      return base as unknown as ClientLine;
    default:
      return base as OtherLine;
  }
}

function parseV1(o: Record<string, unknown>, bad: (why: string) => never): V1Line {
  need(o, 'dev', 'number', bad);
  oneOf(o.op, ['read', 'write', 'reset'], 'op', bad);
  need(o, 'result', 'string', bad);
  if (o.op === 'reset') return o as unknown as V1Line;
  const off = hexOf(o.off, 'off', bad);
  need(o, 'width', 'number', bad);
  const width = o.width as number;
  if (!Number.isSafeInteger(width) || width < 1) bad(`width ${width} is not a positive integer`);
  const value = o.value === undefined ? undefined : hexOf(o.value, 'value', bad);
  if (o.op === 'write' && value === undefined && off < 32n) bad('a header write without its value');
  const field = off < 32n ? fieldAt(Number(off), width) : undefined;
  if (o.field !== undefined && o.field !== field)
    bad(
      `field '${typeof o.field === 'string' ? o.field : JSON.stringify(o.field)}' is not what offset ${off} width ${width} is (${field ?? 'no field'})`,
    );
  return { ...o, off, width, ...(field ? { field } : {}), ...(value === undefined ? {} : { value }) } as unknown as V1Line;
}

function hexOf(v: unknown, name: string, bad: (why: string) => never): bigint {
  if (typeof v !== 'string' || !/^0x[0-9a-f]+$/i.test(v)) return bad(`${name} must be a "0x..." string, got ${JSON.stringify(v)}`);
  return BigInt(v);
}

function need(o: Record<string, unknown>, key: string, type: 'number' | 'string', bad: (why: string) => never): void {
  if (typeof o[key] !== type) bad(`${String(o.ev)} line without ${key} (${type})`);
}

function oneOf(v: unknown, allowed: string[], name: string, bad: (why: string) => never): void {
  if (typeof v !== 'string' || !allowed.includes(v)) bad(`${name} ${JSON.stringify(v)} is not one of ${allowed.join(', ')}`);
}
