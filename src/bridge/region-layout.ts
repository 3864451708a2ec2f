// Where the synthesized v1 migration region sits on the device fd, and what
// VFIO_DEVICE_GET_REGION_INFO says about it (the interposer answers that
// ioctl from these numbers):
//   index   = the device's own num_regions (QEMU 7.2 scans every index);
//   offset  = the first multiple of 2^40 at or past the end of the device's
//             highest real region (vfio-pci's index << 40 layout and any other);
//   size    = header page + window: header [0, 32), trapped gap [32, 4096),
//             data window [4096, size) — data_offset is page aligned so the
//             window can be mmapped.
import { LEGACY_OVER_V2_DATA_OFFSET } from '../../translate/legacy-region-over-v2.js';
import {
  VFIO_REGION_INFO_FLAG_CAPS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
} from '../uapi/constants.js';
import { NotBridgeable } from './device-source.js';
import type { RegisterAnswer } from './wire-protocol.js';

export const REGION_ALIGN = 1n << 40n;
/** pread/pwrite offsets are off_t: the region must end below 2^63. */
const OFF_T_LIMIT = 1n << 63n;

/** The REGISTER answer's description of the region (device-fd offset, size, window place and size, GET_REGION_INFO flags). */
export type RegionLayout = Omit<RegisterAnswer, 'bridged' | 'windowPath'>;

export function synthesizedRegion(numRegions: number, regionsEnd: bigint, windowSize: number, mmap: boolean): RegionLayout {
  const offset = ((regionsEnd + REGION_ALIGN - 1n) / REGION_ALIGN) * REGION_ALIGN;
  const windowOffset = BigInt(LEGACY_OVER_V2_DATA_OFFSET);
  const size = windowOffset + BigInt(windowSize);
  if (offset + size > OFF_T_LIMIT) {
    throw new NotBridgeable(
      'EOVERFLOW',
      `the device's regions end at 0x${regionsEnd.toString(16)}: no room for a migration region below 2^63`,
    );
  }
  const flags =
    VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_CAPS | (mmap ? VFIO_REGION_INFO_FLAG_MMAP : 0);
  return { index: numRegions, flags, offset, size, windowOffset, windowSize: BigInt(windowSize) };
}
