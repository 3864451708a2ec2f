// The parts of the uAPI only the kernel backend uses (include/uapi/linux/vfio.h
// and iommufd.h, 6.12): the no-IOMMU container type and the iommufd / vfio cdev
// ioctls. Values and layouts are checked against gcc + the real headers in
// test/kernel-abi.test.ts.
import { CStruct } from '../uapi/struct.js';
import { _IO, VFIO_BASE, VFIO_TYPE } from '../uapi/ioctl.js';

/** VFIO_NOIOMMU_IOMMU: the container type of /dev/vfio/noiommu-N groups. */
export const VFIO_NOIOMMU_IOMMU = 8;

export const VFIO_DEVICE_ATTACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 19);
export const VFIO_DEVICE_DETACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 20);

/** IOMMUFD_TYPE is ';' too; commands start at 0x80. */
export const IOMMUFD_CMD_DESTROY = 0x80;
export const IOMMUFD_CMD_IOAS_ALLOC = 0x81;
export const IOMMU_DESTROY = _IO(VFIO_TYPE, IOMMUFD_CMD_DESTROY);
export const IOMMU_IOAS_ALLOC = _IO(VFIO_TYPE, IOMMUFD_CMD_IOAS_ALLOC);

export const vfio_device_bind_iommufd = new CStruct('vfio_device_bind_iommufd', 16, {
  argsz: ['u32', 0],
  flags: ['u32', 4],
  iommufd: ['s32', 8],
  out_devid: ['u32', 12],
});

export const vfio_device_attach_iommufd_pt = new CStruct('vfio_device_attach_iommufd_pt', 12, {
  argsz: ['u32', 0],
  flags: ['u32', 4],
  pt_id: ['u32', 8],
});

export const iommu_ioas_alloc = new CStruct('iommu_ioas_alloc', 12, {
  size: ['u32', 0],
  flags: ['u32', 4],
  out_ioas_id: ['u32', 8],
});

export const iommu_destroy = new CStruct('iommu_destroy', 8, {
  size: ['u32', 0],
  id: ['u32', 4],
});
