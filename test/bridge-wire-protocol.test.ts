// The bridge wire protocol codec: the byte layout of docs/bridge.md (checked
// against gcc's layout of the same C structs), every header and REGISTER rule,
// and frames cut correctly however the stream is split.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AnswerReader,
  BRIDGE_MAGIC,
  MAX_ACCESS_BYTES,
  ProtocolViolation,
  RequestReader,
  answerHeader,
  decodeRegisterAnswer,
  encodeAnswer,
  encodeRegisterAnswer,
  encodeRequest,
  registerAnswer,
  registerRequest,
  requestHeader,
  type Request,
} from '../src/bridge/wire-protocol.js';
import { runC } from './support/c-program.js';

const REG: Request = {
  op: 'register',
  version: 1,
  pid: 4242,
  fd: 17,
  numRegions: 9,
  regionsEnd: (8n << 40n) + 4096n,
  name: '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001',
};

function header(
  fields: Partial<{ magic: number; op: number; reserved: number; length: number; count: number; offset: bigint }>,
): Uint8Array {
  return requestHeader.encode({ magic: BRIDGE_MAGIC, op: 2, reserved: 0, length: 0, count: 4, offset: 0n, ...fields });
}

/** What a reader does with these bytes: the requests, then 'violation' or 'incomplete'/'done'. */
function readAll(bytes: Uint8Array, splits: number[] = []): (Request | string)[] {
  const reader = new RequestReader();
  const out: (Request | string)[] = [];
  let at = 0;
  try {
    for (const end of [...splits.filter((s) => s > 0 && s < bytes.length).sort((a, b) => a - b), bytes.length]) {
      reader.push(bytes.subarray(at, end));
      at = end;
      for (let r = reader.next(); r; r = reader.next()) out.push(r);
    }
  } catch (e) {
    if (e instanceof ProtocolViolation) return [...out, 'violation'];
    throw e;
  }
  return [...out, reader.buffered ? 'incomplete' : 'done'];
}

describe('layout', () => {
  it('matches the C structs of the protocol as gcc lays them out', () => {
    const out = runC(`
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
struct req { uint32_t magic; uint16_t op, reserved; uint32_t length, count; uint64_t offset; };
struct ans { uint32_t magic; int32_t result; uint32_t length, status; };
struct reg { uint32_t version; int32_t pid, fd; uint32_t num_regions; uint64_t regions_end; char name[64]; };
struct rega { uint32_t bridged, index, flags, reserved; uint64_t offset, size, window_offset, window_size; char path[256]; };
int main(void) {
  printf("%zu %zu %zu %zu\\n", sizeof(struct req), sizeof(struct ans), sizeof(struct reg), sizeof(struct rega));
  printf("%zu %zu %zu %zu %zu\\n", offsetof(struct req, op), offsetof(struct req, length), offsetof(struct req, count), offsetof(struct req, offset), offsetof(struct ans, status));
  printf("%zu %zu %zu\\n", offsetof(struct reg, regions_end), offsetof(struct reg, name), offsetof(struct rega, path));
  return 0;
}`);
    const r = requestHeader.layout().offsets;
    const g = registerRequest.layout().offsets;
    const a = registerAnswer.layout().offsets;
    expect(out.trim().split('\n')).toEqual([
      `${requestHeader.size} ${answerHeader.size} ${registerRequest.size} ${registerAnswer.size}`,
      `${r.op} ${r.length} ${r.count} ${r.offset} ${answerHeader.layout().offsets.status}`,
      `${g.regions_end} ${g.name} ${a.path}`,
    ]);
    expect([requestHeader.size, answerHeader.size, registerRequest.size, registerAnswer.size]).toEqual([24, 16, 88, 304]);
  });

  it('encodes a READ exactly as the table says', () => {
    const bytes = encodeRequest({ op: 'read', offset: 0x1122334455667788n, count: 8 });
    expect(Buffer.from(bytes).toString('hex')).toBe('564d4231' + '0200' + '0000' + '00000000' + '08000000' + '8877665544332211');
    expect(Buffer.from(bytes.subarray(0, 4)).toString('latin1')).toBe('VMB1');
  });
});

describe('requests', () => {
  it('round-trip every op', () => {
    const reqs: Request[] = [
      REG,
      { op: 'read', offset: 24n, count: 8 },
      { op: 'write', offset: 0n, data: new Uint8Array([3, 0, 0, 0]) },
      { op: 'reset' },
    ];
    const bytes = Buffer.concat(reqs.map((r) => encodeRequest(r)));
    expect(readAll(bytes)).toEqual([...reqs, 'done']);
  });

  it('cuts the same frames out of any split of the stream', () => {
    const request = fc.oneof(
      fc.record({
        op: fc.constant('read' as const),
        offset: fc.bigInt(0n, (1n << 64n) - 1n),
        count: fc.integer({ min: 1, max: MAX_ACCESS_BYTES }),
      }),
      fc.record({
        op: fc.constant('write' as const),
        offset: fc.bigInt(0n, (1n << 64n) - 1n),
        data: fc.uint8Array({ minLength: 1, maxLength: 64 }),
      }),
      fc.constant({ op: 'reset' as const }),
      fc.constant(REG),
    );
    fc.assert(
      fc.property(fc.array(request, { maxLength: 8 }), fc.array(fc.nat(2000)), (reqs, splits) => {
        const bytes = Buffer.concat(reqs.map((r) => encodeRequest(r)));
        expect(readAll(bytes, splits)).toEqual([...reqs, 'done']);
      }),
      { seed: 0x1b1d, numRuns: 300 },
    );
  });

  it('waits for a partial frame', () => {
    const bytes = encodeRequest({ op: 'write', offset: 8n, data: new Uint8Array(8) });
    expect(readAll(bytes.subarray(0, 10))).toEqual(['incomplete']);
    expect(readAll(bytes.subarray(0, 31))).toEqual(['incomplete']);
  });

  it.each([
    ['bad magic', { magic: 0x31424d57 }],
    ['op 0', { op: 0 }],
    ['op 5', { op: 5 }],
    ['op 0xffff', { op: 0xffff }],
    ['reserved set', { reserved: 1 }],
    ['READ count 0', { count: 0 }],
    ['READ count 4097', { count: 4097 }],
    ['READ with payload', { length: 4 }],
    ['WRITE length 0', { op: 3, count: 0, length: 0 }],
    ['WRITE length 4097', { op: 3, count: 0, length: 4097 }],
    ['WRITE with count', { op: 3, count: 4, length: 4 }],
    ['WRITE length 2^32-1', { op: 3, count: 0, length: 0xffffffff }],
    ['RESET with length', { op: 4, count: 0, length: 1 }],
    ['RESET with count', { op: 4, count: 1 }],
    ['RESET with offset', { op: 4, count: 0, offset: 1n }],
    ['REGISTER length 87', { op: 1, count: 0, length: 87 }],
    ['REGISTER length 89', { op: 1, count: 0, length: 89 }],
    ['REGISTER with count', { op: 1, count: 1, length: 88 }],
    ['REGISTER with offset', { op: 1, count: 0, length: 88, offset: 8n }],
  ])('refuses a header with %s as soon as the header is in', (_name, fields) => {
    // The payload is never waited for: the 24 header bytes alone are refused.
    expect(readAll(header(fields))).toEqual(['violation']);
  });

  const register = (patch: (payload: DataView, bytes: Uint8Array) => void): Uint8Array => {
    const bytes = encodeRequest(REG);
    patch(new DataView(bytes.buffer, 24), bytes.subarray(24));
    return bytes;
  };

  it.each([
    ['version 2', (v: DataView) => v.setUint32(0, 2, true)],
    ['version 0', (v: DataView) => v.setUint32(0, 0, true)],
    ['pid 0', (v: DataView) => v.setInt32(4, 0, true)],
    ['pid -1', (v: DataView) => v.setInt32(4, -1, true)],
    ['fd -1', (v: DataView) => v.setInt32(8, -1, true)],
    ['num_regions 2^32-1', (v: DataView) => v.setUint32(12, 0xffffffff, true)],
    [
      'bytes after the name',
      (_v: DataView, b: Uint8Array) => {
        b[24 + 60] = 0x41;
      },
    ],
    [
      'a newline in the name',
      (_v: DataView, b: Uint8Array) => {
        b[24 + 3] = 0x0a;
      },
    ],
    [
      'invalid UTF-8 in the name',
      (_v: DataView, b: Uint8Array) => {
        b[24 + 3] = 0xff;
      },
    ],
  ])('refuses a REGISTER with %s', (_name, patch) => {
    expect(readAll(register(patch))).toEqual(['violation']);
  });

  it('accepts a 64-byte name that fills the field, and an empty one', () => {
    const full = { ...REG, name: 'x'.repeat(64) } as Request;
    expect(readAll(encodeRequest(full))).toEqual([full, 'done']);
    const empty = { ...REG, name: '' } as Request;
    expect(readAll(encodeRequest(empty))).toEqual([empty, 'done']);
    expect(() => encodeRequest({ ...REG, name: 'x'.repeat(65) })).toThrow(/EINVAL/);
  });
});

describe('answers', () => {
  it('round-trip, with the REGISTER answer payload', () => {
    const info = {
      bridged: true,
      index: 9,
      flags: 0xf,
      offset: 9n << 40n,
      size: 4096n + 65536n,
      windowOffset: 4096n,
      windowSize: 65536n,
      windowPath: '/run/user/0/vfio-mig-bridge-x/window-1',
    };
    const bytes = Buffer.concat([
      encodeAnswer({ result: 0, status: 0, payload: encodeRegisterAnswer(info) }),
      encodeAnswer({ result: -22, status: 1, payload: new Uint8Array(0) }),
      encodeAnswer({ result: 8, status: 0, payload: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) }),
    ]);
    const reader = new AnswerReader();
    for (const b of bytes) reader.push(new Uint8Array([b])); // one byte at a time
    const first = reader.next()!;
    expect([first.result, first.payload.length]).toEqual([0, 304]);
    expect(decodeRegisterAnswer(first.payload)).toEqual(info);
    expect(reader.next()).toEqual({ result: -22, status: 1, payload: new Uint8Array(0) });
    expect(reader.next()).toEqual({ result: 8, status: 0, payload: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) });
    expect(reader.next()).toBeUndefined();
  });

  it('keeps the window path NUL-terminated: 255 bytes at most', () => {
    const info = { bridged: true, index: 0, flags: 0, offset: 0n, size: 0n, windowOffset: 0n, windowSize: 0n, windowPath: 'p'.repeat(255) };
    expect(decodeRegisterAnswer(encodeRegisterAnswer(info)).windowPath).toBe(info.windowPath);
    expect(() => encodeRegisterAnswer({ ...info, windowPath: 'p'.repeat(256) })).toThrow(/EINVAL/);
  });
});
