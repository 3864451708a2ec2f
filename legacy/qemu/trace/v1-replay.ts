// Replay a recorded v1 trace (the register accesses a real v1 client made,
// docs/trace-format.md) against any LegacyRegion and report where the region
// answers differently: the recording is the oracle, the region is on trial.
// The recorded accesses are issued as recorded (the same offsets, widths and
// written values, in order), whatever the region answers: the replay does not
// re-decide what the client would have done.
//
// How answers are compared (docs/replay.md says why):
//  * the result of every access: the same errno name, or both 'ok';
//  * device_state and reserved reads: the same value;
//  * pending_bytes and data_size reads while saving: their size is the
//    device's business (a simulated device's stream is not mtty's), so only
//    in stop-and-copy (010), and only zero against non-zero: where the
//    stream ends. Where the recorded stream ended (a 0 in 010), the bytes
//    saved since SAVING was set must be the same number on both sides;
//  * pre-copy (011) sizes are not compared: a device without pre-copy data
//    (LegacyRegionOverV2 emulating 011 over RUNNING) reads 0 there;
//  * data_offset is not compared: where the window lies is the region's
//    choice. It is kept, to put resume data there;
//  * data_size writes (resume): a v1 client copies that many bytes into the
//    window first; the trace has only the count (QEMU copies through its own
//    mapping), so the replay copies the next bytes of `resumeData` there
//    itself. When the client leaves RESUMING, the resume data must be used
//    up: a different length is a stream that ends at a different point.
// A trace is input: a recorded size larger than the region (a window access
// past its end, a chunk larger than its window) gets no buffer of that size.
import { MigrationError } from '../../../src/uapi/errors.js';
import type { LegacyRegion } from '../../contracts.js';
import { FIELD, type FieldName } from '../../region-layout.js';
import { V1_MASK, V1_RESUMING, V1_SAVING, v1StateName } from '../../v1-state.js';
import { isV1, type TraceLine, type V1Line } from './trace-format.js';

export type DivergenceKind = 'result' | 'value' | 'stream-end' | 'resume-data';

export interface Divergence {
  /** Line of the trace (1-based). */
  line: number;
  kind: DivergenceKind;
  /** The access, as "read pending_bytes", "write device_state", "reset". */
  access: string;
  recorded: string;
  replayed: string;
  /** One sentence for a person. */
  message: string;
}

export interface ReplayOptions {
  /** The trace's device to replay (its `dev`); default the only one with v1 lines. */
  dev?: number;
  /** Device bytes the replay puts into the window for each recorded data_size write (resume). */
  resumeData?: Uint8Array;
}

export interface ReplayReport {
  dev: number;
  /** v1 lines replayed (a collapsed poll counts once). */
  accesses: number;
  divergences: Divergence[];
  /** Bytes the recorded and the replayed region reported as saved (data_size reads while SAVING). */
  savedBytes: { recorded: number; replayed: number };
  /** Resume bytes the replay copied into the window. */
  resumedBytes: number;
}

/** The devices of a trace that have v1 accesses, in order. */
export function v1Devices(lines: readonly TraceLine[]): number[] {
  return [...new Set(lines.filter(isV1).map((l) => l.dev))];
}

const hex = (v: bigint | undefined) => (v === undefined ? 'nothing' : `0x${v.toString(16)}`);

function littleEndian(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

function encode(value: bigint, width: number): Uint8Array {
  const out = new Uint8Array(width);
  for (let i = 0; i < width; i++) out[i] = Number((value >> BigInt(8 * i)) & 0xffn);
  return out;
}

async function attempt(f: () => Promise<void>): Promise<string> {
  try {
    await f();
    return 'ok';
  } catch (e) {
    if (e instanceof MigrationError) return e.code;
    throw e;
  }
}

export async function replayV1(lines: readonly TraceLine[], region: LegacyRegion, options: ReplayOptions = {}): Promise<ReplayReport> {
  const devices = v1Devices(lines);
  if (devices.length === 0) throw new MigrationError('EINVAL', 'the trace has no v1 register accesses to replay');
  const dev = options.dev ?? (devices.length === 1 ? devices[0] : undefined);
  if (dev === undefined)
    throw new MigrationError('EINVAL', `the trace has v1 accesses of devices ${devices.join(', ')}: say which one to replay`);
  if (!devices.includes(dev))
    throw new MigrationError('EINVAL', `the trace has no v1 accesses of device ${dev} (it has ${devices.join(', ')})`);
  return new Replay(region, dev, options.resumeData).run(lines.filter((l): l is V1Line => isV1(l) && l.dev === dev));
}

class Replay {
  private readonly divergences: Divergence[] = [];
  /** device_state as the recording had it (what decides the phase). */
  private recordedState = 1;
  private saved = { recorded: 0, replayed: 0 };
  private dataOffset: number | undefined;
  private windowWritten = false;
  private resumeAt = 0;
  private accesses = 0;

  constructor(
    private readonly region: LegacyRegion,
    private readonly dev: number,
    private readonly resumeData: Uint8Array | undefined,
  ) {}

  async run(accesses: V1Line[]): Promise<ReplayReport> {
    for (const a of accesses) {
      this.accesses++;
      if (a.op === 'reset') await this.reset(a);
      else if (a.field) await (a.op === 'read' ? this.readField(a, a.field) : this.writeField(a, a.field));
      else await this.windowAccess(a);
    }
    return { dev: this.dev, accesses: this.accesses, divergences: this.divergences, savedBytes: this.saved, resumedBytes: this.resumeAt };
  }

  private diverge(a: V1Line, kind: DivergenceKind, recorded: string, replayed: string, message: string): void {
    const access = a.op === 'reset' ? 'reset' : `${a.op} ${a.field ?? `window [0x${a.off!.toString(16)}, +${a.width})`}`;
    this.divergences.push({ line: a.line, kind, access, recorded, replayed, message });
  }

  private sameResult(a: V1Line, result: string): boolean {
    if (result === a.result) return true;
    this.diverge(
      a,
      'result',
      a.result,
      result,
      `${a.result === 'ok' ? 'succeeded' : `failed with ${a.result}`} in the recording, ${result === 'ok' ? 'succeeds' : `fails with ${result}`} here`,
    );
    return false;
  }

  private async reset(a: V1Line): Promise<void> {
    const result = await attempt(() => this.region.reset());
    this.sameResult(a, result);
    if (a.result === 'ok') this.recordedState = 1;
  }

  private async readField(a: V1Line, field: FieldName): Promise<void> {
    const buf = new Uint8Array(FIELD[field].width);
    const result = await attempt(() => this.region.readAt(FIELD[field].offset, buf));
    const value = result === 'ok' ? littleEndian(buf) : undefined;
    if (field === 'data_offset' && value !== undefined) {
      this.dataOffset = Number(value);
      this.windowWritten = false;
    }
    const stopCopy = (this.recordedState & V1_MASK) === V1_SAVING;
    const saving = (this.recordedState & V1_SAVING) !== 0 && !(this.recordedState & V1_RESUMING);
    if (field === 'data_size' && saving && a.result === 'ok' && a.value !== undefined) {
      this.saved.recorded += Number(a.value);
      if (value !== undefined) this.saved.replayed += Number(value);
    }
    if (a.result === 'ok' && a.value !== undefined && field === 'device_state') this.recordedState = Number(a.value);
    if (!this.sameResult(a, result) || a.value === undefined || value === undefined) return;
    if (field === 'device_state' || field === 'reserved' || (field === 'data_size' && !saving)) {
      if (value !== a.value) {
        const show = field === 'device_state' ? (v: bigint) => v1StateName(Number(v)) : hex;
        this.diverge(a, 'value', show(a.value), show(value), `${field} reads ${show(value)}, the recording read ${show(a.value)}`);
      }
      return;
    }
    if (stopCopy && (field === 'pending_bytes' || field === 'data_size')) this.streamEnd(a, field, a.value, value);
  }

  /** Stop-and-copy: the stream ends where the recorded one did, after as many bytes. */
  private streamEnd(a: V1Line, field: FieldName, recorded: bigint, replayed: bigint): void {
    if (recorded === 0n && replayed !== 0n) {
      this.diverge(
        a,
        'stream-end',
        hex(recorded),
        hex(replayed),
        `the recorded stream ends here (${field} 0 after ${this.saved.recorded} bytes); the replayed one goes on`,
      );
    } else if (recorded !== 0n && replayed === 0n) {
      this.diverge(
        a,
        'stream-end',
        hex(recorded),
        hex(replayed),
        `the replayed stream ends here, after ${this.saved.replayed} bytes; the recorded one goes on`,
      );
    } else if (recorded === 0n && field === 'pending_bytes' && this.saved.recorded !== this.saved.replayed) {
      this.diverge(
        a,
        'stream-end',
        `${this.saved.recorded} bytes`,
        `${this.saved.replayed} bytes`,
        `both streams end here, the recorded one after ${this.saved.recorded} bytes, the replayed one after ${this.saved.replayed}`,
      );
    }
  }

  private async writeField(a: V1Line, field: FieldName): Promise<void> {
    const value = a.value ?? 0n;
    if (field === 'data_size' && !this.windowWritten) await this.fillWindow(a, Number(value));
    const before = this.recordedState;
    const after = Number(value);
    const leavesResuming =
      field === 'device_state' && a.result === 'ok' && (before & V1_MASK) === V1_RESUMING && (after & V1_MASK) !== V1_RESUMING;
    if (leavesResuming) this.resumeEnds(a); // the cause first: the write may fail because of it
    const result = await attempt(() => this.region.writeAt(FIELD[field].offset, encode(value, FIELD[field].width)));
    this.sameResult(a, result);
    if (field !== 'device_state' || a.result !== 'ok') return;
    if (!(before & V1_SAVING) && after & V1_SAVING) this.saved = { recorded: 0, replayed: 0 };
    this.recordedState = after;
  }

  /** What a v1 client does before it writes data_size: the chunk's bytes into the window at data_offset. */
  private async fillWindow(a: V1Line, n: number): Promise<void> {
    if (n === 0) return;
    const data = this.resumeData;
    if (!data) {
      this.diverge(a, 'resume-data', `${n} bytes`, 'none', 'the recording resumes data here and the replay was given none');
      return;
    }
    if (this.dataOffset === undefined) {
      this.diverge(
        a,
        'resume-data',
        `${n} bytes`,
        'no data_offset',
        'no data_offset was read successfully before this data_size write: nowhere to put the data',
      );
      return;
    }
    if (this.dataOffset + n > this.region.size) {
      // Never a buffer for it: the region refuses such a data_size anyway (it exceeds the window).
      this.diverge(
        a,
        'resume-data',
        `${n} bytes`,
        `a window of ${Math.max(0, this.region.size - this.dataOffset)} bytes`,
        `the recording resumes ${n} bytes here, more than this region's window holds`,
      );
      return;
    }
    const chunk = new Uint8Array(n);
    const have = Math.max(0, Math.min(n, data.length - this.resumeAt));
    chunk.set(data.subarray(this.resumeAt, this.resumeAt + have));
    if (have < n) {
      this.diverge(
        a,
        'resume-data',
        `${this.resumeAt + n} bytes`,
        `${data.length} bytes`,
        `the recording resumes ${n} bytes here, the replay data has ${have} left: the streams end at different points`,
      );
    }
    this.resumeAt += have;
    const offset = this.dataOffset;
    const result = await attempt(() => this.region.writeAt(offset, chunk));
    if (result !== 'ok')
      this.diverge(
        a,
        'result',
        'ok',
        result,
        `copying the ${n} resume bytes into the window at 0x${offset.toString(16)} fails with ${result}`,
      );
  }

  /** Leaving RESUMING: the whole resume stream went in. */
  private resumeEnds(a: V1Line): void {
    const data = this.resumeData;
    if (data && this.resumeAt !== data.length) {
      this.diverge(
        a,
        'stream-end',
        `${this.resumeAt} bytes`,
        `${data.length} bytes`,
        `the recording leaves RESUMING after ${this.resumeAt} resume bytes; the replay data holds ${data.length}`,
      );
    }
  }

  /** A window access in the trace (a recorder that saw them): bytes read are not compared; bytes written are resume data. */
  private async windowAccess(a: V1Line): Promise<void> {
    const off = Number(a.off!);
    const width = a.width!;
    if (a.off! + BigInt(width) > BigInt(this.region.size)) {
      // Past the region's end: EINVAL from every v1 region, answered here without a buffer of that size.
      this.sameResult(a, 'EINVAL');
      return;
    }
    if (a.op === 'read') {
      this.sameResult(a, await attempt(() => this.region.readAt(off, new Uint8Array(width))));
      return;
    }
    const data = this.resumeData ?? new Uint8Array(0);
    const chunk = new Uint8Array(width);
    chunk.set(data.subarray(this.resumeAt, this.resumeAt + width));
    this.resumeAt = Math.min(data.length, this.resumeAt + width);
    this.windowWritten = true;
    this.sameResult(a, await attempt(() => this.region.writeAt(off, chunk)));
  }
}
