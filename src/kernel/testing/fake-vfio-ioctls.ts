// The ioctls of the fake kernel's VFIO nodes other than the device: the
// container (/dev/vfio/vfio), a group (/dev/vfio/<N>) and /dev/iommu, with
// the checks and errnos of drivers/vfio/container.c, group.c and iommufd.
import {
  VFIO_CHECK_EXTENSION,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER,
  VFIO_SET_IOMMU,
} from '../../uapi/ioctl.js';
import {
  VFIO_API_VERSION,
  VFIO_GROUP_FLAGS_CONTAINER_SET,
  VFIO_GROUP_FLAGS_VIABLE,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
} from '../../uapi/constants.js';
import { vfio_group_status } from '../../uapi/structs.js';
import { IOMMU_IOAS_ALLOC, VFIO_NOIOMMU_IOMMU, iommu_ioas_alloc } from '../cdev-abi.js';
import { type IoctlArg, ioctlName } from '../syscalls.js';
import { fail, structArg } from './fail.js';
import type { ContainerFile, FakeFiles, GroupFile, IommufdFile } from './fake-files.js';

// drivers/vfio/container.c vfio_fops_unl_ioctl
export function containerIoctl(files: FakeFiles, file: ContainerFile, request: number, arg: IoctlArg): number {
  const type1 = files.opts.type1 ?? true;
  switch (request) {
    case VFIO_GET_API_VERSION:
      return VFIO_API_VERSION;
    case VFIO_CHECK_EXTENSION:
      if (arg === VFIO_NOIOMMU_IOMMU) return files.devices.some((d) => d.opts.noiommu) ? 1 : 0;
      return type1 && (arg === VFIO_TYPE1_IOMMU || arg === VFIO_TYPE1v2_IOMMU) ? 1 : 0;
    case VFIO_SET_IOMMU: {
      // vfio_ioctl_set_iommu: needs a group, a driver for the type, and no driver yet.
      if (file.groups.size === 0) fail('EINVAL', 'VFIO_SET_IOMMU before any group was added');
      if (file.iommu !== null) fail('EBUSY', 'iommu already set');
      // A group only works with the driver of its kind (type1, or vfio-noiommu for noiommu groups).
      const noiommu = [...file.groups].some((id) => files.isNoiommu(id));
      const ok = noiommu ? arg === VFIO_NOIOMMU_IOMMU : type1 && (arg === VFIO_TYPE1_IOMMU || arg === VFIO_TYPE1v2_IOMMU);
      if (!ok) fail(noiommu ? 'EINVAL' : 'ENODEV', `no iommu driver for type ${String(arg)}`);
      file.iommu = arg as number;
      return 0;
    }
    default:
      return fail('ENOTTY', ioctlName(request));
  }
}

// drivers/vfio/group.c vfio_group_fops_unl_ioctl
export function groupIoctl(files: FakeFiles, file: GroupFile, request: number, arg: IoctlArg): number {
  const g = files.groups.get(file.group)!;
  const viable = !files.opts.nonViable?.includes(g.id);
  switch (request) {
    case VFIO_GROUP_GET_STATUS: {
      const buf = structArg(arg, vfio_group_status.size);
      if (vfio_group_status.decode(buf).argsz < 8) fail('EINVAL');
      let flags = 0;
      if (g.container) flags |= VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
      else if (viable) flags |= VFIO_GROUP_FLAGS_VIABLE;
      vfio_group_status.encode({ flags }, buf);
      return 0;
    }
    case VFIO_GROUP_SET_CONTAINER: {
      const buf = structArg(arg, 4);
      const cfd = new DataView(buf.buffer, buf.byteOffset).getInt32(0, true);
      const c = files.get(cfd) ?? fail('EBADF', 'container fd');
      if (g.container) fail('EINVAL', 'group already in a container');
      if (c.kind !== 'container') return fail('EBADFD', 'not a container fd');
      // vfio_container_attach_group -> iommu_group_claim_dma_owner
      if (!viable) fail('EBUSY', 'group DMA owner already claimed');
      c.groups.add(g.id);
      g.container = c;
      return 0;
    }
    case VFIO_GROUP_UNSET_CONTAINER: {
      if (!g.container) fail('EINVAL');
      if (g.users > 0) fail('EBUSY');
      files.detach(g);
      return 0;
    }
    case VFIO_GROUP_GET_DEVICE_FD: {
      const buf = structArg(arg, 1);
      const nul = buf.indexOf(0);
      const name = new TextDecoder().decode(buf.subarray(0, nul < 0 ? buf.length : nul));
      const dev = files.devices.find((d) => d.group === g.id && d.name === name) ?? fail('ENODEV', `no device ${name} in group ${g.id}`);
      // vfio_df_group_open / vfio_group_use_container
      if (!g.container || g.container.iommu === null) fail('EINVAL', 'group has no container with an iommu');
      g.users++;
      dev.openCount++;
      return files.alloc({ kind: 'device', dev, cdev: false, bound: true, attached: true });
    }
    default:
      return fail('ENOTTY', ioctlName(request));
  }
}

// drivers/iommu/iommufd: only what opening a cdev needs
export function iommufdIoctl(file: IommufdFile, request: number, arg: IoctlArg): number {
  if (request !== IOMMU_IOAS_ALLOC) return fail('ENOTTY', ioctlName(request));
  const buf = structArg(arg, iommu_ioas_alloc.size);
  const a = iommu_ioas_alloc.decode(buf);
  if (a.size < iommu_ioas_alloc.size || a.flags !== 0) fail('EOPNOTSUPP');
  const id = file.nextId++;
  file.ioas.add(id);
  iommu_ioas_alloc.encode({ out_ioas_id: id }, buf);
  return 0;
}
