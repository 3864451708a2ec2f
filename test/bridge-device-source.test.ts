// The real DeviceSource on the host kernel, without a VFIO device: it takes
// the command's fd with pidfd_getfd, refuses what is no VFIO device as "not
// bridgeable" (before any ioctl: adoptVfioDevice's readlink), reports real
// failures as failures, and never keeps an fd it took.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { kernelDeviceSource, NotBridgeable, takeFd } from '../src/bridge/device-source.js';
import { VFIO_DEVICE_FEATURE, VFIO_DEVICE_GET_INFO } from '../src/uapi/ioctl.js';
import { vfio_device_info } from '../src/uapi/structs.js';
import { koffiSyscalls } from '../src/kernel/koffi-syscalls.js';
import type { Syscalls, ProcessSyscalls } from '../src/kernel/syscalls.js';
import { errnoOf, failure } from './support/errno.js';

const fdCount = () => readdirSync('/proc/self/fd').length;

/** A child process whose fd 3 is /dev/null (the command whose fd a registration names). */
async function childHoldingDevNull(): Promise<ChildProcess> {
  const held = openSync('/dev/null', 'r');
  const child = spawn('sleep', ['30'], { stdio: ['ignore', 'ignore', 'ignore', held] });
  closeSync(held);
  await new Promise((r) => child.once('spawn', r));
  return child;
}

/** The real syscalls with every ioctl recorded; `answer` may answer one itself (a number) instead of the kernel. */
function ioctlSpy(answer: (request: number, arg?: Uint8Array | number) => number | undefined = () => undefined) {
  const real = koffiSyscalls();
  const ioctls: number[] = [];
  const sys = Object.assign(Object.create(real) as Syscalls & ProcessSyscalls, {
    ioctl: (fd: number, request: number, arg?: Uint8Array | number) => {
      ioctls.push(request);
      return answer(request, arg) ?? real.ioctl(fd, request, arg);
    },
  });
  return { real, sys, ioctls };
}

describe('kernelDeviceSource', () => {
  it("adopts the child's fd, finds no VFIO device, issues no ioctl, and keeps nothing open", async () => {
    const child = await childHoldingDevNull();
    try {
      const { sys: spy, ioctls } = ioctlSpy();
      const before = fdCount();
      const e = await failure(kernelDeviceSource(spy)({ pid: child.pid!, fd: 3, name: 'x' }));
      expect(e).toBeInstanceOf(NotBridgeable);
      expect(e.message).toMatch(/fd 3 of pid \d+: fd \d+ is \/dev\/null, not a VFIO device/);
      expect(ioctls).toEqual([]);
      expect(fdCount()).toBe(before);
      // An fd the child does not have is a failure, not "not for us".
      const bad = await failure(kernelDeviceSource(spy)({ pid: child.pid!, fd: 999, name: 'x' }));
      expect(bad).not.toBeInstanceOf(NotBridgeable);
      expect(bad.code).toBe('EBADF');
      expect(fdCount()).toBe(before);
    } finally {
      child.kill();
    }
  });

  it('identifies a VFIO fd without touching its migration state: the first VFIO_DEVICE_FEATURE comes with open() (the takeover)', async () => {
    const child = await childHoldingDevNull();
    try {
      // /dev/null posing as a group-API device fd: readlink and VFIO_DEVICE_GET_INFO (a query) answered here.
      const {
        real,
        sys: spy,
        ioctls,
      } = ioctlSpy((request, arg) => {
        if (request !== VFIO_DEVICE_GET_INFO || !(arg instanceof Uint8Array)) return undefined;
        vfio_device_info.encode({ argsz: vfio_device_info.size, num_regions: 9, num_irqs: 5 }, arg);
        return 0;
      });
      spy.readlink = (path: string) => (path.startsWith('/proc/self/fd/') ? 'anon_inode:[vfio-device]' : real.readlink(path));
      const before = fdCount();
      const source = kernelDeviceSource(spy);
      const a = await source({ pid: child.pid!, fd: 3, name: '' });
      const b = await source({ pid: child.pid!, fd: 3, name: 'another-name' });
      expect(ioctls).toEqual([VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_INFO]);
      expect(a.key).toBe(`pid ${child.pid} fd 3`);
      expect(b.key).toBe('another-name');
      expect(a.sameFileAs?.(b)).toBe(true); // two pidfd_getfd copies of one fd: one open file (kcmp)
      b.discard();
      expect(fdCount()).toBe(before + 1);
      const e = await failure(a.open());
      expect(e).toBeInstanceOf(NotBridgeable);
      expect(e.message).toMatch(/has no v2 migration support/);
      expect(ioctls).toContain(VFIO_DEVICE_FEATURE);
      expect(fdCount()).toBe(before);
    } finally {
      child.kill();
    }
  });
});

describe('sameOpenFile (kcmp KCMP_FILE)', () => {
  it('is true for a dup of one open file, false for a second open of the same path', () => {
    const sys = koffiSyscalls();
    const a = openSync('/dev/null', 'r');
    const b = openSync('/dev/null', 'r');
    const dup = takeFd(sys, process.pid, a);
    try {
      expect(sys.sameOpenFile(a, dup)).toBe(true);
      expect(sys.sameOpenFile(a, b)).toBe(false);
      expect(errnoOf(() => sys.sameOpenFile(a, 99999))).toBe('EBADF');
    } finally {
      for (const fd of [a, b, dup]) closeSync(fd);
    }
  });
});
