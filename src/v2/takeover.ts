// The one rule for a v2 device whose state this handle did not set: a device
// keeps its migration state between users (another process, an earlier run,
// a QEMU that exited mid-migration), and some left-over states are unsafe to
// SET out of. The hazard, in the in-tree sample driver (samples/vfio-mdev/
// mtty.c, 6.12): closing the device fd runs mtty_close -> mtty_disable_files,
// which frees the resuming file and sets resuming_migf = NULL but leaves the
// state RESUMING; the next SET out of it runs mtty_step_state(RESUMING -> STOP)
// -> mtty_load_state(), which dereferences that NULL: a kernel oops.
//
//   found when taken over                          what happens
//   RUNNING, STOP, RUNNING_P2P                     kept: no data file exists in them, every arc out of
//                                                  them is an ordinary one, and the device state is
//                                                  intact (savevm saves a stopped device as it is)
//   RESUMING, ERROR, STOP_COPY, PRE_COPY(_P2P),    VFIO_DEVICE_RESET, which must give RUNNING;
//   anything else                                  if it fails, the device is refused
//
// While held: a SET out of a RESUMING the holder did not enter itself is refused
// (EBUSY), and a holder closes no device it left in RESUMING (it resets it first).
// KernelMigrationDevice and V2DeviceOverLegacy apply this table; LegacyRegionOverV2
// applies it with only RUNNING kept, because QEMU 7.2 assumes 001 at start.
import { MigrationError, asMigrationError } from '../uapi/errors.js';
import { MigState, stateName } from './states.js';

/** What taking a device over found and did. */
export interface Takeover {
  found: MigState;
  action: 'kept' | 'reset';
}

/** The states a new holder uses as they are (the rule's first row). */
export const KEPT_AT_TAKEOVER: readonly MigState[] = [MigState.RUNNING, MigState.STOP, MigState.RUNNING_P2P];

/** The two device calls taking over needs (inside the caller's serialization). */
export interface TakeoverIo {
  getState(): Promise<MigState>;
  reset(): Promise<void>;
}

/**
 * Apply the rule to device `name`: GET its state; a state not in `keep` is
 * reset, then checked to be RUNNING. Never a SET. A failed reset (or one that
 * does not give RUNNING) refuses the device with a MigrationError saying why.
 */
export async function takeOver(name: string, io: TakeoverIo, keep: readonly MigState[] = KEPT_AT_TAKEOVER): Promise<Takeover> {
  const found = await io.getState();
  if (keep.includes(found)) return { found, action: 'kept' };
  const left = `${name} was left in ${stateName(found)} by an earlier user`;
  try {
    await io.reset();
  } catch (err) {
    const e = asMigrationError(err);
    throw new MigrationError(
      e.errno,
      `${left} and VFIO_DEVICE_RESET failed (${e.message}): refusing to use it, since a SET out of ${stateName(found)} is unsafe`,
    );
  }
  const now = await io.getState();
  if (now !== MigState.RUNNING) {
    throw new MigrationError('EIO', `${left}; after VFIO_DEVICE_RESET it is in ${stateName(now)}, not RUNNING: refusing to use it`);
  }
  return { found, action: 'reset' };
}

/**
 * The SET guard: leaving RESUMING makes the driver apply (load) the resume
 * data, so only the holder that entered this RESUMING (and holds, or held,
 * its data file) may do it. Anyone else resets the device.
 */
export function refuseForeignResume(name: string, current: MigState, target: MigState, enteredByHolder: boolean): void {
  if (current !== MigState.RESUMING || target === MigState.RESUMING || enteredByHolder) return;
  throw new MigrationError(
    'EBUSY',
    `${name} is in a RESUMING this handle did not enter: a SET to ${stateName(target)} would make the driver load data it never got (mtty dereferences a freed resume file); reset the device (VFIO_DEVICE_RESET) instead`,
  );
}
