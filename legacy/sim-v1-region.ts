// SimV1Region: the reference v1 migration region driver (Linux 5.8-5.17 uAPI,
// docs/PROTOCOL.md "v1") over a SimDevice. It is what an out-of-tree v1
// vendor driver or libvfio-user's v1 server (lib/migration.c) presents to
// pread/pwrite. The region itself (registers, checks, the save loop and the
// resume step) is V1RegionCore's; this file is the driver behind it: a
// saving stream from the device while SAVING is set, a loader in RESUMING,
// arcs that start and stop the device, and fault plans.
import { FaultInjector } from '../src/sim/fault-injector.js';
import { FaultySaver } from '../src/sim/faulty-saver.js';
import type { FaultPlan } from '../src/sim/faults.js';
import type { SimDevice } from '../src/sim/sim-device.js';
import type { SimStateLoader } from '../src/sim/state-loader.js';
import type { SimStateSaver } from '../src/sim/state-saver.js';
import { asMigrationError, MigrationError } from '../src/uapi/errors.js';
import type { PrecopyInfo } from '../src/v2/contracts.js';
import { RESUME_REJECTED, V1_DATA_OFFSET, V1_DEFAULT_WINDOW, V1RegionCore, type SavePhase } from './v1-region-core.js';
import { V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, v1SetError, v1StateName } from './v1-state.js';
import type { V1Policy } from './v1-transitions.js';

/** The data section starts on the first page after the 32-byte header (mmap-able). */
export const SIM_V1_DATA_OFFSET = V1_DATA_OFFSET;
export const SIM_V1_DEFAULT_WINDOW = V1_DEFAULT_WINDOW;

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

export class SimV1Region extends V1RegionCore {
  /** The armed fault plan (arcs in v1 bits; see armFaults). */
  readonly faults: FaultInjector;
  // saving (SAVING bit set)
  private rawSaver: SimStateSaver | null = null;
  private saver: FaultySaver | null = null;
  // resuming (100)
  private loader: SimStateLoader | null = null;

  constructor(
    readonly device: SimDevice,
    options: SimV1RegionOptions = {},
  ) {
    super({ windowSize: options.windowSize ?? SIM_V1_DEFAULT_WINDOW, policy: options.policy });
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
      deviceState: this.deviceState,
      saving: this.saver !== null,
      resuming: this.loader !== null,
      stagedBytes: this.staged,
      closed: this.closed,
    };
  }

  /** VFIO_DEVICE_RESET: 001, every saver, loader and staged byte dropped. */
  reset(): Promise<void> {
    return this.serialize(() => {
      this.checkOpen();
      this.dropSaving();
      this.dropResuming();
      this.window.fill(0);
      this.deviceState = V1_RUNNING;
      this.device.running = true;
    });
  }

  close(): Promise<void> {
    return this.serialize(() => {
      if (this.closed) return;
      this.dropSaving();
      this.dropResuming();
      this.closed = true;
    });
  }

  // ---- the stream behind the region (V1RegionCore's hooks) ---------------

  protected savePhase(): SavePhase | null {
    return this.saver?.phase ?? null;
  }

  protected resuming(): boolean {
    return this.loader !== null;
  }

  protected readStream(into: Uint8Array): Promise<number> {
    const saver = this.saver!;
    return Promise.resolve(this.guard(() => saver.read(into)));
  }

  protected stopCopyRemaining(): Promise<bigint> {
    const saver = this.saver!;
    return Promise.resolve(this.guard(() => saver.remainingBytes()));
  }

  protected precopyPending(): Promise<PrecopyInfo> {
    const saver = this.saver!;
    return Promise.resolve(this.guard(() => saver.precopyInfo()));
  }

  protected resumeWriter(): (from: Uint8Array) => Promise<number> {
    const loader = this.loader!;
    return (from) => Promise.resolve(this.guard(() => loader.write(from)));
  }

  protected override countDataPath(op: 'read' | 'write'): void {
    this.faults.countIo(op);
  }

  /**
   * After the core's checks: a planned arc fault fails the write (110b if it
   * says so); otherwise the arc runs and the value is stored with its
   * reserved bits. A failed arc leaves the previous state, or 110b after an
   * internal failure.
   */
  protected changeState(from: number, to: number): void {
    const f = from & V1_MASK;
    const t = to & V1_MASK;
    const fault = this.faults.takeArcFault(f, t);
    if (fault) {
      if (fault.toError) this.enterError();
      throw new MigrationError(fault.errno ?? 'EIO', `injected fault on ${v1StateName(f)} -> ${v1StateName(t)}`);
    }
    if (f !== t) this.transition(f, t);
    this.deviceState = to >>> 0;
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
        this.dropResumeStaging();
      }
    } catch (e) {
      this.enterError();
      throw asMigrationError(e);
    }
  }

  /** Leaving RESUMING: validate and apply (v2's RESUMING->STOP arc); EINVAL if rejected. */
  private finishResume(): void {
    const loader = this.loader;
    if (!loader || this.resumeRejected) throw new MigrationError('EINVAL', RESUME_REJECTED);
    try {
      loader.finish();
    } catch (e) {
      this.resumeRejected = true;
      throw new MigrationError('EINVAL', `device rejected the resumed data: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.loader = null;
  }

  /** Internal failure: 110b with the reserved bits kept (VFIO_DEVICE_STATE_SET_ERROR). */
  private enterError(): void {
    this.dropSaving();
    this.dropResuming();
    this.deviceState = v1SetError(this.deviceState);
    this.device.running = false;
  }

  private dropSaving(): void {
    this.rawSaver?.close('the v1 device left the saving states'); // dirty logging stops
    this.rawSaver = null;
    this.saver = null;
    this.dropSaveStaging();
  }

  private dropResuming(): void {
    this.loader = null;
    this.dropResumeStaging();
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
}
