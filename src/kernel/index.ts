// The kernel backend: syscalls (koffi or fake), opening VFIO devices, and the
// two contracts over a real kernel.
export * from './syscalls.js';
export { KoffiSyscalls, koffiSyscalls } from './koffi-syscalls.js';
export * from './fake-syscalls.js';
export {
  FakeKernelOops, MttyModel, MttyMigrationFile, V1RegionModel, MTTY_MAGIC, MTTY_HEADER_SIZE, MTTY_PORT_SIZE, UART_SCR,
} from './fake-mtty.js';
export * from './cdev-abi.js';
export * from './vfio-device.js';
export { KernelMigrationDevice, KernelDataSession } from './kernel-migration-device.js';
export { KernelLegacyRegion } from './kernel-legacy-region.js';
