// KoffiSyscalls against the host's real kernel, on files any machine has:
// errno capture and naming, stream vs positioned I/O, ioctl argument passing,
// mmap, and no fd left behind (counted in /proc/self/fd).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  KernelMigrationDevice,
  KernelLegacyRegion,
  MigrationError,
  O_CLOEXEC,
  O_RDONLY,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
  koffiSyscalls,
  openGroupDevice,
  openCdevDevice,
} from '../index.js';
import { errnoOf } from './support/errno.js';

const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-koffi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fdCount = () => readdirSync('/proc/self/fd').length;

describe('KoffiSyscalls on the host kernel', () => {
  const sys = koffiSyscalls();

  it('reads, writes, preads and pwrites a file, and closes it', () => {
    const path = join(dir, 'rw');
    writeFileSync(path, 'hello, vfio');
    const before = fdCount();
    const fd = sys.open(path, O_RDWR | O_CLOEXEC);
    expect(fdCount()).toBe(before + 1);
    const buf = new Uint8Array(5);
    expect(sys.read(fd, buf)).toBe(5);
    expect(new TextDecoder().decode(buf)).toBe('hello');
    // pread into a subarray: the pointer honours byteOffset, the file position does not move.
    const big = new Uint8Array(8);
    expect(sys.pread(fd, big.subarray(2, 6), 7n)).toBe(4);
    expect(new TextDecoder().decode(big.subarray(2, 6))).toBe('vfio');
    expect(sys.read(fd, buf)).toBe(5);
    expect(new TextDecoder().decode(buf)).toBe(', vfi');
    expect(sys.pwrite(fd, new TextEncoder().encode('H'), 0n)).toBe(1);
    expect(sys.write(fd, new TextEncoder().encode('O!'))).toBe(2);
    sys.close(fd);
    expect(fdCount()).toBe(before);
    expect(readFileSync(path, 'utf8')).toBe('Hello, vfiO!');
  });

  it('turns errno into a named MigrationError right after the failing call', () => {
    expect(errnoOf(() => sys.open(join(dir, 'missing'), O_RDONLY))).toBe('ENOENT');
    expect(errnoOf(() => sys.close(100_000))).toBe('EBADF');
    const fd = sys.open('/dev/null', O_RDWR);
    try {
      // TCGETS on a character device that is no tty
      expect(errnoOf(() => sys.ioctl(fd, 0x5401, new Uint8Array(64)))).toBe('ENOTTY');
    } finally {
      sys.close(fd);
    }
    const err = (() => {
      try {
        sys.open('/nonexistent/x', 0);
      } catch (e) {
        return e as MigrationError;
      }
    })()!;
    expect(err.errno).toBe(2);
    expect(err.message).toMatch(/^ENOENT: open \/nonexistent\/x/);
  });

  it('a positioned read on a stream is ESPIPE, a plain read is not (why data_fd is never pread)', () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const fd = sys.open(fifo, O_RDWR); // O_RDWR on a FIFO does not block on Linux
    try {
      expect(sys.write(fd, Uint8Array.of(1, 2, 3))).toBe(3);
      expect(errnoOf(() => sys.pread(fd, new Uint8Array(3), 0n))).toBe('ESPIPE');
      const buf = new Uint8Array(3);
      expect(sys.read(fd, buf)).toBe(3);
      expect([...buf]).toEqual([1, 2, 3]);
    } finally {
      sys.close(fd);
    }
  });

  it('passes struct buffers to ioctl by pointer and sees what the kernel writes (FIONREAD)', () => {
    const path = join(dir, 'fionread');
    writeFileSync(path, 'x'.repeat(1234));
    const fd = sys.open(path, O_RDONLY);
    try {
      const arg = new Uint8Array(4);
      expect(sys.ioctl(fd, 0x541b, arg)).toBe(0); // FIONREAD on a regular file: bytes left
      expect(new DataView(arg.buffer).getInt32(0, true)).toBe(1234);
    } finally {
      sys.close(fd);
    }
  });

  it('maps a file shared and unmaps it', () => {
    const path = join(dir, 'map');
    writeFileSync(path, Buffer.alloc(4096, 0x61));
    const fd = sys.open(path, O_RDWR);
    try {
      const m = sys.mmap(fd, 4096, PROT_READ | PROT_WRITE, 0n);
      expect(m.bytes[0]).toBe(0x61);
      m.bytes[1] = 0x62;
      sys.munmap(m);
    } finally {
      sys.close(fd);
    }
    expect(readFileSync(path).subarray(0, 2).toString()).toBe('ab');
    expect(errnoOf(() => sys.mmap(100_000, 4096, PROT_READ, 0n))).toBe('EBADF');
  });

  it('readlink and readdir map node errors to errno names', () => {
    expect(sys.readlink('/proc/self/cwd')).toBe(process.cwd());
    expect(errnoOf(() => sys.readlink(join(dir, 'nope')))).toBe('ENOENT');
    expect(sys.readdir(dir)).toEqual(expect.any(Array));
    expect(errnoOf(() => sys.readdir(join(dir, 'nope')))).toBe('ENOENT');
  });
});

describe.runIf(!existsSync('/dev/vfio/vfio'))('opening VFIO on a host without vfio loaded', () => {
  it('names the fix, and leaves no fd behind', async () => {
    const before = fdCount();
    const err = (() => {
      try {
        openGroupDevice(424242, 'dev');
      } catch (e) {
        return e as MigrationError;
      }
    })()!;
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.code).toBe('ENOENT');
    expect(err.message).toMatch(/modprobe vfio/);
    await expect(KernelMigrationDevice.open({ group: 424242, name: 'dev' })).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(KernelLegacyRegion.open({ group: 424242, name: 'dev' })).rejects.toMatchObject({ code: 'ENOENT' });
    expect(fdCount()).toBe(before);
  });

  it('the cdev API names the missing IOMMUFD', () => {
    const err = (() => {
      try {
        openCdevDevice('/dev/vfio/devices/vfio0');
      } catch (e) {
        return e as MigrationError;
      }
    })()!;
    expect(err.code).toBe('ENOENT');
    expect(err.message).toMatch(/IOMMUFD/);
  });
});
