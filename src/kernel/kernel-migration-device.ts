// The MigrationDevice contract over a real kernel: VFIO_DEVICE_FEATURE
// GET/SET/PROBE on the device fd (argsz = 8 + payload, as QEMU's
// vfio_migration_set_state / vfio_migration_query_flags build it), the data_fd
// as a byte stream (read/write with no position: stream_open'ed files answer a
// position with ESPIPE), VFIO_MIG_GET_PRECOPY_INFO on the data_fd, and
// VFIO_DEVICE_RESET. Calls (device and sessions) are serialized, as the
// driver's state mutex serializes them. Every fd is closed on every path:
// a session's close closes its data_fd; reset() and close() close live sessions.
// The device rule (../v2/takeover.ts) lives here for every kernel user: the
// first call takes the device over (a left-over RESUMING, ERROR or saving
// state is reset, never SET), a SET out of a RESUMING this handle did not
// enter is refused, and close() resets a device left in RESUMING.
import { FirstFailure, MigrationError, isErrno } from '../uapi/errors.js';
import { VFIO_DEVICE_FEATURE, VFIO_DEVICE_RESET, VFIO_MIG_GET_PRECOPY_INFO } from '../uapi/ioctl.js';
import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
} from '../uapi/constants.js';
import {
  vfio_device_feature,
  vfio_device_feature_mig_data_size,
  vfio_device_feature_mig_state,
  vfio_device_feature_migration,
  vfio_precopy_info,
} from '../uapi/structs.js';
import type { DataSession, MigrationDevice, PrecopyInfo } from '../v2/contracts.js';
import { MigState, stateName } from '../v2/states.js';
import { SerialQueue } from '../v2/serial.js';
import { refuseForeignResume, takeOver, type Takeover } from '../v2/takeover.js';
import { openVfioDevice, resetBeforeLeaving, type DeviceSpec, type VfioDevice } from './vfio-device.js';
import type { Syscalls } from './syscalls.js';
import { koffiSyscalls } from './koffi-syscalls.js';

export class KernelMigrationDevice implements MigrationDevice {
  private readonly queue = new SerialQueue();
  private readonly sessions = new Set<KernelDataSession>();
  private isClosed = false;
  /** What taking the device over found and did; null: the driver has no migration ops (nothing to guard). */
  private taken: Takeover | null | undefined;
  /** This handle's SET entered the RESUMING the device is in (it holds or held the data file). */
  private resumeEntered = false;

  /**
   * Takes ownership of `vfio`: close() closes it. Works on any open device fd
   * (also one opened elsewhere): the rule is applied by the first call.
   */
  constructor(readonly vfio: VfioDevice) {}

  /**
   * Open a device and check it speaks v2 migration (FEATURE_MIGRATION GET, as
   * QEMU's vfio_migration_init does first), after taking it over. ENOTTY there
   * means the driver has no mig_ops. On any failure every fd opened so far is
   * closed again.
   */
  static async open(spec: DeviceSpec, sys: Syscalls = koffiSyscalls()): Promise<KernelMigrationDevice> {
    const vfio = openVfioDevice(spec, sys);
    const dev = new KernelMigrationDevice(vfio);
    try {
      await dev.migrationFlags();
      return dev;
    } catch (e) {
      await dev.close().catch(() => undefined);
      throw e;
    }
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** What the first call found and did (see ../v2/takeover.ts); undefined before it. */
  get takeover(): Takeover | undefined {
    return this.taken ?? undefined;
  }

  /** Sessions handed out and not closed yet. */
  get liveSessions(): number {
    return this.sessions.size;
  }

  migrationFlags(): Promise<number> {
    return this.queue.run(async () => {
      await this.ready();
      try {
        const out = this.feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, vfio_device_feature_migration.size);
        return Number(vfio_device_feature_migration.decode(out).flags);
      } catch (e) {
        if (e instanceof MigrationError && e.code === 'ENOTTY') {
          throw new MigrationError(
            'ENOTTY',
            `device ${this.vfio.name} has no v2 migration support (VFIO_DEVICE_FEATURE_MIGRATION: the driver has no migration ops)`,
          );
        }
        throw e;
      }
    });
  }

  getState(): Promise<MigState> {
    return this.queue.run(async () => {
      await this.ready();
      return this.stateNow();
    });
  }

  /**
   * MIG_DEVICE_STATE SET, after a GET: a SET out of a RESUMING this handle
   * did not enter is refused (EBUSY) before it reaches the driver.
   */
  setState(target: MigState): Promise<DataSession | null> {
    return this.queue.run(async () => {
      await this.ready();
      refuseForeignResume(`device ${this.vfio.name}`, this.stateNow(), target, this.resumeEntered);
      const payload = vfio_device_feature_mig_state.encode({ device_state: target, data_fd: -1 });
      let out: Uint8Array;
      try {
        out = this.feature(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, payload);
      } catch (e) {
        throw explain(e, `SET device_state ${stateName(target)}`);
      }
      // vfio_ioctl_device_feature_mig_device_state: data_fd >= 0 only when the arc opened a file.
      const fd = vfio_device_feature_mig_state.decode(out).data_fd;
      if (target !== MigState.RESUMING) this.resumeEntered = false;
      if (fd < 0) return null;
      if (target === MigState.RESUMING) this.resumeEntered = true;
      const session = new KernelDataSession(this, fd, target === MigState.RESUMING ? 'resume' : 'save');
      this.sessions.add(session);
      return session;
    });
  }

  stopCopySize(): Promise<bigint> {
    return this.queue.run(async () => {
      await this.ready();
      const out = this.feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, vfio_device_feature_mig_data_size.size);
      return vfio_device_feature_mig_data_size.decode(out).stop_copy_length;
    });
  }

  /**
   * VFIO_DEVICE_FEATURE with PROBE: does the device support `ops` (GET and/or
   * SET) of `feature`? argsz = 8, as QEMU's vfio_devices_all_device_dirty_tracking
   * probe. ENOTTY (no such feature) and EINVAL (op not supported) answer false.
   */
  probeFeature(feature: number, ops: number): Promise<boolean> {
    return this.queue.run(async () => {
      await this.ready();
      try {
        this.feature(VFIO_DEVICE_FEATURE_PROBE | ops | feature, 0);
        return true;
      } catch (e) {
        if (e instanceof MigrationError && (e.code === 'ENOTTY' || e.code === 'EINVAL')) return false;
        throw e;
      }
    });
  }

  /**
   * VFIO_DEVICE_RESET: the device returns to RUNNING and its data files die;
   * our session fds are closed too, also when the reset fails. Needs no
   * takeover first: a reset is what the rule itself does.
   */
  reset(): Promise<void> {
    return this.queue.run(() => {
      this.check();
      this.resetNow();
    });
  }

  /**
   * Close live sessions, then the device (and its group/container). A device
   * this handle leaves in RESUMING is reset first (mtty_close would drop the
   * resume file and keep the state: the next SET out of it oopses). Every fd
   * is closed even when that reset fails; the error then says so. Idempotent.
   */
  close(): Promise<void> {
    return this.queue.run(() => {
      if (this.isClosed) return;
      this.isClosed = true;
      const failure = new FirstFailure();
      failure.run(() => this.resetIfResuming());
      this.closeSessions(failure); // always, even after a failed reset
      failure.run(() => this.vfio.close());
      failure.rethrow();
    });
  }

  // --- for KernelDataSession --------------------------------------------------

  /** @internal */
  run<T>(task: () => T): Promise<T> {
    return this.queue.run(task);
  }

  /** @internal */
  forget(session: KernelDataSession): void {
    this.sessions.delete(session);
  }

  get sys(): Syscalls {
    return this.vfio.sys;
  }

  /** The rule's first step, once: take the device over (reset a left-over state) before anything else. */
  private async ready(): Promise<void> {
    this.check();
    if (this.taken !== undefined) return;
    try {
      this.taken = await takeOver(`device ${this.vfio.name}`, {
        getState: () => Promise.resolve(this.stateNow()),
        reset: () => Promise.resolve(this.resetNow()),
      });
    } catch (e) {
      // No migration ops (ENOTTY): there is no state to guard; the call itself reports it.
      if (!isErrno(e, 'ENOTTY')) throw e;
      this.taken = null;
    }
  }

  private stateNow(): MigState {
    const payload = vfio_device_feature_mig_state.encode({ device_state: 0, data_fd: -1 });
    const out = this.feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, payload);
    return vfio_device_feature_mig_state.decode(out).device_state;
  }

  /** VFIO_DEVICE_RESET, then our session fds closed whatever the ioctl said; the first error is thrown. */
  private resetNow(): void {
    const failure = new FirstFailure();
    failure.run(() => {
      this.vfio.sys.ioctl(this.vfio.fd, VFIO_DEVICE_RESET);
      this.resumeEntered = false;
    });
    this.closeSessions(failure); // always, even after a failed ioctl
    failure.rethrow();
  }

  /** close()'s first step: a device in RESUMING is reset (a driver without migration ops is left alone). */
  private resetIfResuming(): void {
    if (this.taken === null) return;
    let state: MigState;
    try {
      state = this.stateNow();
    } catch (e) {
      if (isErrno(e, 'ENOTTY')) return;
      throw e;
    }
    if (state !== MigState.RESUMING) return;
    resetBeforeLeaving(this.vfio.name, 'RESUMING', () => this.resetNow(), 'the next user must reset it before any SET');
  }

  private closeSessions(failure: FirstFailure): void {
    for (const s of [...this.sessions]) failure.run(() => s.closeNow());
  }

  /** One VFIO_DEVICE_FEATURE ioctl: 8-byte header + payload; returns the payload as the kernel left it. */
  private feature(flags: number, payload: Uint8Array | number): Uint8Array {
    const size = typeof payload === 'number' ? payload : payload.length;
    const buf = new Uint8Array(vfio_device_feature.size + size);
    vfio_device_feature.encode({ argsz: buf.length, flags }, buf);
    if (typeof payload !== 'number') buf.set(payload, vfio_device_feature.size);
    this.vfio.sys.ioctl(this.vfio.fd, VFIO_DEVICE_FEATURE, buf);
    return buf.subarray(vfio_device_feature.size);
  }

  private check(): void {
    if (this.isClosed) throw new MigrationError('EBADF', `device ${this.vfio.name} is closed`);
  }
}

/** A data_fd: the saving stream (read) or the resuming stream (write). */
export class KernelDataSession implements DataSession {
  private open = true;

  constructor(
    private readonly device: KernelMigrationDevice,
    private readonly dataFd: number,
    readonly direction: 'save' | 'resume',
  ) {}

  /** The kernel fd; -1 once closed. */
  get fd(): number {
    return this.open ? this.dataFd : -1;
  }

  get closed(): boolean {
    return !this.open;
  }

  /** read(2) with no position; 0 = end of stream; ENOMSG = no pre-copy data right now. EINTR is retried. */
  read(buf: Uint8Array): Promise<number> {
    return this.device.run(() => {
      this.check();
      return retryEintr(() => this.device.sys.read(this.dataFd, buf));
    });
  }

  /** write(2) with no position; may be short. EINTR is retried. */
  write(buf: Uint8Array): Promise<number> {
    return this.device.run(() => {
      this.check();
      return retryEintr(() => this.device.sys.write(this.dataFd, buf));
    });
  }

  /** VFIO_MIG_GET_PRECOPY_INFO on the data_fd (argsz 24, flags 0, as QEMU's vfio_query_precopy_size). */
  precopyInfo(): Promise<PrecopyInfo> {
    return this.device.run(() => {
      this.check();
      const buf = vfio_precopy_info.encode({ argsz: vfio_precopy_info.size, flags: 0 });
      this.device.sys.ioctl(this.dataFd, VFIO_MIG_GET_PRECOPY_INFO, buf);
      const info = vfio_precopy_info.decode(buf);
      return { initialBytes: info.initial_bytes, dirtyBytes: info.dirty_bytes };
    });
  }

  close(): Promise<void> {
    return this.device.run(() => this.closeNow());
  }

  /** @internal close inside the device queue. */
  closeNow(): void {
    if (!this.open) return;
    this.open = false;
    this.device.forget(this);
    this.device.sys.close(this.dataFd); // close(2) releases the fd even when it reports an error
  }

  private check(): void {
    // Never touch the number after close: the kernel may have reused it for another file.
    if (!this.open) throw new MigrationError('EBADF', 'data session is closed');
  }
}

/** Same errno, with what we were doing in front of the syscall's own message. */
function explain(e: unknown, what: string): unknown {
  return e instanceof MigrationError ? new MigrationError(e.errno, `${what}: ${e.message.replace(/^E\w+: /, '')}`) : e;
}

function retryEintr(op: () => number): number {
  for (;;) {
    try {
      return op();
    } catch (e) {
      if (!(e instanceof MigrationError && e.code === 'EINTR')) throw e;
    }
  }
}
