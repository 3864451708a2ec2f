// Linux errno numbers (asm-generic/errno-base.h, errno.h) and the one error
// type the whole project throws, so callers can switch on `code`.
export const ERRNO = {
  EPERM: 1, ENOENT: 2, EINTR: 4, EIO: 5, ENXIO: 6, E2BIG: 7, EBADF: 9, EAGAIN: 11,
  ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16, EEXIST: 17, ENODEV: 19,
  ENOTDIR: 20, EISDIR: 21, EINVAL: 22, EMFILE: 24, ENOTTY: 25, EFBIG: 27, ENOSPC: 28, ESPIPE: 29, EROFS: 30,
  EPIPE: 32, ERANGE: 34, ENOSYS: 38, ENOMSG: 42, EPROTO: 71, EBADMSG: 74,
  EOVERFLOW: 75, EBADFD: 77, EOPNOTSUPP: 95, ETIMEDOUT: 110, ECANCELED: 125,
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
