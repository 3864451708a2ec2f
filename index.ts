// Public API of vfio-mig-shim: `import { ... } from 'vfio-mig-shim'`.
export * from './src/uapi/errors.js';
export * from './src/uapi/ioctl.js';
export * from './src/uapi/constants.js';
export * from './src/uapi/structs.js';
export { CStruct } from './src/uapi/struct.js';
export type { StructLayout, FieldType, FieldMap, Decoded } from './src/uapi/struct.js';
export * from './src/uapi/region-info.js';
export * from './src/v2/states.js';
export * from './src/v2/fsm.js';
export type * from './src/v2/contracts.js';
export { SerialQueue } from './src/v2/serial.js';
export * from './legacy/v1-state.js';
export * from './legacy/region-layout.js';
export type * from './legacy/contracts.js';
export { uapi, structLayouts } from './legacy/abi.js';
// Real kernel backend (src/kernel): syscalls via koffi or an in-memory fake, VFIO device opening,
// KernelMigrationDevice (v2 over ioctl) and KernelLegacyRegion (v1 over pread/pwrite).
export {
  KoffiSyscalls, koffiSyscalls, FakeSyscalls, FakeDevice, MttyModel, MttyMigrationFile, V1RegionModel,
  MTTY_MAGIC, MTTY_HEADER_SIZE, MTTY_PORT_SIZE, UART_SCR, VfioDevice, openVfioDevice, openGroupDevice,
  openCdevDevice, resolveSysfsDevice, getDeviceInfo, getRegionInfo, VFIO_CONTAINER_PATH, IOMMUFD_PATH,
  KernelMigrationDevice, KernelDataSession, KernelLegacyRegion, syscallError, ioctlName,
  O_RDONLY, O_WRONLY, O_RDWR, O_CLOEXEC, PROT_READ, PROT_WRITE, MAP_SHARED,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_DETACH_IOMMUFD_PT, IOMMU_IOAS_ALLOC, IOMMU_DESTROY,
  vfio_device_bind_iommufd, vfio_device_attach_iommufd_pt, iommu_ioas_alloc, iommu_destroy,
} from './src/kernel/index.js';
export type {
  Syscalls, Mapping, IoctlArg, FakeKernelOptions, FakeDeviceOptions, FakeCall, FakeFault, FakeFileKind,
  DeviceInfo, DeviceSpec,
} from './src/kernel/index.js';
