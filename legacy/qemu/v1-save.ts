// QEMU 7.2's save handlers for one VFIO device with a v1 migration region
// (hw/vfio/migration.c, docs/PROTOCOL.md §2.5), each a method named after the
// function it models. saveV1 (v1-client.ts) calls them in QEMU's order; they
// share what VFIOMigration holds: the cached pending_bytes, whether the VM
// runs, and the output stream.
import { MigrationError } from '../../src/uapi/errors.js';
import type { LegacyRegion } from '../contracts.js';
import { HEADER_SIZE } from '../region-layout.js';
import { readU64Field } from '../v1-registers.js';
import { V1_RUNNING } from '../v1-state.js';
import type { MigrationPhase, MigrationProgress } from './migration-progress.js';
import { MIG_STREAM_DATA_HEADER_BYTES } from './stream-format.js';
import type { MigStreamWriter } from './stream-writer.js';
import { QEMU72_SET_STATE, onlyFatal, v1MigrationFailed, v1SetState, v1VmStart } from './v1-set-state.js';
import { readV1Window, type V1WindowAccess } from './v1-window-io.js';

export interface V1SaveResult {
  /** Device bytes taken in the pre-copy rounds and in vfio_save_complete_precopy. */
  precopyBytes: number;
  stopCopyBytes: number;
  /** Chunks (data_offset triggers) in each part. */
  precopyChunks: number;
  stopCopyChunks: number;
  /** Bytes written to the output, framing included. */
  fileBytes: number;
  /** Whether the device ran in pre-copy (011) rather than going straight to stop-and-copy. */
  usedPrecopy: boolean;
}

export class V1Save {
  readonly result: V1SaveResult = {
    precopyBytes: 0,
    stopCopyBytes: 0,
    precopyChunks: 0,
    stopCopyChunks: 0,
    fileBytes: 0,
    usedPrecopy: false,
  };
  private phase: MigrationPhase = 'setup';
  /** migration->pending_bytes, QEMU's cached copy. */
  private pending = 0n;
  /** migration->vm_running: whether the VM runs, so the switchover stops it. */
  private vmRunning = false;
  /** This save stopped the VM (so a failure starts it again). */
  private vmStoppedHere = false;
  /** The record buffer kept for the next chunk when the Writable is done with it on callback (reuseBuffer). */
  private spare: Buffer | null = null;

  constructor(
    private readonly region: LegacyRegion,
    private readonly writer: MigStreamWriter,
    private readonly access: V1WindowAccess,
    private readonly onProgress?: (progress: MigrationProgress) => void,
    /** Whether the VM runs; undefined: it runs iff the device's RUNNING bit is set at setup. */
    private readonly vmRunningOption?: boolean,
    private readonly reuseBuffer = false,
  ) {}

  /**
   * vfio_save_setup: MASK/SAVING keeps RUNNING as it was, so the device
   * pre-copies iff its RUNNING bit is set. That is not whether the VM runs:
   * a VM started with -S never ran, yet its device is still 001 from open.
   */
  async vfioSaveSetup(): Promise<void> {
    const s = await v1SetState(this.region, QEMU72_SET_STATE.saveSetup.mask, QEMU72_SET_STATE.saveSetup.value);
    const deviceRuns = (s & V1_RUNNING) !== 0;
    this.vmRunning = this.vmRunningOption ?? deviceRuns;
    this.result.usedPrecopy = deviceRuns;
    await this.writer.start();
    this.report();
    this.phase = this.result.usedPrecopy ? 'precopy' : 'stopcopy';
  }

  /** vfio_save_pending: a failed read only skips the estimate. */
  async vfioSavePending(): Promise<void> {
    await this.vfioUpdatePending().catch(() => undefined);
    this.report();
  }

  /** vfio_save_iterate: one chunk (or an empty data section when nothing is pending), then END_OF_STATE. */
  async vfioSaveIterate(): Promise<void> {
    let empty = false;
    if (this.pending === 0n) {
      await this.vfioUpdatePending();
      empty = this.pending === 0n;
    }
    if (empty) {
      await this.writer.dataRecord(Buffer.alloc(MIG_STREAM_DATA_HEADER_BYTES), 0); // DEV_DATA_STATE, be64 0
    } else {
      await this.vfioSaveBuffer();
    }
    await this.writer.endOfState();
    this.pending = 0n; // forces a re-read next time
  }

  /**
   * The VM stops for switchover: vm_stop_force_state() notifies
   * vfio_vmstate_change(running=false) only when the VM runs; a VM that is
   * not running gets its run state set and no notification.
   */
  async vfioVmstateChange(): Promise<void> {
    if (!this.vmRunning) return;
    this.vmStoppedHere = true;
    await v1SetState(this.region, QEMU72_SET_STATE.vmStop.mask, QEMU72_SET_STATE.vmStop.value);
  }

  /**
   * vfio_save_complete_precopy: ~RUNNING/SAVING, chunks until pending_bytes
   * reads 0 or a chunk is empty, END_OF_STATE, ~SAVING/0; then vfio_save_state
   * (the config section, empty here) ends the file.
   */
  async vfioSaveCompletePrecopy(): Promise<void> {
    this.phase = 'stopcopy';
    await v1SetState(this.region, QEMU72_SET_STATE.completeStart.mask, QEMU72_SET_STATE.completeStart.value);
    await this.vfioUpdatePending();
    this.report();
    while (this.pending > 0n) {
      if ((await this.vfioSaveBuffer()) === 0) break;
      await this.vfioUpdatePending();
      this.report();
    }
    await this.writer.endOfState();
    await v1SetState(this.region, QEMU72_SET_STATE.completeEnd.mask, QEMU72_SET_STATE.completeEnd.value);
    await this.writer.finish();
    this.phase = 'done';
    this.pending = 0n;
    this.report();
  }

  /**
   * After a failure, migration_iteration_finish: vm_start() if this save had
   * stopped the VM, then the migration notifier. Only an abort (V1FatalError)
   * of theirs is reported.
   */
  async migrationIterationFinish(): Promise<void> {
    if (this.vmStoppedHere) await onlyFatal(() => v1VmStart(this.region));
    await onlyFatal(() => v1MigrationFailed(this.region));
  }

  /** The output is finished with (either way): count its bytes and let go of it. */
  release(): void {
    this.result.fileBytes = this.writer.bytesWritten;
    this.writer.release();
  }

  /** vfio_update_pending: one 8-byte pread; a failed read leaves pending 0 and is returned. */
  private async vfioUpdatePending(): Promise<void> {
    try {
      this.pending = await readU64Field(this.region, 'pending_bytes');
    } catch (err) {
      this.pending = 0n;
      throw err;
    }
  }

  /** vfio_save_buffer: data_offset (the trigger), data_size, then the window; one record. Returns data_size. */
  private async vfioSaveBuffer(): Promise<number> {
    const dataOffset = await readU64Field(this.region, 'data_offset');
    const dataSize = await readU64Field(this.region, 'data_size');
    const n = checkChunk(this.region, dataOffset, dataSize);
    // Why reuse: a fresh 1 MiB record per chunk is page-faulted in and left to the GC (RSS grew by tens of MiB at 8 GiB, issue 14 g).
    const record =
      this.spare && this.spare.length >= MIG_STREAM_DATA_HEADER_BYTES + n
        ? this.spare
        : Buffer.allocUnsafe(MIG_STREAM_DATA_HEADER_BYTES + n);
    this.spare = null;
    await readV1Window(
      this.region,
      Number(dataOffset),
      record.subarray(MIG_STREAM_DATA_HEADER_BYTES, MIG_STREAM_DATA_HEADER_BYTES + n),
      this.access,
    );
    await this.writer.dataRecord(record, n); // the Writable owns `record` now, unless it is done with it on callback
    if (this.reuseBuffer) this.spare = record;
    if (this.phase === 'precopy') {
      this.result.precopyBytes += n;
      this.result.precopyChunks++;
    } else {
      this.result.stopCopyBytes += n;
      this.result.stopCopyChunks++;
    }
    this.pending = this.pending > BigInt(n) ? this.pending - BigInt(n) : 0n;
    this.report();
    return n;
  }

  private report(): void {
    const bytes = this.result.precopyBytes + this.result.stopCopyBytes;
    this.onProgress?.({ phase: this.phase, bytes, estimate: bytes + Number(this.pending) });
  }
}

/**
 * The chunk must lie inside the data section. (QEMU 7.2 trusts data_size and
 * would spin on a chunk running past the region end; here it is EINVAL.)
 */
function checkChunk(region: LegacyRegion, dataOffset: bigint, dataSize: bigint): number {
  if (dataOffset < BigInt(HEADER_SIZE) || dataOffset + dataSize > BigInt(region.size)) {
    throw new MigrationError(
      'EINVAL',
      `chunk [${dataOffset}, ${dataOffset + dataSize}) outside the data section of a ${region.size}-byte region`,
    );
  }
  return Number(dataSize);
}
