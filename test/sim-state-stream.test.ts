// The SimDevice state stream (src/sim/state-saver.ts, state-loader.ts):
// round trips in any segmentation, exact pre-copy accounting, dirty re-sends,
// and a loader that refuses every damaged stream while leaving its device alone.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SimDevice } from '../src/sim/sim-device.js';
import type { SimStateSaver } from '../src/sim/state-saver.js';
import { MigrationError } from '../src/uapi/errors.js';
import { errnoOf } from './support/errno.js';

const HEADER = 32;
const PREFIX = 8;
const TRAILER = 32;

/** Read everything the saver has right now, in reads of `size` bytes. */
function drain(saver: SimStateSaver, size = 1000): Buffer {
  const parts: Buffer[] = [];
  for (;;) {
    const buf = Buffer.alloc(size);
    const n = saver.read(buf);
    if (n === 0) return Buffer.concat(parts);
    parts.push(buf.subarray(0, n));
  }
}

/** A complete stop-copy stream of `d` (no pre-copy). */
function fullStream(d: SimDevice, readSize = 777): Buffer {
  const s = d.createSaver();
  s.enterStopCopy();
  return drain(s, readSize);
}

function load(dest: SimDevice, stream: Uint8Array, cuts: number[] = []): void {
  const loader = dest.createLoader();
  const points = [0, ...[...new Set(cuts)].filter((c) => c > 0 && c < stream.length).sort((a, b) => a - b), stream.length];
  for (let i = 0; i + 1 < points.length; i++) {
    let piece = stream.subarray(points[i], points[i + 1]);
    while (piece.length) piece = piece.subarray(loader.write(piece));
  }
  loader.finish();
}

describe('round trip', () => {
  it('stream length is header + one record per page + trailer, and the destination adopts the source', () => {
    const src = new SimDevice({ size: 5 * 64 + 24, seed: 11, pageSize: 64 });
    src.running = true;
    src.step(7);
    const stream = fullStream(src);
    expect(stream.length).toBe(HEADER + 5 * (PREFIX + 64) + (PREFIX + 24) + TRAILER);
    expect(BigInt(stream.length)).toBe(src.fullStreamBytes());
    const dest = new SimDevice({ size: src.size, seed: 999, pageSize: 64 });
    load(dest, stream);
    expect(dest.fingerprint()).toBe(src.fingerprint());
    expect(dest.seed).toBe(11);
    expect(dest.steps).toBe(7);
    // the device's future work continues where the source's would have
    src.step(3);
    dest.running = true;
    dest.step(3);
    expect(dest.fingerprint()).toBe(src.fingerprint());
  });

  it('any read sizes, any write segmentation, any device geometry (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3000 }),
        fc.constantFrom(8, 16, 64, 256),
        fc.nat(0xffffffff),
        fc.nat(40),
        fc.integer({ min: 1, max: 600 }),
        fc.array(fc.nat(4000), { maxLength: 25 }),
        (size, pageSize, seed, steps, readSize, cuts) => {
          const src = new SimDevice({ size, seed, pageSize });
          src.running = true;
          src.step(steps);
          const stream = fullStream(src, readSize);
          const dest = new SimDevice({ size, seed: 0, pageSize });
          load(dest, stream, cuts);
          expect(dest.fingerprint()).toBe(src.fingerprint());
        },
      ),
      { seed: 0xc0ffee, numRuns: 200 },
    );
  });

  it('reads fill unaligned buffers correctly', () => {
    const src = new SimDevice({ size: 4096 * 3, seed: 5 });
    const backing = new Uint8Array(20000);
    const s = src.createSaver();
    s.enterStopCopy();
    const n = s.read(backing.subarray(3, 3 + 19000));
    const aligned = fullStream(src, 19000);
    expect(n).toBe(aligned.length);
    expect(Buffer.compare(backing.subarray(3, 3 + n), aligned)).toBe(0);
  });
});

describe('pre-copy', () => {
  it('initialBytes counts the first pass down to 0, then read returns 0 (nothing for now)', () => {
    const d = new SimDevice({ size: 10 * 64, seed: 1, pageSize: 64 });
    const s = d.createSaver();
    const total = HEADER + 10 * (PREFIX + 64);
    expect(s.precopyInfo()).toEqual({ initialBytes: BigInt(total), dirtyBytes: 0n });
    expect(s.remainingBytes()).toBe(BigInt(total + TRAILER));
    const buf = new Uint8Array(100);
    let read = 0;
    for (;;) {
      const n = s.read(buf);
      if (n === 0) break;
      read += n;
      expect(s.precopyInfo().initialBytes).toBe(BigInt(total - read));
    }
    expect(read).toBe(total);
    expect(s.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n });
    expect(s.read(buf)).toBe(0);
    expect(s.phase).toBe('precopy');
  });

  it('pages dirtied after they were sent are counted and re-sent; pages not yet sent are not', () => {
    const d = new SimDevice({ size: 100 * 64, seed: 2, pageSize: 64 });
    d.running = true;
    const s = d.createSaver();
    s.read(new Uint8Array(HEADER + 50 * (PREFIX + 64))); // header + pages 0..49
    const before = Array.from({ length: 100 }, (_, i) => d.generation(i));
    d.step(40);
    const changed = new Set(Array.from({ length: 100 }, (_, i) => i).filter((i) => d.generation(i) !== before[i]));
    const sentAndChanged = [...changed].filter((i) => i < 50).length;
    expect(changed.size).toBeGreaterThan(5);
    expect(s.precopyInfo()).toEqual({ initialBytes: BigInt(50 * (PREFIX + 64)), dirtyBytes: BigInt(sentAndChanged * (PREFIX + 64)) });
    const rest = drain(s);
    expect(rest.length).toBe((50 + sentAndChanged) * (PREFIX + 64));
    expect(s.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n });
    // the re-sent records name exactly the dirtied pages, with their new generations
    const resent = new Map<number, number>();
    for (let at = 50 * (PREFIX + 64); at < rest.length; at += PREFIX + 64) resent.set(rest.readUInt32LE(at), rest.readUInt32LE(at + 4));
    expect([...resent.keys()].sort((a, b) => a - b)).toEqual([...changed].filter((i) => i < 50).sort((a, b) => a - b));
    for (const [page, gen] of resent) expect(gen).toBe(d.generation(page));
  });

  it('stop-copy: what remains (dirty pages and trailer) matches remainingBytes exactly, then 0 forever', () => {
    const d = new SimDevice({ size: 64 * 64, seed: 3, pageSize: 64 });
    d.running = true;
    const s = d.createSaver();
    const pre = drain(s);
    d.step(30);
    d.running = false;
    s.enterStopCopy();
    const expected = Number(s.remainingBytes());
    const post = drain(s, 333);
    expect(post.length).toBe(expected);
    expect(s.remainingBytes()).toBe(0n);
    expect(s.read(new Uint8Array(10))).toBe(0);
    const dest = new SimDevice({ size: d.size, seed: 0, pageSize: 64 });
    load(dest, Buffer.concat([pre, post]));
    expect(dest.fingerprint()).toBe(d.fingerprint());
  });

  it('a page dirtied while its record is half read is sent again', () => {
    const d = new SimDevice({ size: 2 * 4096, seed: 4 });
    d.running = true;
    const s = d.createSaver();
    const head = Buffer.alloc(HEADER + PREFIX + 100); // ends inside page 0's body
    const parts: Buffer[] = [head.subarray(0, s.read(head))];
    while (d.generation(0) === 0) d.step(1);
    expect(s.precopyInfo().dirtyBytes).toBe(BigInt(PREFIX + 4096)); // page 1 was not sent yet: not dirty
    parts.push(drain(s));
    d.running = false;
    s.enterStopCopy();
    parts.push(drain(s));
    const dest = new SimDevice({ size: d.size, seed: 0 });
    load(dest, Buffer.concat(parts));
    expect(dest.fingerprint()).toBe(d.fingerprint());
  });

  it('a new saver supersedes the previous one (its reads fail with ENODEV)', () => {
    const d = new SimDevice({ size: 4096, seed: 1 });
    const a = d.createSaver();
    d.createSaver();
    expect(errnoOf(() => a.read(new Uint8Array(8)))).toBe('ENODEV');
  });
});

describe('loader refuses damaged streams and leaves the device unchanged', () => {
  const src = new SimDevice({ size: 4 * 64 + 16, seed: 21, pageSize: 64 });
  src.running = true;
  src.step(9);
  const good = fullStream(src);

  /** Outcome of loading `stream` into a fresh device: where it failed, and whether the device changed. */
  function outcome(stream: Uint8Array, size = src.size): string {
    const dest = new SimDevice({ size, seed: 5, pageSize: 64 });
    const before = dest.fingerprint();
    const loader = dest.createLoader();
    let where = 'ok';
    try {
      let rest = stream;
      while (rest.length) rest = rest.subarray(loader.write(rest));
    } catch (e) {
      where = `write ${(e as MigrationError).code}`;
    }
    if (where === 'ok') {
      try {
        loader.finish();
      } catch (e) {
        where = `finish ${(e as MigrationError).code}`;
      }
    }
    if (where !== 'ok' && dest.fingerprint() !== before) return `${where} (device changed!)`;
    return where;
  }
  const edit = (f: (b: Buffer) => void) => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };

  it('the good stream loads', () => expect(outcome(good)).toBe('ok'));
  it('bad magic', () => expect(outcome(edit((b) => b.writeUInt32LE(0x12345678, 0)))).toBe('write EINVAL'));
  it('bad version', () => expect(outcome(edit((b) => b.writeUInt32LE(2, 4)))).toBe('write EINVAL'));
  it('wrong size in the header', () => expect(outcome(edit((b) => b.writeUInt32LE(src.size + 8, 8)))).toBe('write EINVAL'));
  it('wrong page size in the header', () => expect(outcome(edit((b) => b.writeUInt32LE(32, 16)))).toBe('write EINVAL'));
  it('destination of another size', () => expect(outcome(good, src.size + 64)).toBe('write EINVAL'));
  it('page index out of range', () => expect(outcome(edit((b) => b.writeUInt32LE(77, HEADER)))).toBe('write EINVAL'));
  it('a page byte', () => expect(outcome(edit((b) => (b[HEADER + PREFIX + 10] ^= 0x40)))).toBe('write EINVAL'));
  it('a record generation', () =>
    expect(outcome(edit((b) => b.writeUInt32LE(b.readUInt32LE(HEADER + 4) + 1, HEADER + 4)))).toBe('write EINVAL'));
  it('the trailer checksum', () => expect(outcome(edit((b) => (b[b.length - 1] ^= 1)))).toBe('finish EINVAL'));
  it('the trailer record count', () => expect(outcome(edit((b) => (b[b.length - 24] ^= 1)))).toBe('finish EINVAL'));
  it('the trailer step count', () => expect(outcome(edit((b) => (b[b.length - 16] ^= 1)))).toBe('finish EINVAL'));
  it('a record dropped from the middle', () => {
    const rec = PREFIX + 64;
    expect(outcome(Buffer.concat([good.subarray(0, HEADER + rec), good.subarray(HEADER + 2 * rec)]))).toBe('finish EINVAL');
  });
  it('a dirty re-send dropped (stale page, checksum catches it)', () => {
    const d = new SimDevice({ size: 4 * 64, seed: 3, pageSize: 64 });
    d.running = true;
    const s = d.createSaver();
    const first = drain(s);
    while (s.precopyInfo().dirtyBytes === 0n) d.step(1);
    const resend = drain(s);
    s.enterStopCopy();
    const tail = drain(s);
    const dest = new SimDevice({ size: d.size, seed: 0, pageSize: 64 });
    const loader = dest.createLoader();
    loader.write(first);
    loader.write(tail.subarray(tail.length - TRAILER));
    expect(errnoOf(() => loader.finish())).toBe('EINVAL');
    expect(resend.length).toBeGreaterThan(0);
  });

  it('every single-bit flip anywhere in the stream is refused (exhaustive)', () => {
    for (let byte = 0; byte < good.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const result = outcome(edit((b) => (b[byte] ^= 1 << bit)));
        expect(result, `byte ${byte} bit ${bit}`).toMatch(/^(write|finish) EINVAL$/);
      }
    }
  });

  it('every short stream fails in finish (EINVAL) and can be completed afterwards', () => {
    for (let n = 0; n < good.length; n++) expect(outcome(good.subarray(0, n)), `length ${n}`).toBe('finish EINVAL');
    const dest = new SimDevice({ size: src.size, seed: 5, pageSize: 64 });
    const loader = dest.createLoader();
    loader.write(good.subarray(0, 100));
    expect(errnoOf(() => loader.finish())).toBe('EINVAL');
    loader.write(good.subarray(100));
    loader.finish();
    expect(dest.fingerprint()).toBe(src.fingerprint());
  });

  it('bytes past the end: a short write, then ENOSPC; the stream stays good', () => {
    const dest = new SimDevice({ size: src.size, seed: 5, pageSize: 64 });
    const loader = dest.createLoader();
    expect(loader.write(Buffer.concat([good, Buffer.alloc(5)]))).toBe(good.length);
    expect(errnoOf(() => loader.write(Buffer.alloc(5)))).toBe('ENOSPC');
    expect(loader.bytesWritten).toBe(BigInt(good.length));
    loader.finish();
    expect(dest.fingerprint()).toBe(src.fingerprint());
  });

  it('after a bad write every later write and finish is EINVAL', () => {
    const dest = new SimDevice({ size: src.size, seed: 5, pageSize: 64 });
    const loader = dest.createLoader();
    expect(errnoOf(() => loader.write(edit((b) => (b[0] ^= 1))))).toBe('EINVAL');
    expect(errnoOf(() => loader.write(good))).toBe('EINVAL');
    expect(errnoOf(() => loader.finish())).toBe('EINVAL');
  });
});

describe('throughput (hot paths are word-wide)', () => {
  it('saves and loads 64 MiB at well over 100 MiB/s each way', () => {
    const src = new SimDevice({ size: 64 << 20, seed: 8 });
    const dest = new SimDevice({ size: 64 << 20, seed: 0 });
    const saver = src.createSaver();
    saver.enterStopCopy();
    const loader = dest.createLoader();
    const buf = Buffer.allocUnsafe(1 << 20);
    let saveMs = 0;
    let loadMs = 0;
    for (;;) {
      let t = performance.now();
      const n = saver.read(buf);
      saveMs += performance.now() - t;
      if (n === 0) break;
      t = performance.now();
      loader.write(buf.subarray(0, n));
      loadMs += performance.now() - t;
    }
    loader.finish();
    expect(dest.fingerprint()).toBe(src.fingerprint());
    // 64 MiB at 100 MiB/s is 640 ms; the word loops do ~1-2 GiB/s on one core.
    expect(saveMs).toBeLessThan(640);
    expect(loadMs).toBeLessThan(640);
  });
});
