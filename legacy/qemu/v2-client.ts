// The v2 migration client: what QEMU 8.0-10.0 does with a VFIO device
// (hw/vfio/migration.c, docs/PROTOCOL.md §4), against any MigrationDevice, streaming the
// migration file format (stream-format.ts) to a Writable / from a Readable.
//
// saveV2: save_setup (MIG_DATA_SIZE sizes the buffer, RUNNING -> PRE_COPY when
// supported, PRECOPY_INFO), pre-copy rounds of save_live_iterate (one read of
// at most the buffer size per call, ENOMSG and 0 mean "nothing now"; the
// round ends at that empty read), state_pending_exact (MIG_DATA_SIZE, and
// PRECOPY_INFO in pre-copy) between rounds and before the switchover, the VM
// stop handlers (P2P prepare, then STOP_COPY or STOP), save_live_complete_precopy
// (STOP_COPY, read until 0), the final section, save_cleanup (STOP, close).
// loadV2: load_setup (RESUMING), the data written straight into the data
// session in the input's own segmentation, the VM start handlers
// (RUNNING_P2P with P2P, then RUNNING; the device validates the data in the
// RESUMING -> STOP arc inside that first SET), then load_cleanup (close).
// Failures follow QEMU: a failed SET walks its recover ladder (recover state,
// else reset); a failed save ends with vfio_save_cleanup and the
// PRECOPY_FAILED notifier (device back to RUNNING); the first error is thrown.
// Where QEMU relies on the process exiting, these clients leave the device
// usable instead (takeover.ts): a start state they cannot work from is refused
// before anything is changed; a failed load resets the device (QEMU would exit
// and leave it in RESUMING) and notes that on the error (failure-recovery.ts).
import type { Readable, Writable } from 'node:stream';
import { asMigrationError, MigrationError } from '../../src/uapi/errors.js';
import type { DataSession, MigrationDevice } from '../../src/v2/contracts.js';
import { MigFlags, MigState } from '../../src/v2/states.js';
import { noteRecovery, resetAndNote } from './failure-recovery.js';
import { ignoreFailure, type MigrationPhase, type MigrationProgress } from './migration-progress.js';
import { QemuMigrationState } from './qemu-migration-state.js';
import { readMigStream } from './stream-reader.js';
import { MigStreamWriter } from './stream-writer.js';
import { V2Save, VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE, type V2SaveResult } from './v2-save.js';

export { VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE } from './v2-save.js';
export type { MigrationPhase, MigrationProgress } from './migration-progress.js';

export interface SaveV2Options {
  /**
   * Pre-copy rounds (default 1). A round is QEMU's iterations, one read each,
   * until a read finds nothing or more than the estimate at its start was read.
   */
  precopyRounds?: number;
  /** Called after each pre-copy round (the device keeps running: tests step it here). */
  betweenRounds?: (round: number) => void | Promise<void>;
  onProgress?: (progress: MigrationProgress) => void;
  /** Largest read (default 1 MiB; QEMU uses min(1 MiB, MIG_DATA_SIZE)). */
  maxReadBytes?: number;
  /**
   * Read every chunk into the same buffer (default: only when `out` is a
   * net.Socket or fs.WriteStream, which are done with a buffer when they call
   * back). Otherwise each chunk gets a fresh buffer that the Writable keeps.
   */
  reuseBuffer?: boolean;
}

export type SaveV2Result = V2SaveResult;

export interface LoadV2Options {
  onProgress?: (progress: MigrationProgress) => void;
}

export interface LoadV2Result {
  /** Device bytes written to the resuming session. */
  deviceBytes: number;
}

/** vfio_migration_query_flags + the STOP_COPY check of vfio_migration_init. */
async function migrationFlagsOf(device: MigrationDevice): Promise<number> {
  const flags = await device.migrationFlags();
  if (!(flags & MigFlags.STOP_COPY)) throw new MigrationError('EOPNOTSUPP', 'device does not support STOP_COPY');
  return flags;
}

/** Save `device`'s state to `out` as QEMU 8-10 does. The Writable is not ended. */
export async function saveV2(device: MigrationDevice, out: Writable, options: SaveV2Options = {}): Promise<SaveV2Result> {
  const rounds = options.precopyRounds ?? 1;
  const maxRead = options.maxReadBytes ?? VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE;
  if (!Number.isInteger(rounds) || rounds < 0) throw new MigrationError('EINVAL', `bad precopyRounds ${rounds}`);
  if (!Number.isInteger(maxRead) || maxRead < 1) throw new MigrationError('EINVAL', `bad maxReadBytes ${maxRead}`);

  const flags = await migrationFlagsOf(device);
  const mig = new QemuMigrationState(device, await device.getState());
  // vfio_save_setup's precondition, checked before anything is changed: nothing to undo.
  const startState = mig.state;
  if (startState !== MigState.RUNNING && startState !== MigState.STOP) {
    throw new MigrationError('EINVAL', `cannot save from ${MigState[startState]}: only a RUNNING or STOP device is saved`);
  }
  const writer = new MigStreamWriter(out);
  const reuseBuffer = options.reuseBuffer ?? writer.releasesBuffersOnCallback;
  const save = new V2Save(device, flags, mig, writer, { maxRead, reuseBuffer, onProgress: options.onProgress }, startState);
  try {
    await save.vfioSaveSetup();
    // migration_iteration_run: the exact sizes are asked when the core
    // considers switching over; between rounds that check finds it not due.
    for (let round = 0; save.result.usedPrecopy && round < rounds; round++) {
      if (round > 0) await save.vfioStatePendingExact();
      await save.precopyRound();
      await options.betweenRounds?.(round);
    }
    await save.vfioStatePendingExact(); // the check that switches over
    await save.vfioVmstateChange();
    await save.vfioSaveCompletePrecopy();
    await save.vfioSaveCleanup();
  } catch (err) {
    const first = asMigrationError(err);
    await save.vfioMigrationStateNotifier();
    throw mig.resets > 0 ? noteRecovery(first, { reset: true }) : first;
  } finally {
    save.release();
  }
  return save.result;
}

/** Load a state from `input` into `device` as QEMU 8-10 does; the device ends RUNNING. */
export async function loadV2(
  device: MigrationDevice,
  input: Readable | AsyncIterable<Uint8Array>,
  options: LoadV2Options = {},
): Promise<LoadV2Result> {
  const flags = await migrationFlagsOf(device);
  const mig = new QemuMigrationState(device, await device.getState());
  const result: LoadV2Result = { deviceBytes: 0 };
  const report = (phase: MigrationPhase) => options.onProgress?.({ phase, bytes: result.deviceBytes });
  if (mig.state === MigState.RESUMING) {
    // Someone else's RESUMING: joining it would mix our data into theirs; leaving it is theirs to do.
    throw new MigrationError(
      'EBUSY',
      'the device is already in RESUMING, entered by another user: reset it (VFIO_DEVICE_RESET) before loading',
    );
  }
  const session = await vfioLoadSetup(mig);
  try {
    report('resume');
    await vfioLoadState(session, input, (n) => {
      result.deviceBytes += n;
      report('resume');
    });
    // The VM starts with the data_fd still open; vfio_load_cleanup closes it
    // afterwards (QEMU 10 process_incoming_migration_bh: vm_start, then the
    // incoming state's cleanup). A failure on the way closes it too.
    await vmStart(mig, flags);
    await mig.closeSession(); // vfio_load_cleanup
  } catch (err) {
    throw await afterFailedLoad(mig, asMigrationError(err));
  }
  report('done');
  return result;
}

/** vfio_load_setup: RESUMING (recover: where the device was), which opens the resuming data_fd. */
async function vfioLoadSetup(mig: QemuMigrationState): Promise<DataSession> {
  await mig.set(MigState.RESUMING, mig.state);
  if (!mig.session) {
    const e = new MigrationError('EBADF', 'RESUMING opened no data session');
    throw await afterFailedLoad(mig, e);
  }
  return mig.session;
}

/** vfio_load_state: each data record written straight into the session, in the input's own segmentation. */
async function vfioLoadState(
  session: DataSession,
  input: Readable | AsyncIterable<Uint8Array>,
  loaded: (n: number) => void,
): Promise<void> {
  for await (const event of readMigStream(input)) {
    if (event.kind === 'data') {
      await writeAll(session, event.bytes);
      loaded(event.bytes.length);
    } else if (event.kind === 'init-data-sent') {
      // Only valid with switchover-ack, which this client does not negotiate.
      throw new MigrationError('EINVAL', 'DEV_INIT_DATA_SENT received but switchover-ack is not in use');
    }
  }
}

/** Write all of `bytes` (qemu_file_get_to_fd: short writes continue, 0 is EIO). */
async function writeAll(session: DataSession, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) {
    const n = await session.write(at === 0 ? bytes : bytes.subarray(at));
    if (n <= 0) throw new MigrationError('EIO', 'data session accepted no bytes');
    at += n;
  }
}

/**
 * VM start: vfio_vmstate_change_prepare (RUNNING_P2P, with P2P), then
 * vfio_vmstate_change(running). The device validates the data in the
 * RESUMING -> STOP arc inside that first SET.
 */
async function vmStart(mig: QemuMigrationState, flags: number): Promise<void> {
  if (flags & MigFlags.P2P) await mig.setOrReset(MigState.RUNNING_P2P);
  await mig.setOrReset(MigState.RUNNING);
}

/**
 * QEMU exits after a failed load (vfio_load_cleanup closes the data_fd) and
 * leaves the device in RESUMING, where the next SET out of it can oops the
 * kernel (takeover.ts): reset it instead, unless the ladder already did, and
 * note on the error what was done.
 */
async function afterFailedLoad(mig: QemuMigrationState, first: MigrationError): Promise<MigrationError> {
  await ignoreFailure(() => mig.closeSession());
  if (mig.resets > 0) return noteRecovery(first, { reset: true });
  return resetAndNote(first, () => mig.resetDevice(first));
}
