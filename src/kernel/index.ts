// The kernel backend: syscalls (koffi), opening VFIO devices, and the two
// contracts over a real kernel. Its test double (a fake kernel with mtty
// devices) lives in testing/, exported by the package's ./testing subpath only.
export * from './syscalls.js';
export { KoffiSyscalls, koffiSyscalls } from './koffi-syscalls.js';
export * from './cdev-abi.js';
export * from './vfio-device.js';
export { KernelMigrationDevice, KernelDataSession } from './kernel-migration-device.js';
export { KernelLegacyRegion } from './kernel-legacy-region.js';
