// Layout of a SimDevice's serialized state, the opaque byte stream both
// simulated drivers emit on their saving sessions and accept on their
// resuming sessions. Little-endian throughout.
//
//   header  32 bytes  u32 magic 'VSIM', u32 version, u64 size, u32 pageSize,
//                     u32 seed, u32 pageCount, u32 reserved (0)
//   record  8 bytes + page bytes   u32 pageIndex, u32 generation, then the page
//                     (pageSize bytes; the last page may be shorter). A page may
//                     appear more than once (re-sent after it was dirtied); the
//                     last record for a page wins.
//   trailer 32 bytes  u32 0xffffffff (end marker in the pageIndex slot), u32 0,
//                     u64 record count, u64 device step counter, u64 checksum
//
// The checksum (Checksum64) runs over every 32-bit word of the header, of each
// record's 8-byte prefix and of the first 24 trailer bytes. Page bytes are not
// hashed: each page is checked byte-for-byte against the generator for the
// (pageIndex, generation) that the checksum does cover, which protects them
// completely (and costs nothing extra).
import { MigrationError } from '../uapi/errors.js';

export const STATE_MAGIC = 0x4d495356; // bytes 'V' 'S' 'I' 'M'
export const STATE_VERSION = 1;
export const STATE_HEADER_BYTES = 32;
export const RECORD_HEADER_BYTES = 8;
export const STATE_TRAILER_BYTES = 32;
export const END_MARKER = 0xffffffff;

export interface StateHeader {
  magic: number;
  version: number;
  size: number;
  pageSize: number;
  seed: number;
  pageCount: number;
  reserved: number;
}

export interface StateTrailer {
  marker: number;
  reserved: number;
  records: number;
  steps: number;
  checksum: bigint;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function safe(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new MigrationError('EINVAL', `${what} ${value} out of range`);
  return Number(value);
}

export function writeHeader(into: Uint8Array, h: Omit<StateHeader, 'magic' | 'version' | 'reserved'>): void {
  const v = view(into);
  v.setUint32(0, STATE_MAGIC, true);
  v.setUint32(4, STATE_VERSION, true);
  v.setBigUint64(8, BigInt(h.size), true);
  v.setUint32(16, h.pageSize, true);
  v.setUint32(20, h.seed, true);
  v.setUint32(24, h.pageCount, true);
  v.setUint32(28, 0, true);
}

export function readHeader(from: Uint8Array): StateHeader {
  const v = view(from);
  return {
    magic: v.getUint32(0, true),
    version: v.getUint32(4, true),
    size: safe(v.getBigUint64(8, true), 'size'),
    pageSize: v.getUint32(16, true),
    seed: v.getUint32(20, true),
    pageCount: v.getUint32(24, true),
    reserved: v.getUint32(28, true),
  };
}

export function writeRecordHeader(into: Uint8Array, index: number, gen: number): void {
  const v = view(into);
  v.setUint32(0, index, true);
  v.setUint32(4, gen, true);
}

/** The trailer; the checksum covers the first 24 bytes, so compute it over those before writing it. */
export function writeTrailer(into: Uint8Array, records: number, steps: number, checksum: bigint): void {
  const v = view(into);
  v.setUint32(0, END_MARKER, true);
  v.setUint32(4, 0, true);
  v.setBigUint64(8, BigInt(records), true);
  v.setBigUint64(16, BigInt(steps), true);
  v.setBigUint64(24, checksum, true);
}

export function readTrailer(from: Uint8Array): StateTrailer {
  const v = view(from);
  return {
    marker: v.getUint32(0, true),
    reserved: v.getUint32(4, true),
    records: safe(v.getBigUint64(8, true), 'record count'),
    steps: safe(v.getBigUint64(16, true), 'step count'),
    checksum: v.getBigUint64(24, true),
  };
}

/** Feed `bytes` (length a multiple of 4, little-endian words) to a checksum. */
export function addWords(sum: { add(word: number): void }, bytes: Uint8Array): void {
  const v = view(bytes);
  for (let i = 0; i + 4 <= bytes.length; i += 4) sum.add(v.getUint32(i, true));
}
