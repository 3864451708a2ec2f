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

type HeaderFields = typeof vfio_device_migration_info.fields;
export type FieldName = keyof HeaderFields;

const WIDTH_OF = { u32: 4, u64: 8 } as const;

/**
 * Header field offsets and their only legal access width, read off the
 * struct above (one description: the gcc check of its offsets covers these).
 */
export const FIELD = Object.fromEntries(
  Object.entries(vfio_device_migration_info.fields).map(([name, [type, offset]]) => [name, { offset, width: WIDTH_OF[type] }]),
) as { readonly [K in FieldName]: { readonly offset: HeaderFields[K][1]; readonly width: (typeof WIDTH_OF)[HeaderFields[K][0]] } };

/** The field starting at each header offset (a table: fieldAt runs on every register access). */
const FIELD_AT_OFFSET: (FieldName | undefined)[] = Array.from({ length: HEADER_SIZE }, (_, off) =>
  (Object.keys(FIELD) as FieldName[]).find((name) => FIELD[name].offset === off),
);

/** Which header field an access hits, or undefined when it is not exactly one field. */
export function fieldAt(offset: number, width: number): FieldName | undefined {
  // A negative, fractional or too large offset indexes nothing: undefined.
  const name = FIELD_AT_OFFSET[offset];
  return name !== undefined && FIELD[name].width === width ? name : undefined;
}
