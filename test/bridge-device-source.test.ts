// The real DeviceSource on the host kernel, without a VFIO device: it takes
// the command's fd with pidfd_getfd, refuses what is no VFIO device as "not
// bridgeable" (before any ioctl: adoptVfioDevice's readlink), reports real
// failures as failures, and never keeps an fd it took.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { kernelDeviceSource, NotBridgeable } from '../src/bridge/device-source.js';
import { koffiSyscalls } from '../src/kernel/koffi-syscalls.js';
import type { Syscalls, ProcessSyscalls } from '../src/kernel/syscalls.js';
import { failure } from './support/errno.js';

const fdCount = () => readdirSync('/proc/self/fd').length;

describe('kernelDeviceSource', () => {
  it("adopts the child's fd, finds no VFIO device, issues no ioctl, and keeps nothing open", async () => {
    const held = openSync('/dev/null', 'r');
    const child = spawn('sleep', ['30'], { stdio: ['ignore', 'ignore', 'ignore', held] });
    closeSync(held);
    await new Promise((r) => child.once('spawn', r));
    try {
      const real = koffiSyscalls();
      const ioctls: number[] = [];
      const spy = Object.assign(Object.create(real) as Syscalls & ProcessSyscalls, {
        ioctl: (fd: number, request: number, arg?: Uint8Array | number) => {
          ioctls.push(request);
          return real.ioctl(fd, request, arg);
        },
      });
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
});
