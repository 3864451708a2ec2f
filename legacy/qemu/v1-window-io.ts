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

export async function readV1Window(region: LegacyRegion, offset: number, buf: Uint8Array, mode: V1WindowAccess): Promise<void> {
  if (mode === 'mmap' || buf.length === 0) {
    if (buf.length) await region.readAt(offset, buf);
    return;
  }
  for (let done = 0; done < buf.length; ) {
    const n = v1PieceSize(offset + done, buf.length - done);
    await region.readAt(offset + done, buf.subarray(done, done + n));
    done += n;
  }
}

export async function writeV1Window(region: LegacyRegion, offset: number, data: Uint8Array, mode: V1WindowAccess): Promise<void> {
  if (mode === 'mmap' || data.length === 0) {
    if (data.length) await region.writeAt(offset, data);
    return;
  }
  for (let done = 0; done < data.length; ) {
    const n = v1PieceSize(offset + done, data.length - done);
    await region.writeAt(offset + done, data.subarray(done, done + n));
    done += n;
  }
}
