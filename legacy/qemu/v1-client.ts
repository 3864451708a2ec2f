// The v1 migration client: what QEMU 7.2 (the last v1 QEMU) does with a v1
// migration region, hw/vfio/migration.c (docs/PROTOCOL.md §2.3-2.6), against any
// LegacyRegion, streaming the migration file format shared with the v2
// client (stream-format.ts), so a state saved over v1 loads over v2
// and back.
//
// saveV1 (the handlers are in v1-save.ts): vfio_save_setup (MASK/SAVING), pre-copy rounds of
// vfio_save_pending + vfio_save_iterate (one chunk per iterate), the last
// vfio_save_pending (the iteration that decides to switch over), the VM stop
// (~RUNNING/0, only when the VM runs), vfio_save_complete_precopy (~RUNNING/SAVING, pending/chunk
// until pending is 0 or a chunk is empty, ~SAVING/0), then the final
// (config) section. On failure: VM start (~MASK/RUNNING) if the VM had been
// stopped, then the migration notifier (~(SAVING|RESUMING)/RUNNING).
// loadV1: vfio_load_setup (~MASK/RESUMING), vfio_load_state with
// vfio_load_buffer per data record (split to the destination window,
// v1-load.ts), then the VM start (~MASK/RUNNING), where
// the device validates and applies the data. QEMU 7.2 never resets a device:
// after a failed load it exits and leaves the device in 100, which the next
// user must not leave by a state write (src/v2/takeover.ts). loadV1 resets
// the device instead and notes that on the error (failure-recovery.ts).
import type { Readable, Writable } from 'node:stream';
import { asMigrationError, MigrationError } from '../../src/uapi/errors.js';
import type { LegacyRegion } from '../contracts.js';
import { resetAndNote } from './failure-recovery.js';
import type { MigrationPhase, MigrationProgress } from './migration-progress.js';
import { MigStreamWriter } from './stream-writer.js';
import { V1Load, type V1LoadResult } from './v1-load.js';
import { V1Save, type V1SaveResult } from './v1-save.js';
import { QEMU72_SET_STATE, isV1Fatal, v1SetState, v1VmStart } from './v1-set-state.js';
import type { V1WindowAccess } from './v1-window-io.js';

export { V1FatalError, isV1Fatal, QEMU72_SET_STATE, v1SetState, v1VmStart, v1VmStop, v1MigrationFailed } from './v1-set-state.js';

export interface SaveV1Options {
  /** Pre-copy rounds: each is one vfio_save_pending + one vfio_save_iterate (default 1). */
  precopyRounds?: number;
  /** Called after each round while the device still runs (tests step it here). */
  betweenRounds?: (round: number) => void | Promise<void>;
  /** 'pieces' (default): <= 8-byte preads as vfio_mig_rw; 'mmap': one access per chunk. */
  windowAccess?: V1WindowAccess;
  onProgress?: (progress: MigrationProgress) => void;
  /**
   * Copy every chunk into the same record buffer (default: only when `out` is
   * a net.Socket or fs.WriteStream, which are done with a buffer when they
   * call back), as saveV2's option. Otherwise each record is a fresh buffer
   * that the Writable keeps.
   */
  reuseBuffer?: boolean;
  /**
   * Whether the VM runs when the save begins: only then does the switchover
   * stop it (vfio_vmstate_change, ~RUNNING/0) and a failure start it again.
   * false for a VM that never ran (-S, prelaunch): its device still pre-copies
   * from 001. Default: the VM runs iff the device's RUNNING bit is set.
   */
  vmRunning?: boolean;
}

export type SaveV1Result = V1SaveResult;

export interface LoadV1Options {
  windowAccess?: V1WindowAccess;
  onProgress?: (progress: MigrationProgress) => void;
  /** Start the VM afterwards (100 -> 001, default true); false leaves the device in RESUMING. */
  startVm?: boolean;
}

export type LoadV1Result = V1LoadResult;

/** Save the device behind `region` to `out` as QEMU 7.2 does. The Writable is not ended. */
export async function saveV1(region: LegacyRegion, out: Writable, options: SaveV1Options = {}): Promise<SaveV1Result> {
  const rounds = options.precopyRounds ?? 1;
  const access = options.windowAccess ?? 'pieces';
  if (!Number.isInteger(rounds) || rounds < 0) throw new MigrationError('EINVAL', `bad precopyRounds ${rounds}`);
  checkAccess(access);

  const writer = new MigStreamWriter(out);
  const save = new V1Save(
    region,
    writer,
    access,
    options.onProgress,
    options.vmRunning,
    options.reuseBuffer ?? writer.releasesBuffersOnCallback,
  );
  try {
    await save.vfioSaveSetup();
    // migration_iteration_run: each iteration asks the pending bytes first
    // (qemu_savevm_state_pending), then iterates while they are above the
    // threshold; the one that finds them below it switches over instead.
    for (let round = 0; round < rounds; round++) {
      await save.vfioSavePending();
      await save.vfioSaveIterate();
      await options.betweenRounds?.(round);
    }
    await save.vfioSavePending();
    await save.vfioVmstateChange();
    await save.vfioSaveCompletePrecopy();
  } catch (err) {
    const first = asMigrationError(err);
    if (isV1Fatal(first)) throw first; // QEMU has aborted: nothing else runs
    await save.migrationIterationFinish();
    throw first;
  } finally {
    save.release();
  }
  return save.result;
}

/** Load a state from `input` into the device behind `region` as QEMU 7.2 does. */
export async function loadV1(
  region: LegacyRegion,
  input: Readable | AsyncIterable<Uint8Array>,
  options: LoadV1Options = {},
): Promise<LoadV1Result> {
  const access = options.windowAccess ?? 'pieces';
  checkAccess(access);
  const report = (phase: MigrationPhase) => options.onProgress?.({ phase, bytes: load.result.deviceBytes });
  const load = new V1Load(region, access, () => report('resume'));

  // vfio_load_setup
  await v1SetState(region, QEMU72_SET_STATE.loadSetup.mask, QEMU72_SET_STATE.loadSetup.value);
  report('resume');
  try {
    await load.vfioLoadState(input as AsyncIterable<unknown>);
    if (options.startVm ?? true) await v1VmStart(region);
  } catch (err) {
    throw await afterFailedLoad(region, asMigrationError(err));
  }
  report('done');
  return load.result;
}

/**
 * Where QEMU 7.2 exits (or aborts) after a failed load and leaves the device
 * in 100 (or 110b), which the next user must not leave by a state write: a
 * reset instead, noted on the error.
 */
function afterFailedLoad(region: LegacyRegion, first: MigrationError): Promise<MigrationError> {
  return resetAndNote(first, () => region.reset());
}

function checkAccess(access: string): void {
  if (access !== 'pieces' && access !== 'mmap')
    throw new MigrationError('EINVAL', `windowAccess must be 'pieces' or 'mmap', got '${access}'`);
}
