// The v1 migration client: what QEMU 7.2 (the last v1 QEMU) does with a v1
// migration region, hw/vfio/migration.c (SPEC §2.3-2.6), against any
// LegacyRegion, streaming the migration file format shared with the v2
// client (stream-format.ts), so a state saved over v1 loads over v2
// and back.
//
// saveV1: vfio_save_setup (MASK/SAVING), pre-copy rounds of
// vfio_save_pending + vfio_save_iterate (one chunk per iterate), the VM stop
// (~RUNNING/0), vfio_save_complete_precopy (~RUNNING/SAVING, pending/chunk
// until pending is 0 or a chunk is empty, ~SAVING/0), then the final
// (config) section. On failure: VM start (~MASK/RUNNING) if the VM had been
// stopped, then the migration notifier (~(SAVING|RESUMING)/RUNNING).
// loadV1: vfio_load_setup (~MASK/RESUMING), vfio_load_buffer per data record
// (split to the destination window), then the VM start (~MASK/RUNNING), where
// the device validates and applies the data. QEMU 7.2 never resets a device:
// after a failed load it exits and leaves the device in 100, which the next
// user must not leave by a state write (src/v2/takeover.ts). loadV1 resets
// the device instead and notes that on the error (failure-recovery.ts).
import type { Readable, Writable } from 'node:stream';
import { MigrationError, type ErrnoName, asMigrationError } from '../../src/uapi/errors.js';
import type { MigrationPhase, MigrationProgress } from './migration-progress.js';
import { noteRecovery } from './failure-recovery.js';
import { MIG_STREAM_DATA_HEADER_BYTES, MigStreamDecoder } from './stream-format.js';
import { MigStreamWriter } from './stream-writer.js';
import type { LegacyRegion } from '../contracts.js';
import { HEADER_SIZE } from '../region-layout.js';
import { readDeviceState, readU64Field, writeDeviceState, writeU64Field } from '../v1-registers.js';
import { V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, v1IsError, v1IsValid, v1StateName } from '../v1-state.js';
import { readV1Window, writeV1Window, type V1WindowAccess } from './v1-window-io.js';

/**
 * Where QEMU 7.2 calls hw_error() and aborts: a device_state write failed and
 * the re-read failed too, or reads 110b. `code` is the failed write's errno.
 */
export class V1FatalError extends MigrationError {
  readonly fatal = true;
  /** device_state as re-read after the failed write; undefined when that read failed. */
  readonly deviceState: number | undefined;

  constructor(code: ErrnoName | number, message: string, deviceState?: number) {
    super(code, message);
    this.name = 'V1FatalError';
    this.deviceState = deviceState;
  }
}

/** True for errors after which QEMU 7.2 would have aborted. */
export function isV1Fatal(err: unknown): err is V1FatalError {
  return err instanceof V1FatalError;
}

/** The (mask, value) pairs QEMU 7.2 passes to vfio_migration_set_state (SPEC §2.4). */
export const QEMU72_SET_STATE = {
  /** vfio_save_setup */
  saveSetup: { mask: V1_MASK, value: V1_SAVING },
  /** vfio_vmstate_change(running=false), any run state but SAVE_VM */
  vmStop: { mask: ~V1_RUNNING, value: 0 },
  /** vfio_vmstate_change(running=false) for savevm (RUN_STATE_SAVE_VM) */
  vmStopForSavevm: { mask: ~V1_RUNNING, value: V1_SAVING },
  /** vfio_save_complete_precopy, start */
  completeStart: { mask: ~V1_RUNNING, value: V1_SAVING },
  /** vfio_save_complete_precopy, end */
  completeEnd: { mask: ~V1_SAVING, value: 0 },
  /** vfio_load_setup */
  loadSetup: { mask: ~V1_MASK, value: V1_RESUMING },
  /** vfio_vmstate_change(running=true) */
  vmStart: { mask: ~V1_MASK, value: V1_RUNNING },
  /** vfio_migration_state_notifier: CANCELLING, CANCELLED, FAILED */
  migrationFailed: { mask: ~(V1_SAVING | V1_RESUMING), value: V1_RUNNING },
} as const;

/**
 * vfio_migration_set_state(): read device_state, new = (cur & mask) | value,
 * !VALID -> EINVAL without writing, write it. After a failed write the state
 * is re-read: a failed re-read or 110b is fatal (V1FatalError, QEMU's
 * hw_error); otherwise the write's error is thrown. Returns the new state.
 */
export async function v1SetState(region: LegacyRegion, mask: number, value: number): Promise<number> {
  const cur = await readDeviceState(region);
  const next = ((cur & mask) | value) >>> 0;
  if (!v1IsValid(next)) throw new MigrationError('EINVAL', `device_state ${v1StateName(next)} is not VALID (from ${v1StateName(cur)})`);
  try {
    await writeDeviceState(region, next);
  } catch (err) {
    const first = asMigrationError(err);
    let after: number;
    try {
      after = await readDeviceState(region);
    } catch (reread) {
      throw new V1FatalError(first.code as ErrnoName, `device_state write ${v1StateName(cur)} -> ${v1StateName(next)} failed (${first.message}) and the re-read failed (${asMigrationError(reread).message}): QEMU 7.2 aborts (hw_error)`);
    }
    if (v1IsError(after)) {
      throw new V1FatalError(first.code as ErrnoName, `device in error state ${v1StateName(after)} after a failed write to ${v1StateName(next)} (${first.message}): QEMU 7.2 aborts (hw_error)`, after);
    }
    throw first;
  }
  return next;
}

/** VM start (vfio_vmstate_change running=true): ~MASK / RUNNING. */
export function v1VmStart(region: LegacyRegion): Promise<number> {
  return v1SetState(region, QEMU72_SET_STATE.vmStart.mask, QEMU72_SET_STATE.vmStart.value);
}

/** VM stop (vfio_vmstate_change running=false): ~RUNNING / 0, or ~RUNNING / SAVING for savevm. */
export function v1VmStop(region: LegacyRegion, forSavevm = false): Promise<number> {
  const p = forSavevm ? QEMU72_SET_STATE.vmStopForSavevm : QEMU72_SET_STATE.vmStop;
  return v1SetState(region, p.mask, p.value);
}

/** The migration notifier on CANCELLING/CANCELLED/FAILED: ~(SAVING|RESUMING) / RUNNING. */
export function v1MigrationFailed(region: LegacyRegion): Promise<number> {
  return v1SetState(region, QEMU72_SET_STATE.migrationFailed.mask, QEMU72_SET_STATE.migrationFailed.value);
}

export interface SaveV1Options {
  /** Pre-copy rounds: each is one vfio_save_pending + one vfio_save_iterate (default 1). */
  precopyRounds?: number;
  /** Called after each round while the device still runs (tests step it here). */
  betweenRounds?: (round: number) => void | Promise<void>;
  /** 'pieces' (default): <= 8-byte preads as vfio_mig_rw; 'mmap': one access per chunk. */
  windowAccess?: V1WindowAccess;
  onProgress?: (progress: MigrationProgress) => void;
}

export interface SaveV1Result {
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

export interface LoadV1Options {
  windowAccess?: V1WindowAccess;
  onProgress?: (progress: MigrationProgress) => void;
  /** Start the VM afterwards (100 -> 001, default true); false leaves the device in RESUMING. */
  startVm?: boolean;
}

export interface LoadV1Result {
  /** Device bytes written through the window. */
  deviceBytes: number;
  /** data_size writes. */
  chunks: number;
}

/** Save the device behind `region` to `out` as QEMU 7.2 does. The Writable is not ended. */
export async function saveV1(region: LegacyRegion, out: Writable, options: SaveV1Options = {}): Promise<SaveV1Result> {
  const rounds = options.precopyRounds ?? 1;
  const access = options.windowAccess ?? 'pieces';
  if (!Number.isInteger(rounds) || rounds < 0) throw new MigrationError('EINVAL', `bad precopyRounds ${rounds}`);
  checkAccess(access);

  const writer = new MigStreamWriter(out);
  const result: SaveV1Result = { precopyBytes: 0, stopCopyBytes: 0, precopyChunks: 0, stopCopyChunks: 0, fileBytes: 0, usedPrecopy: false };
  let phase: MigrationPhase = 'setup';
  let pending = 0n; // migration->pending_bytes, QEMU's cached copy
  let vmRunning = false; // migration->vm_running
  let vmStoppedHere = false;
  const bytes = () => result.precopyBytes + result.stopCopyBytes;
  const report = () => options.onProgress?.({ phase, bytes: bytes(), estimate: bytes() + Number(pending) });

  /** vfio_update_pending: one 8-byte pread; a failed read leaves pending 0 and is returned. */
  const updatePending = async (): Promise<void> => {
    try {
      pending = await readU64Field(region, 'pending_bytes');
    } catch (err) {
      pending = 0n;
      throw err;
    }
  };

  /** vfio_save_buffer: data_offset (the trigger), data_size, then the window; one record. Returns data_size. */
  const saveBuffer = async (): Promise<number> => {
    const dataOffset = await readU64Field(region, 'data_offset');
    const dataSize = await readU64Field(region, 'data_size');
    const n = checkChunk(region, dataOffset, dataSize);
    const record = Buffer.allocUnsafe(MIG_STREAM_DATA_HEADER_BYTES + n);
    await readV1Window(region, Number(dataOffset), record.subarray(MIG_STREAM_DATA_HEADER_BYTES), access);
    await writer.dataRecord(record, n); // the Writable owns `record` now
    if (phase === 'precopy') {
      result.precopyBytes += n;
      result.precopyChunks++;
    } else {
      result.stopCopyBytes += n;
      result.stopCopyChunks++;
    }
    pending = pending > BigInt(n) ? pending - BigInt(n) : 0n;
    report();
    return n;
  };

  try {
    // vfio_save_setup
    // MASK/SAVING keeps RUNNING as it was: the device runs in pre-copy iff the VM runs.
    const s = await v1SetState(region, QEMU72_SET_STATE.saveSetup.mask, QEMU72_SET_STATE.saveSetup.value);
    vmRunning = (s & V1_RUNNING) !== 0;
    result.usedPrecopy = vmRunning;
    await writer.start();
    report();
    phase = result.usedPrecopy ? 'precopy' : 'stopcopy';

    for (let round = 0; round < rounds; round++) {
      // vfio_save_pending: a failed read only skips the estimate
      await updatePending().catch(() => undefined);
      report();
      // vfio_save_iterate
      let empty = false;
      if (pending === 0n) {
        await updatePending();
        empty = pending === 0n;
      }
      if (empty) {
        await writer.dataRecord(Buffer.alloc(MIG_STREAM_DATA_HEADER_BYTES), 0); // DEV_DATA_STATE, be64 0
      } else {
        await saveBuffer();
      }
      await writer.endOfState();
      pending = 0n; // forces a re-read next time
      await options.betweenRounds?.(round);
    }

    // The VM stops for switchover: vfio_vmstate_change(running=false).
    if (vmRunning) {
      vmStoppedHere = true;
      await v1SetState(region, QEMU72_SET_STATE.vmStop.mask, QEMU72_SET_STATE.vmStop.value);
    }

    // vfio_save_complete_precopy
    phase = 'stopcopy';
    await v1SetState(region, QEMU72_SET_STATE.completeStart.mask, QEMU72_SET_STATE.completeStart.value);
    await updatePending();
    report();
    while (pending > 0n) {
      if ((await saveBuffer()) === 0) break;
      await updatePending();
      report();
    }
    await writer.endOfState();
    await v1SetState(region, QEMU72_SET_STATE.completeEnd.mask, QEMU72_SET_STATE.completeEnd.value);
    // vfio_save_state: the config section, empty here, ends the file.
    await writer.finish();
    phase = 'done';
    pending = 0n;
    report();
  } catch (err) {
    const first = asMigrationError(err);
    if (isV1Fatal(first)) throw first; // QEMU has aborted: nothing else runs
    // migration_iteration_finish: vm_start() if the VM was running, then the notifier.
    if (vmStoppedHere) await onlyFatal(() => v1VmStart(region));
    await onlyFatal(() => v1MigrationFailed(region));
    throw first;
  } finally {
    result.fileBytes = writer.bytesWritten;
    writer.release();
  }
  return result;
}

/** Load a state from `input` into the device behind `region` as QEMU 7.2 does. */
export async function loadV1(region: LegacyRegion, input: Readable | AsyncIterable<Uint8Array>, options: LoadV1Options = {}): Promise<LoadV1Result> {
  const access = options.windowAccess ?? 'pieces';
  checkAccess(access);
  const result: LoadV1Result = { deviceBytes: 0, chunks: 0 };
  const report = (phase: MigrationPhase) => options.onProgress?.({ phase, bytes: result.deviceBytes });

  // vfio_load_setup
  await v1SetState(region, QEMU72_SET_STATE.loadSetup.mask, QEMU72_SET_STATE.loadSetup.value);
  report('resume');
  try {
    await loadChunks(region, input, access, result, () => report('resume'));
    if (options.startVm ?? true) await v1VmStart(region);
  } catch (err) {
    const first = asMigrationError(err);
    // Where QEMU 7.2 exits (or aborts) and leaves the device in 100 (or 110b): a reset instead.
    try {
      await region.reset();
    } catch (resetErr) {
      throw noteRecovery(first, { reset: false, error: asMigrationError(resetErr) });
    }
    throw noteRecovery(first, { reset: true });
  }
  report('done');
  return result;
}

/**
 * vfio_load_buffer, one sub-chunk at a time: pread data_offset, take
 * min(record bytes left, region size - data_offset), write it, pwrite data_size.
 */
async function loadChunks(
  region: LegacyRegion, input: Readable | AsyncIterable<Uint8Array>, access: V1WindowAccess, result: LoadV1Result, progress: () => void,
): Promise<void> {
  let staging: Uint8Array | null = null;
  let fill = 0;
  let dataOffset = 0;
  const beginChunk = async (): Promise<void> => {
    const off = await readU64Field(region, 'data_offset');
    if (off < BigInt(HEADER_SIZE) || off >= BigInt(region.size)) {
      throw new MigrationError('EINVAL', `data_offset ${off} outside the data section of a ${region.size}-byte region`);
    }
    dataOffset = Number(off);
    const room = region.size - dataOffset;
    if (!staging || staging.length !== room) staging = new Uint8Array(room);
    fill = 0;
  };
  const flushChunk = async (): Promise<void> => {
    if (!staging || fill === 0) return;
    await writeV1Window(region, dataOffset, staging.subarray(0, fill), access);
    await writeU64Field(region, 'data_size', BigInt(fill));
    result.deviceBytes += fill;
    result.chunks++;
    fill = 0;
    progress();
  };

  const decoder = new MigStreamDecoder();
  let recordEnd = -1; // input offset just past the last data piece taken
  let open = false; // a sub-chunk is being filled
  for await (const chunk of input as AsyncIterable<unknown>) {
    if (!(chunk instanceof Uint8Array)) throw new MigrationError('EINVAL', 'migration input must be a byte stream (no encoding, not object mode)');
    for (const event of decoder.push(chunk)) {
      if (event.kind === 'data') {
        // Pieces of one record are contiguous in the input; a new record has its 16-byte header in between.
        const sameRecord = decoder.bytesConsumed - event.bytes.length === recordEnd;
        recordEnd = decoder.bytesConsumed;
        if (!sameRecord && open) {
          await flushChunk();
          open = false;
        }
        for (let at = 0; at < event.bytes.length; ) {
          if (!open) {
            await beginChunk();
            open = true;
          }
          const buf = staging as unknown as Uint8Array;
          const n = Math.min(buf.length - fill, event.bytes.length - at);
          buf.set(event.bytes.subarray(at, at + n), fill);
          fill += n;
          at += n;
          if (fill === buf.length) {
            await flushChunk();
            open = false;
          }
        }
        continue;
      }
      if (open) {
        await flushChunk();
        open = false;
      }
      // vfio_load_state: QEMU 7.2 knows no DEV_INIT_DATA_SENT (v2 switchover-ack): unknown tag.
      if (event.kind === 'init-data-sent') throw new MigrationError('EINVAL', 'unknown marker DEV_INIT_DATA_SENT for QEMU 7.2');
    }
  }
  decoder.end();
}

function checkAccess(access: string): void {
  if (access !== 'pieces' && access !== 'mmap') throw new MigrationError('EINVAL', `windowAccess must be 'pieces' or 'mmap', got '${access}'`);
}

/**
 * The chunk must lie inside the data section. (QEMU 7.2 trusts data_size and
 * would spin on a chunk running past the region end; here it is EINVAL.)
 */
function checkChunk(region: LegacyRegion, dataOffset: bigint, dataSize: bigint): number {
  if (dataOffset < BigInt(HEADER_SIZE) || dataOffset + dataSize > BigInt(region.size)) {
    throw new MigrationError('EINVAL', `chunk [${dataOffset}, ${dataOffset + dataSize}) outside the data section of a ${region.size}-byte region`);
  }
  return Number(dataSize);
}

/** Recovery steps after a failure: their own errors are only reported by QEMU, except an abort. */
async function onlyFatal(step: () => Promise<unknown>): Promise<void> {
  try {
    await step();
  } catch (err) {
    if (isV1Fatal(err)) throw err;
  }
}
