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
