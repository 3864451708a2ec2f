// adoptVfioDevice: a VfioDevice over an fd someone else opened (the bridge's
// pidfd_getfd copy). The fd is identified by readlink before any ioctl, the
// adopted device owns only that fd, and the fd is closed on every failure.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FakeSyscalls } from '../testing.js';
import { koffiSyscalls } from '../src/kernel/koffi-syscalls.js';
import { O_CLOEXEC, O_RDWR } from '../src/kernel/syscalls.js';
import { adoptVfioDevice, openGroupDevice, vfioDeviceApiOf } from '../src/kernel/vfio-device.js';
import { MigrationError } from '../src/uapi/errors.js';
import { failure } from './support/errno.js';

const A = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

/** The fake kernel, plus what /proc/self/fd/N would show for its fds; readlinks are logged in `calls` order. */
class ProcFake extends FakeSyscalls {
  override readlink(path: string): string {
    const m = /^\/proc\/self\/fd\/(\d+)$/.exec(path);
    if (!m) return super.readlink(path);
    this.calls.push({ op: 'readlink', path });
    const file = this.openFds().find((f) => f.fd === Number(m[1]));
    if (!file) throw new MigrationError('ENOENT', `readlink ${path}`);
    return file.kind === 'device' ? 'anon_inode:[vfio-device]' : `/dev/vfio/${file.kind}`;
  }
}

describe('adoptVfioDevice', () => {
  it('names what a VFIO device fd links to, and nothing else', () => {
    expect(vfioDeviceApiOf('anon_inode:[vfio-device]')).toBe('group');
    expect(vfioDeviceApiOf('/dev/vfio/devices/vfio3')).toBe('cdev');
    for (const other of ['anon_inode:[eventfd]', '/dev/vfio/3', '/dev/vfio/vfio', '/dev/vfio/devices/vfio', 'socket:[123]', '/dev/null']) {
      expect(vfioDeviceApiOf(other), other).toBeUndefined();
    }
  });

  it('adopts a device fd: info read after the readlink, close() closes that fd only', () => {
    const sys = new ProcFake({ devices: [{ name: A, group: 0 }] });
    const opener = openGroupDevice(0, A, sys);
    const before = sys.openFds().length;
    // What pidfd_getfd gives the bridge: another fd of the same device file (here: the opener's own number).
    const adopted = adoptVfioDevice(opener.fd, A, sys);
    const mine = sys.calls.filter((c) => c.fd === opener.fd || c.path === `/proc/self/fd/${opener.fd}`).slice(-2);
    expect(mine.map((c) => c.op)).toEqual(['readlink', 'ioctl']); // identified first, then VFIO_DEVICE_GET_INFO
    expect([adopted.api, adopted.name, adopted.info.numRegions]).toEqual(['group', A, opener.info.numRegions]);
    adopted.close();
    expect(sys.openFds().length).toBe(before - 1); // the device fd; group and container stay the opener's
    expect(
      sys
        .openFds()
        .map((f) => f.kind)
        .sort(),
    ).toEqual(['container', 'group']);
  });

  it('refuses an fd that is no VFIO device with ENOTTY, before any ioctl, and closes it', () => {
    const sys = new ProcFake({ devices: [{ name: A, group: 0 }] });
    const groupFd = sys.open('/dev/vfio/0', O_RDWR);
    const ioctlsBefore = sys.callsOf('ioctl').length;
    expect(failure(() => adoptVfioDevice(groupFd, A, sys)).code).toBe('ENOTTY');
    expect(sys.callsOf('ioctl').length).toBe(ioctlsBefore);
    expect(sys.openFds()).toEqual([]);
  });

  it('on the host kernel: /dev/null is refused and its fd closed', () => {
    const sys = koffiSyscalls();
    const count = () => readdirSync('/proc/self/fd').length;
    const before = count();
    const fd = sys.open('/dev/null', O_RDWR | O_CLOEXEC);
    const e = failure(() => adoptVfioDevice(fd, '', sys));
    expect(e.code).toBe('ENOTTY');
    expect(e.message).toContain('/dev/null');
    expect(count()).toBe(before);
  });
});
