// QEMU 7.2's vfio_migration_set_state (hw/vfio/migration.c): every
// device_state change it makes is a (mask, value) pair applied to the value
// read back, and a write whose failure leaves the device unreadable or in
// the error state makes QEMU abort (hw_error). docs/PROTOCOL.md §2.3, §2.4.
import { MigrationError, type ErrnoName, asMigrationError } from '../../src/uapi/errors.js';
import type { LegacyRegion } from '../contracts.js';
import { readDeviceState, writeDeviceState } from '../v1-registers.js';
import { V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, v1IsError, v1IsValid, v1StateName } from '../v1-state.js';

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

/** The (mask, value) pairs QEMU 7.2 passes to vfio_migration_set_state. */
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
      throw new V1FatalError(
        first.code as ErrnoName,
        `device_state write ${v1StateName(cur)} -> ${v1StateName(next)} failed (${first.message}) and the re-read failed (${asMigrationError(reread).message}): QEMU 7.2 aborts (hw_error)`,
      );
    }
    if (v1IsError(after)) {
      throw new V1FatalError(
        first.code as ErrnoName,
        `device in error state ${v1StateName(after)} after a failed write to ${v1StateName(next)} (${first.message}): QEMU 7.2 aborts (hw_error)`,
        after,
      );
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

/** A recovery step after a failure: its own errors are only reported by QEMU, except an abort. */
export async function onlyFatal(step: () => Promise<unknown>): Promise<void> {
  try {
    await step();
  } catch (err) {
    if (isV1Fatal(err)) throw err;
  }
}
