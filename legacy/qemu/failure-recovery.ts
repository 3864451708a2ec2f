// What a client's failure path did to leave the device usable, attached to
// the error it throws. The error object itself is kept (its class and errno
// are what callers switch on); the CLI words the note (explain-error.ts).
import { asMigrationError, type MigrationError } from '../../src/uapi/errors.js';

export type DeviceRecovery =
  /** VFIO_DEVICE_RESET brought the device back to RUNNING. */
  | { reset: true }
  /** The reset failed too: the device may still be where the failure left it. */
  | { reset: false; error: MigrationError };

const notes = new WeakMap<Error, DeviceRecovery>();

/** Attach `recovery` to `err` and return `err`, for `throw noteRecovery(...)`. */
export function noteRecovery<E extends MigrationError>(err: E, recovery: DeviceRecovery): E {
  notes.set(err, recovery);
  return err;
}

/** The note a client attached to `err`, if it touched the device after the failure. */
export function recoveryOf(err: unknown): DeviceRecovery | undefined {
  return err instanceof Error ? notes.get(err) : undefined;
}

/** Reset the device after `first` failed a client, and note on `first` whether that reset worked. */
export async function resetAndNote(first: MigrationError, reset: () => Promise<void>): Promise<MigrationError> {
  try {
    await reset();
  } catch (resetErr) {
    return noteRecovery(first, { reset: false, error: asMigrationError(resetErr) });
  }
  return noteRecovery(first, { reset: true });
}
