// Where a pread/pwrite on a v1 migration region lands. The header allows
// exactly one field at its native width and alignment (4 bytes at 0, 8 at
// 8/16/24; libvfio-user's migration_region_access_registers() does the
// same); the data window [dataOffset, size) takes any size. Everything
// else — straddling, the gap between header and window, past the end — is
// EINVAL, as a v1 driver "should return an error" (docs/PROTOCOL.md §1.2).
import { MigrationError } from '../src/uapi/errors.js';
import { FIELD, fieldAt, HEADER_SIZE, type FieldName } from './region-layout.js';

export type V1Access =
  { kind: 'field'; field: FieldName } | { kind: 'window'; start: number /* offset inside the window */; length: number };

export function classifyV1Access(offset: number, length: number, dataOffset: number, size: number): V1Access {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new MigrationError('EINVAL', `bad access offset ${offset} length ${length}`);
  }
  if (offset < HEADER_SIZE) {
    const field = fieldAt(offset, length);
    if (!field) throw new MigrationError('EINVAL', `header access at ${offset} of ${length} bytes is not one field at its native width`);
    return { kind: 'field', field };
  }
  if (offset >= dataOffset && offset + length <= size) return { kind: 'window', start: offset - dataOffset, length };
  throw new MigrationError(
    'EINVAL',
    `access [${offset}, ${offset + length}) is outside the header and the data window [${dataOffset}, ${size})`,
  );
}

/** The two writable header fields; everything else a v1 face does with a header write is fixed by the uAPI. */
export interface V1FieldWriters {
  deviceState(value: number): void | Promise<void>;
  dataSize(value: bigint): void | Promise<void>;
}

/** A header write: `reserved` ignored ("writes are ignored"), pending_bytes/data_offset read-only (EINVAL). */
export function writeV1Field(field: FieldName, data: Uint8Array, writers: V1FieldWriters): void | Promise<void> {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (field) {
    case 'device_state':
      return writers.deviceState(view.getUint32(0, true));
    case 'data_size':
      return writers.dataSize(view.getBigUint64(0, true));
    case 'reserved':
      return;
    case 'pending_bytes':
    case 'data_offset':
      throw new MigrationError('EINVAL', `${field} is read-only`);
  }
}

/** A header read: the field's value at its native width, little endian. */
export function putV1Field(field: FieldName, value: bigint, buf: Uint8Array): void {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (FIELD[field].width === 4) view.setUint32(0, Number(value), true);
  else view.setBigUint64(0, value, true);
}
