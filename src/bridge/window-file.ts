// A device's data window: a file in the bridge's private directory, sized
// with ftruncate and mapped MAP_SHARED. LegacyRegionOverV2 uses the mapping
// as its window memory (the data_fd is read straight into it); the
// interposer maps the same file into QEMU, which memcpys from it.
import { closeSync, ftruncateSync, openSync, unlinkSync } from 'node:fs';
import { koffiSyscalls } from '../kernel/koffi-syscalls.js';
import { PROT_READ, PROT_WRITE, type Mapping, type Syscalls } from '../kernel/syscalls.js';

export class WindowFile {
  private constructor(
    readonly path: string,
    private readonly mapping: Mapping,
    private readonly sys: Syscalls,
  ) {}

  /** Create `path` (must not exist; mode 0600), `size` bytes, mapped shared. The fd is closed again: the mapping stays. */
  static create(path: string, size: number, sys: Syscalls = koffiSyscalls()): WindowFile {
    // Node opens with O_CLOEXEC; 'wx+' = O_CREAT | O_EXCL | O_RDWR.
    const fd = openSync(path, 'wx+', 0o600);
    try {
      ftruncateSync(fd, size);
      return new WindowFile(path, sys.mmap(fd, size, PROT_READ | PROT_WRITE, 0n), sys);
    } catch (e) {
      unlinkSync(path);
      throw e;
    } finally {
      closeSync(fd);
    }
  }

  /** The mapped bytes (valid until close). */
  get bytes(): Uint8Array {
    return this.mapping.bytes;
  }

  /** Unmap and unlink. */
  close(): void {
    try {
      this.sys.munmap(this.mapping);
    } finally {
      unlinkSync(this.path);
    }
  }
}
