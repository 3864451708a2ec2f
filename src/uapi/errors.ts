// Linux errno numbers (asm-generic/errno-base.h, errno.h) and the one error
// type the whole project throws, so callers can switch on `code`; anything
// else caught at a boundary becomes one with asMigrationError.
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EPIPE: 32,
  ERANGE: 34,
  ENOSYS: 38,
  ENOMSG: 42,
  EPROTO: 71,
  EBADMSG: 74,
  EOVERFLOW: 75,
  EBADFD: 77,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
  ECANCELED: 125,
} as const;

export type ErrnoName = keyof typeof ERRNO;

const NAME_OF = new Map<number, string>(Object.entries(ERRNO).map(([k, v]) => [v, k]));

export function errnoName(errno: number): string {
  return NAME_OF.get(errno) ?? `E${errno}`;
}

export class MigrationError extends Error {
  readonly code: string;
  readonly errno: number;

  constructor(code: ErrnoName | number, message?: string) {
    const errno = typeof code === 'number' ? code : ERRNO[code];
    const name = typeof code === 'number' ? errnoName(code) : code;
    super(message ? `${name}: ${message}` : name);
    this.name = 'MigrationError';
    this.code = name;
    this.errno = errno;
  }
}

/** True when `err` is a MigrationError carrying `code`. */
export function isErrno(err: unknown, code: ErrnoName): err is MigrationError {
  return err instanceof MigrationError && err.code === code;
}

/** Node stream codes that mean the other end went away: EPIPE for the caller. */
const STREAM_CLOSED = new Set(['ERR_STREAM_DESTROYED', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_WRITE_AFTER_END']);

/**
 * Anything caught, as a MigrationError: a MigrationError as it is; an error
 * from Node or the OS keeps its errno name ('EPIPE', 'ENOENT'); a closed
 * stream is EPIPE; anything else (a bug, a foreign device) is `fallback`.
 */
export function asMigrationError(err: unknown, fallback: ErrnoName = 'EIO'): MigrationError {
  if (err instanceof MigrationError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code in ERRNO) return new MigrationError(code as ErrnoName, message);
  if (typeof code === 'string' && STREAM_CLOSED.has(code)) return new MigrationError('EPIPE', message);
  return new MigrationError(fallback, message);
}

/**
 * The first of several failures. A cleanup runs every step even after one
 * fails, notes what failed, and at the end rethrows the first failure as it
 * was (a MigrationError, or whatever else a step threw).
 */
export class FirstFailure {
  private failed = false;
  private first: unknown;

  /** Run `step`; if it throws, note the error and go on. */
  run(step: () => unknown): void {
    try {
      step();
    } catch (e) {
      this.note(e);
    }
  }

  /** Await `step`; if it rejects, note the error and go on. */
  async runAsync(step: () => Promise<unknown>): Promise<void> {
    try {
      await step();
    } catch (e) {
      this.note(e);
    }
  }

  note(e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.first = e;
  }

  /** Throw the first failure noted, if there was one. */
  rethrow(): void {
    if (this.failed) throw this.first;
  }
}
