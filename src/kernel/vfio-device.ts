// Opening a VFIO device, the two ways Linux offers:
//  * group/container (every kernel with VFIO_GROUP/VFIO_CONTAINER, the lab's):
//    /dev/vfio/<group> + /dev/vfio/vfio + TYPE1v2 + VFIO_GROUP_GET_DEVICE_FD,
//    in the order QEMU 7.2's vfio_get_group / vfio_connect_container /
//    vfio_get_device (hw/vfio/common.c) issue them;
//  * cdev (CONFIG_IOMMUFD + VFIO_DEVICE_CDEV, 6.6+): /dev/vfio/devices/vfioN
//    bound to /dev/iommu and attached to a fresh IOAS, as QEMU 8.2+'s
//    iommufd_cdev_attach does.
// Then device info, region info with the capability chain (argsz retry like
// QEMU 7.2 vfio_get_region_info), the v1 migration region lookup
// (vfio_get_dev_region_info) and sparse-mmap areas.
import { asMigrationError, FirstFailure, MigrationError } from '../uapi/errors.js';
import {
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_SET_IOMMU,
} from '../uapi/ioctl.js';
import { VFIO_API_VERSION, VFIO_GROUP_FLAGS_VIABLE, VFIO_REGION_INFO_FLAG_MMAP, VFIO_TYPE1v2_IOMMU } from '../uapi/constants.js';
import { vfio_device_info, vfio_group_status, vfio_region_info } from '../uapi/structs.js';
import { decodeRegionInfo, type RegionInfo, type SparseArea } from '../uapi/region-info.js';
import { VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED, VFIO_REGION_TYPE_MIGRATION_DEPRECATED } from '../../legacy/region-layout.js';
import {
  IOMMU_IOAS_ALLOC,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_NOIOMMU_IOMMU,
  iommu_ioas_alloc,
  vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd,
} from './cdev-abi.js';
import { koffiSyscalls } from './koffi-syscalls.js';
import { O_CLOEXEC, O_RDWR, PROT_READ, PROT_WRITE, type Mapping, type Syscalls } from './syscalls.js';

export interface DeviceInfo {
  flags: number;
  numRegions: number;
  numIrqs: number;
}

/** Which device to open. */
export type DeviceSpec =
  /**
   * Group/container API: the iommu group (its number, or its node: `/dev/vfio/12`,
   * `/dev/vfio/noiommu-0`) and the device's sysfs name (mdev uuid, PCI address).
   */
  | { group: number | string; name: string }
  /** A sysfs device directory (`/sys/bus/mdev/devices/<uuid>`); `api` picks group (default) or cdev. */
  | { sysfs: string; api?: 'group' | 'cdev' }
  /** cdev API: `/dev/vfio/devices/vfioN`. */
  | { cdev: string };

export const VFIO_CONTAINER_PATH = '/dev/vfio/vfio';
export const IOMMUFD_PATH = '/dev/iommu';

/** Largest region-info answer we accept before calling the driver broken. */
const MAX_REGION_INFO_ARGSZ = 1 << 16;

/** An open VFIO device fd plus whatever keeps it usable (group + container, or iommufd). */
export class VfioDevice {
  private open = true;
  private readonly mappings = new Set<Mapping>();
  /** VFIO_DEVICE_GET_INFO, read at open. */
  readonly info: DeviceInfo;

  constructor(
    readonly sys: Syscalls,
    readonly fd: number,
    readonly name: string,
    readonly api: 'group' | 'cdev',
    /** fds the device depends on, closed after it (group then container, or the iommufd). */
    private readonly companions: number[],
  ) {
    this.info = getDeviceInfo(sys, fd);
  }

  get closed(): boolean {
    return !this.open;
  }

  /** VFIO_DEVICE_GET_REGION_INFO with the capability chain. */
  regionInfo(index: number): RegionInfo {
    this.check();
    return getRegionInfo(this.sys, this.fd, index);
  }

  /** Every region 0..num_regions-1. */
  regions(): RegionInfo[] {
    const out: RegionInfo[] = [];
    for (let i = 0; i < this.info.numRegions; i++) out.push(this.regionInfo(i));
    return out;
  }

  /** QEMU 7.2 vfio_get_dev_region_info: scan every index for a type capability. */
  findRegion(type: number, subtype: number): RegionInfo | undefined {
    for (let i = 0; i < this.info.numRegions; i++) {
      const info = this.regionInfo(i);
      if (info.type && info.type.type === type && info.type.subtype === subtype) return info;
    }
    return undefined;
  }

  /** The v1 migration region (type 3 / subtype 1), when the driver still has one. */
  migrationRegion(): RegionInfo | undefined {
    return this.findRegion(VFIO_REGION_TYPE_MIGRATION_DEPRECATED, VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED);
  }

  /**
   * pread at `offset` inside a region (vfio_region_read style: a short transfer
   * is an error). Offsets are the region's, not the fd's.
   */
  readRegion(region: RegionInfo, offset: number, buf: Uint8Array): void {
    this.check();
    checkRange(region, offset, buf.length);
    const n = this.sys.pread(this.fd, buf, region.offset + BigInt(offset));
    if (n !== buf.length)
      throw new MigrationError('EINVAL', `short read of region ${region.index}: ${n} of ${buf.length} bytes at ${offset}`);
  }

  /** pwrite at `offset` inside a region; a short transfer is an error. */
  writeRegion(region: RegionInfo, offset: number, data: Uint8Array): void {
    this.check();
    checkRange(region, offset, data.length);
    const n = this.sys.pwrite(this.fd, data, region.offset + BigInt(offset));
    if (n !== data.length)
      throw new MigrationError('EINVAL', `short write to region ${region.index}: ${n} of ${data.length} bytes at ${offset}`);
  }

  /** mmap one sparse-mmap area of a region (QEMU 7.2 vfio_region_mmap); unmapped at close at the latest. */
  mmapArea(region: RegionInfo, area: SparseArea, prot = PROT_READ | PROT_WRITE): Mapping {
    this.check();
    if (!(region.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
      throw new MigrationError('EINVAL', `region ${region.index} does not advertise VFIO_REGION_INFO_FLAG_MMAP`);
    }
    if (area.offset + area.size > region.size) throw new MigrationError('EINVAL', 'sparse area outside its region');
    const m = this.sys.mmap(this.fd, Number(area.size), prot, region.offset + area.offset);
    this.mappings.add(m);
    return m;
  }

  munmap(mapping: Mapping): void {
    if (!this.mappings.delete(mapping)) throw new MigrationError('EINVAL', 'not a mapping of this device');
    this.sys.munmap(mapping);
  }

  /** Unmap, close the device fd, then its group and container (or iommufd). Idempotent. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    const fds = [this.fd, ...this.companions];
    const maps = [...this.mappings];
    this.mappings.clear();
    closeAll(this.sys, fds, maps);
  }

  private check(): void {
    if (!this.open) throw new MigrationError('EBADF', `device ${this.name} is closed`);
  }
}

/**
 * A holder about to let go of a device it left in RESUMING resets it first
 * (the device rule, src/v2/takeover.ts). If that reset fails, the error says
 * the device is left in `leftIn` and what the next user must do.
 */
export function resetBeforeLeaving(name: string, leftIn: string, reset: () => void, nextUser: string): void {
  try {
    reset();
  } catch (e) {
    const m = asMigrationError(e);
    throw new MigrationError(m.errno, `device ${name} is left in ${leftIn}: VFIO_DEVICE_RESET failed (${m.message}); ${nextUser}`);
  }
}

/** Open a device from a spec. */
export function openVfioDevice(spec: DeviceSpec, sys: Syscalls = koffiSyscalls()): VfioDevice {
  if ('cdev' in spec) return openCdevDevice(spec.cdev, sys);
  if ('sysfs' in spec) {
    const where = resolveSysfsDevice(spec.sysfs, sys, spec.api ?? 'group');
    return where.cdev ? openCdevDevice(where.cdev, sys) : openGroupDevice(where.group, where.name, sys);
  }
  return openGroupDevice(spec.group, spec.name, sys);
}

/** The iommu group (from the `iommu_group` link) or cdev node (from `vfio-dev/`) of a sysfs device. */
export function resolveSysfsDevice(
  sysfs: string,
  sys: Syscalls,
  api: 'group' | 'cdev' = 'group',
): { name: string; group: number; cdev?: string } {
  const dir = sysfs.replace(/\/+$/, '');
  const name = dir.slice(dir.lastIndexOf('/') + 1);
  let link: string;
  try {
    link = sys.readlink(`${dir}/iommu_group`);
  } catch (e) {
    throw rethrow(e, `${dir} has no iommu_group: is the device bound to a vfio driver (vfio-pci, or an mdev type)?`);
  }
  const group = Number(link.slice(link.lastIndexOf('/') + 1));
  if (!Number.isInteger(group)) throw new MigrationError('EINVAL', `${dir}/iommu_group points to ${link}`);
  if (api === 'group') return { name, group };
  let entries: string[];
  try {
    entries = sys.readdir(`${dir}/vfio-dev`);
  } catch (e) {
    throw rethrow(
      e,
      `${dir} has no vfio-dev/: this kernel has no vfio cdev (CONFIG_VFIO_DEVICE_CDEV needs CONFIG_IOMMUFD); use the group API`,
    );
  }
  const node = entries.find((e) => /^vfio\d+$/.test(e));
  if (!node) throw new MigrationError('ENOENT', `${dir}/vfio-dev has no vfioN entry`);
  return { name, group, cdev: `/dev/vfio/devices/${node}` };
}

/**
 * What `readlink /proc/self/fd/N` says for a VFIO device fd: the group API's
 * anonymous inode (drivers/vfio/group.c vfio_device_open_file:
 * anon_inode_getfile("[vfio-device]")) or a cdev node (device_cdev.c
 * vfio_device_devnode: "vfio/devices/vfioN"); anything else is no VFIO device.
 */
export function vfioDeviceApiOf(link: string): 'group' | 'cdev' | undefined {
  if (link === 'anon_inode:[vfio-device]') return 'group';
  if (/^\/dev\/vfio\/devices\/vfio\d+$/.test(link)) return 'cdev';
  return undefined;
}

/**
 * A VfioDevice over a device fd another process opened (the bridge's
 * pidfd_getfd copy of QEMU's fd). It owns that one fd — close() closes it —
 * and no group, container or iommufd: the opener keeps those. The fd is
 * checked to be a VFIO device (readlink) before any ioctl touches it; ENOTTY
 * when it is not. Takes ownership of `fd` on every path: closed on failure.
 */
export function adoptVfioDevice(fd: number, name: string, sys: Syscalls = koffiSyscalls()): VfioDevice {
  try {
    const link = sys.readlink(`/proc/self/fd/${fd}`);
    const api = vfioDeviceApiOf(link);
    if (!api) throw new MigrationError('ENOTTY', `fd ${fd} is ${link}, not a VFIO device`);
    return new VfioDevice(sys, fd, name || link, api, []);
  } catch (e) {
    closeQuietly(sys, [fd]);
    throw e;
  }
}

/** Group/container API, in QEMU 7.2's order: group + viability, container, TYPE1v2, device fd, info. */
export function openGroupDevice(group: number | string, name: string, sys: Syscalls = koffiSyscalls()): VfioDevice {
  const opened: number[] = [];
  try {
    const groupPath = typeof group === 'number' ? `/dev/vfio/${group}` : group;
    if (!/^\/dev\/vfio\/(noiommu-)?\d+$/.test(groupPath)) {
      throw new MigrationError('EINVAL', `${groupPath} is no VFIO group node (/dev/vfio/<N> or /dev/vfio/noiommu-<N>)`);
    }
    // A no-IOMMU group (vfio enable_unsafe_noiommu_mode) only works with the NOIOMMU container type.
    const noiommu = groupPath.includes('noiommu-');
    const iommuType = noiommu ? VFIO_NOIOMMU_IOMMU : VFIO_TYPE1v2_IOMMU;
    const groupFd = openNode(sys, groupPath, {
      ENOENT: `no such group: load vfio (modprobe vfio vfio_iommu_type1) and bind the device to a vfio driver; ${groupPath} does not exist`,
      EACCES: `permission denied: run as root or give your user ${groupPath} (and a large enough RLIMIT_MEMLOCK)`,
      EBUSY: `group ${groupPath} is already open (another QEMU or process uses it)`,
    });
    opened.push(groupFd);
    // vfio_get_group: VFIO_GROUP_GET_STATUS, refuse a non-viable group.
    const status = vfio_group_status.encode({ argsz: vfio_group_status.size });
    sys.ioctl(groupFd, VFIO_GROUP_GET_STATUS, status);
    if (!(vfio_group_status.decode(status).flags & VFIO_GROUP_FLAGS_VIABLE)) {
      throw new MigrationError(
        'EBUSY',
        `group ${groupPath} is not viable: ensure all devices within the iommu_group are bound to their vfio bus driver`,
      );
    }
    // vfio_connect_container: a new container, checked, with the group in it and TYPE1v2 set.
    const containerFd = openNode(sys, VFIO_CONTAINER_PATH, {
      ENOENT: `${VFIO_CONTAINER_PATH} is missing: load the vfio module (modprobe vfio) and make sure /dev is devtmpfs`,
      EACCES: `permission denied on ${VFIO_CONTAINER_PATH}: run as root`,
    });
    opened.push(containerFd);
    const version = sys.ioctl(containerFd, VFIO_GET_API_VERSION);
    if (version !== VFIO_API_VERSION) throw new MigrationError('EINVAL', `VFIO API version ${version}, expected ${VFIO_API_VERSION}`);
    if (sys.ioctl(containerFd, VFIO_CHECK_EXTENSION, iommuType) !== 1) {
      throw new MigrationError(
        'ENODEV',
        noiommu
          ? 'the container offers no VFIO_NOIOMMU_IOMMU: load vfio with enable_unsafe_noiommu_mode=1'
          : 'the container offers no VFIO_TYPE1v2_IOMMU: load vfio_iommu_type1 (modprobe vfio_iommu_type1)',
      );
    }
    const fdArg = new Uint8Array(4);
    new DataView(fdArg.buffer).setInt32(0, containerFd, true);
    sys.ioctl(groupFd, VFIO_GROUP_SET_CONTAINER, fdArg);
    sys.ioctl(containerFd, VFIO_SET_IOMMU, iommuType);
    // vfio_get_device: VFIO_GROUP_GET_DEVICE_FD by name (a NUL-terminated string).
    const nameArg = new TextEncoder().encode(`${name}\0`);
    let deviceFd: number;
    try {
      deviceFd = sys.ioctl(groupFd, VFIO_GROUP_GET_DEVICE_FD, nameArg);
    } catch (e) {
      throw rethrow(e, `no device ${name} in ${groupPath}`, 'ENODEV');
    }
    opened.push(deviceFd);
    // Companions close after the device: group first, then the container (QEMU's vfio_put_group order).
    return new VfioDevice(sys, deviceFd, name, 'group', [groupFd, containerFd]);
  } catch (e) {
    closeQuietly(sys, opened.reverse());
    throw e;
  }
}

/** cdev API: bind to a fresh iommufd and attach to a new IOAS (QEMU 8.2+ iommufd_cdev_attach). */
export function openCdevDevice(path: string, sys: Syscalls = koffiSyscalls()): VfioDevice {
  const opened: number[] = [];
  try {
    const iommufd = openNode(sys, IOMMUFD_PATH, {
      ENOENT: `${IOMMUFD_PATH} is missing: this kernel has no IOMMUFD (CONFIG_IOMMUFD is off in Debian 12's 6.12), so there is no vfio cdev; use the group API`,
      EACCES: `permission denied on ${IOMMUFD_PATH}: run as root`,
    });
    opened.push(iommufd);
    const deviceFd = openNode(sys, path, {
      ENOENT: `${path} is missing: no vfio cdev for this device (needs CONFIG_VFIO_DEVICE_CDEV); use the group API`,
      EACCES: `permission denied on ${path}: run as root or chown it`,
      EBUSY: `${path} is busy: its group is open through /dev/vfio/<group>`,
    });
    opened.push(deviceFd);
    const bind = vfio_device_bind_iommufd.encode({ argsz: vfio_device_bind_iommufd.size, flags: 0, iommufd });
    sys.ioctl(deviceFd, VFIO_DEVICE_BIND_IOMMUFD, bind);
    const alloc = iommu_ioas_alloc.encode({ size: iommu_ioas_alloc.size, flags: 0 });
    sys.ioctl(iommufd, IOMMU_IOAS_ALLOC, alloc);
    const ioas = iommu_ioas_alloc.decode(alloc).out_ioas_id;
    const attach = vfio_device_attach_iommufd_pt.encode({ argsz: vfio_device_attach_iommufd_pt.size, flags: 0, pt_id: ioas });
    sys.ioctl(deviceFd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, attach);
    const name = path.slice(path.lastIndexOf('/') + 1);
    return new VfioDevice(sys, deviceFd, name, 'cdev', [iommufd]);
  } catch (e) {
    closeQuietly(sys, opened.reverse());
    throw e;
  }
}

/** VFIO_DEVICE_GET_INFO with argsz = sizeof(struct vfio_device_info), as QEMU 7.2 vfio_get_device. */
export function getDeviceInfo(sys: Syscalls, fd: number): DeviceInfo {
  const buf = vfio_device_info.encode({ argsz: vfio_device_info.size });
  sys.ioctl(fd, VFIO_DEVICE_GET_INFO, buf);
  const d = vfio_device_info.decode(buf);
  return { flags: d.flags, numRegions: d.num_regions, numIrqs: d.num_irqs };
}

/**
 * QEMU 7.2 vfio_get_region_info: ask with argsz = 32; while the kernel answers
 * with a larger argsz (the capability chain did not fit), retry with that size.
 */
export function getRegionInfo(sys: Syscalls, fd: number, index: number): RegionInfo {
  let argsz = vfio_region_info.size;
  for (;;) {
    const buf = vfio_region_info.encode({ argsz, index }, new Uint8Array(argsz));
    sys.ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, buf);
    const info = decodeRegionInfo(buf);
    if (info.argsz <= argsz) return { ...info, index };
    if (info.argsz > MAX_REGION_INFO_ARGSZ) {
      throw new MigrationError('EOVERFLOW', `region ${index}: the driver asks for argsz ${info.argsz}`);
    }
    argsz = info.argsz;
  }
}

function checkRange(region: RegionInfo, offset: number, len: number): void {
  if (!Number.isInteger(offset) || offset < 0 || BigInt(offset + len) > region.size) {
    throw new MigrationError('EINVAL', `access of ${len} bytes at ${offset} outside region ${region.index} (size ${region.size})`);
  }
}

function openNode(sys: Syscalls, path: string, hints: Partial<Record<string, string>>): number {
  try {
    return sys.open(path, O_RDWR | O_CLOEXEC);
  } catch (e) {
    if (e instanceof MigrationError && hints[e.code]) throw new MigrationError(e.errno, `open ${path}: ${hints[e.code]}`);
    throw e;
  }
}

/** Keep the errno, explain it; `only` limits the explanation to one errno. */
function rethrow(e: unknown, hint: string, only?: string): unknown {
  if (e instanceof MigrationError && (only === undefined || e.code === only))
    return new MigrationError(e.errno, `${e.message.replace(/^E\w+: /, '')}: ${hint}`);
  return e;
}

/** Error path: close what was opened; the original error is the one to report. */
function closeQuietly(sys: Syscalls, fds: number[]): void {
  try {
    closeAll(sys, fds, []);
  } catch {
    /* the caller rethrows the cause */
  }
}

/** Close everything, keep going past failures, report the first one. */
function closeAll(sys: Syscalls, fds: number[], maps: Mapping[]): void {
  const failure = new FirstFailure();
  for (const m of maps) failure.run(() => sys.munmap(m));
  for (const fd of fds) failure.run(() => sys.close(fd));
  failure.rethrow();
}
