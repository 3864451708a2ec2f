// Differential model for the v1 face: the same random command sequence runs
// against the reference v1 driver (SimV1Region over a SimDevice) and against
// LegacyRegionOverV2(SimV2Driver over an identical SimDevice), and everything
// a v1 user can observe is compared: success or errno of every access,
// device_state after every command, pending_bytes (exactly, or zero/non-zero
// in stop-and-copy), data_size, window bytes, the captured stream and the
// device fingerprint after every command (a resumed stream must restore the
// same state on both sides).
//
// Exact and loose comparison: with a v2 device that has PRE_COPY, both sides
// run the same stream logic over the same saver, so every value must be
// equal. Without PRE_COPY the translator emulates 011 (pending 0, empty
// chunks; the stream starts at 010, docs/PROTOCOL.md §6.6), so pre-copy chunks differ by
// design; then the comparison keeps to what the emulation promises: same
// errnos and device_state, pending_bytes zero/non-zero in stop-and-copy while
// both streams are in step, the same concatenated stream when no device work
// happened during the save, and the same device after a resume.
import type * as FC from 'fast-check';
import type { LegacyRegion } from '../../legacy/contracts.js';
import { SimV1Region } from '../../legacy/sim-v1-region.js';
import { FIELD } from '../../legacy/region-layout.js';
import { V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, v1IsError, v1StateName } from '../../legacy/v1-state.js';
import { V1_POLICIES, type V1Policy } from '../../legacy/v1-transitions.js';
import { SimDevice } from '../../src/sim/sim-device.js';
import { SimV2Driver } from '../../src/sim/sim-v2-driver.js';
import { MigFlags } from '../../src/v2/states.js';
import {
  attempt,
  concatBytes,
  count,
  DifferentialMismatch,
  patternBytes,
  sameBytes,
  sameStatus,
  sameValue,
  stepBoth,
  type Outcome,
} from './outcome.js';
import type { DiffStats } from './outcome.js';
import { LegacyRegionOverV2 } from '../legacy-region-over-v2.js';

type FastCheck = typeof FC;
type Cmd = FC.AsyncCommand<V1Model, V1Real>;

export interface V1FaceConfig {
  /** The v2 device's flags behind the translator. */
  flags: number;
  policy: V1Policy;
  windowSize: number;
  deviceSize: number;
  pageSize: number;
  seed: number;
}

interface V1Side {
  region: LegacyRegion;
  device: SimDevice;
  /** Chunks of the current saving session, as the v1 user read them. */
  capture: Uint8Array[];
  /** pending_bytes read 0 in stop-and-copy in the current session. */
  ended: boolean;
  /** The last complete, intact stream. */
  stream: Uint8Array | null;
  /** Bytes of `stream` fed into the current resume. */
  feedPos: number;
}

export interface V1Real {
  /** How often notable things happened (shared by all runs of one differential). */
  stats: DiffStats;
  ref: V1Side;
  dut: V1Side;
  windowSize: number;
  dataOffset: number;
  /** Iterations a drain may take (enough for a full stream plus re-sent pages). */
  drainCap: number;
}

export interface V1Model {
  /** Both sides run the same stream logic: compare every value. */
  exact: boolean;
  /** device_state as last read (both sides agreed). */
  state: number;
  // the v1 user's saving session
  chunkOpen: boolean;
  chunkCaptured: boolean;
  /** No chunk was released unread: the capture is the whole stream so far. */
  intact: boolean;
  /** The device did work during this saving session. */
  stepped: boolean;
  /** data_offset was read during 011 (pre-copy data may have been taken on one side only). */
  precopyTouched: boolean;
  haveStream: boolean;
  streamsEqual: boolean;
  /** Window bytes known equal on both sides (1 per byte). */
  windowSame: Uint8Array;
  /** The last data_size written is the same on both sides (not after feeding two different streams). */
  dataSizeSame: boolean;
}

const low = (s: number): number => s & V1_MASK;
const isSaving = (s: number): boolean => !v1IsError(s) && (s & V1_SAVING) !== 0;
const isStopCopy = (s: number): boolean => low(s) === V1_SAVING;
const isPreCopy = (s: number): boolean => low(s) === (V1_RUNNING | V1_SAVING);

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

function u64(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, n), true);
  return b;
}

async function readU64(region: LegacyRegion, offset: number): Promise<bigint> {
  const b = new Uint8Array(8);
  await region.readAt(offset, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}

function makeSide(cfg: V1FaceConfig, translated: boolean, wrap?: (r: LegacyRegion) => LegacyRegion): V1Side {
  const device = new SimDevice({ size: cfg.deviceSize, seed: cfg.seed, pageSize: cfg.pageSize });
  let region: LegacyRegion = translated
    ? new LegacyRegionOverV2(new SimV2Driver(device, { flags: cfg.flags }), { windowSize: cfg.windowSize, policy: cfg.policy })
    : new SimV1Region(device, { windowSize: cfg.windowSize, policy: cfg.policy });
  if (translated && wrap) region = wrap(region);
  return { region, device, capture: [], ended: false, stream: null, feedPos: 0 };
}

export function v1Setup(
  cfg: V1FaceConfig,
  stats: DiffStats = new Map(),
  wrap?: (r: LegacyRegion) => LegacyRegion,
): { model: V1Model; real: V1Real } {
  const ref = makeSide(cfg, false);
  const dut = makeSide(cfg, true, wrap);
  const chunks = Math.ceil((Number(ref.device.fullStreamBytes()) * 3) / cfg.windowSize);
  return {
    model: {
      exact: (cfg.flags & MigFlags.PRE_COPY) !== 0,
      state: V1_RUNNING,
      chunkOpen: false,
      chunkCaptured: false,
      intact: false,
      stepped: false,
      precopyTouched: false,
      haveStream: false,
      streamsEqual: false,
      windowSame: new Uint8Array(cfg.windowSize).fill(1),
      dataSizeSame: true,
    },
    real: { stats, ref, dut, windowSize: cfg.windowSize, dataOffset: 4096, drainCap: chunks + 8 },
  };
}

// ---- what every command does afterwards --------------------------------------

/** device_state, running and fingerprint agree; the model follows the state change. */
async function settle(m: V1Model, r: V1Real): Promise<void> {
  const a = await attempt(() => readU64OrU32State(r.ref.region));
  const b = await attempt(() => readU64OrU32State(r.dut.region));
  if (sameStatus('device_state read-back', a, b) && a.ok && b.ok) {
    if (a.value !== b.value) {
      throw new DifferentialMismatch('device_state read-back', v1StateName(a.value), v1StateName(b.value));
    }
    const before = m.state;
    const after = a.value;
    if (before !== after) count(r.stats, `device_state ${low(before)}${'>'}${low(after)}`);
    if (low(before) === V1_RESUMING && low(after) !== V1_RESUMING && !v1IsError(after)) count(r.stats, 'left RESUMING');
    if (!isSaving(before) && isSaving(after)) startSavingSession(m, r);
    if (isSaving(before) && !isSaving(after)) m.chunkOpen = false;
    if (low(after) === V1_RESUMING && low(before) !== V1_RESUMING) {
      r.ref.feedPos = 0;
      r.dut.feedPos = 0;
      m.dataSizeSame = true;
    }
    m.state = after;
  }
  sameValue('device running', r.ref.device.running, r.dut.device.running);
  sameValue('device fingerprint', r.ref.device.fingerprint(), r.dut.device.fingerprint());
}

async function readU64OrU32State(region: LegacyRegion): Promise<number> {
  const b = new Uint8Array(4);
  await region.readAt(FIELD.device_state.offset, b);
  return new DataView(b.buffer).getUint32(0, true);
}

function startSavingSession(m: V1Model, r: V1Real): void {
  m.chunkOpen = false;
  m.chunkCaptured = false;
  m.intact = true;
  m.stepped = false;
  m.precopyTouched = false;
  for (const s of [r.ref, r.dut]) {
    s.capture = [];
    s.ended = false;
  }
  if (!m.exact) m.windowSame.fill(0); // the two sides stage different chunks from now on
}

/** A pending_bytes read succeeded with `value` on `side` (saving states only matter). */
function afterPending(m: V1Model, r: V1Real, side: V1Side, value: bigint): void {
  if (!isSaving(m.state)) return;
  if (isStopCopy(m.state) && value === 0n && !side.ended) {
    side.ended = true;
    if (m.intact) side.stream = concatBytes(side.capture);
    if (r.ref.ended && r.dut.ended && m.intact) completeStreams(m, r);
  }
}

function completeStreams(m: V1Model, r: V1Real): void {
  const a = r.ref.stream as Uint8Array;
  const b = r.dut.stream as Uint8Array;
  let equal = a.length === b.length;
  for (let i = 0; equal && i < a.length; i++) equal = a[i] === b[i];
  // The stream must be the same unless the emulated pre-copy let the device work
  // between the v1 user's 011 (reference saver starts) and 010 (translated saver starts).
  if (m.exact || !m.stepped) sameBytes('concatenated stream', a, b);
  count(r.stats, m.exact || !m.stepped ? 'stream complete, compared' : 'stream complete, device worked');
  m.haveStream = true;
  m.streamsEqual = equal;
}

/** Pending read on every side once the chunk state is known to be the same. */
function releaseChunk(m: V1Model): void {
  if (m.chunkOpen && !m.chunkCaptured) m.intact = false;
  m.chunkOpen = false;
  m.chunkCaptured = false;
}

// ---- commands ------------------------------------------------------------------

abstract class V1Command implements Cmd {
  check(_m: Readonly<V1Model>): boolean {
    return true;
  }
  abstract run(m: V1Model, r: V1Real): Promise<void>;
  abstract toString(): string;
}

/** device_state write of a full 32-bit value (valid or not, reserved bits or not). */
class WriteState extends V1Command {
  constructor(readonly value: number) {
    super();
  }
  async run(m: V1Model, r: V1Real): Promise<void> {
    const a = await attempt(() => r.ref.region.writeAt(0, u32(this.value)));
    const b = await attempt(() => r.dut.region.writeAt(0, u32(this.value)));
    sameStatus(`device_state write ${v1StateName(this.value)}`, a, b);
    count(r.stats, a.ok ? 'state write ok' : `state write ${a.code}`);
    await settle(m, r);
  }
  toString(): string {
    return `WriteState(0x${this.value.toString(16)})`;
  }
}

/** A raw header (or out-of-range) read at any offset and width. */
class ReadField extends V1Command {
  constructor(
    readonly offset: number,
    readonly width: number,
  ) {
    super();
  }
  async run(m: V1Model, r: V1Real): Promise<void> {
    const a = await attempt(() => readRaw(r.ref.region, this.offset, this.width));
    const b = await attempt(() => readRaw(r.dut.region, this.offset, this.width));
    const what = `read ${this.width} bytes at ${this.offset}`;
    if (sameStatus(what, a, b) && a.ok && b.ok) {
      const va = a.value;
      const vb = b.value;
      switch (this.offset) {
        case FIELD.device_state.offset:
        case FIELD.reserved.offset:
        case FIELD.data_offset.offset:
          sameValue(what, va, vb);
          break;
        case FIELD.pending_bytes.offset:
          comparePending(m, what, va, vb);
          break;
        case FIELD.data_size.offset:
          if (m.exact || (!isSaving(m.state) && m.dataSizeSame)) sameValue(what, va, vb);
          break;
      }
      if (this.offset === FIELD.pending_bytes.offset) {
        if (isSaving(m.state)) releaseChunk(m); // first: an unread chunk breaks the capture
        afterPending(m, r, r.ref, va);
        afterPending(m, r, r.dut, vb);
      }
      if (this.offset === FIELD.data_offset.offset && isSaving(m.state)) {
        if (!m.chunkOpen) {
          m.chunkOpen = true;
          m.chunkCaptured = false;
        }
        if (isPreCopy(m.state)) m.precopyTouched = true;
      }
    }
    await settle(m, r);
  }
  toString(): string {
    return `ReadField(${this.offset}, ${this.width})`;
  }
}

function comparePending(m: V1Model, what: string, a: bigint, b: bigint): void {
  if (m.exact) return sameValue(what, a, b);
  // Emulated pre-copy: in stop-and-copy only zero vs non-zero, and only while both
  // streams are in step (no pre-copy data taken, no device work since 011).
  if (isStopCopy(m.state) && !m.precopyTouched && !m.stepped) sameValue(`${what} (zero?)`, a === 0n, b === 0n);
}

async function readRaw(region: LegacyRegion, offset: number, width: number): Promise<bigint> {
  const b = new Uint8Array(width);
  await region.readAt(offset, b);
  let v = 0n;
  for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
}

/** A raw header write at any offset and width (device_state, data_size, read-only fields, the gap). */
class WriteField extends V1Command {
  constructor(
    readonly offset: number,
    readonly width: number,
    readonly value: bigint,
  ) {
    super();
  }
  override check(m: Readonly<V1Model>): boolean {
    // A data_size write forwards window bytes: only when they are the same on both sides.
    if (this.offset === FIELD.data_size.offset && this.width === 8 && !m.exact) return windowSameUpTo(m, this.value);
    return true;
  }
  async run(m: V1Model, r: V1Real): Promise<void> {
    const bytes = new Uint8Array(this.width);
    let v = this.value;
    for (let i = 0; i < this.width; i++, v >>= 8n) bytes[i] = Number(v & 0xffn);
    const a = await attempt(() => r.ref.region.writeAt(this.offset, bytes));
    const b = await attempt(() => r.dut.region.writeAt(this.offset, bytes));
    const ok = sameStatus(`write ${this.width} bytes (0x${this.value.toString(16)}) at ${this.offset}`, a, b);
    if (ok && this.offset === FIELD.data_size.offset) m.dataSizeSame = true;
    await settle(m, r);
  }
  toString(): string {
    return `WriteField(${this.offset}, ${this.width}, 0x${this.value.toString(16)}n)`;
  }
}

function windowSameUpTo(m: Readonly<V1Model>, n: bigint): boolean {
  if (n > BigInt(m.windowSame.length)) return true; // EINVAL on both sides
  for (let i = 0; i < Number(n); i++) if (!m.windowSame[i]) return false;
  return true;
}

/** One v1 save iteration body: data_offset, data_size, then the chunk from the window. */
class TakeChunk extends V1Command {
  async run(m: V1Model, r: V1Real): Promise<void> {
    const recaptured = m.chunkOpen && m.chunkCaptured;
    const a = await takeChunk(r.ref);
    const b = await takeChunk(r.dut);
    const ok = sameStatus('chunk (data_offset, data_size, window)', a, b);
    if (ok && a.ok && b.ok) {
      if (m.exact) sameBytes('chunk bytes', a.value, b.value);
      if (isSaving(m.state)) {
        if (!recaptured) {
          r.ref.capture.push(a.value);
          r.dut.capture.push(b.value);
        }
        m.chunkOpen = true;
        m.chunkCaptured = true;
        if (isPreCopy(m.state)) m.precopyTouched = true;
      }
    } else if (isSaving(m.state)) {
      m.intact = false; // a failed chunk read: the capture is no longer the whole stream
    }
    await settle(m, r);
  }
  toString(): string {
    return 'TakeChunk';
  }
}

async function takeChunk(side: V1Side): Promise<Outcome<Uint8Array>> {
  return attempt(async () => {
    const off = Number(await readU64(side.region, FIELD.data_offset.offset));
    const size = Number(await readU64(side.region, FIELD.data_size.offset));
    const data = new Uint8Array(size);
    if (size > 0) await side.region.readAt(off, data);
    return data;
  });
}

/**
 * The v1 save loop to its end: pending_bytes, then a chunk while pending is
 * non-zero (stopping on data_size 0 as QEMU 7.2 does), every chunk captured.
 * Exact mode compares step by step; loose mode runs each side on its own
 * (their streams are split differently) and compares the outcome.
 */
class Drain extends V1Command {
  async run(m: V1Model, r: V1Real): Promise<void> {
    if (!isSaving(m.state)) {
      await settle(m, r);
      return;
    }
    releaseChunk(m); // the first pending read releases an open chunk
    const logA = await drainSide(m, r, r.ref);
    const logB = await drainSide(m, r, r.dut);
    if (m.exact) {
      sameValue('drain steps', logA.join(' '), logB.join(' '));
    } else {
      sameValue('drain result', logA[logA.length - 1], logB[logB.length - 1]);
    }
    if (logA.some((s) => s.startsWith('E'))) m.intact = false;
    m.chunkOpen = false;
    m.chunkCaptured = false;
    if (isPreCopy(m.state)) m.precopyTouched = true;
    await settle(m, r);
  }
  toString(): string {
    return 'Drain';
  }
}

async function drainSide(m: V1Model, r: V1Real, side: V1Side): Promise<string[]> {
  const log: string[] = [];
  const pending = async (): Promise<Outcome<bigint>> => {
    const p = await attempt(() => readU64(side.region, FIELD.pending_bytes.offset));
    if (p.ok) afterPending(m, r, side, p.value);
    log.push(p.ok ? (m.exact ? `p${p.value}` : p.value === 0n ? 'p0' : 'p+') : p.code);
    return p;
  };
  for (let i = 0; i < r.drainCap; i++) {
    const p = await pending();
    if (!p.ok || p.value === 0n) return log;
    const c = await takeChunk(side);
    if (!c.ok) {
      log.push(c.code);
      return log;
    }
    side.capture.push(c.value);
    log.push(`c${c.value.length}`);
    if (c.value.length === 0) break;
  }
  await pending(); // release the last chunk (it was captured)
  return log;
}

/** A window read at a window-relative start (past the end included). */
class ReadWindow extends V1Command {
  constructor(
    readonly start: number,
    readonly length: number,
  ) {
    super();
  }
  async run(m: V1Model, r: V1Real): Promise<void> {
    const read = (side: V1Side) =>
      attempt(async () => {
        const b = new Uint8Array(this.length);
        await side.region.readAt(r.dataOffset + this.start, b);
        return b;
      });
    const a = await read(r.ref);
    const b = await read(r.dut);
    if (sameStatus(`window read [${this.start}, +${this.length})`, a, b) && a.ok && b.ok) {
      for (let i = 0; i < this.length; i++) {
        if (m.exact || m.windowSame[this.start + i]) sameValue(`window byte ${this.start + i}`, a.value[i], b.value[i]);
      }
    }
    await settle(m, r);
  }
  toString(): string {
    return `ReadWindow(${this.start}, ${this.length})`;
  }
}

/** A window write of pattern bytes (EINVAL outside RESUMING). */
class WriteWindow extends V1Command {
  constructor(
    readonly start: number,
    readonly length: number,
    readonly pattern: number,
  ) {
    super();
  }
  async run(m: V1Model, r: V1Real): Promise<void> {
    const data = patternBytes(this.length, this.pattern);
    const a = await attempt(() => r.ref.region.writeAt(r.dataOffset + this.start, data));
    const b = await attempt(() => r.dut.region.writeAt(r.dataOffset + this.start, data));
    if (sameStatus(`window write [${this.start}, +${this.length})`, a, b)) m.windowSame.fill(1, this.start, this.start + this.length);
    await settle(m, r);
  }
  toString(): string {
    return `WriteWindow(${this.start}, ${this.length}, ${this.pattern})`;
  }
}

/** v1 resume step (docs/PROTOCOL.md §1.6) with the next bytes of the captured stream; streams must be equal. */
class FeedChunk extends V1Command {
  constructor(readonly length: number) {
    super();
  }
  override check(m: Readonly<V1Model>): boolean {
    // In RESUMING only: elsewhere its data_offset read would trigger a save chunk.
    return m.haveStream && m.streamsEqual && low(m.state) === V1_RESUMING;
  }
  async run(m: V1Model, r: V1Real): Promise<void> {
    const a = await feed(r.ref, this.length);
    const b = await feed(r.dut, this.length);
    if (sameStatus(`resume chunk of ${this.length}`, a, b) && a.ok && b.ok) {
      sameValue('resume chunk size', a.value, b.value);
      m.windowSame.fill(1, 0, a.value);
    }
    await settle(m, r);
  }
  toString(): string {
    return `FeedChunk(${this.length})`;
  }
}

async function feed(side: V1Side, length: number): Promise<Outcome<number>> {
  const stream = side.stream as Uint8Array;
  return attempt(async () => {
    const off = Number(await readU64(side.region, FIELD.data_offset.offset));
    const n = Math.min(length, stream.length - side.feedPos, side.region.size - off);
    await side.region.writeAt(off, stream.subarray(side.feedPos, side.feedPos + n));
    await side.region.writeAt(FIELD.data_size.offset, u64(BigInt(n)));
    side.feedPos += n;
    return n;
  });
}

/** The whole rest of the captured stream in chunks of `length`: each side its own stream. */
class FeedAll extends V1Command {
  constructor(readonly length: number) {
    super();
  }
  override check(m: Readonly<V1Model>): boolean {
    return m.haveStream && low(m.state) === V1_RESUMING;
  }
  async run(m: V1Model, r: V1Real): Promise<void> {
    /** Outcome of the last chunk, or ok(0) when nothing was left to feed. */
    const all = async (side: V1Side): Promise<Outcome<number>> => {
      const stream = side.stream as Uint8Array;
      let last: Outcome<number> = { ok: true, value: 0 };
      while (side.feedPos < stream.length) {
        last = await feed(side, this.length);
        if (!last.ok) break;
      }
      return last;
    };
    const a = await all(r.ref);
    const b = await all(r.dut);
    sameStatus(`resume the rest in chunks of ${this.length}`, a, b);
    if (!m.streamsEqual) {
      m.windowSame.fill(0);
      m.dataSizeSame = false;
    } else if (a.ok && b.ok && a.value > 0) {
      m.windowSame.fill(1, 0, Math.min(this.length, m.windowSame.length));
    }
    await settle(m, r);
  }
  toString(): string {
    return `FeedAll(${this.length})`;
  }
}

class Reset extends V1Command {
  async run(m: V1Model, r: V1Real): Promise<void> {
    const a = await attempt(() => r.ref.region.reset());
    const b = await attempt(() => r.dut.region.reset());
    if (sameStatus('reset', a, b)) {
      m.windowSame.fill(1); // both windows are zeroed
      m.dataSizeSame = true;
    }
    await settle(m, r);
  }
  toString(): string {
    return 'Reset';
  }
}

/** Device work on both SimDevices (only a running device changes). */
class Step extends V1Command {
  constructor(readonly n: number) {
    super();
  }
  async run(m: V1Model, r: V1Real): Promise<void> {
    if (stepBoth(r.ref.device, r.dut.device, this.n) > 0 && isSaving(m.state)) m.stepped = true;
    await settle(m, r);
  }
  toString(): string {
    return `Step(${this.n})`;
  }
}

// ---- generation ------------------------------------------------------------------

export function v1ConfigArbitrary(fc: FastCheck, flags: number): FC.Arbitrary<V1FaceConfig> {
  return fc.record({
    flags: fc.constant(flags),
    policy: fc.constantFrom(...V1_POLICIES),
    windowSize: fc.constantFrom(8, 24, 64, 200, 1000, 4096),
    deviceSize: fc.integer({ min: 1, max: 3000 }),
    pageSize: fc.constantFrom(64, 256, 1024),
    seed: fc.integer({ min: 0, max: 0xffff }),
  });
}

export function v1CommandArbitraries(fc: FastCheck, windowSize: number): FC.Arbitrary<Cmd>[] {
  const stateValue = fc
    .tuple(fc.integer({ min: 0, max: 7 }), fc.constantFrom(0, 0, 0, 0x8, 0x80000000))
    .map(([lo, res]) => (lo | res) >>> 0);
  // Mostly the QEMU 7.2 transitions, so sequences get somewhere.
  const likely = fc.constantFrom(0, 1, 2, 3, 4, 3, 2, 1);
  const headerOffset = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(0, 8, 16, 24) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 40 }) },
  );
  const width = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(4, 8) }, { weight: 1, arbitrary: fc.constantFrom(1, 2, 16) });
  const windowStart = fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 0, max: windowSize - 1 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: windowSize + 16 }) },
  );
  const length = fc.integer({ min: 0, max: Math.min(windowSize, 300) + 8 });
  return [
    fc.oneof(stateValue, likely).map((v) => new WriteState(v) as Cmd),
    fc.tuple(headerOffset, width).map(([o, w]) => new ReadField(o, w) as Cmd),
    fc
      .tuple(fc.constantFrom(FIELD.pending_bytes.offset, FIELD.data_offset.offset), fc.constant(8))
      .map(([o, w]) => new ReadField(o, w) as Cmd),
    fc
      .tuple(
        headerOffset,
        width,
        fc.oneof(fc.bigInt({ min: 0n, max: BigInt(windowSize) + 2n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
      )
      .map(([o, w, v]) => new WriteField(o, w, v) as Cmd),
    fc.integer({ min: 0, max: windowSize }).map((n) => new WriteField(FIELD.data_size.offset, 8, BigInt(n)) as Cmd),
    fc.constant(new TakeChunk()),
    fc.constant(new Drain()),
    fc.tuple(windowStart, length).map(([s, l]) => new ReadWindow(s, l) as Cmd),
    fc.tuple(windowStart, length, fc.integer({ min: 0, max: 1000 })).map(([s, l, p]) => new WriteWindow(s, l, p) as Cmd),
    fc.integer({ min: 1, max: windowSize + 50 }).map((n) => new FeedChunk(n) as Cmd),
    fc.integer({ min: 1, max: windowSize + 50 }).map((n) => new FeedAll(n) as Cmd),
    fc.constant(new Reset()),
    fc.integer({ min: 1, max: 20 }).map((n) => new Step(n) as Cmd),
  ];
}
