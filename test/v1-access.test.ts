// Where a v1 region access lands (legacy/v1-access.ts), at its edges: the
// header takes one field at its native width, the window [dataOffset, size)
// anything inside it, and the rest is EINVAL with a message that says which
// rule was broken. Oracle: the struct vfio_device_migration_info offsets of
// the uAPI header (device_state u32 at 0, reserved u32 at 4, pending_bytes,
// data_offset, data_size u64 at 8, 16, 24), written out here.
import { describe, expect, it } from 'vitest';
import { classifyV1Access, writeV1Field } from '../legacy/v1-access.js';
import { fieldAt, HEADER_SIZE } from '../legacy/region-layout.js';

const HEADER: [number, number, string][] = [
  [0, 4, 'device_state'],
  [4, 4, 'reserved'],
  [8, 8, 'pending_bytes'],
  [16, 8, 'data_offset'],
  [24, 8, 'data_size'],
];

describe('classifyV1Access', () => {
  it.each(HEADER)('offset %i width %i is the field %s', (offset, width, field) => {
    expect(classifyV1Access(offset, width, 4096, 8192)).toEqual({ kind: 'field', field });
  });

  it('every other header access (a wrong width, a straddle, a misaligned start) is EINVAL naming offset and size', () => {
    for (let offset = 0; offset < HEADER_SIZE; offset++) {
      for (const width of [1, 2, 4, 8]) {
        if (HEADER.some(([o, w]) => o === offset && w === width)) continue;
        expect(() => classifyV1Access(offset, width, 4096, 8192)).toThrow(
          expect.objectContaining({
            code: 'EINVAL',
            message: `EINVAL: header access at ${offset} of ${width} bytes is not one field at its native width`,
          }),
        );
      }
    }
  });

  it('the window starts right at data_offset, even when that is the first byte after the header', () => {
    expect(classifyV1Access(HEADER_SIZE, 8, HEADER_SIZE, HEADER_SIZE + 64)).toEqual({ kind: 'window', start: 0, length: 8 });
    expect(classifyV1Access(4096 + 10, 6, 4096, 4096 + 16)).toEqual({ kind: 'window', start: 10, length: 6 });
    expect(classifyV1Access(4096 + 16, 0, 4096, 4096 + 16)).toEqual({ kind: 'window', start: 16, length: 0 });
  });

  it.each([
    [HEADER_SIZE, 8, '[32, 40)'], // the gap between header and window
    [4090, 8, '[4090, 4098)'], // straddles the window's start
    [8190, 4, '[8190, 8194)'], // runs past the end
    [8192, 1, '[8192, 8193)'], // starts at the end
  ])('offset %i length %i lies outside both: EINVAL naming the access %s and the window', (offset, length, access) => {
    expect(() => classifyV1Access(offset, length, 4096, 8192)).toThrow(
      expect.objectContaining({
        code: 'EINVAL',
        message: `EINVAL: access ${access} is outside the header and the data window [4096, 8192)`,
      }),
    );
  });

  it.each([
    [-4, 4],
    [-1, 1],
    [4096.5, 4],
    [Number.NaN, 4],
    [2 ** 53, 4],
    [0, -1],
    [4096, 1.5],
    [4096, Number.POSITIVE_INFINITY],
  ])('offset %d length %d is not an access at all: EINVAL "bad access" before any field or window rule', (offset, length) => {
    expect(() => classifyV1Access(offset, length, 4096, 8192)).toThrow(
      expect.objectContaining({ code: 'EINVAL', message: `EINVAL: bad access offset ${offset} length ${length}` }),
    );
  });
});

describe('fieldAt', () => {
  it('names a field only at its offset and width; anything else (negative, fractional, past the header) is undefined', () => {
    for (const [offset, width, field] of HEADER) expect(fieldAt(offset, width)).toBe(field);
    for (const offset of [-8, -4, 0.5, 8.5, HEADER_SIZE, 1e9, Number.NaN]) {
      for (const width of [4, 8]) expect(fieldAt(offset, width)).toBeUndefined();
    }
  });
});

describe('writeV1Field', () => {
  const writers = () => {
    const calls: string[] = [];
    return {
      calls,
      w: {
        deviceState: (v: number) => void calls.push(`device_state ${v}`),
        dataSize: (v: bigint) => void calls.push(`data_size ${v}`),
      },
    };
  };

  it('device_state and data_size go to their writers, little endian; a reserved write is ignored', () => {
    const { calls, w } = writers();
    void writeV1Field('device_state', Uint8Array.of(2, 0, 0, 0x80), w);
    void writeV1Field('data_size', Uint8Array.of(0, 1, 0, 0, 0, 0, 0, 0), w);
    void writeV1Field('reserved', Uint8Array.of(1, 2, 3, 4), w);
    expect(calls).toEqual(['device_state 2147483650', 'data_size 256']);
  });

  it.each(['pending_bytes', 'data_offset'] as const)('%s is read-only: EINVAL naming it, no writer called', (field) => {
    const { calls, w } = writers();
    expect(() => writeV1Field(field, new Uint8Array(8), w)).toThrow(
      expect.objectContaining({ code: 'EINVAL', message: `EINVAL: ${field} is read-only` }),
    );
    expect(calls).toEqual([]);
  });
});
