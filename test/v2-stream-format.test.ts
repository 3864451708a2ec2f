// The migration file format (legacy/qemu/stream-format.ts): the bytes are checked
// against hand-written big-endian words (not against the encoder), decoding is
// independent of how the input is cut, and every malformation is refused.
import fc from 'fast-check';
import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MigrationError } from '../src/uapi/errors.js';
import {
  encodeDataHeader,
  encodeMarker,
  encodeStreamEnd,
  encodeStreamStart,
  MigStreamDecoder,
  type MigStreamEvent,
  VfioMigFlag,
} from '../legacy/qemu/stream-format.js';
import { readMigStream } from '../legacy/qemu/stream-reader.js';
import { MigStreamWriter } from '../legacy/qemu/stream-writer.js';
import { errnoOf } from './support/errno.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

/** A file with these data records, one section per inner array. */
function file(sections: Uint8Array[][]): Uint8Array {
  const parts: Uint8Array[] = [encodeStreamStart()];
  for (const records of sections) {
    for (const r of records) parts.push(encodeDataHeader(r.length), r);
    parts.push(encodeMarker(VfioMigFlag.END_OF_STATE));
  }
  parts.push(encodeStreamEnd());
  return concat(...parts);
}

/** Decode `bytes` cut at `cuts`; returns the concatenated data and the event kinds. */
function decode(bytes: Uint8Array, cuts: number[] = []): { data: string; kinds: string[] } {
  const d = new MigStreamDecoder();
  const data: Buffer[] = [];
  const kinds: string[] = [];
  const points = [0, ...[...new Set(cuts)].filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length];
  for (let i = 0; i + 1 < points.length; i++) {
    for (const e of d.push(bytes.subarray(points[i], points[i + 1]))) {
      if (e.kind === 'data') data.push(Buffer.from(e.bytes));
      else kinds.push(e.kind);
    }
  }
  d.end();
  return { data: Buffer.concat(data).toString('hex'), kinds };
}

describe('encoding: exact bytes', () => {
  it('start, data header, end are the QEMU markers as big-endian u64', () => {
    expect(hex(encodeStreamStart())).toBe('5646494f4d494731' + 'ffffffffef100003' + 'ffffffffef100001');
    expect(hex(encodeDataHeader(0x0102))).toBe('ffffffffef100004' + '0000000000000102');
    expect(hex(encodeStreamEnd())).toBe('ffffffffef100002' + 'ffffffffef100001');
    expect(hex(encodeMarker(VfioMigFlag.DEV_INIT_DATA_SENT))).toBe('ffffffffef100005');
  });

  it('a small file, word by word', () => {
    const f = file([[Uint8Array.of(0xaa, 0xbb, 0xcc)], []]);
    expect(hex(f)).toBe(
      '5646494f4d494731' +
        'ffffffffef100003' +
        'ffffffffef100001' +
        'ffffffffef100004' +
        '0000000000000003' +
        'aabbcc' +
        'ffffffffef100001' +
        'ffffffffef100001' +
        'ffffffffef100002' +
        'ffffffffef100001',
    );
  });

  it('refuses a negative or fractional record size', () => {
    expect(errnoOf(() => encodeDataHeader(-1))).toBe('EINVAL');
    expect(errnoOf(() => encodeDataHeader(1.5))).toBe('EINVAL');
  });
});

describe('decoding', () => {
  it('yields setup, data, section ends and completion in order', () => {
    const f = file([[Uint8Array.of(1, 2), Uint8Array.of(3)], [Uint8Array.of(4)]]);
    expect(decode(f)).toEqual({ data: '01020304', kinds: ['setup', 'end-of-state', 'end-of-state', 'end-of-state', 'complete'] });
  });

  it('accepts size-0 records (v1 QEMU writes them) and DEV_INIT_DATA_SENT as a section end', () => {
    const f = concat(
      encodeStreamStart(),
      encodeDataHeader(0),
      encodeDataHeader(2),
      Uint8Array.of(9, 8),
      encodeMarker(VfioMigFlag.DEV_INIT_DATA_SENT),
      encodeStreamEnd(),
    );
    expect(decode(f)).toEqual({ data: '0908', kinds: ['setup', 'end-of-state', 'init-data-sent', 'complete'] });
  });

  it('any segmentation of any file gives the same data and events (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 4 }), { maxLength: 4 }),
        fc.array(fc.nat(600), { maxLength: 30 }),
        (sections, cuts) => {
          const f = file(sections);
          const whole = decode(f);
          expect(whole.data).toBe(hex(concat(...sections.flat())));
          expect(decode(f, cuts)).toEqual(whole);
        },
      ),
      { seed: 0x5eed, numRuns: 300 },
    );
  });

  it('byte-at-a-time decoding equals whole-file decoding', () => {
    const f = file([[new Uint8Array(100).fill(7)], [Uint8Array.of(1)]]);
    expect(
      decode(
        f,
        Array.from({ length: f.length }, (_, i) => i),
      ),
    ).toEqual(decode(f));
  });

  it('data pieces are views into the pushed chunk, not copies', () => {
    const f = file([[new Uint8Array(64).fill(5)]]);
    const d = new MigStreamDecoder();
    const pieces = [...d.push(f)].filter((e): e is Extract<MigStreamEvent, { kind: 'data' }> => e.kind === 'data');
    expect(pieces).toHaveLength(1);
    expect(pieces[0].bytes.buffer).toBe(f.buffer);
  });
});

describe('decoding refuses malformed input', () => {
  const good = file([[Uint8Array.of(1, 2, 3)]]);
  const withWord = (at: number, word: bigint) => {
    const copy = new Uint8Array(good);
    new DataView(copy.buffer).setBigUint64(at, word);
    return copy;
  };
  const run = (bytes: Uint8Array) => errnoOf(() => decode(bytes));

  it('the good file decodes', () => expect(run(good)).toBe('ok'));
  it('bad magic -> EINVAL', () => expect(run(withWord(0, 0x5146455600000003n))).toBe('EINVAL'));
  it('missing setup -> EINVAL', () => expect(run(withWord(8, VfioMigFlag.DEV_DATA_STATE))).toBe('EINVAL'));
  it('setup not closed by END_OF_STATE -> EINVAL', () => expect(run(withWord(16, VfioMigFlag.DEV_SETUP_STATE))).toBe('EINVAL'));
  it('unknown marker -> EINVAL', () => expect(run(withWord(24, 0xffffffffef100009n))).toBe('EINVAL'));
  it('config section with a payload -> EINVAL', () => expect(run(withWord(good.length - 8, 0x1234n))).toBe('EINVAL'));
  it('record size beyond 2^53 -> EINVAL', () => expect(run(withWord(32, 1n << 60n))).toBe('EINVAL'));
  it('config section inside an unfinished data section -> EINVAL', () => {
    const f = concat(encodeStreamStart(), encodeDataHeader(1), Uint8Array.of(1), encodeStreamEnd());
    expect(run(f)).toBe('EINVAL');
  });
  it('bytes after the final section -> EINVAL', () => expect(run(concat(good, Uint8Array.of(0)))).toBe('EINVAL'));
  it('every proper prefix -> EIO (ended early)', () => {
    for (let n = 0; n < good.length; n++) expect(run(good.subarray(0, n)), `prefix ${n}`).toBe('EIO');
  });
});

describe('MigStreamWriter and readMigStream over Node streams', () => {
  it('round trip through a PassThrough, with backpressure', async () => {
    const pipe = new PassThrough({ highWaterMark: 16 });
    const w = new MigStreamWriter(pipe);
    const payload = new Uint8Array(5000).map((_, i) => i * 7);
    const reading = (async () => {
      const data: Buffer[] = [];
      const kinds: string[] = [];
      for await (const e of readMigStream(pipe)) {
        if (e.kind === 'data') data.push(Buffer.from(e.bytes));
        else kinds.push(e.kind);
      }
      return { data: Buffer.concat(data), kinds };
    })();
    await w.start();
    const rec = Buffer.alloc(16 + 3000);
    rec.set(payload.subarray(0, 3000), 16);
    await w.dataRecord(rec, 3000);
    await w.data(payload.subarray(3000));
    await w.endOfState();
    await w.finish();
    pipe.end();
    w.release();
    const got = await reading;
    expect(hex(got.data)).toBe(hex(payload));
    expect(got.kinds).toEqual(['setup', 'end-of-state', 'end-of-state', 'complete']);
    expect(w.bytesWritten).toBe(24 + 16 + 3000 + 16 + 2000 + 8 + 16);
  });

  it('a failing Writable surfaces as a MigrationError with its errno', async () => {
    const broken = new Writable({
      write(_c, _e, cb) {
        cb(Object.assign(new Error('pipe closed'), { code: 'EPIPE' }));
      },
    });
    const w = new MigStreamWriter(broken);
    await expect(w.start()).rejects.toMatchObject({ code: 'EPIPE' });
    await expect(w.endOfState()).rejects.toMatchObject({ code: 'EPIPE' });
    w.release();
  });

  it('a Readable in string mode is refused with EINVAL', async () => {
    const r = Readable.from(['not bytes']);
    await expect(
      (async () => {
        for await (const _ of readMigStream(r)) void _;
      })(),
    ).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('an input that ends early is EIO, and a failing input keeps its errno', async () => {
    const short = Readable.from([Buffer.from(file([[Uint8Array.of(1)]]).subarray(0, 30))]);
    await expect(
      (async () => {
        for await (const _ of readMigStream(short)) void _;
      })(),
    ).rejects.toMatchObject({ code: 'EIO' });
    const failing = new Readable({
      read() {
        this.destroy(Object.assign(new Error('gone'), { code: 'ECONNRESET' }));
      },
    });
    await expect(
      (async () => {
        for await (const _ of readMigStream(failing)) void _;
      })(),
    ).rejects.toBeInstanceOf(MigrationError);
  });
});
