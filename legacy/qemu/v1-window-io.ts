// Moving bytes through a v1 region's data window the two ways QEMU 7.2 does.
// 'pieces': vfio_mig_rw() — naturally aligned pread/pwrite of 8 bytes when
// count >= 8 and the offset is 8-aligned, else 4, else 2, else 1.
// 'mmap': the sparse-mmap path — one memcpy over the mapped window, here one
// access of the whole range.
import type { LegacyRegion } from '../contracts.js';

export type V1WindowAccess = 'pieces' | 'mmap';

/** The piece size vfio_mig_rw() uses at region offset `off` with `count` bytes left. */
export function v1PieceSize(off: number, count: number): number {
  if (count >= 8 && off % 8 === 0) return 8;
  if (count >= 4 && off % 4 === 0) return 4;
  if (count >= 2 && off % 2 === 0) return 2;
  return 1;
}

export function readV1Window(region: LegacyRegion, offset: number, buf: Uint8Array, mode: V1WindowAccess): Promise<void> {
  return inPieces(offset, buf, mode, (at, piece) => region.readAt(at, piece));
}

export function writeV1Window(region: LegacyRegion, offset: number, data: Uint8Array, mode: V1WindowAccess): Promise<void> {
  return inPieces(offset, data, mode, (at, piece) => region.writeAt(at, piece));
}

/** `bytes` at region offset `offset` as one access ('mmap') or vfio_mig_rw's pieces; nothing for no bytes. */
async function inPieces(
  offset: number,
  bytes: Uint8Array,
  mode: V1WindowAccess,
  access: (at: number, piece: Uint8Array) => Promise<void>,
): Promise<void> {
  if (bytes.length === 0) return;
  if (mode === 'mmap') return access(offset, bytes);
  for (let done = 0; done < bytes.length;) {
    const n = v1PieceSize(offset + done, bytes.length - done);
    await access(offset + done, bytes.subarray(done, done + n));
    done += n;
  }
}
