// Opening VFIO devices against the fake kernel: the group/container sequence
// (QEMU 7.2 order), the cdev sequence (only testable here: Debian's 6.12 has
// no IOMMUFD), sysfs resolution, region info with capability chains and the
// argsz retry, the v1 migration region, sparse mmap, clear errors, and no fd
// left open after a failure at any single syscall.
import { describe, expect, it } from 'vitest';
import {
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_REGION_INFO_FLAG_CAPS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_SET_IOMMU,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  IOMMU_IOAS_ALLOC,
  VFIO_REGION_TYPE_MIGRATION_DEPRECATED,
  openCdevDevice,
  openGroupDevice,
  openVfioDevice,
  resolveSysfsDevice,
  type VfioDevice,
} from '../index.js';
import { FakeSyscalls, type FakeKernelOptions } from '../testing.js';
import { failure } from './support/errno.js';

const A = '0d9a4c38-6f1b-4b52-a6f5-1ad1e3a0c0a1';
const B = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

function kernel(extra: FakeKernelOptions = {}): FakeSyscalls {
  return new FakeSyscalls({
    devices: [
      { name: A, group: 0 },
      { name: B, group: 1 },
    ],
    ...extra,
  });
}

describe('group/container API', () => {
  it('issues QEMU 7.2 vfio_get_group / vfio_connect_container / vfio_get_device in order', () => {
    const sys = kernel();
    const dev = openGroupDevice(1, B, sys);
    expect(dev.api).toBe('group');
    expect(dev.info).toEqual({ flags: 2, numRegions: 9, numIrqs: 5 });
    const seq = sys.calls.map((c) => (c.op === 'ioctl' ? c.request : `${c.op} ${c.path ?? ''}`.trim()));
    expect(seq).toEqual([
      'open /dev/vfio/1',
      VFIO_GROUP_GET_STATUS,
      'open /dev/vfio/vfio',
      VFIO_GET_API_VERSION,
      VFIO_CHECK_EXTENSION,
      VFIO_GROUP_SET_CONTAINER,
      VFIO_SET_IOMMU,
      VFIO_GROUP_GET_DEVICE_FD,
      VFIO_DEVICE_GET_INFO,
    ]);
    expect(sys.callsOf('ioctl', VFIO_GROUP_GET_STATUS)[0].argsz).toBe(8);
    expect(sys.callsOf('ioctl', VFIO_DEVICE_GET_INFO)[0].argsz).toBe(24);
    expect(
      sys
        .openFds()
        .map((f) => f.kind)
        .sort(),
    ).toEqual(['container', 'device', 'group']);
    dev.close();
    dev.close(); // idempotent
    expect(sys.openFds()).toEqual([]);
  });

  it('opens by sysfs path through the iommu_group link', () => {
    const sys = kernel();
    expect(resolveSysfsDevice(`/sys/bus/mdev/devices/${A}/`, sys)).toEqual({ name: A, group: 0 });
    const dev = openVfioDevice({ sysfs: `/sys/bus/mdev/devices/${A}` }, sys);
    expect(dev.name).toBe(A);
    dev.close();
    const e = failure(() => openVfioDevice({ sysfs: '/sys/bus/mdev/devices/nope' }, sys));
    expect(e.code).toBe('ENOENT');
    expect(e.message).toMatch(/bound to a vfio driver/);
    expect(sys.openFds()).toEqual([]);
  });

  it('explains a missing /dev/vfio (vfio not loaded)', () => {
    const sys = kernel({ vfio: false });
    const e = failure(() => openGroupDevice(0, A, sys));
    expect(e.code).toBe('ENOENT');
    expect(e.message).toMatch(/modprobe vfio/);
    expect(sys.openFds()).toEqual([]);
  });

  it('explains EACCES on the group and on the container', () => {
    let sys = kernel({ denied: ['/dev/vfio/0'] });
    let e = failure(() => openGroupDevice(0, A, sys));
    expect(e.code).toBe('EACCES');
    expect(e.message).toMatch(/run as root/);
    sys = kernel({ denied: ['/dev/vfio/vfio'] });
    e = failure(() => openGroupDevice(0, A, sys));
    expect(e.code).toBe('EACCES');
    expect(e.message).toMatch(/\/dev\/vfio\/vfio.*run as root/);
    expect(sys.openFds()).toEqual([]);
  });

  it('refuses a non-viable group before touching the container', () => {
    const sys = kernel({ nonViable: [0] });
    const e = failure(() => openGroupDevice(0, A, sys));
    expect(e.code).toBe('EBUSY');
    expect(e.message).toMatch(/not viable.*bound to their vfio bus driver/);
    expect(sys.callsOf('open').map((c) => c.path)).toEqual(['/dev/vfio/0']);
    expect(sys.openFds()).toEqual([]);
  });

  it('explains a group that is already open and a missing TYPE1 driver', () => {
    const sys = kernel();
    const dev = openGroupDevice(0, A, sys);
    const e = failure(() => openGroupDevice(0, A, sys));
    expect(e.code).toBe('EBUSY');
    expect(e.message).toMatch(/already open/);
    dev.close();
    const noType1 = kernel({ type1: false });
    const e2 = failure(() => openGroupDevice(0, A, noType1));
    expect(e2.code).toBe('ENODEV');
    expect(e2.message).toMatch(/vfio_iommu_type1/);
    expect(noType1.openFds()).toEqual([]);
    expect(sys.openFds()).toEqual([]);
  });

  it('names the device and group when the name is wrong', () => {
    const sys = kernel();
    const e = failure(() => openGroupDevice(0, B, sys)); // B lives in group 1
    expect(e.code).toBe('ENODEV');
    expect(e.message).toContain(`no device ${B} in /dev/vfio/0`);
    expect(sys.openFds()).toEqual([]);
  });

  it('closes everything it opened when any single syscall of the open fails', () => {
    const probe = kernel();
    openGroupDevice(0, A, probe).close();
    const steps = probe.calls.filter((c) => c.op !== 'close').length;
    for (let nth = 1; nth <= steps; nth++) {
      const sys = kernel();
      sys.inject({ errno: 'EIO', nth }); // the nth call, whatever it is
      const e = failure(() => openGroupDevice(0, A, sys));
      expect(e.code, `step ${nth}`).toBe('EIO');
      expect(sys.openFds(), `step ${nth}`).toEqual([]);
    }
  });
});

describe('group nodes given as paths', () => {
  it('opens /dev/vfio/<N> and a no-IOMMU group with the NOIOMMU container type', () => {
    const sys = new FakeSyscalls({
      devices: [
        { name: A, group: 0 },
        { name: B, group: 3, noiommu: true },
      ],
    });
    openVfioDevice({ group: '/dev/vfio/0', name: A }, sys).close();
    const before = sys.calls.length;
    const dev = openVfioDevice({ group: '/dev/vfio/noiommu-3', name: B }, sys);
    const setIommu = sys.calls.slice(before).find((c) => c.request === VFIO_SET_IOMMU)!;
    expect(setIommu.errno).toBeUndefined();
    expect(dev.info.numRegions).toBe(9);
    dev.close();
    expect(failure(() => openVfioDevice({ group: '/dev/vfio/3', name: B }, sys)).code).toBe('ENOENT');
    expect(failure(() => openVfioDevice({ group: '/tmp/x', name: B }, sys)).code).toBe('EINVAL');
    expect(sys.openFds()).toEqual([]);
  });
});

describe('cdev API (fake only: the lab kernel has no IOMMUFD)', () => {
  it('binds to /dev/iommu, attaches to a new IOAS, then works like a group device', () => {
    const sys = kernel({ iommufd: true });
    const where = resolveSysfsDevice(`/sys/bus/mdev/devices/${B}`, sys, 'cdev');
    expect(where).toEqual({ name: B, group: 1, cdev: '/dev/vfio/devices/vfio1' });
    const dev = openVfioDevice({ sysfs: `/sys/bus/mdev/devices/${B}`, api: 'cdev' }, sys);
    expect(dev.api).toBe('cdev');
    const seq = sys.calls
      .filter((c) => c.op !== 'readlink' && c.op !== 'readdir')
      .map((c) => (c.op === 'ioctl' ? c.request : `${c.op} ${c.path ?? ''}`.trim()));
    expect(seq).toEqual([
      'open /dev/iommu',
      'open /dev/vfio/devices/vfio1',
      VFIO_DEVICE_BIND_IOMMUFD,
      IOMMU_IOAS_ALLOC,
      VFIO_DEVICE_ATTACH_IOMMUFD_PT,
      VFIO_DEVICE_GET_INFO,
    ]);
    expect(sys.callsOf('ioctl', VFIO_DEVICE_BIND_IOMMUFD)[0].argsz).toBe(16);
    expect(sys.callsOf('ioctl', VFIO_DEVICE_ATTACH_IOMMUFD_PT)[0].argsz).toBe(12);
    expect(dev.regionInfo(0).size).toBe(8n);
    // the group path is refused while the cdev is open, like the kernel does
    expect(failure(() => openGroupDevice(1, B, sys)).code).toBe('EBUSY');
    dev.close();
    expect(sys.openFds()).toEqual([]);
  });

  it('explains a kernel without IOMMUFD, on the node and on sysfs', () => {
    const sys = kernel();
    const e = failure(() => openCdevDevice('/dev/vfio/devices/vfio0', sys));
    expect(e.code).toBe('ENOENT');
    expect(e.message).toMatch(/no IOMMUFD/);
    const e2 = failure(() => resolveSysfsDevice(`/sys/bus/mdev/devices/${A}`, sys, 'cdev'));
    expect(e2.code).toBe('ENOENT');
    expect(e2.message).toMatch(/no vfio cdev/);
    expect(sys.openFds()).toEqual([]);
  });

  it('closes the iommufd and device fd when any step fails', () => {
    for (const [request, errno] of [
      [VFIO_DEVICE_BIND_IOMMUFD, 'EINVAL'],
      [IOMMU_IOAS_ALLOC, 'ENOMEM'],
      [VFIO_DEVICE_ATTACH_IOMMUFD_PT, 'ENOENT'],
      [VFIO_DEVICE_GET_INFO, 'EIO'],
    ] as const) {
      const sys = kernel({ iommufd: true });
      sys.inject({ op: 'ioctl', request, errno });
      expect(failure(() => openCdevDevice('/dev/vfio/devices/vfio0', sys)).code).toBe(errno);
      expect(sys.openFds()).toEqual([]);
    }
  });
});

describe('region info', () => {
  function withV1(mmap: boolean): { sys: FakeSyscalls; dev: VfioDevice } {
    const sys = new FakeSyscalls({ devices: [{ name: A, group: 0, migrationFlags: null, v1Region: { mmap, windowSize: 0x2000 } }] });
    return { sys, dev: openGroupDevice(0, A, sys) };
  }

  it('reads mtty-2 regions: config 0xff, BAR0 and BAR1 8 bytes at index << 40, no caps', () => {
    const sys = kernel();
    const dev = openGroupDevice(0, A, sys);
    const regions = dev.regions();
    expect(regions.map((r) => r.size)).toEqual([8n, 8n, 0n, 0n, 0n, 0n, 0n, 0xffn, 0n]);
    expect(regions.map((r) => r.offset)).toEqual(regions.map((_, i) => BigInt(i) << 40n));
    expect(regions.every((r) => !r.type && !r.sparseAreas)).toBe(true);
    expect(dev.migrationRegion()).toBeUndefined();
    expect(sys.callsOf('ioctl', VFIO_DEVICE_GET_REGION_INFO).every((c) => c.argsz === 32)).toBe(true);
    expect(failure(() => dev.regionInfo(9)).code).toBe('EINVAL');
    dev.close();
  });

  it('retries with the argsz the kernel asks for: 32 then 48 (type cap)', () => {
    const { sys, dev } = withV1(false);
    expect(dev.info.numRegions).toBe(10);
    const before = sys.calls.length;
    const r = dev.migrationRegion()!;
    const asked = sys.calls
      .slice(before)
      .filter((c) => c.request === VFIO_DEVICE_GET_REGION_INFO)
      .map((c) => c.argsz);
    expect(asked.slice(-2)).toEqual([32, 48]);
    expect(r.index).toBe(9);
    expect(r.type).toEqual({ type: VFIO_REGION_TYPE_MIGRATION_DEPRECATED, subtype: 1 });
    expect(r.flags & VFIO_REGION_INFO_FLAG_CAPS).toBeTruthy();
    expect(r.size).toBe(0x3000n);
    expect(r.sparseAreas).toBeUndefined();
    dev.close();
  });

  it('reads type + sparse-mmap caps with argsz 80 and maps the area', () => {
    const { sys, dev } = withV1(true);
    const before = sys.calls.length;
    const r = dev.regionInfo(9);
    expect(sys.calls.slice(before).map((c) => c.argsz)).toEqual([32, 80]);
    expect(r.flags & VFIO_REGION_INFO_FLAG_MMAP).toBeTruthy();
    expect(r.sparseAreas).toEqual([{ offset: 0x1000n, size: 0x2000n }]);
    const m = dev.mmapArea(r, r.sparseAreas![0]);
    expect(m.length).toBe(0x2000);
    m.bytes[0] = 0xab;
    const b = new Uint8Array(1);
    dev.readRegion(r, 0x1000, b);
    expect(b[0]).toBe(0xab);
    expect(sys.liveMappings()).toHaveLength(1);
    dev.close(); // unmaps too
    expect(sys.liveMappings()).toEqual([]);
    expect(sys.openFds()).toEqual([]);
  });

  it('refuses to mmap a region without the MMAP flag and accesses outside a region', () => {
    const { dev } = withV1(false);
    const r = dev.regionInfo(9);
    expect(failure(() => dev.mmapArea(r, { offset: 0x1000n, size: 0x1000n })).code).toBe('EINVAL');
    expect(failure(() => dev.readRegion(r, 0x3000, new Uint8Array(1))).code).toBe('EINVAL');
    expect(failure(() => dev.writeRegion(dev.regionInfo(0), 7, new Uint8Array(2))).code).toBe('EINVAL');
    dev.close();
    expect(failure(() => dev.regionInfo(0)).code).toBe('EBADF');
  });
});
