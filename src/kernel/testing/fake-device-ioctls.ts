// The ioctls and region accesses of a fake device fd, and the one ioctl of
// its migration data fd: the VFIO core's checks (drivers/vfio/vfio_main.c:
// vfio_ioctl_device_feature, vfio_check_feature, the three migration
// features, cdev bind/attach) and mtty's own (mtty_ioctl, mdev_access,
// mtty_precopy_ioctl), with their errnos.
import {
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_RESET,
  VFIO_MIG_GET_PRECOPY_INFO,
} from '../../uapi/ioctl.js';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_PCI_NUM_REGIONS,
} from '../../uapi/constants.js';
import {
  vfio_device_feature,
  vfio_device_feature_mig_data_size,
  vfio_device_feature_mig_state,
  vfio_device_feature_migration,
  vfio_device_info,
  vfio_precopy_info,
  vfio_region_info,
} from '../../uapi/structs.js';
import { encodeRegionInfo } from '../../uapi/region-info.js';
import { VFIO_DEVICE_ATTACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd } from '../cdev-abi.js';
import { type IoctlArg, ioctlName } from '../syscalls.js';
import { fail, structArg } from './fail.js';
import type { FakeDevice } from './fake-device.js';
import type { DataFile, DeviceFile, FakeFiles, IommufdFile } from './fake-files.js';
import type { MttyMigrationFile } from './mtty-model.js';

export function checkAccess(file: DeviceFile): void {
  // vfio_device_fops_unl_ioctl / read / write: nothing before a cdev is bound.
  if (!file.bound) fail('EINVAL', 'device fd not bound to an iommufd');
}

// vfio_device_fops_unl_ioctl -> vfio_ioctl_device_feature or mtty_ioctl
export function deviceIoctl(files: FakeFiles, file: DeviceFile, request: number, arg: IoctlArg): number {
  const { dev } = file;
  if (request === VFIO_DEVICE_BIND_IOMMUFD) {
    if (!file.cdev) fail('ENOTTY');
    const buf = structArg(arg, vfio_device_bind_iommufd.size);
    const b = vfio_device_bind_iommufd.decode(buf);
    if (b.argsz < vfio_device_bind_iommufd.size || b.flags !== 0) fail('EINVAL');
    if (file.bound) fail('EINVAL', 'already bound');
    const ictx = files.get(b.iommufd);
    if (!ictx || ictx.kind !== 'iommufd') fail('EBADF', 'not an iommufd');
    file.bound = true;
    vfio_device_bind_iommufd.encode({ out_devid: 1 }, buf);
    return 0;
  }
  checkAccess(file);
  if (request === VFIO_DEVICE_ATTACH_IOMMUFD_PT) {
    if (!file.cdev) fail('EINVAL');
    const buf = structArg(arg, vfio_device_attach_iommufd_pt.size);
    const a = vfio_device_attach_iommufd_pt.decode(buf);
    if (a.argsz < vfio_device_attach_iommufd_pt.size || a.flags !== 0) fail('EINVAL');
    const ictx = [...files.all()].find((f): f is IommufdFile => f.kind === 'iommufd' && f.ioas.has(a.pt_id));
    if (!ictx) fail('ENOENT', `no IOAS ${a.pt_id}`);
    file.attached = true;
    return 0;
  }
  if (request === VFIO_DEVICE_FEATURE) return deviceFeature(files, dev, structArg(arg, 8));
  switch (request) {
    case VFIO_DEVICE_GET_INFO: {
      // mtty_ioctl: copies only up to num_irqs (16 bytes) back.
      const buf = structArg(arg, 16);
      if (vfio_device_info.decode(padTo(buf, 24)).argsz < 16) fail('EINVAL');
      const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      v.setUint32(4, VFIO_DEVICE_FLAGS_PCI, true);
      v.setUint32(8, dev.numRegions, true);
      v.setUint32(12, 5, true); // VFIO_PCI_NUM_IRQS
      return 0;
    }
    case VFIO_DEVICE_GET_REGION_INFO: {
      const buf = structArg(arg, vfio_region_info.size);
      const req = vfio_region_info.decode(buf);
      if (req.argsz < vfio_region_info.size) fail('EINVAL');
      const info = dev.regionInfo(req.index) ?? fail('EINVAL', `no region ${req.index}`);
      // vfio_info_add_capability + copy_to_user: the chain only when argsz has room.
      const out = encodeRegionInfo(info, Math.min(req.argsz, buf.length));
      buf.set(out.subarray(0, Math.min(out.length, req.argsz, buf.length)));
      return 0;
    }
    case VFIO_DEVICE_RESET:
      dev.model.reset();
      dev.v1?.reset();
      return 0;
    default:
      return fail('ENOTTY', ioctlName(request));
  }
}

// vfio_ioctl_device_feature + vfio_check_feature + the three migration features
function deviceFeature(files: FakeFiles, dev: FakeDevice, buf: Uint8Array): number {
  const { argsz, flags } = vfio_device_feature.decode(buf);
  if (argsz < 8) fail('EINVAL', 'argsz < 8');
  if (argsz > buf.length) fail('EFAULT', 'argsz past the buffer');
  const known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
  if (flags & ~known) fail('EINVAL', 'unknown feature flags');
  const get = (flags & VFIO_DEVICE_FEATURE_GET) !== 0;
  const set = (flags & VFIO_DEVICE_FEATURE_SET) !== 0;
  const probe = (flags & VFIO_DEVICE_FEATURE_PROBE) !== 0;
  if (!probe && get && set) fail('EINVAL', 'GET and SET without PROBE');
  const payload = buf.subarray(8, argsz);
  const check = (supported: number, minsz: number): boolean => {
    if (flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET) & ~supported) fail('EINVAL', 'unsupported GET/SET');
    if (probe) return false;
    if (!get && !set) fail('EINVAL', 'neither GET nor SET');
    if (argsz - 8 < minsz) fail('EINVAL', `payload ${argsz - 8} < ${minsz}`);
    return true;
  };
  const feature = flags & VFIO_DEVICE_FEATURE_MASK;
  switch (feature) {
    case VFIO_DEVICE_FEATURE_MIGRATION: {
      if (!dev.hasMigration) fail('ENOTTY', 'no mig_ops');
      if (!check(VFIO_DEVICE_FEATURE_GET, 8)) return 0;
      vfio_device_feature_migration.encode({ flags: BigInt(dev.model.flags) }, payload);
      return 0;
    }
    case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: {
      if (!dev.hasMigration) fail('ENOTTY', 'no mig_ops');
      if (!check(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET, 8)) return 0;
      const mig = vfio_device_feature_mig_state.decode(payload);
      if (get) {
        vfio_device_feature_mig_state.encode({ device_state: dev.model.getState(), data_fd: -1 }, payload);
        return 0;
      }
      let migf: MttyMigrationFile | null;
      try {
        migf = dev.model.setState(mig.device_state); // any u32: nextState refuses what is no state
      } catch (e) {
        // The core copies the struct out with data_fd = -1 even on failure.
        vfio_device_feature_mig_state.encode({ data_fd: -1 }, payload);
        throw e;
      }
      const fd = migf ? files.alloc({ kind: 'data', migf, dev }) : -1;
      vfio_device_feature_mig_state.encode({ data_fd: fd }, payload);
      return 0;
    }
    case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: {
      if (!dev.hasMigration) fail('ENOTTY', 'no mig_ops');
      if (!check(VFIO_DEVICE_FEATURE_GET, 8)) return 0;
      vfio_device_feature_mig_data_size.encode({ stop_copy_length: BigInt(dev.model.dataSize()) }, payload);
      return 0;
    }
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT: {
      if (!dev.hasMigration) fail('ENOTTY', 'no log_ops');
      const ops = feature === VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT ? VFIO_DEVICE_FEATURE_GET : VFIO_DEVICE_FEATURE_SET;
      if (!check(ops, 0)) return 0;
      return fail('EOPNOTSUPP', 'fake: DMA logging is only modelled for PROBE');
    }
    default:
      return fail('ENOTTY', `feature ${feature}`); // mtty has no device_feature op
  }
}

export function dataIoctl(file: DataFile, request: number, arg: IoctlArg): number {
  // Only the saving file has unlocked_ioctl (mtty_precopy_ioctl); the resuming file has none.
  if (file.migf.direction !== 'save' || request !== VFIO_MIG_GET_PRECOPY_INFO) return fail('ENOTTY', ioctlName(request));
  const buf = structArg(arg, vfio_precopy_info.size);
  if (vfio_precopy_info.decode(buf).argsz < vfio_precopy_info.size) fail('EINVAL');
  const { initial, dirty } = file.migf.precopyInfo();
  vfio_precopy_info.encode({ initial_bytes: initial, dirty_bytes: dirty }, buf);
  return 0;
}

// vfio_device_fops_read/write -> mtty_read/mtty_write -> mdev_access
export function deviceRw(files: FakeFiles, fd: number, buf: Uint8Array, offset: bigint, isWrite: boolean): number {
  const file = files.get(fd) ?? fail('EBADF');
  if (file.kind === 'data') fail('ESPIPE', 'data_fd is a stream (stream_open): no positioned I/O');
  if (file.kind !== 'device') fail('EINVAL');
  const { dev } = file;
  checkAccess(file);
  const index = Number(offset >> 40n);
  const off = Number(offset & ((1n << 40n) - 1n));
  if (index === VFIO_PCI_NUM_REGIONS && dev.v1) {
    if (isWrite) dev.v1.write(off, buf);
    else dev.v1.read(off, buf);
    return buf.length;
  }
  if (index === 7) {
    if (off + buf.length > dev.config.length) fail('EFAULT');
    if (isWrite) dev.config.set(buf, off);
    else buf.set(dev.config.subarray(off, off + buf.length));
    return buf.length;
  }
  if (index === 0 || (index === 1 && dev.model.nrPorts === 2)) {
    dev.model.barAccess(index, off, buf, isWrite);
    return buf.length;
  }
  return fail('EFAULT', `mdev_access: no region ${index}`);
}

function padTo(buf: Uint8Array, n: number): Uint8Array {
  if (buf.length >= n) return buf;
  const out = new Uint8Array(n);
  out.set(buf);
  return out;
}
