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
// Real kernel backend (src/kernel): syscalls via koffi, VFIO device opening,
// KernelMigrationDevice (v2 over ioctl) and KernelLegacyRegion (v1 over pread/pwrite).
// Its test double, a fake kernel, is exported by 'vfio-mig-shim/testing' (testing.ts), not here.
export {
  KoffiSyscalls,
  koffiSyscalls,
  VfioDevice,
  openVfioDevice,
  openGroupDevice,
  openCdevDevice,
  resolveSysfsDevice,
  getDeviceInfo,
  getRegionInfo,
  VFIO_CONTAINER_PATH,
  VFIO_NOIOMMU_IOMMU,
  IOMMUFD_PATH,
  KernelMigrationDevice,
  KernelDataSession,
  KernelLegacyRegion,
  syscallError,
  ioctlName,
  O_RDONLY,
  O_WRONLY,
  O_RDWR,
  O_CLOEXEC,
  PROT_READ,
  PROT_WRITE,
  MAP_SHARED,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
  IOMMU_IOAS_ALLOC,
  IOMMU_DESTROY,
  vfio_device_bind_iommufd,
  vfio_device_attach_iommufd_pt,
  iommu_ioas_alloc,
  iommu_destroy,
} from './src/kernel/index.js';
export type { Syscalls, Mapping, IoctlArg, DeviceInfo, DeviceSpec } from './src/kernel/index.js';
// Simulated hardware and the kernel-faithful v2 driver (src/sim), the v2 client and the migration file format (src/v2).
export { SimDevice } from './src/sim/sim-device.js';
export type { SimDeviceOptions } from './src/sim/sim-device.js';
export { SimStateSaver } from './src/sim/state-saver.js';
export { SimStateLoader } from './src/sim/state-loader.js';
export { StateGeometry } from './src/sim/state-geometry.js';
export { STATE_MAGIC, STATE_VERSION, STATE_HEADER_BYTES, RECORD_HEADER_BYTES, STATE_TRAILER_BYTES } from './src/sim/state-format.js';
export { SimV2Driver } from './src/sim/sim-v2-driver.js';
export type { SimV2DriverOptions } from './src/sim/sim-v2-driver.js';
export { SimV2Session } from './src/sim/sim-v2-session.js';
export { FaultInjector } from './src/sim/fault-injector.js';
export { FaultySaver } from './src/sim/faulty-saver.js';
export type { StreamFaults } from './src/sim/fault-injector.js';
export type { FaultPlan, ArcFault, IoFault } from './src/sim/faults.js';
export type { StateSaver, StateLoader } from './src/sim/state-stream.js';
export { requiredArcs } from './src/v2/required-arcs.js';
export {
  VfioMigFlag,
  MIG_STREAM_MAGIC,
  MIG_STREAM_DATA_HEADER_BYTES,
  MigStreamDecoder,
  encodeStreamStart,
  encodeStreamEnd,
  encodeMarker,
  encodeDataHeader,
} from './legacy/qemu/stream-format.js';
export type { MigStreamEvent } from './legacy/qemu/stream-format.js';
export { MigStreamWriter } from './legacy/qemu/stream-writer.js';
export { readMigStream } from './legacy/qemu/stream-reader.js';
export { QemuMigrationState } from './legacy/qemu/qemu-migration-state.js';
export { saveV2, loadV2, VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE } from './legacy/qemu/v2-client.js';
export type {
  SaveV2Options,
  SaveV2Result,
  LoadV2Options,
  LoadV2Result,
  MigrationProgress,
  MigrationPhase,
} from './legacy/qemu/v2-client.js';
// The device rule (a left-over state is reset, never SET) and what a failed client did to the device.
export { takeOver, refuseForeignResume, KEPT_AT_TAKEOVER } from './src/v2/takeover.js';
export type { Takeover, TakeoverIo } from './src/v2/takeover.js';
export { recoveryOf } from './legacy/qemu/failure-recovery.js';
export type { DeviceRecovery } from './legacy/qemu/failure-recovery.js';
// v1 protocol (legacy/): transition policies, region access rules, the reference v1 region driver, the v1 client (QEMU 7.2).
export { V1_POLICIES, v1AllowedTargets, v1TransitionAllowed, parseV1Policy } from './legacy/v1-transitions.js';
export type { V1Policy } from './legacy/v1-transitions.js';
export { classifyV1Access } from './legacy/v1-access.js';
export type { V1Access } from './legacy/v1-access.js';
export { readDeviceState, writeDeviceState, readU64Field, writeU64Field } from './legacy/v1-registers.js';
export type { V1U64Field } from './legacy/v1-registers.js';
export { v1PieceSize, readV1Window, writeV1Window } from './legacy/qemu/v1-window-io.js';
export type { V1WindowAccess } from './legacy/qemu/v1-window-io.js';
export { SimV1Region, SIM_V1_DATA_OFFSET, SIM_V1_DEFAULT_WINDOW } from './legacy/sim-v1-region.js';
export type { SimV1RegionOptions, SimV1RegionSnapshot } from './legacy/sim-v1-region.js';
export {
  V1FatalError,
  isV1Fatal,
  QEMU72_SET_STATE,
  v1SetState,
  v1VmStart,
  v1VmStop,
  v1MigrationFailed,
  saveV1,
  loadV1,
} from './legacy/qemu/v1-client.js';
export type { SaveV1Options, SaveV1Result, LoadV1Options, LoadV1Result } from './legacy/qemu/v1-client.js';
// The translators (translate/): state maps, LegacyRegionOverV2 (v1 face over a v2 device),
// V2DeviceOverLegacy (v2 face over a v1 region), and the runnable differential comparison.
export { v1ToV2State, v2ToV1State } from './translate/state-map.js';
export { LegacyRegionOverV2, LEGACY_OVER_V2_DATA_OFFSET, LEGACY_OVER_V2_DEFAULT_WINDOW } from './translate/legacy-region-over-v2.js';
export type { LegacyRegionOverV2Options, LegacyRegionOverV2Snapshot, ErrorRecovery } from './translate/legacy-region-over-v2.js';
export { V2DeviceOverLegacy } from './translate/v2-device-over-legacy.js';
export type { V2DeviceOverLegacyOptions, V2DeviceOverLegacySnapshot } from './translate/v2-device-over-legacy.js';
export { retryTransient, TRANSIENT_RETRIES } from './translate/retry.js';
/** asMigrationError (exported with the errors, above) under the name the translators first exported it by. */
export { asMigrationError as toMigrationError } from './src/uapi/errors.js';
export { runDifferential, DIFFERENTIAL_PAIRINGS, DEFAULT_DIFF_SEED } from './translate/differential/run-differential.js';
export type {
  DifferentialOptions,
  DifferentialSummary,
  DifferentialPairing,
  DifferentialPairingInfo,
} from './translate/differential/run-differential.js';
