// Test doubles: `import { ... } from 'vfio-mig-shim/testing'`. Not part of
// the product (the package root, index.ts, exports none of this): they let
// you test code that uses the kernel backend with no VFIO device at all.
// FakeSyscalls stands in for the Syscalls the kernel classes take, with an
// in-memory /dev/vfio, sysfs and mtty devices behind it (src/kernel/testing/).
export { FakeSyscalls } from './src/kernel/testing/fake-syscalls.js';
export { FakeDevice } from './src/kernel/testing/fake-device.js';
export type { FakeKernelOptions, FakeDeviceOptions, FakeCall, FakeFault, FakeFileKind } from './src/kernel/testing/fake-kernel-options.js';
export {
  FakeKernelOops,
  MttyModel,
  MttyMigrationFile,
  MTTY_MAGIC,
  MTTY_HEADER_SIZE,
  MTTY_PORT_SIZE,
  UART_SCR,
} from './src/kernel/testing/mtty-model.js';
export { V1RegionModel } from './src/kernel/testing/v1-region-model.js';
