// Where a pread/pwrite on a v1 migration region lands. The header allows
// exactly one field at its native width and alignment (4 bytes at 0, 8 at
// 8/16/24; libvfio-user's migration_region_access_registers() does the
// same); the data window [dataOffset, size) takes any size. Everything
// else — straddling, the gap between header and window, past the end — is
// EINVAL, as a v1 driver "should return an error" (SPEC §1.2).
import { MigrationError } from '../src/uapi/errors.js';
import { fieldAt, HEADER_SIZE, type FieldName } from './region-layout.js';

export type V1Access =
  | { kind: 'field'; field: FieldName }
  | { kind: 'window'; start: number /* offset inside the window */; length: number };

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
  throw new MigrationError('EINVAL', `access [${offset}, ${offset + length}) is outside the header and the data window [${dataOffset}, ${size})`);
}
