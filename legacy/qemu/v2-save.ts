// QEMU 8-10's save handlers for one VFIO device (hw/vfio/migration.c),
// each a method named after the function it models. saveV2 (v2-client.ts)
// calls them in QEMU's order; they share what VFIOMigration holds for the
// device: the cached state and data_fd (QemuMigrationState), the pre-copy
// estimates, the data buffer, and the output stream.
import { isErrno, MigrationError } from '../../src/uapi/errors.js';
import type { DataSession, MigrationDevice } from '../../src/v2/contracts.js';
import { MigFlags, MigState } from '../../src/v2/states.js';
import { ignoreFailure, type MigrationPhase, type MigrationProgress } from './migration-progress.js';
import type { QemuMigrationState } from './qemu-migration-state.js';
import { MIG_STREAM_DATA_HEADER_BYTES } from './stream-format.js';
import type { MigStreamWriter } from './stream-writer.js';

/** VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE: QEMU's read size (1 MiB, "based on mlx5"). */
export const VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE = 1 << 20;

export interface V2SaveResult {
  /** Device bytes read in pre-copy and in stop-copy. */
  precopyBytes: number;
  stopCopyBytes: number;
  /** Bytes written to the output, framing included. */
  fileBytes: number;
  /** Whether the device went through PRE_COPY. */
  usedPrecopy: boolean;
}

export interface V2SaveSettings {
  /** Largest read (QEMU: min(1 MiB, MIG_DATA_SIZE)). */
  maxRead: number;
  /** Read every chunk into the same buffer (else each chunk gets a fresh one the Writable keeps). */
  reuseBuffer: boolean;
  onProgress?: (progress: MigrationProgress) => void;
}

const isPrecopyState = (s: MigState): boolean => s === MigState.PRE_COPY || s === MigState.PRE_COPY_P2P;

export class V2Save {
  readonly result: V2SaveResult = { precopyBytes: 0, stopCopyBytes: 0, fileBytes: 0, usedPrecopy: false };
  private phase: MigrationPhase = 'setup';
  /** precopy_init_size and precopy_dirty_size. */
  private initSize = 0;
  private dirtySize = 0;
  /** MIG_DATA_SIZE at the last query, minus what was read since. */
  private pending = 0;
  private bufferSize = 0;
  private record: Buffer | null = null;

  constructor(
    private readonly device: MigrationDevice,
    private readonly flags: number,
    private readonly mig: QemuMigrationState,
    private readonly writer: MigStreamWriter,
    private readonly settings: V2SaveSettings,
    /** The state the device was in when the save began: RUNNING or STOP. */
    private readonly startState: MigState,
  ) {}

  /**
   * vfio_save_setup: MIG_DATA_SIZE sizes the buffer; a running device with
   * PRE_COPY enters it and PRECOPY_INFO seeds the estimates; the setup
   * section opens the stream.
   */
  async vfioSaveSetup(): Promise<void> {
    const stopCopySize = await this.vfioQueryStopCopySize(VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE);
    this.bufferSize = Math.min(this.settings.maxRead, stopCopySize);
    if (this.bufferSize < 1) throw new MigrationError('ENOMEM', 'MIG_DATA_SIZE is 0: no data buffer (QEMU g_try_malloc0(0) fails)');
    this.pending = stopCopySize;
    this.report();
    if (this.flags & MigFlags.PRE_COPY && this.startState === MigState.RUNNING) {
      await this.mig.set(MigState.PRE_COPY, MigState.RUNNING);
      await this.vfioQueryPrecopySize();
      this.result.usedPrecopy = true;
    }
    await this.writer.start();
    if (this.result.usedPrecopy) this.phase = 'precopy';
  }

  /**
   * One pre-copy round: migration iterations, each a vfio_state_pending_estimate
   * (the cached estimates, no ioctl) and a vfio_save_iterate (one read). QEMU
   * iterates a device as long as it is in PRE_COPY (vfio_is_active_iterate),
   * so it also reads the 0 that says "nothing now"; the round ends there, or
   * once it has read more than the estimate at its start (a device that dirties
   * as fast as it is read: the next round or stop-copy takes the rest).
   */
  async precopyRound(): Promise<void> {
    const budget = this.initSize + this.dirtySize;
    let read = 0;
    for (;;) {
      const n = await this.vfioSaveIterate();
      read += n;
      if (n === 0 || read > budget) return;
    }
  }

  /**
   * vfio_state_pending_exact, asked when the migration core considers the
   * switchover (its estimate fell below the threshold): MIG_DATA_SIZE, and
   * PRECOPY_INFO in pre-copy, which refreshes the cached estimates.
   */
  async vfioStatePendingExact(): Promise<void> {
    this.pending = await this.vfioQueryStopCopySize(this.pending);
    if (isPrecopyState(this.mig.state)) await this.vfioQueryPrecopySize();
    this.report();
  }

  /** The VM stops for switchover: vfio_vmstate_change_prepare (P2P), then vfio_vmstate_change. */
  async vfioVmstateChange(): Promise<void> {
    if (this.startState !== MigState.RUNNING) return;
    if (this.flags & MigFlags.P2P) {
      await this.mig.setOrReset(this.mig.state === MigState.PRE_COPY ? MigState.PRE_COPY_P2P : MigState.RUNNING_P2P);
    }
    await this.mig.setOrReset(isPrecopyState(this.mig.state) ? MigState.STOP_COPY : MigState.STOP);
  }

  /**
   * vfio_save_complete_precopy: STOP_COPY, read to the end of the stream (no
   * size query: the progress estimate is the last exact one's); then
   * vfio_save_state ends the file.
   */
  async vfioSaveCompletePrecopy(): Promise<void> {
    this.phase = 'stopcopy';
    await this.mig.set(MigState.STOP_COPY, MigState.STOP);
    this.report();
    while ((await this.vfioSaveBlock()) > 0);
    await this.writer.endOfState();
    // vfio_save_state: the config section, empty here, ends the file.
    await this.writer.finish();
  }

  /** vfio_save_cleanup: the file is complete; a failing STOP only resets the device (QEMU ignores it). */
  async vfioSaveCleanup(): Promise<void> {
    await ignoreFailure(async () => {
      if (this.mig.state === MigState.STOP_COPY) await this.mig.setOrReset(MigState.STOP);
    });
    await this.mig.closeSession();
    this.phase = 'done';
    this.pending = 0;
    this.initSize = 0;
    this.dirtySize = 0;
    this.report();
  }

  /**
   * After a failure: vfio_save_cleanup, then vfio_migration_state_notifier
   * (MIG_EVENT_PRECOPY_FAILED) brings the device back to RUNNING. Their own
   * failures are not reported: the first error is.
   */
  async vfioMigrationStateNotifier(): Promise<void> {
    await ignoreFailure(async () => {
      if (this.mig.state === MigState.STOP_COPY) await this.mig.setOrReset(MigState.STOP);
    });
    await ignoreFailure(() => this.mig.closeSession());
    await ignoreFailure(() => this.mig.setOrReset(MigState.RUNNING));
  }

  /** The output is finished with (either way): count its bytes and let go of it. */
  release(): void {
    this.result.fileBytes = this.writer.bytesWritten;
    this.writer.release();
  }

  /** vfio_save_iterate: one vfio_save_block, the estimates updated, END_OF_STATE. Returns the bytes read. */
  private async vfioSaveIterate(): Promise<number> {
    const n = await this.vfioSaveBlock();
    this.vfioUpdateEstimatedPendingData(n);
    await this.writer.endOfState();
    return n;
  }

  /** vfio_save_block: one read; ENOMSG and 0 mean nothing was written. */
  private async vfioSaveBlock(): Promise<number> {
    this.record ??= Buffer.allocUnsafe(MIG_STREAM_DATA_HEADER_BYTES + this.bufferSize);
    let n: number;
    try {
      n = await this.session().read(this.record.subarray(MIG_STREAM_DATA_HEADER_BYTES));
    } catch (err) {
      if (isErrno(err, 'ENOMSG')) return 0; // pre-copy emptied the device state for now
      throw err;
    }
    if (n === 0) return 0;
    const full = this.record;
    if (!this.settings.reuseBuffer) this.record = null; // the Writable owns it now
    await this.writer.dataRecord(full, n);
    if (this.phase === 'precopy') this.result.precopyBytes += n;
    else this.result.stopCopyBytes += n;
    this.pending = Math.max(0, this.pending - n);
    this.report();
    return n;
  }

  /** vfio_query_stop_copy_size; `fallback` when the GET fails. */
  private async vfioQueryStopCopySize(fallback: number): Promise<number> {
    try {
      return Number(await this.device.stopCopySize());
    } catch {
      return fallback;
    }
  }

  /** vfio_query_precopy_size: failures leave both estimates 0. */
  private async vfioQueryPrecopySize(): Promise<void> {
    this.initSize = 0;
    this.dirtySize = 0;
    try {
      const info = await this.session().precopyInfo();
      this.initSize = Number(info.initialBytes);
      this.dirtySize = Number(info.dirtyBytes);
    } catch {
      // as QEMU: the estimates stay 0
    }
  }

  /** vfio_update_estimated_pending_data: a read takes from the initial bytes first; 0 read clears both. */
  private vfioUpdateEstimatedPendingData(n: number): void {
    if (n === 0) {
      this.initSize = 0;
      this.dirtySize = 0;
      return;
    }
    const fromInit = Math.min(this.initSize, n);
    this.initSize -= fromInit;
    this.dirtySize -= Math.min(this.dirtySize, n - fromInit);
  }

  private session(): DataSession {
    if (!this.mig.session) throw new MigrationError('EBADF', `no data session in ${MigState[this.mig.state]}`);
    return this.mig.session;
  }

  private report(): void {
    const bytes = this.result.precopyBytes + this.result.stopCopyBytes;
    this.settings.onProgress?.({ phase: this.phase, bytes, estimate: bytes + Math.max(this.pending, this.initSize + this.dirtySize) });
  }
}
