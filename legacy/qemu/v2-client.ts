// The v2 migration client: what QEMU 8.0-10.0 does with a VFIO device
// (hw/vfio/migration.c, SPEC §4), against any MigrationDevice, streaming the
// migration file format (stream-format.ts) to a Writable / from a Readable.
//
// saveV2: save_setup (MIG_DATA_SIZE sizes the buffer, RUNNING -> PRE_COPY when
// supported, PRECOPY_INFO), pre-copy rounds of save_live_iterate (one read of
// at most the buffer size per call, ENOMSG and 0 mean "nothing now"), the VM
// stop handlers (P2P prepare, then STOP_COPY or STOP), save_live_complete_precopy
// (STOP_COPY, read until 0), the final section, save_cleanup (STOP, close).
// loadV2: load_setup (RESUMING), the data written straight into the data
// session in the input's own segmentation, load_cleanup (close), then the VM
// start handlers (RUNNING_P2P with P2P, then RUNNING); the device validates
// the data in the RESUMING -> STOP arc inside that first SET.
// Failures follow QEMU: a failed SET walks its recover ladder (recover state,
// else reset); a failed save ends with vfio_save_cleanup and the
// PRECOPY_FAILED notifier (device back to RUNNING); the first error is thrown.
// Where QEMU relies on the process exiting, these clients leave the device
// usable instead (takeover.ts): a start state they cannot work from is refused
// before anything is changed; a failed load resets the device (QEMU would exit
// and leave it in RESUMING) and notes that on the error (failure-recovery.ts).
import type { Readable, Writable } from 'node:stream';
import { MigrationError, isErrno, asMigrationError } from '../../src/uapi/errors.js';
import type { DataSession, MigrationDevice } from '../../src/v2/contracts.js';
import { noteRecovery } from './failure-recovery.js';
import { QemuMigrationState } from './qemu-migration-state.js';
import { MIG_STREAM_DATA_HEADER_BYTES } from './stream-format.js';
import { readMigStream } from './stream-reader.js';
import { MigStreamWriter } from './stream-writer.js';
import { MigFlags, MigState } from '../../src/v2/states.js';

/** VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE: QEMU's read size (1 MiB, "based on mlx5"). */
export const VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE = 1 << 20;

export type MigrationPhase = 'setup' | 'precopy' | 'stopcopy' | 'resume' | 'done';

export interface MigrationProgress {
  phase: MigrationPhase;
  /** Device bytes moved so far (the opaque data, not the file's framing). */
  bytes: number;
  /** Expected device bytes in total, from PRECOPY_INFO / MIG_DATA_SIZE; undefined when loading. */
  estimate?: number;
}

export interface SaveV2Options {
  /** Pre-copy rounds (default 1). A round iterates until nothing is pending or what was pending at its start has been read. */
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

export interface SaveV2Result {
  /** Device bytes read in pre-copy and in stop-copy. */
  precopyBytes: number;
  stopCopyBytes: number;
  /** Bytes written to the output, framing included. */
  fileBytes: number;
  /** Whether the device went through PRE_COPY. */
  usedPrecopy: boolean;
}

export interface LoadV2Options {
  onProgress?: (progress: MigrationProgress) => void;
}

export interface LoadV2Result {
  /** Device bytes written to the resuming session. */
  deviceBytes: number;
}

const isPrecopyState = (s: MigState): boolean => s === MigState.PRE_COPY || s === MigState.PRE_COPY_P2P;

async function ignoreFailure(step: () => Promise<void>): Promise<void> {
  try {
    await step();
  } catch {
    // already failing: the first error is the one reported
  }
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
  const result: SaveV2Result = { precopyBytes: 0, stopCopyBytes: 0, fileBytes: 0, usedPrecopy: false };
  let phase: MigrationPhase = 'setup';
  let initSize = 0; // precopy_init_size
  let dirtySize = 0; // precopy_dirty_size
  let pending = 0; // MIG_DATA_SIZE at the last query, minus what was read since
  let bufferSize = 0;
  let record: Buffer | null = null;

  const bytes = () => result.precopyBytes + result.stopCopyBytes;
  const report = () => options.onProgress?.({ phase, bytes: bytes(), estimate: bytes() + Math.max(pending, initSize + dirtySize) });
  const session = (): DataSession => {
    if (!mig.session) throw new MigrationError('EBADF', `no data session in ${MigState[mig.state]}`);
    return mig.session;
  };

  /** vfio_query_stop_copy_size; `fallback` when the GET fails. */
  const queryStopCopySize = async (fallback: number): Promise<number> => {
    try {
      return Number(await device.stopCopySize());
    } catch {
      return fallback;
    }
  };

  /** vfio_query_precopy_size: failures leave both estimates 0. */
  const queryPrecopySize = async (): Promise<void> => {
    initSize = 0;
    dirtySize = 0;
    try {
      const info = await session().precopyInfo();
      initSize = Number(info.initialBytes);
      dirtySize = Number(info.dirtyBytes);
    } catch {
      // as QEMU: the estimates stay 0
    }
  };

  /** vfio_save_block: one read; ENOMSG and 0 mean nothing was written. */
  const saveBlock = async (): Promise<number> => {
    record ??= Buffer.allocUnsafe(MIG_STREAM_DATA_HEADER_BYTES + bufferSize);
    let n: number;
    try {
      n = await session().read(record.subarray(MIG_STREAM_DATA_HEADER_BYTES));
    } catch (err) {
      if (isErrno(err, 'ENOMSG')) return 0; // pre-copy emptied the device state for now
      throw err;
    }
    if (n === 0) return 0;
    const full = record;
    if (!reuseBuffer) record = null; // the Writable owns it now
    await writer.dataRecord(full, n);
    if (phase === 'precopy') result.precopyBytes += n;
    else result.stopCopyBytes += n;
    pending = Math.max(0, pending - n);
    report();
    return n;
  };

  /** vfio_update_estimated_pending_data. */
  const updateEstimates = (n: number): void => {
    if (n === 0) {
      initSize = 0;
      dirtySize = 0;
      return;
    }
    const fromInit = Math.min(initSize, n);
    initSize -= fromInit;
    dirtySize -= Math.min(dirtySize, n - fromInit);
  };

  /** save_live_iterate calls until nothing is pending, bounded by what was pending when the round began. */
  const precopyRound = async (): Promise<void> => {
    pending = await queryStopCopySize(pending); // state_pending_exact
    await queryPrecopySize();
    report();
    const budget = initSize + dirtySize;
    let read = 0;
    while (read < budget) {
      const n = await saveBlock();
      updateEstimates(n);
      await writer.endOfState();
      read += n;
      if (n === 0 || initSize + dirtySize === 0) break;
    }
  };

  try {
    // vfio_save_setup
    const stopCopySize = await queryStopCopySize(VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE);
    bufferSize = Math.min(maxRead, stopCopySize);
    if (bufferSize < 1) throw new MigrationError('ENOMEM', 'MIG_DATA_SIZE is 0: no data buffer (QEMU g_try_malloc0(0) fails)');
    pending = stopCopySize;
    report();
    if ((flags & MigFlags.PRE_COPY) && startState === MigState.RUNNING) {
      await mig.set(MigState.PRE_COPY, MigState.RUNNING);
      await queryPrecopySize();
      result.usedPrecopy = true;
    }
    await writer.start();

    // save_live_iterate while the VM runs
    if (result.usedPrecopy) {
      phase = 'precopy';
      for (let round = 0; round < rounds; round++) {
        await precopyRound();
        await options.betweenRounds?.(round);
      }
    }

    // The VM stops for switchover: vfio_vmstate_change_prepare (P2P), then vfio_vmstate_change.
    if (startState === MigState.RUNNING) {
      if (flags & MigFlags.P2P) {
        await mig.setOrReset(mig.state === MigState.PRE_COPY ? MigState.PRE_COPY_P2P : MigState.RUNNING_P2P);
      }
      await mig.setOrReset(isPrecopyState(mig.state) ? MigState.STOP_COPY : MigState.STOP);
    }

    // vfio_save_complete_precopy
    phase = 'stopcopy';
    await mig.set(MigState.STOP_COPY, MigState.STOP);
    pending = await queryStopCopySize(pending);
    report();
    while ((await saveBlock()) > 0);
    await writer.endOfState();
    // vfio_save_state: the config section, empty here, ends the file.
    await writer.finish();

    // vfio_save_cleanup: the file is complete; a failing STOP only resets the device (QEMU ignores it).
    await ignoreFailure(async () => {
      if (mig.state === MigState.STOP_COPY) await mig.setOrReset(MigState.STOP);
    });
    await mig.closeSession();
    phase = 'done';
    pending = 0;
    initSize = 0;
    dirtySize = 0;
    report();
  } catch (err) {
    const first = asMigrationError(err);
    // vfio_save_cleanup, then vfio_migration_state_notifier(MIG_EVENT_PRECOPY_FAILED).
    await ignoreFailure(async () => {
      if (mig.state === MigState.STOP_COPY) await mig.setOrReset(MigState.STOP);
    });
    await ignoreFailure(() => mig.closeSession());
    await ignoreFailure(() => mig.setOrReset(MigState.RUNNING));
    throw mig.resets > 0 ? noteRecovery(first, { reset: true }) : first;
  } finally {
    result.fileBytes = writer.bytesWritten;
    writer.release();
  }
  return result;
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

/** Load a state from `input` into `device` as QEMU 8-10 does; the device ends RUNNING. */
export async function loadV2(device: MigrationDevice, input: Readable | AsyncIterable<Uint8Array>, options: LoadV2Options = {}): Promise<LoadV2Result> {
  const flags = await migrationFlagsOf(device);
  const mig = new QemuMigrationState(device, await device.getState());
  const result: LoadV2Result = { deviceBytes: 0 };
  const report = (phase: MigrationPhase) => options.onProgress?.({ phase, bytes: result.deviceBytes });
  if (mig.state === MigState.RESUMING) {
    // Someone else's RESUMING: joining it would mix our data into theirs; leaving it is theirs to do.
    throw new MigrationError('EBUSY', 'the device is already in RESUMING, entered by another user: reset it (VFIO_DEVICE_RESET) before loading');
  }

  // vfio_load_setup
  await mig.set(MigState.RESUMING, mig.state);
  try {
    const session = mig.session;
    if (!session) throw new MigrationError('EBADF', 'RESUMING opened no data session');
    report('resume');
    for await (const event of readMigStream(input)) {
      if (event.kind === 'data') {
        await writeAll(session, event.bytes);
        result.deviceBytes += event.bytes.length;
        report('resume');
      } else if (event.kind === 'init-data-sent') {
        // vfio_load_state: only valid with switchover-ack, which this client does not negotiate.
        throw new MigrationError('EINVAL', 'DEV_INIT_DATA_SENT received but switchover-ack is not in use');
      }
    }
    // vfio_load_cleanup
    await mig.closeSession();
    // VM start: vfio_vmstate_change_prepare (P2P), then vfio_vmstate_change(running).
    if (flags & MigFlags.P2P) await mig.setOrReset(MigState.RUNNING_P2P);
    await mig.setOrReset(MigState.RUNNING);
  } catch (err) {
    const first = asMigrationError(err);
    // QEMU exits after a failed load (vfio_load_cleanup closes the data_fd) and leaves the device in
    // RESUMING, where the next SET out of it can oops the kernel (takeover.ts): reset it instead,
    // unless the ladder already did.
    await ignoreFailure(() => mig.closeSession());
    if (mig.resets === 0) {
      try {
        await mig.resetDevice(first);
      } catch (resetErr) {
        throw noteRecovery(first, { reset: false, error: asMigrationError(resetErr) });
      }
    }
    throw noteRecovery(first, { reset: true });
  }
  report('done');
  return result;
}
