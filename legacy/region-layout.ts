// struct vfio_device_migration_info: the trapped header at offset 0 of a v1
// migration region (type 3 / subtype 1). Fields are accessed at native width
// and alignment only.
import { CStruct } from '../src/uapi/struct.js';

export const VFIO_REGION_TYPE_MIGRATION_DEPRECATED = 3;
export const VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED = 1;

export const vfio_device_migration_info = new CStruct('vfio_device_migration_info', 32, {
  device_state: ['u32', 0],
  reserved: ['u32', 4],
  pending_bytes: ['u64', 8],
  data_offset: ['u64', 16],
  data_size: ['u64', 24],
});

export const HEADER_SIZE = vfio_device_migration_info.size;

/** Header field offsets and their only legal access width. */
export const FIELD = {
  device_state: { offset: 0, width: 4 },
  reserved: { offset: 4, width: 4 },
  pending_bytes: { offset: 8, width: 8 },
  data_offset: { offset: 16, width: 8 },
  data_size: { offset: 24, width: 8 },
} as const;

export type FieldName = keyof typeof FIELD;

/** The field starting at each header offset (a table: fieldAt runs on every register access). */
const FIELD_AT_OFFSET: (FieldName | undefined)[] = Array.from({ length: HEADER_SIZE }, (_, off) =>
  (Object.keys(FIELD) as FieldName[]).find((name) => FIELD[name].offset === off),
);

/** Which header field an access hits, or undefined when it is not exactly one field. */
export function fieldAt(offset: number, width: number): FieldName | undefined {
  const name = Number.isInteger(offset) && offset >= 0 ? FIELD_AT_OFFSET[offset] : undefined;
  return name !== undefined && FIELD[name].width === width ? name : undefined;
}
