// SimV1Region: the reference v1 migration region driver (Linux 5.8-5.17 uAPI,
// SPEC §1) over a SimDevice. It is what an out-of-tree v1 vendor driver or
// libvfio-user's v1 server (lib/migration.c) presents to pread/pwrite:
//   header  [0, 32)                 device_state, reserved, pending_bytes, data_offset, data_size
//   gap     [32, dataOffset)        EINVAL
//   window  [dataOffset, size)      the data section, any access size
// Calls are serialized (a kernel driver holds its state mutex).
import { FaultInjector } from '../src/sim/fault-injector.js';
import { FaultySaver } from '../src/sim/faulty-saver.js';
import type { FaultPlan } from '../src/sim/faults.js';
import type { SimDevice } from '../src/sim/sim-device.js';
import type { SimStateLoader } from '../src/sim/state-loader.js';
import type { SimStateSaver } from '../src/sim/state-saver.js';
import { asMigrationError, MigrationError } from '../src/uapi/errors.js';
import { SerialQueue } from '../src/v2/serial.js';
import type { LegacyRegion } from './contracts.js';
import type { FieldName } from './region-layout.js';
import { classifyV1Access, putV1Field, writeV1Field } from './v1-access.js';
import { V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, v1IsError, v1IsValid, v1SetError, v1StateName } from './v1-state.js';
import { parseV1Policy, v1TransitionAllowed, type V1Policy } from './v1-transitions.js';

/** The data section starts on the first page after the 32-byte header (mmap-able, SPEC §1.4). */
export const SIM_V1_DATA_OFFSET = 4096;
export const SIM_V1_DEFAULT_WINDOW = 1 << 20;

export interface SimV1RegionOptions {
  /** Bytes in the data window (default 1 MiB). */
  windowSize?: number;
  /** Which device_state arcs are accepted (default 'qemu'). */
  policy?: V1Policy;
  faults?: FaultPlan;
}

/** What a test may look at without going through the registers. */
export interface SimV1RegionSnapshot {
  deviceState: number;
  saving: boolean;
  resuming: boolean;
  /** Stream bytes held by the region: the open chunk plus read-ahead. */
  stagedBytes: number;
  closed: boolean;
}

export class SimV1Region implements LegacyRegion {
  readonly size: number;
  readonly dataOffset = SIM_V1_DATA_OFFSET;
  readonly windowSize: number;
  readonly policy: V1Policy;

  private readonly queue = new SerialQueue();
  /** The armed fault plan (arcs in v1 bits; see armFaults). */
  readonly faults: FaultInjector;
  private readonly window: Uint8Array;
  private state = V1_RUNNING;
  private closed = false;
  // saving (SAVING bit set)
  private rawSaver: SimStateSaver | null = null;
  private saver: FaultySaver | null = null;
  private chunkOpen = false; // data_offset triggered, pending_bytes not read since
  private chunkSize = 0;
  private readAhead = 0; // stop-copy bytes fetched by pending_bytes, at window[0, readAhead)
  private endOfStream = false;
  // resuming (100)
  private loader: SimStateLoader | null = null;
  private loaderRejected = false;
  private resumeDataSize = 0;

  constructor(readonly device: SimDevice, options: SimV1RegionOptions = {}) {
    const windowSize = options.windowSize ?? SIM_V1_DEFAULT_WINDOW;
    if (!Number.isSafeInteger(windowSize) || windowSize < 1) {
      throw new MigrationError('EINVAL', `windowSize must be a positive integer, got ${windowSize}`);
    }
    this.windowSize = windowSize;
    this.policy = parseV1Policy(options.policy ?? 'qemu');
    this.size = SIM_V1_DATA_OFFSET + windowSize;
    this.window = new Uint8Array(windowSize);
    this.faults = new FaultInjector(options.faults);
    device.running = true; // device_state 001 at open
  }

  /**
   * Replace the fault plan; its Nth-call counters start now. Arcs are v1 low
   * bits (from/to 0..7). The data path counted by `failIo`: 'read' = a
   * data_offset read that triggers a chunk, and each data-window read;
   * 'write' = each data-window write, and each data_size write. Stream faults
   * apply to the saving stream open now, else to the next one.
   */
  armFaults(plan: FaultPlan): void {
    this.faults.arm(plan);
    if (this.saver) this.saver.bind(this.faults.takeStreamFaults());
  }

  inspect(): SimV1RegionSnapshot {
    return {
      deviceState: this.state,
      saving: this.saver !== null,
      resuming: this.loader !== null,
      stagedBytes: (this.chunkOpen ? this.chunkSize : 0) + this.readAhead,
      closed: this.closed,
    };
  }

  readAt(offset: number, buf: Uint8Array): Promise<void> {
    return this.queue.run(async () => {
      this.checkOpen();
      const at = classifyV1Access(offset, buf.length, this.dataOffset, this.size);
      if (at.kind === 'window') {
        if (at.length === 0) return;
        this.faults.countIo('read');
        buf.set(this.window.subarray(at.start, at.start + at.length));
        return;
      }      const value = this.readField(at.field);

      putV1Field(at.field, value, buf);
    });
  }

  writeAt(offset: number, data: Uint8Array): Promise<void> {
    return this.queue.run(async () => {
      this.checkOpen();
      const at = classifyV1Access(offset, data.length, this.dataOffset, this.size);
      if (at.kind === 'window') {
        if (at.length === 0) return;
        if ((this.state & V1_MASK) !== V1_RESUMING) {
          throw new MigrationError('EINVAL', `data window is written only in RESUMING (state ${v1StateName(this.state)})`);
        }
        this.faults.countIo('write');
        this.window.set(data, at.start);
        return;
      }
      return writeV1Field(at.field, data, {
        deviceState: (v) => this.writeDeviceState(v),
        dataSize: (v) => this.writeDataSize(v),
      });
    });
  }

  /** VFIO_DEVICE_RESET: 001, every saver, loader and staged byte dropped. */
  reset(): Promise<void> {
    return this.queue.run(async () => {
      this.checkOpen();
      this.dropSaving();
      this.dropResuming();
      this.window.fill(0);
      this.state = V1_RUNNING;
      this.device.running = true;
    });
  }

  close(): Promise<void> {
    return this.queue.run(async () => {
      if (this.closed) return;
      this.dropSaving();
      this.dropResuming();
      this.closed = true;
    });
  }

  // ---- registers -------------------------------------------------------

  private readField(field: FieldName): bigint {
    switch (field) {
      case 'device_state':
        return BigInt(this.state);
      case 'reserved':
        return 0n; // "reads return zero"
      case 'pending_bytes':
        return this.readPendingBytes();
      case 'data_offset':
        return this.readDataOffset();
      case 'data_size':
        if (this.saver) return BigInt(this.chunkOpen ? this.chunkSize : 0);
        if (this.loader) return BigInt(this.resumeDataSize);
        return 0n;
    }
  }

  /**
   * Save step a/f (SPEC §1.5): closes the previous iteration (the chunk is
   * consumed), then reports what is left. Pre-copy: the device's first-pass
   * plus dirty bytes. Stop-copy: read-ahead backed, so it reads 0 only once
   * the stream has really ended and nothing is staged (QEMU 7.2 stops at 0).
   */
  private readPendingBytes(): bigint {
    const saver = this.saver;
    if (!saver) return 0n; // undefined outside the saving states
    this.chunkOpen = false;
    this.chunkSize = 0;
    if (saver.phase === 'precopy') {
      const { initialBytes, dirtyBytes } = this.guard(() => saver.precopyInfo());
      return initialBytes + dirtyBytes;
    }
    if (this.readAhead === 0 && !this.endOfStream) {
      const n = this.guard(() => saver.read(this.window));
      if (n === 0) this.endOfStream = true;
      this.readAhead = n;
    }
    if (this.readAhead === 0) return 0n;
    return BigInt(this.readAhead) + this.guard(() => saver.remainingBytes());
  }

  /** Save step b: the trigger. Fills the window once per iteration; re-reads return the same. */
  private readDataOffset(): bigint {
    const saver = this.saver;
    if (saver && !this.chunkOpen) {
      this.faults.countIo('read');
      let filled = this.readAhead;
      this.readAhead = 0;
      while (filled < this.windowSize && !this.endOfStream) {
        const n = this.guard(() => saver.read(this.window.subarray(filled)));
        if (n === 0) {
          if (saver.phase === 'stopcopy') this.endOfStream = true;
          break; // pre-copy: nothing more right now
        }
        filled += n;
      }
      this.chunkSize = filled;
      this.chunkOpen = true;
    }
    return BigInt(this.dataOffset);
  }

  /** Resume step c: data_size bytes at the window start go to the device now. */
  private writeDataSize(value: bigint): void {
    const loader = this.loader;
    if (!loader) throw new MigrationError('EINVAL', `data_size is written only in RESUMING (state ${v1StateName(this.state)})`);
    if (value > BigInt(this.windowSize)) {
      throw new MigrationError('EINVAL', `data_size ${value} exceeds the ${this.windowSize}-byte data window`);
    }
    if (this.loaderRejected) throw new MigrationError('EINVAL', 'the resumed data was already rejected; reset the device');
    this.faults.countIo('write');
    const size = Number(value);
    let done = 0;
    while (done < size) {
      const n = this.guard(() => loader.write(this.window.subarray(done, size)));
      if (n <= 0) throw new MigrationError('ENOSPC', `device accepted no more resume data at ${loader.bytesWritten}`);
      done += n;
    }
    this.resumeDataSize = size;
  }

  /**
   * device_state write (SPEC §1.3): !VALID -> EINVAL, nothing changes; from
   * 110b only reset leaves; the policy decides the arc; reserved bits are
   * kept as written. A failed arc leaves the previous state, or 110b after
   * an internal failure.
   */
  private writeDeviceState(to: number): void {
    const from = this.state;
    if (!v1IsValid(to)) throw new MigrationError('EINVAL', `device_state ${v1StateName(to)} is not VALID`);
    if (v1IsError(from)) throw new MigrationError('EINVAL', 'device is in the error state (110b); only a reset leaves it');
    if (!v1TransitionAllowed(this.policy, from, to)) {
      throw new MigrationError('EINVAL', `transition ${v1StateName(from)} -> ${v1StateName(to)} refused by policy '${this.policy}'`);
    }
    const f = from & V1_MASK;
    const t = to & V1_MASK;
    const fault = this.faults.takeArcFault(f, t);
    if (fault) {
      if (fault.toError) this.enterError();
      throw new MigrationError(fault.errno ?? 'EIO', `injected fault on ${v1StateName(f)} -> ${v1StateName(t)}`);
    }
    if (f !== t) this.transition(f, t);
    this.state = to >>> 0;
  }

  private transition(f: number, t: number): void {
    if (f === V1_RESUMING) this.finishResume(); // throws with the state still 100
    try {
      if (f & V1_SAVING && !(t & V1_SAVING)) this.dropSaving();
      this.device.running = (t & V1_RUNNING) !== 0;
      if (t & V1_SAVING) {
        if (!this.saver) {
          // SAVING newly set: a fresh stream (re-entering SAVING never continues an old one)
          this.rawSaver = this.device.createSaver();
          this.saver = new FaultySaver(this.rawSaver, this.faults.takeStreamFaults());
          if (!(t & V1_RUNNING)) this.saver.enterStopCopy();
        } else if (f & V1_RUNNING && !(t & V1_RUNNING)) {
          this.saver.enterStopCopy(); // 011 -> 010
        }
      }
      if (t === V1_RESUMING) {
        this.dropSaving();
        this.loader = this.device.createLoader();
        this.loaderRejected = false;
        this.resumeDataSize = 0;
      }
    } catch (e) {
      this.enterError();
      throw asMigrationError(e);
    }
  }

  /** Leaving RESUMING: validate and apply (v2's RESUMING->STOP arc); EINVAL if rejected. */
  private finishResume(): void {
    const loader = this.loader;
    if (!loader || this.loaderRejected) throw new MigrationError('EINVAL', 'the resumed data was rejected; reset the device');
    try {
      loader.finish();
    } catch (e) {
      this.loaderRejected = true;
      throw new MigrationError('EINVAL', `device rejected the resumed data: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.loader = null;
  }

  /** Internal failure: 110b with the reserved bits kept (VFIO_DEVICE_STATE_SET_ERROR). */
  private enterError(): void {
    this.dropSaving();
    this.dropResuming();
    this.state = v1SetError(this.state);
    this.device.running = false;
  }

  private dropSaving(): void {
    this.rawSaver?.close('the v1 device left the saving states'); // dirty logging stops
    this.rawSaver = null;
    this.saver = null;
    this.chunkOpen = false;
    this.chunkSize = 0;
    this.readAhead = 0;
    this.endOfStream = false;
  }

  private dropResuming(): void {
    this.loader = null;
    this.loaderRejected = false;
    this.resumeDataSize = 0;
  }

  /** Device-side errors keep their errno; anything else is an internal failure (110b, EIO). */
  private guard<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof MigrationError) throw e;
      this.enterError();
      throw asMigrationError(e);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new MigrationError('EBADF', 'region is closed');
  }
}

