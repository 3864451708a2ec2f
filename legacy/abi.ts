// The one table of kernel names -> numbers and struct layouts, v1 and v2.
// test/abi compiles a C program against the real header and compares each entry.
import * as ioctls from '../src/uapi/ioctl.js';
import * as constants from '../src/uapi/constants.js';
import * as structs from '../src/uapi/structs.js';
import { CStruct, type StructLayout } from '../src/uapi/struct.js';
import {
  VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED,
  VFIO_REGION_TYPE_MIGRATION_DEPRECATED,
  vfio_device_migration_info,
} from './region-layout.js';
import { V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, V1_STOP } from './v1-state.js';

function numbersOf(mod: Record<string, unknown>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(mod)) if (/^VFIO_/.test(k) && typeof v === 'number') out[k] = v;
  return out;
}

export const uapi: Readonly<Record<string, number>> = Object.freeze({
  ...numbersOf(ioctls),
  ...numbersOf(constants),
  VFIO_REGION_TYPE_MIGRATION_DEPRECATED,
  VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED,
  VFIO_DEVICE_STATE_V1_STOP: V1_STOP,
  VFIO_DEVICE_STATE_V1_RUNNING: V1_RUNNING,
  VFIO_DEVICE_STATE_V1_SAVING: V1_SAVING,
  VFIO_DEVICE_STATE_V1_RESUMING: V1_RESUMING,
  VFIO_DEVICE_STATE_MASK: V1_MASK,
});

const allStructs: { name: string; layout(): StructLayout }[] = [
  ...Object.values(structs).filter((s: unknown) => s instanceof CStruct),
  vfio_device_migration_info,
];

export const structLayouts: Readonly<Record<string, StructLayout>> = Object.freeze(
  Object.fromEntries(allStructs.map((s) => [s.name, s.layout()])),
);
