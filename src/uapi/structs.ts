// Every v2-era struct the project passes to the kernel, described once.
// Offsets and sizes are checked against gcc + the real header in test/abi.
import { CStruct } from './struct.js';

export const vfio_info_cap_header = new CStruct('vfio_info_cap_header', 8, {
  id: ['u16', 0],
  version: ['u16', 2],
  next: ['u32', 4],
});

export const vfio_group_status = new CStruct('vfio_group_status', 8, {
  argsz: ['u32', 0],
  flags: ['u32', 4],
});

export const vfio_device_info = new CStruct('vfio_device_info', 24, {
  argsz: ['u32', 0],
  flags: ['u32', 4],
  num_regions: ['u32', 8],
  num_irqs: ['u32', 12],
  cap_offset: ['u32', 16],
  pad: ['u32', 20],
});

export const vfio_region_info = new CStruct('vfio_region_info', 32, {
  argsz: ['u32', 0],
  flags: ['u32', 4],
  index: ['u32', 8],
  cap_offset: ['u32', 12],
  size: ['u64', 16],
  offset: ['u64', 24],
});

export const vfio_region_info_cap_type = new CStruct('vfio_region_info_cap_type', 16, {
  header: ['nested', 0],
  type: ['u32', 8],
  subtype: ['u32', 12],
});

/** Fixed part; `areas[]` of vfio_region_sparse_mmap_area follows at 16. */
export const vfio_region_info_cap_sparse_mmap = new CStruct('vfio_region_info_cap_sparse_mmap', 16, {
  header: ['nested', 0],
  nr_areas: ['u32', 8],
  reserved: ['u32', 12],
  areas: ['nested', 16],
});

export const vfio_region_sparse_mmap_area = new CStruct('vfio_region_sparse_mmap_area', 16, {
  offset: ['u64', 0],
  size: ['u64', 8],
});

/** Fixed part; the feature payload `data[]` follows at 8. */
export const vfio_device_feature = new CStruct('vfio_device_feature', 8, {
  argsz: ['u32', 0],
  flags: ['u32', 4],
  data: ['nested', 8],
});

export const vfio_device_feature_migration = new CStruct('vfio_device_feature_migration', 8, {
  flags: ['u64', 0],
});

export const vfio_device_feature_mig_state = new CStruct('vfio_device_feature_mig_state', 8, {
  device_state: ['u32', 0],
  data_fd: ['s32', 4],
});

export const vfio_device_feature_mig_data_size = new CStruct('vfio_device_feature_mig_data_size', 8, {
  stop_copy_length: ['u64', 0],
});

export const vfio_precopy_info = new CStruct('vfio_precopy_info', 24, {
  argsz: ['u32', 0],
  flags: ['u32', 4],
  initial_bytes: ['u64', 8],
  dirty_bytes: ['u64', 16],
});

export const vfio_iommu_type1_info = new CStruct('vfio_iommu_type1_info', 24, {
  argsz: ['u32', 0],
  flags: ['u32', 4],
  iova_pgsizes: ['u64', 8],
  cap_offset: ['u32', 16],
  pad: ['u32', 20],
});

export const vfio_iommu_type1_info_cap_migration = new CStruct('vfio_iommu_type1_info_cap_migration', 32, {
  header: ['nested', 0],
  flags: ['u32', 8],
  pgsize_bitmap: ['u64', 16],
  max_dirty_bitmap_size: ['u64', 24],
});
