// The OS boundary: the handful of Linux syscalls the kernel backend needs, as
// an interface so the device classes run against the koffi implementation or
// against the in-memory fake. Calls are synchronous (they are syscalls); every
// failure is thrown as a MigrationError carrying the errno name, captured on
// the very next line after the failing call.
import { MigrationError } from '../uapi/errors.js';
import * as ioctls from '../uapi/ioctl.js';
import * as kernelIoctls from './cdev-abi.js';

/** <asm-generic/fcntl.h> */
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CLOEXEC = 0o2000000;

/** <asm-generic/mman-common.h> */
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;

/** A mapping made by `mmap`; `bytes` aliases the mapped memory until `munmap`. */
export interface Mapping {
  readonly address: bigint;
  readonly length: number;
  readonly bytes: Uint8Array;
}

/**
 * What an ioctl argument is: a struct buffer the kernel reads and/or fills
 * (passed by pointer), or a plain integer (VFIO_SET_IOMMU, VFIO_CHECK_EXTENSION).
 */
export type IoctlArg = Uint8Array | number | undefined;

export interface Syscalls {
  /** open(2); returns the fd. */
  open(path: string, flags: number): number;
  /** close(2). */
  close(fd: number): void;
  /** ioctl(2); returns the ioctl's non-negative result (an fd for VFIO_GROUP_GET_DEVICE_FD). */
  ioctl(fd: number, request: number, arg?: IoctlArg): number;
  /** read(2) with no position: a stream read. */
  read(fd: number, buf: Uint8Array): number;
  /** write(2) with no position. */
  write(fd: number, buf: Uint8Array): number;
  /** pread64(2). */
  pread(fd: number, buf: Uint8Array, offset: bigint): number;
  /** pwrite64(2). */
  pwrite(fd: number, buf: Uint8Array, offset: bigint): number;
  /** mmap(2) of `length` bytes of `fd` at `offset`, MAP_SHARED. */
  mmap(fd: number, length: number, prot: number, offset: bigint): Mapping;
  /** munmap(2). */
  munmap(mapping: Mapping): void;
  /** readlink(2): sysfs links such as `<device>/iommu_group`. */
  readlink(path: string): string;
  /** readdir of a directory (sysfs `<device>/vfio-dev/`). */
  readdir(path: string): string[];
}

/** struct ucred: who is at the other end of a Unix socket (SO_PEERCRED). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** What the bridge needs besides Syscalls: another process's fd, a socket peer's identity. */
export interface ProcessSyscalls {
  /** pidfd_open(2), flags 0. */
  pidfdOpen(pid: number): number;
  /** pidfd_getfd(2), flags 0: a copy of fd `targetFd` of the pidfd's process (O_CLOEXEC set). */
  pidfdGetfd(pidfd: number, targetFd: number): number;
  /** kcmp(2) KCMP_FILE on two fds of this process: whether they are one open file description (dup and pidfd_getfd copies are). */
  sameOpenFile(fdA: number, fdB: number): boolean;
  /** getsockopt(SOL_SOCKET, SO_PEERCRED): the peer as it was at connect(2). */
  peerCredentials(socketFd: number): PeerCredentials;
}

/** The MigrationError for a failed syscall: `EACCES: open /dev/vfio/3: <hint>`. */
export function syscallError(errno: number, what: string, hint?: string): MigrationError {
  return new MigrationError(errno, hint ? `${what}: ${hint}` : what);
}

const IOCTL_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(ioctls)) {
  // VFIO_DEVICE_FEATURE and VFIO_IOMMU_DIRTY_PAGES share 0x3b75: the first (device) name wins.
  if (typeof value === 'number' && name.startsWith('VFIO_') && !IOCTL_NAMES.has(value)) IOCTL_NAMES.set(value, name);
}
for (const [name, value] of Object.entries(kernelIoctls)) {
  if (typeof value === 'number' && !IOCTL_NAMES.has(value)) IOCTL_NAMES.set(value, name);
}

/** Human name of an ioctl request we issue, for error messages. */
export function ioctlName(request: number): string {
  return IOCTL_NAMES.get(request) ?? `ioctl 0x${request.toString(16)}`;
}
