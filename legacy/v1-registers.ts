// Header field accesses on a LegacyRegion, one pread/pwrite each at the
// field's native width and offset, little-endian (vfio_mig_read/write in
// QEMU 7.2 hw/vfio/migration.c: one access per field). Each access gets its
// own small buffer (a caller may have several in flight on different
// regions); the value is assembled from its bytes, without a DataView.
import { FIELD } from './region-layout.js';
import type { LegacyRegion } from './contracts.js';

export type V1U64Field = 'pending_bytes' | 'data_offset' | 'data_size';

export async function readDeviceState(region: LegacyRegion): Promise<number> {
  const b = new Uint8Array(4);
  await region.readAt(FIELD.device_state.offset, b);
  return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
}

export async function writeDeviceState(region: LegacyRegion, state: number): Promise<void> {
  const b = new Uint8Array(4);
  for (let i = 0; i < 4; i++) b[i] = state >>> (8 * i); // little endian; the array keeps the low 8 bits
  await region.writeAt(FIELD.device_state.offset, b);
}

export async function readU64Field(region: LegacyRegion, field: V1U64Field): Promise<bigint> {
  const b = new Uint8Array(8);
  await region.readAt(FIELD[field].offset, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}

export async function writeU64Field(region: LegacyRegion, field: V1U64Field, value: bigint): Promise<void> {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  await region.writeAt(FIELD[field].offset, b);
}
