// V1RegionCore: the v1 migration region as pread/pwrite see it, whatever
// drives it. Both v1 faces extend it: SimV1Region (a v1 driver over a
// simulated device) and LegacyRegionOverV2 (a v1 face over a v2 device).
// It holds what the v1 uAPI fixes for every region (docs/PROTOCOL.md, "v1"):
//   header  [0, 32)              device_state, reserved, pending_bytes, data_offset, data_size
//   gap     [32, dataOffset)     EINVAL
//   window  [dataOffset, size)   the staged chunk (save) / the bytes to forward (resume)
//  - the register dispatch and the access rules (v1-access.ts; D6 of docs/SEMANTICS.md);
//  - the device_state checks every write passes first: !VALID, from the
//    error state, an arc the policy refuses — EINVAL, nothing changes (D10);
//  - the save loop: pending_bytes releases the open chunk and reports what
//    is left (read-ahead backed in stop-copy), data_offset is the trigger
//    that fills the window, data_size describes the open chunk;
//  - the resume step: a data_size write hands that many window bytes over;
//  - one serial queue (a kernel driver's state mutex) for every call.
// A face supplies where the stream comes from and goes to (the hooks below)
// and what a device_state write does once the checks have passed.
import { MigrationError } from '../src/uapi/errors.js';
import type { PrecopyInfo } from '../src/v2/contracts.js';
import { SerialQueue } from '../src/v2/serial.js';
import type { LegacyRegion } from './contracts.js';
import type { FieldName } from './region-layout.js';
import { classifyV1Access, putV1Field, writeV1Field, type V1Access } from './v1-access.js';
import { V1_RUNNING, v1IsError, v1IsValid, v1StateName } from './v1-state.js';
import { parseV1Policy, v1TransitionAllowed, type V1Policy } from './v1-transitions.js';

/** The data window starts on the first page after the 32-byte header, so it can be mmapped (D1). */
export const V1_DATA_OFFSET = 4096;
/** 1 MiB: QEMU 8+'s data_fd read size, so one chunk is one device read (D2). */
export const V1_DEFAULT_WINDOW = 1 << 20;

/** The largest value the 8-byte pending_bytes register holds; sums are clamped to it, never wrapped. */
const U64_MAX = (1n << 64n) - 1n;

export const RESUME_REJECTED = 'the resumed data was rejected; reset the device';

export type SavePhase = 'precopy' | 'stopcopy';

export interface V1RegionCoreOptions {
  /** Bytes in the data window, i.e. the largest chunk (default: the window's length, else 1 MiB). */
  windowSize?: number;
  /** The window's memory, exactly windowSize bytes (default: a fresh buffer). */
  window?: Uint8Array;
  /** Which device_state arcs are accepted (default 'qemu'). */
  policy?: V1Policy;
}

export abstract class V1RegionCore implements LegacyRegion {
  readonly size: number;
  readonly dataOffset = V1_DATA_OFFSET;
  readonly windowSize: number;
  readonly policy: V1Policy;

  /** The data window's memory: a saved chunk is staged at [0, staged); resume bytes land where written. */
  protected readonly window: Uint8Array;
  /** The device_state register as a read returns it, reserved bits 3..31 included. */
  protected deviceState = V1_RUNNING;
  protected closed = false;
  // saving
  /** Stream bytes at window[0, staged): the open chunk, or read-ahead before data_offset opens one. */
  protected staged = 0;
  /** data_offset was read in this iteration: the chunk is published, data_size = staged is frozen. */
  protected chunkOpen = false;
  /** The stop-copy stream returned its end (0). */
  protected endOfStream = false;
  // resuming
  protected resumeDataSize = 0;
  /** Leaving RESUMING was refused for invalid data: final until reset. */
  protected resumeRejected = false;

  private readonly queue = new SerialQueue();

  constructor(options: V1RegionCoreOptions) {
    const windowSize = options.windowSize ?? options.window?.length ?? V1_DEFAULT_WINDOW;
    if (!Number.isSafeInteger(windowSize) || windowSize < 1) {
      throw new MigrationError('EINVAL', `windowSize must be a positive integer, got ${windowSize}`);
    }
    this.windowSize = windowSize;
    this.policy = parseV1Policy(options.policy ?? 'qemu');
    this.size = this.dataOffset + windowSize;
    if (options.window && options.window.length !== windowSize) {
      throw new MigrationError('EINVAL', `window is ${options.window.length} bytes, windowSize is ${windowSize}`);
    }
    this.window = options.window ?? new Uint8Array(windowSize);
  }

  // ---- what a face supplies ----------------------------------------------

  /** The saving stream's phase, or null outside the saving states. */
  protected abstract savePhase(): SavePhase | null;
  /** Whether the region is in RESUMING with a stream to write to. */
  protected abstract resuming(): boolean;
  /** One read from the saving stream; 0 = nothing right now (pre-copy) or the end (stop-copy). */
  protected abstract readStream(into: Uint8Array, phase: SavePhase): Promise<number>;
  /** Stop-copy: what the device still holds beyond the staged bytes (an estimate). */
  protected abstract stopCopyRemaining(): Promise<bigint>;
  /** Pre-copy: what the device could send now. */
  protected abstract precopyPending(): Promise<PrecopyInfo>;
  /** The resuming stream's write, taken once per data_size write. */
  protected abstract resumeWriter(): (from: Uint8Array) => Promise<number>;
  /** A device_state write that passed the checks: move the device from `from` to `to` (raw values); undefined when done synchronously. */
  protected abstract changeState(from: number, to: number): void | Promise<void>;
  /**
   * Runs before each register or window access (a face's first-use
   * takeover): a promise while there is something to do, else undefined, so
   * that an access needing no device call completes without an await.
   */
  protected prepare(): Promise<void> | undefined {
    return undefined;
  }
  /** One data-path call, at the points a fault plan counts (window accesses, the trigger, data_size writes). */
  protected countDataPath(_op: 'read' | 'write'): void {}

  // ---- pread / pwrite ----------------------------------------------------

  // Why no `async` here: a window copy or a register read that needs no
  // device call is done synchronously inside the queued task, so the access
  // costs one settled promise instead of a chain of awaits (issue 14 a-f).

  readAt(offset: number, buf: Uint8Array): Promise<void> {
    return this.serialize(() => {
      this.checkOpen();
      const at = classifyV1Access(offset, buf.length, this.dataOffset, this.size);
      const preparing = this.prepare();
      if (preparing) return preparing.then(() => this.readPrepared(at, buf));
      return this.readPrepared(at, buf);
    });
  }

  writeAt(offset: number, data: Uint8Array): Promise<void> {
    return this.serialize(() => {
      this.checkOpen();
      const at = classifyV1Access(offset, data.length, this.dataOffset, this.size);
      const preparing = this.prepare();
      if (preparing) return preparing.then(() => this.writePrepared(at, data));
      return this.writePrepared(at, data);
    });
  }

  private readPrepared(at: V1Access, buf: Uint8Array): void | Promise<void> {
    if (at.kind === 'window') {
      if (at.length === 0) return;
      // A window read is a memcpy from the staged bytes: never a device call.
      this.countDataPath('read');
      buf.set(this.window.subarray(at.start, at.start + at.length));
      return;
    }
    const field = at.field;
    const value = this.readField(field);
    if (typeof value === 'bigint') return putV1Field(field, value, buf);
    return value.then((v) => putV1Field(field, v, buf));
  }

  private writePrepared(at: V1Access, data: Uint8Array): void | Promise<void> {
    if (at.kind === 'window') {
      if (at.length === 0) return;
      // The window is writable only in RESUMING (D7): a write during save would corrupt the chunk the user reads.
      if (!this.resuming()) {
        throw new MigrationError('EINVAL', `data window is written only in RESUMING (state ${v1StateName(this.deviceState)})`);
      }
      this.countDataPath('write');
      this.window.set(data, at.start);
      return;
    }
    return writeV1Field(at.field, data, {
      deviceState: (v) => this.writeDeviceState(v),
      dataSize: (v) => this.writeDataSize(v),
    });
  }

  abstract reset(): Promise<void>;
  abstract close(): Promise<void>;

  /** Run `task` on the region's queue, after every call before it has settled. */
  protected serialize<T>(task: () => T | Promise<T>): Promise<T> {
    return this.queue.run(task);
  }

  protected checkOpen(): void {
    if (this.closed) throw new MigrationError('EBADF', 'region is closed');
  }

  // ---- registers ---------------------------------------------------------

  private readField(field: FieldName): bigint | Promise<bigint> {
    switch (field) {
      case 'device_state':
        return BigInt(this.deviceState);
      case 'reserved':
        return 0n; // "reads return zero"
      case 'pending_bytes':
        return this.readPendingBytes();
      case 'data_offset':
        return this.readDataOffset();
      case 'data_size':
        if (this.resuming()) return BigInt(this.resumeDataSize);
        // Before data_offset was read in this iteration data_size reads 0 (D21): no chunk is published yet.
        return BigInt(this.chunkOpen ? this.staged : 0);
    }
  }

  /**
   * Save step a/f: releases the chunk of the previous iteration, then
   * reports what is left. Stop-copy: read-ahead backed, so it reads 0 only
   * after the stream returned its end with nothing staged (D17); otherwise the
   * staged bytes plus the device's estimate. Pre-copy: staged bytes plus what
   * the device could send now; no read-ahead (D19). Elsewhere: 0.
   */
  protected readPendingBytes(): bigint | Promise<bigint> {
    const phase = this.savePhase();
    if (phase === null) return 0n;
    if (this.chunkOpen) this.releaseChunk();
    return this.pendingIn(phase);
  }

  private async pendingIn(phase: SavePhase): Promise<bigint> {
    if (phase === 'stopcopy') {
      if (this.staged === 0 && !this.endOfStream) await this.fillOnce(phase);
      if (this.staged === 0) return 0n;
      return saturatingSum(BigInt(this.staged), await this.stopCopyRemaining());
    }
    const info = await this.precopyPending();
    return saturatingSum(BigInt(this.staged), info.initialBytes, info.dirtyBytes);
  }

  /**
   * Save step b, the trigger: the window is topped up to a full chunk (until
   * it is full, the stream ends, or pre-copy has nothing more right now) and
   * published (D20); re-reads in the same iteration return the same.
   * Outside the saving states it just reports where the window is. A window
   * pending_bytes already filled publishes without a device call, synchronously.
   */
  protected readDataOffset(): bigint | Promise<bigint> {
    if (!this.chunkOpen) {
      const phase = this.savePhase();
      if (phase !== null) {
        this.countDataPath('read');
        if (this.staged < this.windowSize && !this.endOfStream) return this.topUp(phase);
        this.chunkOpen = true;
      }
    }
    return BigInt(this.dataOffset);
  }

  private async topUp(phase: SavePhase): Promise<bigint> {
    while (this.staged < this.windowSize && !this.endOfStream) {
      if (!(await this.fillOnce(phase))) break;
    }
    this.chunkOpen = true;
    return BigInt(this.dataOffset);
  }

  /** One read into the window after the staged bytes; false when nothing came (a 0 in stop-copy is the end). */
  private async fillOnce(phase: SavePhase): Promise<boolean> {
    const n = await this.readStream(this.window.subarray(this.staged), phase);
    if (n === 0) {
      if (phase === 'stopcopy') this.endOfStream = true;
      return false;
    }
    this.staged += n;
    return true;
  }

  private releaseChunk(): void {
    this.chunkOpen = false;
    this.staged = 0;
  }

  /** Resume step c: the first `data_size` window bytes go to the device now, in order, short writes continued. */
  private async writeDataSize(value: bigint): Promise<void> {
    if (!this.resuming()) {
      throw new MigrationError('EINVAL', `data_size is written only in RESUMING (state ${v1StateName(this.deviceState)})`);
    }
    if (value > BigInt(this.windowSize)) {
      throw new MigrationError('EINVAL', `data_size ${value} exceeds the ${this.windowSize}-byte data window`);
    }
    if (this.resumeRejected) throw new MigrationError('EINVAL', RESUME_REJECTED);
    this.countDataPath('write');
    const write = this.resumeWriter();
    const size = Number(value);
    for (let done = 0; done < size;) {
      const n = await write(this.window.subarray(done, size));
      if (n <= 0) throw new MigrationError('ENOSPC', `device accepted no more resume data after ${done} of ${size} bytes`);
      done += n;
    }
    this.resumeDataSize = size;
  }

  /**
   * device_state write: !VALID -> EINVAL with nothing changed; from the
   * error state (110b) only a reset leaves; the policy decides which arcs
   * exist. Then the face moves the device.
   */
  private writeDeviceState(to: number): void | Promise<void> {
    const from = this.deviceState;
    if (!v1IsValid(to)) throw new MigrationError('EINVAL', `device_state ${v1StateName(to)} is not VALID`);
    if (v1IsError(from)) throw new MigrationError('EINVAL', 'device is in the error state (110b); only a reset leaves it');
    if (!v1TransitionAllowed(this.policy, from, to)) {
      throw new MigrationError('EINVAL', `transition ${v1StateName(from)} -> ${v1StateName(to)} refused by policy '${this.policy}'`);
    }
    return this.changeState(from, to);
  }

  // ---- staging -----------------------------------------------------------

  /** Forget the saving stream's staged bytes and end of stream. */
  protected dropSaveStaging(): void {
    this.staged = 0;
    this.chunkOpen = false;
    this.endOfStream = false;
  }

  /** Forget what the resume step recorded (data_size, a rejection). */
  protected dropResumeStaging(): void {
    this.resumeDataSize = 0;
    this.resumeRejected = false;
  }
}

/** a + b + ... as the 8-byte pending_bytes register holds it: clamped at 2^64 - 1, never wrapped to a small number. */
function saturatingSum(...terms: bigint[]): bigint {
  const sum = terms.reduce((x, y) => x + y, 0n);
  return sum > U64_MAX ? U64_MAX : sum;
}
