// deviceIdentity: what the trace's `device` line says a device is, from sysfs
// links only (mdev type and driver; a PCI function's driver).
import { describe, expect, it } from 'vitest';
import { deviceIdentity } from '../src/kernel/device-identity.js';
import { MigrationError } from '../src/uapi/errors.js';
import type { Syscalls } from '../src/kernel/syscalls.js';

/** Syscalls whose readlink answers from `links` (ENOENT otherwise) and records what was asked. */
function sysfs(links: Record<string, string>): Syscalls & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    readlink(path: string) {
      asked.push(path);
      const target = links[path];
      if (target === undefined) throw new MigrationError('ENOENT', `readlink ${path}`);
      return target;
    },
  } as unknown as Syscalls & { asked: string[] };
}

const UUID = '0d9a4c38-6f1b-4b52-a6f5-1ad1e3a0c0a1';

describe('deviceIdentity', () => {
  it('an mdev: its type (mdev_type link) and its driver (the parent driver, as 6.12 binds mdevs)', () => {
    const sys = sysfs({
      [`/sys/bus/mdev/devices/${UUID}/mdev_type`]: '../../../devices/virtual/mtty/mtty/mdev_supported_types/mtty-2',
      [`/sys/bus/mdev/devices/${UUID}/driver`]: '../../../../bus/mdev/drivers/mtty',
    });
    expect(deviceIdentity(UUID, sys)).toEqual({ bus: 'mdev', type: 'mtty-2', driver: 'mtty' });
  });

  it('a PCI function: its driver (vfio-pci or a variant driver)', () => {
    const sys = sysfs({ '/sys/bus/pci/devices/0000:3b:00.1/driver': '../../../../bus/pci/drivers/mlx5_vfio_pci' });
    expect(deviceIdentity('0000:3b:00.1', sys)).toEqual({ bus: 'pci', driver: 'mlx5_vfio_pci' });
  });

  it('unknown names, empty names and names with a slash give nothing (and a slash is never put into a path)', () => {
    const sys = sysfs({});
    expect(deviceIdentity('nothing-here', sys)).toEqual({});
    expect(deviceIdentity('', sys)).toEqual({});
    expect(deviceIdentity('../../etc', sys)).toEqual({});
    expect(sys.asked.every((p) => p.startsWith('/sys/bus/') && p.includes('/nothing-here/'))).toBe(true);
  });
});
