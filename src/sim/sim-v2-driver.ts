// SimV2Driver: a v2 migration driver over a SimDevice that behaves like an
// in-tree kernel driver. Modelled on samples/vfio-mdev/mtty.c (6.12):
// setState() is mtty_set_state (walk vfio_mig_get_next_state() one arc at a
// time; a failing arc stops the walk where it is), stepState() is
// mtty_step_state (only the arcs the kernel requires for the flags), reset()
// is mtty_reset (-> RUNNING, every migration file disabled).
import { MigrationError } from '../uapi/errors.js';
import type { MigrationDevice } from '../v2/contracts.js';
import { nextState } from '../v2/fsm.js';
import { requiredArcs } from '../v2/required-arcs.js';
import { SerialQueue } from '../v2/serial.js';
import { MigFlags, MigState, stateName } from '../v2/states.js';
import { FaultInjector } from './fault-injector.js';
import type { FaultPlan } from './faults.js';
import type { SimDevice } from './sim-device.js';
import { type SessionHost, SimV2Session } from './sim-v2-session.js';

const { ERROR: E, STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP } = MigState;

export interface SimV2DriverOptions {
  /** VFIO_MIGRATION_* flags to advertise; STOP_COPY is mandatory (vfio_pci_core_register_device). */
  flags: number;
  faults?: FaultPlan;
  /** Largest write the resuming data_fd accepts per call (default: unlimited); models short writes. */
  writeLimit?: number;
  /** Called after each single arc the driver completes (tests use it to see the walk). */
  onArc?: (from: MigState, to: MigState) => void;
}

/** States in which the device does work (RUNNING_P2P only quiesces P2P DMA; it still runs). */
function deviceRuns(state: MigState): boolean {
  return state === R || state === RP || state === PC || state === PCP;
}

const arcKey = (from: MigState, to: MigState): number => from * 8 + to;

export class SimV2Driver implements MigrationDevice {
  readonly flags: number;
  readonly faults: FaultInjector;
  private readonly arcs: Set<number>;
  private readonly queue = new SerialQueue();
  private state: MigState = R;
  private saving: SimV2Session | null = null;
  private resuming: SimV2Session | null = null;
  private readonly handles = new Set<SimV2Session>();
  private closed = false;
  private readonly host: SessionHost;
  private readonly onArc?: (from: MigState, to: MigState) => void;

  constructor(
    readonly device: SimDevice,
    options: SimV2DriverOptions,
  ) {
    const { flags, faults, writeLimit = Number.MAX_SAFE_INTEGER, onArc } = options;
    const known = MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY;
    if (!Number.isInteger(flags) || !(flags & MigFlags.STOP_COPY) || (flags & ~known) !== 0) {
      throw new MigrationError('EINVAL', `migration flags must include STOP_COPY and only STOP_COPY|P2P|PRE_COPY, got ${flags}`);
    }
    if (!Number.isSafeInteger(writeLimit) || writeLimit < 1) throw new MigrationError('EINVAL', `bad writeLimit ${writeLimit}`);
    this.flags = flags;
    this.arcs = new Set(requiredArcs(flags).map(([a, b]) => arcKey(a, b)));
    this.faults = new FaultInjector(faults);
    this.onArc = onArc;
    this.device.running = true;
    this.host = {
      serialize: (task) => this.queue.run(task),
      currentState: () => this.state,
      faults: this.faults,
      writeLimit,
      handleClosed: (session) => this.handles.delete(session),
    };
  }

  /**
   * Replace the fault plan (counting of reads/writes restarts). Stream faults
   * (truncate/corrupt) apply to the saving session open now, else to the next
   * one opened; offsets count from the start of that session's stream.
   */
  armFaults(plan: FaultPlan): void {
    this.faults.arm(plan);
    if (this.saving) this.saving.bindStreamFaults(this.faults.takeStreamFaults());
  }

  /** The state right now, without queueing (for tests and tools). */
  get currentState(): MigState {
    return this.state;
  }

  /** Migration files the driver still holds (not yet ended by an arc, reset or close). */
  get openSessions(): number {
    return (this.saving ? 1 : 0) + (this.resuming ? 1 : 0);
  }

  /** data_fds handed out and not yet closed by the user. */
  get openHandles(): number {
    return this.handles.size;
  }

  migrationFlags(): Promise<number> {
    return this.serialize(() => this.flags);
  }

  getState(): Promise<MigState> {
    return this.serialize(() => this.state);
  }

  /** mtty_set_state: one arc at a time; a data session only from the final arc. */
  setState(target: MigState): Promise<SimV2Session | null> {
    return this.serialize(() => {
      let session: SimV2Session | null = null;
      while (this.state !== target) {
        const cur = this.state;
        const next = nextState(cur, target, this.flags);
        session = this.stepState(next);
        this.state = next;
        this.device.running = deviceRuns(next);
        this.onArc?.(cur, next);
        if (session && next !== target) {
          // mtty WARNs: only the last arc may return a file.
          throw new MigrationError('EINVAL', `arc to ${stateName(next)} opened a session before reaching ${stateName(target)}`);
        }
      }
      if (session) this.handles.add(session);
      return session;
    });
  }

  /** MIG_DATA_SIZE: what is left of the open saving stream, else a full stream (mtty_get_data_size). */
  stopCopySize(): Promise<bigint> {
    return this.serialize(() => (this.saving ? this.saving.remainingBytes() : this.device.fullStreamBytes()));
  }

  /** VFIO_DEVICE_RESET (mtty_reset + deferred_reset): RUNNING, every migration file disabled. */
  reset(): Promise<void> {
    return this.serialize(() => {
      this.disableFiles('device reset');
      this.state = R;
      this.device.running = true;
    });
  }

  /** close_device: migration files must reach error before it returns. */
  close(): Promise<void> {
    return this.serialize(() => {
      this.disableFiles('device closed');
      this.closed = true;
    });
  }

  private serialize<T>(task: () => T): Promise<T> {
    return this.queue.run(() => {
      if (this.closed) throw new MigrationError('EBADF', 'device is closed');
      return task();
    });
  }

  /** mtty_step_state: the single arc state -> next. */
  private stepState(next: MigState): SimV2Session | null {
    const cur = this.state;
    if (!this.arcs.has(arcKey(cur, next))) {
      throw new MigrationError('EINVAL', `arc ${stateName(cur)} -> ${stateName(next)} is not one a driver implements`);
    }
    const fault = this.faults.takeArcFault(cur, next);
    if (fault) {
      if (fault.toError) {
        this.disableFiles('device entered ERROR');
        this.state = E;
        this.device.running = false;
      }
      throw new MigrationError(fault.errno ?? 'EIO', `injected fault: arc ${stateName(cur)} -> ${stateName(next)}`);
    }
    const arc = (from: MigState, to: MigState) => cur === from && next === to;

    if (arc(RS, S)) {
      // mtty_load_state: validate and apply; on failure the SET fails and the device stays in RESUMING.
      if (!this.resuming) throw new MigrationError('EINVAL', 'no resuming session to load from');
      this.resuming.loader.finish();
      this.endResuming('state loaded');
      return null;
    }
    if (arc(PC, R) || arc(PCP, RP) || arc(SC, S)) {
      this.endSaving(`left ${stateName(cur)}`);
      return null;
    }
    if (arc(R, PC) || arc(RP, PCP)) return this.openSaving(false);
    if (arc(S, SC)) return this.openSaving(true);
    if (arc(PC, SC) || arc(PCP, SC)) {
      // Same session, now stop-copy: the device is stopped, the stream will end (mtty_save_device_data with a file).
      this.device.running = false;
      this.saving?.saver.enterStopCopy();
      return null;
    }
    if (arc(S, RS)) {
      this.endResuming('superseded');
      this.resuming = new SimV2Session(this.host, { kind: 'resuming', loader: this.device.createLoader() });
      return this.resuming;
    }
    // R<->RP, RP->S, S->RP, PC<->PCP, R<->S: no data movement; deviceRuns() handles start/stop.
    return null;
  }

  private openSaving(stopCopy: boolean): SimV2Session {
    this.endSaving('superseded');
    if (stopCopy) this.device.running = false;
    const saver = this.device.createSaver();
    if (stopCopy) saver.enterStopCopy();
    this.saving = new SimV2Session(this.host, { kind: 'saving', saver }, this.faults.takeStreamFaults());
    return this.saving;
  }

  private endSaving(reason: string): void {
    this.saving?.disable(reason);
    this.saving = null;
  }

  private endResuming(reason: string): void {
    this.resuming?.disable(reason);
    this.resuming = null;
  }

  private disableFiles(reason: string): void {
    this.endSaving(reason);
    this.endResuming(reason);
  }
}
