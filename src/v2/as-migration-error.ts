// Errors from Node streams and the OS carry string codes ('EPIPE', 'ERR_STREAM_DESTROYED');
// the project throws MigrationError only. This converts, keeping the errno name when it is a real one.
import { ERRNO, type ErrnoName, MigrationError } from '../uapi/errors.js';

const STREAM_CLOSED = new Set(['ERR_STREAM_DESTROYED', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_WRITE_AFTER_END']);

export function asMigrationError(err: unknown, fallback: ErrnoName = 'EIO'): MigrationError {
  if (err instanceof MigrationError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code in ERRNO) return new MigrationError(code as ErrnoName, message);
  if (typeof code === 'string' && STREAM_CLOSED.has(code)) return new MigrationError('EPIPE', message);
  return new MigrationError(fallback, message);
}
