// Syscalls through koffi. koffi is loaded lazily, on the first KoffiSyscalls,
// so importing the package never loads native code. errno is read with
// koffi.errno() on the line right after the failing call.
// Symbols come from the process's global scope (dlopen(NULL)), not from a
// dlopen("libc.so.6") handle: the global scope puts LD_PRELOAD libraries
// before libc, so under `vfio-mig bridge` our own pread/pwrite/ioctl go
// through the bridge's interposer exactly as QEMU's do.
import { readdirSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import type KoffiModule from 'koffi';
import { ERRNO, MigrationError } from '../uapi/errors.js';
import {
  MAP_SHARED,
  type IoctlArg,
  type Mapping,
  type PeerCredentials,
  type ProcessSyscalls,
  type Syscalls,
  ioctlName,
  syscallError,
} from './syscalls.js';

type Koffi = typeof KoffiModule;
type Fn = (...args: unknown[]) => unknown;

interface Libc {
  koffi: Koffi;
  open: Fn;
  close: Fn;
  ioctl: Fn;
  read: Fn;
  write: Fn;
  pread: Fn;
  pwrite: Fn;
  mmap: Fn;
  munmap: Fn;
  syscall: Fn;
  getsockopt: Fn;
}

let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc) return libc;
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (e) {
    throw new MigrationError('ENOSYS', `cannot load koffi (the FFI the kernel backend needs): ${(e as Error).message}`);
  }
  const lib = koffi.load(null);
  libc = {
    koffi,
    open: lib.func('int open(const char *path, int flags, ...)'),
    close: lib.func('int close(int fd)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long request, ...)'),
    read: lib.func('intptr_t read(int fd, void *buf, size_t count)'),
    write: lib.func('intptr_t write(int fd, const void *buf, size_t count)'),
    pread: lib.func('intptr_t pread64(int fd, void *buf, size_t count, int64_t offset)'),
    pwrite: lib.func('intptr_t pwrite64(int fd, const void *buf, size_t count, int64_t offset)'),
    mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
    munmap: lib.func('int munmap(void *addr, size_t length)'),
    syscall: lib.func('long syscall(long number, ...)'),
    getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *value, void *length)'),
  };
  return libc;
}

/** (void *)-1 */
const MAP_FAILED = 0xffffffffffffffffn;

/** Syscall numbers of the generic table (x86_64, aarch64 and every arch but alpha share them past 424). */
const SYS_pidfd_open = 434;
const SYS_pidfd_getfd = 438;
/** kcmp is older and per-architecture (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h). */
const SYS_kcmp = ({ x64: 312, arm64: 272 } as Record<string, number | undefined>)[process.arch];
/** include/uapi/linux/kcmp.h: enum kcmp_type, KCMP_FILE = 0. */
const KCMP_FILE = 0;
/** <asm-generic/socket.h> (x86_64, aarch64): getsockopt(SOL_SOCKET, SO_PEERCRED) fills a struct ucred. */
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

export class KoffiSyscalls implements Syscalls, ProcessSyscalls {
  private readonly c: Libc;

  constructor() {
    this.c = loadLibc();
  }

  open(path: string, flags: number): number {
    const fd = Number(this.c.open(path, flags));
    if (fd < 0) throw syscallError(this.c.koffi.errno(), `open ${path}`);
    return fd;
  }

  close(fd: number): void {
    const r = Number(this.c.close(fd));
    // close(2): the fd is released even when close reports an error (EINTR/EIO).
    if (r < 0) throw syscallError(this.c.koffi.errno(), `close fd ${fd}`);
  }

  ioctl(fd: number, request: number, arg?: IoctlArg): number {
    const r =
      arg instanceof Uint8Array
        ? Number(this.c.ioctl(fd, request, 'void *', arg))
        : Number(this.c.ioctl(fd, request, 'unsigned long', arg ?? 0));
    if (r < 0) throw syscallError(this.c.koffi.errno(), `${ioctlName(request)} on fd ${fd}`);
    return r;
  }

  read(fd: number, buf: Uint8Array): number {
    const n = Number(this.c.read(fd, buf, buf.length));
    if (n < 0) throw syscallError(this.c.koffi.errno(), `read fd ${fd}`);
    return n;
  }

  write(fd: number, buf: Uint8Array): number {
    const n = Number(this.c.write(fd, buf, buf.length));
    if (n < 0) throw syscallError(this.c.koffi.errno(), `write fd ${fd}`);
    return n;
  }

  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    const n = Number(this.c.pread(fd, buf, buf.length, offset));
    if (n < 0) throw syscallError(this.c.koffi.errno(), `pread fd ${fd} at 0x${offset.toString(16)}`);
    return n;
  }

  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    const n = Number(this.c.pwrite(fd, buf, buf.length, offset));
    if (n < 0) throw syscallError(this.c.koffi.errno(), `pwrite fd ${fd} at 0x${offset.toString(16)}`);
    return n;
  }

  mmap(fd: number, length: number, prot: number, offset: bigint): Mapping {
    const address = BigInt(this.c.mmap(null, length, prot, MAP_SHARED, fd, offset) as bigint | number);
    if (address === MAP_FAILED) throw syscallError(this.c.koffi.errno(), `mmap fd ${fd} at 0x${offset.toString(16)}`);
    const bytes = new Uint8Array(this.c.koffi.view(address, length));
    return { address, length, bytes };
  }

  munmap(mapping: Mapping): void {
    const r = Number(this.c.munmap(mapping.address, mapping.length));
    if (r < 0) throw syscallError(this.c.koffi.errno(), `munmap 0x${mapping.address.toString(16)}`);
  }

  pidfdOpen(pid: number): number {
    const fd = Number(this.c.syscall(SYS_pidfd_open, 'int', pid, 'unsigned int', 0));
    if (fd < 0) throw syscallError(this.c.koffi.errno(), `pidfd_open pid ${pid}`);
    return fd;
  }

  pidfdGetfd(pidfd: number, targetFd: number): number {
    const fd = Number(this.c.syscall(SYS_pidfd_getfd, 'int', pidfd, 'int', targetFd, 'unsigned int', 0));
    if (fd < 0) throw syscallError(this.c.koffi.errno(), `pidfd_getfd fd ${targetFd}`);
    return fd;
  }

  sameOpenFile(fdA: number, fdB: number): boolean {
    if (SYS_kcmp === undefined) throw new MigrationError('ENOSYS', `kcmp: no syscall number known for ${process.arch}`);
    // kcmp orders kernel pointers: 0 equal, 1 or 2 less or greater, 3 not comparable.
    const r = Number(
      this.c.syscall(SYS_kcmp, 'int', process.pid, 'int', process.pid, 'int', KCMP_FILE, 'unsigned long', fdA, 'unsigned long', fdB),
    );
    if (r < 0) throw syscallError(this.c.koffi.errno(), `kcmp KCMP_FILE fds ${fdA} and ${fdB}`);
    return r === 0;
  }

  peerCredentials(socketFd: number): PeerCredentials {
    const ucred = new Uint8Array(12); // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
    const length = new Uint8Array(4);
    const view = new DataView(ucred.buffer);
    new DataView(length.buffer).setUint32(0, ucred.length, true);
    const r = Number(this.c.getsockopt(socketFd, SOL_SOCKET, SO_PEERCRED, ucred, length));
    if (r < 0) throw syscallError(this.c.koffi.errno(), `getsockopt SO_PEERCRED on fd ${socketFd}`);
    return { pid: view.getInt32(0, true), uid: view.getUint32(4, true), gid: view.getUint32(8, true) };
  }

  readlink(path: string): string {
    try {
      return readlinkSync(path);
    } catch (e) {
      throw nodeFsError(e, `readlink ${path}`);
    }
  }

  readdir(path: string): string[] {
    try {
      return readdirSync(path);
    } catch (e) {
      throw nodeFsError(e, `readdir ${path}`);
    }
  }
}

function nodeFsError(e: unknown, what: string): MigrationError {
  const err = e as NodeJS.ErrnoException;
  const known = err.code && err.code in ERRNO ? ERRNO[err.code as keyof typeof ERRNO] : undefined;
  const errno = known ?? (typeof err.errno === 'number' ? Math.abs(err.errno) : ERRNO.EIO);
  return syscallError(errno, what);
}

let shared: KoffiSyscalls | undefined;

/** The process-wide koffi-backed Syscalls (loads koffi on first use). */
export function koffiSyscalls(): KoffiSyscalls {
  shared ??= new KoffiSyscalls();
  return shared;
}
