// How the fake kernel fails a call: a MigrationError with the errno the real
// kernel returns, and the argument check every ioctl handler starts with.
import { type ErrnoName, MigrationError } from '../../uapi/errors.js';
import type { IoctlArg } from '../syscalls.js';

export function fail(code: ErrnoName | number, msg?: string): never {
  throw new MigrationError(code, msg);
}

/** The struct an ioctl points at, at least `min` bytes long; else EFAULT, as copy_from_user fails. */
export function structArg(arg: IoctlArg, min: number): Uint8Array {
  if (!(arg instanceof Uint8Array) || arg.length < min) return fail('EFAULT', 'bad ioctl argument pointer');
  return arg;
}
