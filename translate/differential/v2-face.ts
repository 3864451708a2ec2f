// Differential model for the v2 face: the same random command sequence runs
// against the reference v2 driver (SimV2Driver over a SimDevice) and against
// a translated device (V2DeviceOverLegacy over SimV1Region, or the round trip
// V2DeviceOverLegacy(LegacyRegionOverV2(SimV2Driver))), and everything a v2
// user can observe is compared: success or errno of every call, whether a
// SET opened a data session, the state after every command, read counts and
// bytes, PRECOPY_INFO / MIG_DATA_SIZE zero or not, stale-handle errors, the
// captured stream and the device fingerprint after every command.
//
// Two differences are by design and are the only slack allowed:
//  - the translated saving session takes whole v1 chunks, so after device
//    work during a save the two streams may split and re-send pages
//    differently (both are valid): from then on reads compare only their
//    errnos (ENOMSG, 0 and data count as "no error"), and the streams are
//    checked by resuming them;
//  - the translated resuming session batches writes into v1 windows (D49),
//    so rejected data surfaces at a later write or at the SET that leaves
//    RESUMING: after garbage was written, writes compare only
//    EBADF/ENODEV, and leaving RESUMING must fail on both sides.
import type * as FC from 'fast-check';
import { SimV1Region } from '../../legacy/sim-v1-region.js';
import { SimDevice } from '../../src/sim/sim-device.js';
import { SimV2Driver } from '../../src/sim/sim-v2-driver.js';
import type { DataSession, MigrationDevice } from '../../src/v2/contracts.js';
import { isSavingState, MigFlags, MigState, stateName } from '../../src/v2/states.js';
import {
  attempt,
  concatBytes,
  count,
  DifferentialMismatch,
  describeOutcome,
  patternBytes,
  sameBytes,
  sameStatus,
  sameValue,
  stepBoth,
  type Outcome,
} from './outcome.js';
import type { DiffStats } from './outcome.js';
import { LegacyRegionOverV2 } from '../legacy-region-over-v2.js';
import { V2DeviceOverLegacy } from '../v2-device-over-legacy.js';

type FastCheck = typeof FC;
type Cmd = FC.AsyncCommand<V2Model, V2Real>;

export type V2Translated = 'over-sim-v1' | 'round-trip';

export interface V2FaceConfig {
  /** STOP_COPY|PRE_COPY or STOP_COPY only (v1 has no P2P). */
  flags: number;
  translated: V2Translated;
  windowSize: number;
  deviceSize: number;
  pageSize: number;
  seed: number;
}

interface V2Side {
  dev: MigrationDevice;
  device: SimDevice;
  /** Every data session handed out, in order (stale ones included). */
  sessions: DataSession[];
  capture: Uint8Array[];
  ended: boolean;
  stream: Uint8Array | null;
  feedPos: number;
}

export interface V2Real {
  /** How often notable things happened (shared by all runs of one differential). */
  stats: DiffStats;
  ref: V2Side;
  dut: V2Side;
  /** A fresh full stream's length: drains stop after three times that (re-sent pages included). */
  fullStream: number;
}

export interface V2Model {
  state: MigState;
  /** No device work during this saving session: reads compare exactly. */
  exact: boolean;
  savingIdx: number;
  resumingIdx: number;
  sessionCount: number;
  haveStream: boolean;
  streamsEqual: boolean;
  /** 'garbage': bad bytes were written in this resume; 'failed-leave': leaving RESUMING failed. */
  resume: 'clean' | 'garbage' | 'failed-leave';
  /** The whole captured stream went into the current resume. */
  feedComplete: boolean;
}

function noteFeed(m: V2Model, r: V2Real): void {
  const s = r.ref.stream;
  m.feedComplete = s !== null && m.resumingIdx >= 0 && r.ref.feedPos >= s.length && s.length > 0;
}

function makeSide(cfg: V2FaceConfig, translated: boolean, wrap?: (d: MigrationDevice) => MigrationDevice): V2Side {
  const device = new SimDevice({ size: cfg.deviceSize, seed: cfg.seed, pageSize: cfg.pageSize });
  let dev: MigrationDevice;
  if (!translated) {
    dev = new SimV2Driver(device, { flags: cfg.flags });
  } else {
    const precopy = (cfg.flags & MigFlags.PRE_COPY) !== 0;
    const region =
      cfg.translated === 'over-sim-v1'
        ? new SimV1Region(device, { windowSize: cfg.windowSize })
        : new LegacyRegionOverV2(new SimV2Driver(device, { flags: cfg.flags }), { windowSize: cfg.windowSize });
    dev = new V2DeviceOverLegacy(region, { precopy });
    if (wrap) dev = wrap(dev);
  }
  return { dev, device, sessions: [], capture: [], ended: false, stream: null, feedPos: 0 };
}

export function v2Setup(
  cfg: V2FaceConfig,
  stats: DiffStats = new Map(),
  wrap?: (d: MigrationDevice) => MigrationDevice,
): { model: V2Model; real: V2Real } {
  const ref = makeSide(cfg, false);
  const dut = makeSide(cfg, true, wrap);
  return {
    model: {
      state: MigState.RUNNING,
      exact: true,
      savingIdx: -1,
      resumingIdx: -1,
      sessionCount: 0,
      haveStream: false,
      streamsEqual: false,
      resume: 'clean',
      feedComplete: false,
    },
    real: { stats, ref, dut, fullStream: Number(ref.device.fullStreamBytes()) },
  };
}

/** State, running and fingerprint agree after every command. */
async function settle(m: V2Model, r: V2Real): Promise<void> {
  const a = await attempt(() => r.ref.dev.getState());
  const b = await attempt(() => r.dut.dev.getState());
  if (sameStatus('state read-back', a, b) && a.ok && b.ok) {
    if (a.value !== b.value) throw new DifferentialMismatch('state read-back', stateName(a.value), stateName(b.value));
    if (m.state === MigState.RESUMING && a.value !== MigState.RESUMING && a.value !== MigState.ERROR) count(r.stats, 'left RESUMING');
    m.state = a.value;
  }
  sameValue('device running', r.ref.device.running, r.dut.device.running);
  sameValue('device fingerprint', r.ref.device.fingerprint(), r.dut.device.fingerprint());
}

function handle(side: V2Side, sel: number | 'saving' | 'resuming', m: V2Model): DataSession | undefined {
  if (sel === 'saving') return side.sessions[m.savingIdx];
  if (sel === 'resuming') return side.sessions[m.resumingIdx];
  return side.sessions.length ? side.sessions[sel % side.sessions.length] : undefined;
}

function selName(sel: number | 'saving' | 'resuming'): string {
  return typeof sel === 'number' ? `#${sel}` : sel;
}

abstract class V2Command implements Cmd {
  check(_m: Readonly<V2Model>): boolean {
    return true;
  }
  abstract run(m: V2Model, r: V2Real): Promise<void>;
  abstract toString(): string;
}

class SetState extends V2Command {
  constructor(readonly target: MigState) {
    super();
  }
  async run(m: V2Model, r: V2Real): Promise<void> {
    const from = m.state;
    const a = await attempt(() => r.ref.dev.setState(this.target));
    const b = await attempt(() => r.dut.dev.setState(this.target));
    const what = `SET ${stateName(from)} -> ${stateName(this.target)}`;
    count(r.stats, a.ok ? 'SET ok' : `SET ${a.code}`);
    const leavingGarbage = from === MigState.RESUMING && this.target !== MigState.RESUMING && m.resume === 'garbage';
    if (leavingGarbage && !a.ok && !b.ok) {
      // Rejected data: the errno may differ (the batch meets the loader later), but both fail.
    } else if (sameStatus(what, a, b) && a.ok && b.ok) {
      sameValue(`${what} opened a data session`, a.value !== null, b.value !== null);
      if (a.value && b.value) {
        r.ref.sessions.push(a.value);
        r.dut.sessions.push(b.value);
        const idx = m.sessionCount++;
        if (this.target === MigState.RESUMING) {
          m.resumingIdx = idx;
          m.resume = 'clean';
          m.feedComplete = false;
          r.ref.feedPos = 0;
          r.dut.feedPos = 0;
        } else {
          m.savingIdx = idx;
          m.exact = true;
          for (const s of [r.ref, r.dut]) {
            s.capture = [];
            s.ended = false;
          }
        }
      }
    }
    if (from === MigState.RESUMING && this.target !== MigState.RESUMING && !a.ok) m.resume = 'failed-leave';
    await settle(m, r);
  }
  toString(): string {
    return `SetState(${stateName(this.target)})`;
  }
}

class GetState extends V2Command {
  async run(m: V2Model, r: V2Real): Promise<void> {
    await settle(m, r);
  }
  toString(): string {
    return 'GetState';
  }
}

/** One read() on a handle; the current saving session's bytes are captured. */
class Read extends V2Command {
  constructor(
    readonly sel: number | 'saving',
    readonly length: number,
  ) {
    super();
  }
  async run(m: V2Model, r: V2Real): Promise<void> {
    const read = (side: V2Side) =>
      attempt(async () => {
        const h = handle(side, this.sel, m);
        if (!h) return null;
        const buf = new Uint8Array(this.length);
        const n = await h.read(buf);
        return { buf: buf.subarray(0, n), current: h === side.sessions[m.savingIdx] };
      });
    const a = await read(r.ref);
    const b = await read(r.dut);
    const what = `read(${this.length}) on ${selName(this.sel)}`;
    compareReads(m, what, a, b);
    if (a.ok && a.value && a.value.current) capture(m, r, r.ref, a.value.buf);
    if (b.ok && b.value && b.value.current) capture(m, r, r.dut, b.value.buf);
    await settle(m, r);
  }
  toString(): string {
    return `Read(${selName(this.sel)}, ${this.length})`;
  }
}

type ReadOutcome = Outcome<{ buf: Uint8Array; current: boolean } | null>;

function compareReads(m: V2Model, what: string, a: ReadOutcome, b: ReadOutcome): void {
  if (m.exact) {
    if (sameStatus(what, a, b) && a.ok && b.ok && a.value && b.value) sameBytes(what, a.value.buf, b.value.buf);
    return;
  }
  // After device work in a save the streams may be split differently: data, 0 and
  // ENOMSG all mean "no error"; any other errno must be the same.
  const hard = (o: ReadOutcome) => (o.ok || o.code === 'ENOMSG' ? 'no error' : o.code);
  if (hard(a) !== hard(b)) throw new DifferentialMismatch(what, describeOutcome(a), describeOutcome(b));
}

function capture(m: V2Model, r: V2Real, side: V2Side, bytes: Uint8Array): void {
  if (bytes.length > 0) {
    side.capture.push(bytes.slice());
    return;
  }
  if (m.state !== MigState.STOP_COPY || side.ended) return;
  side.ended = true;
  side.stream = concatBytes(side.capture);
  if (r.ref.ended && r.dut.ended) {
    const x = r.ref.stream as Uint8Array;
    const y = r.dut.stream as Uint8Array;
    if (m.exact) sameBytes('concatenated stream', x, y);
    count(r.stats, m.exact ? 'stream complete, compared' : 'stream complete, device worked');
    let equal = x.length === y.length;
    for (let i = 0; equal && i < x.length; i++) equal = x[i] === y[i];
    m.haveStream = true;
    m.streamsEqual = equal;
  }
}

/** read() on the current saving session until 0 (stop-copy), ENOMSG (pre-copy) or an error. */
class Drain extends V2Command {
  constructor(readonly length: number) {
    super();
  }
  override check(m: Readonly<V2Model>): boolean {
    return m.savingIdx >= 0;
  }
  async run(m: V2Model, r: V2Real): Promise<void> {
    const drain = async (side: V2Side): Promise<string[]> => {
      const log: string[] = [];
      const h = side.sessions[m.savingIdx];
      const cap = Math.ceil((r.fullStream * 3) / this.length) + 16;
      for (let i = 0; i < cap; i++) {
        const o = await attempt(async () => {
          const buf = new Uint8Array(this.length);
          return buf.subarray(0, await h.read(buf));
        });
        if (!o.ok) {
          log.push(o.code);
          break;
        }
        capture(m, r, side, o.value);
        log.push(m.exact ? String(o.value.length) : o.value.length ? '+' : '0');
        if (o.value.length === 0) break;
      }
      return log;
    };
    const a = await drain(r.ref);
    const b = await drain(r.dut);
    if (m.exact) sameValue(`drain(${this.length})`, a.join(' '), b.join(' '));
    else sameValue(`drain(${this.length}) end`, a[a.length - 1], b[b.length - 1]);
    await settle(m, r);
  }
  toString(): string {
    return `Drain(${this.length})`;
  }
}

class PrecopyInfo extends V2Command {
  constructor(readonly sel: number | 'saving') {
    super();
  }
  async run(m: V2Model, r: V2Real): Promise<void> {
    const info = (side: V2Side) =>
      attempt(async () => {
        const h = handle(side, this.sel, m);
        if (!h) return null;
        const i = await h.precopyInfo();
        return i.initialBytes + i.dirtyBytes === 0n;
      });
    const a = await info(r.ref);
    const b = await info(r.dut);
    const what = `PRECOPY_INFO on ${selName(this.sel)}`;
    if (sameStatus(what, a, b) && m.exact) sameValue(`${what}: nothing left`, a.ok && a.value, b.ok && b.value);
    await settle(m, r);
  }
  toString(): string {
    return `PrecopyInfo(${selName(this.sel)})`;
  }
}

class StopCopySize extends V2Command {
  async run(m: V2Model, r: V2Real): Promise<void> {
    const a = await attempt(() => r.ref.dev.stopCopySize());
    const b = await attempt(() => r.dut.dev.stopCopySize());
    if (sameStatus('MIG_DATA_SIZE', a, b) && a.ok && b.ok && (m.exact || m.state !== MigState.STOP_COPY)) {
      sameValue('MIG_DATA_SIZE is 0', a.value === 0n, b.value === 0n);
    }
    await settle(m, r);
  }
  toString(): string {
    return 'StopCopySize';
  }
}

/** write() of the next stream bytes (or garbage) on a handle. */
class Write extends V2Command {
  constructor(
    readonly sel: number | 'resuming',
    readonly length: number,
    readonly garbage: number | null,
  ) {
    super();
  }
  override check(m: Readonly<V2Model>): boolean {
    if (m.resume === 'failed-leave') return false; // a user that saw the resume fail does not top it up
    // Garbage after a complete stream is refused by a v2 driver write by write
    // (ENOSPC) while the stream still applies; batched, it fails the exit: not compared.
    if (this.garbage !== null) return !m.feedComplete;
    return m.haveStream && m.streamsEqual;
  }
  async run(m: V2Model, r: V2Real): Promise<void> {
    const write = (side: V2Side) =>
      attempt(async () => {
        const h = handle(side, this.sel, m);
        if (!h) return -1;
        const data = this.garbage !== null ? patternBytes(this.length, this.garbage) : streamPiece(side, this.length);
        const n = await h.write(data);
        if (this.garbage === null && h === side.sessions[m.resumingIdx]) side.feedPos += n;
        return n;
      });
    const current = handle(r.ref, this.sel, m) === r.ref.sessions[m.resumingIdx];
    if (this.garbage !== null && this.length > 0 && current && m.state === MigState.RESUMING) m.resume = 'garbage';
    const a = await write(r.ref);
    const b = await write(r.dut);
    const what = `write(${this.garbage !== null ? 'garbage' : 'stream'}, ${this.length}) on ${selName(this.sel)}`;
    compareWrites(m, what, a, b);
    noteFeed(m, r);
    await settle(m, r);
  }
  toString(): string {
    return `Write(${selName(this.sel)}, ${this.length}${this.garbage !== null ? `, garbage ${this.garbage}` : ''})`;
  }
}

function streamPiece(side: V2Side, length: number): Uint8Array {
  const s = side.stream as Uint8Array;
  return s.subarray(side.feedPos, Math.min(s.length, side.feedPos + length));
}

function compareWrites(m: V2Model, what: string, a: Outcome<number>, b: Outcome<number>): void {
  if (m.resume === 'garbage') {
    // Batched: rejected data meets the v1 driver later. Only the fd checks must agree.
    const fd = (o: Outcome<number>) => (!o.ok && (o.code === 'EBADF' || o.code === 'ENODEV') ? o.code : 'data');
    if (fd(a) !== fd(b)) throw new DifferentialMismatch(what, describeOutcome(a), describeOutcome(b));
    return;
  }
  if (sameStatus(what, a, b) && a.ok && b.ok) sameValue(`${what} count`, a.value, b.value);
}

/** The rest of the captured stream into the current resuming session, `length` bytes per write. */
class FeedAll extends V2Command {
  constructor(readonly length: number) {
    super();
  }
  override check(m: Readonly<V2Model>): boolean {
    // Into the live, clean resume only: after a garbage write the two sides' feed positions differ.
    return m.haveStream && m.resume === 'clean' && m.resumingIdx >= 0 && m.state === MigState.RESUMING;
  }
  async run(m: V2Model, r: V2Real): Promise<void> {
    const feed = async (side: V2Side): Promise<Outcome<number>> => {
      const h = side.sessions[m.resumingIdx];
      const s = side.stream as Uint8Array;
      let last: Outcome<number> = { ok: true, value: 0 };
      while (side.feedPos < s.length) {
        last = await attempt(() => h.write(streamPiece(side, this.length)));
        if (!last.ok || last.value === 0) break;
        side.feedPos += last.value;
      }
      return last.ok ? { ok: true, value: side.feedPos } : last;
    };
    const a = await feed(r.ref);
    const b = await feed(r.dut);
    const what = `feed the rest of the stream, ${this.length} per write`;
    if (m.resume === 'garbage') compareWrites(m, what, a, b);
    else sameStatus(what, a, b);
    noteFeed(m, r);
    await settle(m, r);
  }
  toString(): string {
    return `FeedAll(${this.length})`;
  }
}

class CloseSession extends V2Command {
  constructor(readonly sel: number) {
    super();
  }
  async run(m: V2Model, r: V2Real): Promise<void> {
    const close = (side: V2Side) =>
      attempt(async () => {
        const h = handle(side, this.sel, m);
        if (h) await h.close();
      });
    sameStatus(`close ${selName(this.sel)}`, await close(r.ref), await close(r.dut));
    await settle(m, r);
  }
  toString(): string {
    return `CloseSession(${selName(this.sel)})`;
  }
}

class Reset extends V2Command {
  async run(m: V2Model, r: V2Real): Promise<void> {
    sameStatus('reset', await attempt(() => r.ref.dev.reset()), await attempt(() => r.dut.dev.reset()));
    m.resume = 'clean';
    await settle(m, r);
  }
  toString(): string {
    return 'Reset';
  }
}

class Step extends V2Command {
  constructor(readonly n: number) {
    super();
  }
  async run(m: V2Model, r: V2Real): Promise<void> {
    if (stepBoth(r.ref.device, r.dut.device, this.n) > 0 && isSavingState(m.state)) m.exact = false;
    await settle(m, r);
  }
  toString(): string {
    return `Step(${this.n})`;
  }
}

export function v2ConfigArbitrary(fc: FastCheck, flags: number, translated: V2Translated): FC.Arbitrary<V2FaceConfig> {
  return fc.record({
    flags: fc.constant(flags),
    translated: fc.constant(translated),
    windowSize: fc.constantFrom(8, 24, 64, 200, 1000, 4096),
    deviceSize: fc.integer({ min: 1, max: 3000 }),
    pageSize: fc.constantFrom(64, 256, 1024),
    seed: fc.integer({ min: 0, max: 0xffff }),
  });
}

export function v2CommandArbitraries(fc: FastCheck): FC.Arbitrary<Cmd>[] {
  const likely = fc.constantFrom(MigState.RUNNING, MigState.STOP, MigState.PRE_COPY, MigState.STOP_COPY, MigState.RESUMING);
  const any = fc.integer({ min: 0, max: 8 }) as FC.Arbitrary<MigState>;
  const len = fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 1, max: 5000 }));
  const index = fc.integer({ min: 0, max: 7 });
  return [
    fc.oneof({ weight: 4, arbitrary: likely }, { weight: 1, arbitrary: any }).map((t) => new SetState(t) as Cmd),
    fc.constant(new GetState()),
    fc
      .tuple(fc.oneof({ weight: 4, arbitrary: fc.constant('saving' as const) }, { weight: 1, arbitrary: index }), len)
      .map(([s, l]) => new Read(s, l) as Cmd),
    len.map((l) => new Drain(Math.max(1, l)) as Cmd),
    fc
      .oneof({ weight: 3, arbitrary: fc.constant('saving' as const) }, { weight: 1, arbitrary: index })
      .map((s) => new PrecopyInfo(s) as Cmd),
    fc.constant(new StopCopySize()),
    fc
      .tuple(
        fc.oneof({ weight: 4, arbitrary: fc.constant('resuming' as const) }, { weight: 1, arbitrary: index }),
        len,
        fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 1000 }) }),
      )
      .map(([s, l, g]) => new Write(s, l, g) as Cmd),
    len.map((l) => new FeedAll(Math.max(1, l)) as Cmd),
    index.map((i) => new CloseSession(i) as Cmd),
    fc.constant(new Reset()),
    fc.integer({ min: 1, max: 20 }).map((n) => new Step(n) as Cmd),
  ];
}
