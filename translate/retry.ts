// Error plumbing shared by both translators: everything that crosses a face
// is a MigrationError, and the transient errnos EAGAIN/EINTR are retried
// instead of surfacing (D4 of docs/SEMANTICS.md).
import { asMigrationError, MigrationError } from '../src/uapi/errors.js';

/**
 * D4: the retry is bounded. A device that answers EAGAIN forever would
 * otherwise hang the register access (and, over the bridge, a QEMU vCPU or
 * migration thread); after this many consecutive transient failures the
 * errno surfaces like any other error.
 */
export const TRANSIENT_RETRIES = 64;

function isTransient(err: unknown): boolean {
  return err instanceof MigrationError && (err.code === 'EAGAIN' || err.code === 'EINTR');
}

/**
 * Run `op`, retrying EAGAIN/EINTR up to TRANSIENT_RETRIES times; other errors are rethrown as MigrationError.
 * Why not an async function: every register and data access of both
 * translators passes here, and on success this costs only the op's promise
 * and one catch handler, no extra await (issue 14: no avoidable await per access).
 */
export function retryTransient<T>(op: () => Promise<T>): Promise<T> {
  let first: Promise<T>;
  try {
    first = op();
  } catch (err) {
    return retryAfter(err, op);
  }
  return first.catch((err: unknown) => retryAfter(err, op));
}

/** After the first attempt failed with `err`: the remaining attempts, one at a time. */
async function retryAfter<T>(err: unknown, op: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    if (!isTransient(err) || attempt >= TRANSIENT_RETRIES) throw asMigrationError(err);
    try {
      return await op();
    } catch (next) {
      err = next;
    }
  }
}
