import { describe, expect, it } from 'vitest';
import {
  decodeRegionInfo,
  encodeRegionInfo,
  MigrationError,
  parseCapChain,
  vfio_device_feature_mig_state,
  vfio_info_cap_header,
  vfio_precopy_info,
  VFIO_REGION_INFO_FLAG_CAPS,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_TYPE_MIGRATION_DEPRECATED,
} from '../index.js';

describe('struct codecs', () => {
  it('round-trip little-endian fields, signed data_fd included', () => {
    const buf = vfio_device_feature_mig_state.encode({ device_state: 3, data_fd: -1 });
    expect([...buf]).toEqual([3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    expect(vfio_device_feature_mig_state.decode(buf)).toEqual({ device_state: 3, data_fd: -1 });
    const info = vfio_precopy_info.decode(vfio_precopy_info.encode({ argsz: 24, initial_bytes: 2n ** 40n, dirty_bytes: 7n }));
    expect(info).toEqual({ argsz: 24, flags: 0, initial_bytes: 2n ** 40n, dirty_bytes: 7n });
  });

  it('short buffers are EINVAL, not a RangeError', () => {
    expect(() => vfio_precopy_info.decode(new Uint8Array(23))).toThrow(MigrationError);
    expect(() => vfio_precopy_info.decode(new Uint8Array(24), 1)).toThrow(/EINVAL/);
  });
});

describe('region info with a capability chain', () => {
  const region = {
    index: 9,
    flags: VFIO_REGION_INFO_FLAG_READ,
    size: 0x2000n,
    offset: 9n << 40n,
    type: { type: VFIO_REGION_TYPE_MIGRATION_DEPRECATED, subtype: 1 },
    sparseAreas: [{ offset: 0x1000n, size: 0x1000n }],
  };

  it('a 32-byte buffer gets argsz 80 and no chain, like the kernel (QEMU then retries)', () => {
    const small = decodeRegionInfo(encodeRegionInfo(region, 32));
    expect(small.argsz).toBe(32 + 16 + 32);
    expect(small.type).toBeUndefined();
    expect(small.flags & VFIO_REGION_INFO_FLAG_CAPS).toBeTruthy();
  });

  it('a big enough buffer carries type and sparse-mmap capabilities', () => {
    const full = decodeRegionInfo(encodeRegionInfo(region, 80));
    expect(full).toMatchObject({ index: 9, size: 0x2000n, offset: 9n << 40n, type: region.type, sparseAreas: region.sparseAreas });
  });

  it('a looping chain is EINVAL', () => {
    const buf = encodeRegionInfo(region, 80);
    vfio_info_cap_header.encode({ next: 32 }, buf, 48); // second cap points back at the first
    expect(() => parseCapChain(buf, 32)).toThrow(/loops/);
  });
});
