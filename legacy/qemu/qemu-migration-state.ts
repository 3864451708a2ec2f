// QEMU's per-device migration bookkeeping (VFIOMigration in hw/vfio/migration.c,
// QEMU 10.0): the cached device_state, the adopted data_fd, and
// vfio_migration_set_state(new, recover) with its recovery ladder:
//   SET new fails -> (recover == ERROR ? reset : SET recover, and if that fails reset);
//   reset -> cached state RUNNING; the first error is what the caller gets.
// One addition to QEMU (the device rule, takeover.ts): a SET out of a RESUMING
// this state did not enter is refused before it reaches the device, and counts
// as a failed SET (so the ladder resets instead).
import { MigrationError, asMigrationError } from '../../src/uapi/errors.js';
import type { DataSession, MigrationDevice } from '../../src/v2/contracts.js';
import { MigState } from '../../src/v2/states.js';
import { refuseForeignResume } from '../../src/v2/takeover.js';

export class QemuMigrationState {
  /** The data_fd QEMU holds (vfio_migration->data_fd), or null. */
  session: DataSession | null = null;
  /** Successful resets so far (by the ladder or resetDevice). */
  resets = 0;
  /** This state's own SET entered the RESUMING the device is in. */
  private enteredResuming = false;

  constructor(
    private readonly device: MigrationDevice,
    /** QEMU's cached device_state (vfio_migration->device_state). */
    public state: MigState,
  ) {}

  /** vfio_migration_set_state. */
  async set(next: MigState, recover: MigState): Promise<void> {
    if (next === this.state) return; // QEMU 10.0: already there, nothing to do
    let fresh: DataSession | null;
    try {
      this.refuseLeavingForeignResume(next);
      fresh = await this.device.setState(next);
    } catch (err) {
      const first = asMigrationError(err);
      if (recover === MigState.ERROR) {
        await this.resetDevice(first);
        throw first;
      }
      try {
        this.refuseLeavingForeignResume(recover);
        const unexpected = await this.device.setState(recover);
        // QEMU ignores a data_fd from the recover SET (it would leak); close it.
        if (unexpected) await unexpected.close().catch(() => undefined);
        this.state = recover;
      } catch {
        await this.resetDevice(first);
      }
      throw first;
    }
    this.state = next;
    this.enteredResuming = next === MigState.RESUMING && (fresh !== null || this.enteredResuming);
    if (fresh) {
      if (this.session) {
        // "data_fd out of sync": the device ended a transfer behind QEMU's back.
        await fresh.close().catch(() => undefined);
        throw new MigrationError('EBADF', 'data_fd out of sync: the device opened a new session while one is held');
      }
      this.session = fresh;
    }
  }

  /** vfio_migration_set_state_or_reset: recover state ERROR means reset. */
  setOrReset(next: MigState): Promise<void> {
    return this.set(next, MigState.ERROR);
  }

  /** vfio_migration_cleanup: close the data_fd (errors from close are ignored, as QEMU ignores close()). */
  async closeSession(): Promise<void> {
    const s = this.session;
    this.session = null;
    if (s) await s.close().catch(() => undefined);
  }

  /** Reset the device. QEMU aborts (hw_error) when this fails; we throw instead. */
  async resetDevice(cause?: MigrationError): Promise<void> {
    try {
      await this.device.reset();
    } catch (err) {
      const e = asMigrationError(err);
      throw new MigrationError(e.errno, `device reset failed (${e.message})${cause ? ` while recovering from ${cause.message}` : ''}`);
    }
    this.state = MigState.RUNNING;
    this.enteredResuming = false;
    this.resets++;
  }

  private refuseLeavingForeignResume(next: MigState): void {
    refuseForeignResume('the device', this.state, next, this.enteredResuming);
  }
}
