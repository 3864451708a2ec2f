// What kind of device a VFIO device name is, from sysfs links alone (no
// file reads, nothing opened): an mdev's type and parent driver
// (/sys/bus/mdev/devices/<uuid>/mdev_type -> .../mdev_supported_types/mtty-2,
// .../driver -> .../drivers/mtty), a PCI function's driver (vfio-pci or a
// variant driver such as mlx5_vfio_pci). Traces record it, so a recording
// says which device's behaviour it holds. Unknown pieces are left out.
import type { Syscalls } from './syscalls.js';

export interface DeviceIdentity {
  bus?: 'mdev' | 'pci';
  /** mdev type (e.g. mtty-2). */
  type?: string;
  /** The bound driver (e.g. mtty, vfio-pci). */
  driver?: string;
}

/** The last component of a sysfs link, or undefined when there is no such link. */
function linkName(sys: Syscalls, path: string): string | undefined {
  try {
    const target = sys.readlink(path);
    return target.slice(target.lastIndexOf('/') + 1) || undefined;
  } catch {
    return undefined;
  }
}

export function deviceIdentity(name: string, sys: Syscalls): DeviceIdentity {
  if (name === '' || name.includes('/')) return {};
  for (const bus of ['mdev', 'pci'] as const) {
    const dir = `/sys/bus/${bus}/devices/${name}`;
    const driver = linkName(sys, `${dir}/driver`);
    const type = bus === 'mdev' ? linkName(sys, `${dir}/mdev_type`) : undefined;
    if (driver || type) return { bus, ...(type ? { type } : {}), ...(driver ? { driver } : {}) };
  }
  return {};
}
