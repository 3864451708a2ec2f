// SimDevice: bytes from (seed, page, generation), work only while running,
// fingerprints that follow the bytes, GiB sizes without GiB of memory.
import { describe, expect, it } from 'vitest';
import { SimDevice } from '../src/sim/sim-device.js';
import { errnoOf } from './support/errno.js';

/**
 * Slow reference for the page contents, written from the format description
 * (word i: xorshift32 state XOR Weyl state, little-endian), byte by byte with
 * a DataView: it shares no code with the fast paths it checks.
 */
function mix(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}
function referencePage(seed: number, index: number, gen: number, pageSize: number): Uint8Array {
  let x = mix(mix(mix(seed ^ 0x3c6ef372) ^ index) ^ gen) || 0x6d2b79f5;
  let w = mix(mix(mix(seed ^ 0xa54ff53a) + gen) ^ mix(index + 0x510e527f));
  const out = new DataView(new ArrayBuffer(Math.ceil(pageSize / 4) * 4));
  for (let i = 0; i < out.byteLength / 4; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    w = (w + 0x9e3779b9) >>> 0;
    out.setUint32(i * 4, (x ^ w) >>> 0, true);
  }
  return new Uint8Array(out.buffer, 0, pageSize);
}
function referenceBytes(d: SimDevice): Uint8Array {
  const out = new Uint8Array(d.size);
  for (let p = 0; p < d.pageCount; p++) {
    const len = Math.min(d.pageSize, d.size - p * d.pageSize);
    out.set(referencePage(d.seed, p, d.generation(p), d.pageSize).subarray(0, len), p * d.pageSize);
  }
  return out;
}

describe('construction', () => {
  it.each([
    ['size 0', { size: 0, seed: 1 }],
    ['fractional size', { size: 10.5, seed: 1 }],
    ['page size not a multiple of 8', { size: 4096, seed: 1, pageSize: 100 }],
    ['page size 0', { size: 4096, seed: 1, pageSize: 0 }],
    ['negative seed', { size: 4096, seed: -1 }],
    ['seed above 2^32-1', { size: 4096, seed: 2 ** 32 }],
    ['more than 2^32-2 pages', { size: 2 ** 40, seed: 1, pageSize: 8 }],
  ])('%s -> EINVAL', (_name, opts) => {
    expect(errnoOf(() => new SimDevice(opts))).toBe('EINVAL');
  });

  it('an 8 GiB device costs one u32 per page and fingerprints in well under a second', () => {
    const before = process.memoryUsage().arrayBuffers;
    const d = new SimDevice({ size: 8 * 2 ** 30, seed: 42 });
    expect(d.pageCount).toBe(2 * 2 ** 20);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(12 * 2 ** 20);
    const t = performance.now();
    expect(d.fingerprint()).toMatch(/^[0-9a-f]{64}$/);
    expect(performance.now() - t).toBeLessThan(1000);
    const tail = new Uint8Array(10);
    d.readBytes(d.size - 10, tail);
    expect(Buffer.from(tail)).toEqual(Buffer.from(referencePage(42, d.pageCount - 1, 0, 4096).subarray(4086)));
  });
});

describe('bytes', () => {
  it('equal the reference, for every offset/length alignment and a short last page', () => {
    const d = new SimDevice({ size: 3 * 64 + 21, seed: 7, pageSize: 64 });
    d.running = true;
    d.step(5);
    const ref = referenceBytes(d);
    const backing = new Uint8Array(d.size + 8);
    for (let start = 0; start < d.size; start += 3) {
      for (const len of [1, 3, 4, 8, 63, 64, 65, 130, d.size - start]) {
        if (start + len > d.size) continue;
        for (const shift of [0, 1, 4]) {
          const buf = backing.subarray(shift, shift + len);
          d.readBytes(start, buf);
          expect(Buffer.compare(buf, ref.subarray(start, start + len)), `start ${start} len ${len} shift ${shift}`).toBe(0);
        }
      }
    }
  });

  it('differ between seeds and between generations', () => {
    const a = new SimDevice({ size: 4096, seed: 1 });
    const b = new SimDevice({ size: 4096, seed: 2 });
    const ba = new Uint8Array(4096);
    const bb = new Uint8Array(4096);
    a.readBytes(0, ba);
    b.readBytes(0, bb);
    expect(Buffer.compare(ba, bb)).not.toBe(0);
    a.running = true;
    a.step(1);
    const after = new Uint8Array(4096);
    a.readBytes(0, after);
    expect(Buffer.compare(ba, after)).not.toBe(0);
  });

  it('reading outside the device is EINVAL', () => {
    const d = new SimDevice({ size: 100, seed: 1, pageSize: 64 });
    expect(errnoOf(() => d.readBytes(90, new Uint8Array(11)))).toBe('EINVAL');
    expect(errnoOf(() => d.readBytes(-1, new Uint8Array(1)))).toBe('EINVAL');
  });
});

describe('step and fingerprint', () => {
  it('a stopped device does no work', () => {
    const d = new SimDevice({ size: 1 << 20, seed: 3 });
    const f = d.fingerprint();
    expect(d.step(100)).toBe(0);
    expect(d.steps).toBe(0);
    expect(d.fingerprint()).toBe(f);
  });

  it('a running device changes, deterministically from seed and step count', () => {
    const a = new SimDevice({ size: 1 << 20, seed: 3 });
    const b = new SimDevice({ size: 1 << 20, seed: 3 });
    const c = new SimDevice({ size: 1 << 20, seed: 4 });
    for (const d of [a, b, c]) d.running = true;
    const f0 = a.fingerprint();
    a.step(10);
    b.step(4);
    b.step(6);
    c.step(10);
    expect(a.steps).toBe(10);
    expect(a.fingerprint()).not.toBe(f0);
    expect(a.fingerprint()).toBe(b.fingerprint());
    const gens = (d: SimDevice) => Array.from({ length: d.pageCount }, (_, i) => d.generation(i));
    expect(gens(a)).toEqual(gens(b));
    expect(gens(a)).not.toEqual(gens(c));
    expect(gens(a).reduce((s, g) => s + g, 0)).toBe(10);
  });

  it('the fingerprint tells states apart exactly when their bytes differ', () => {
    const a = new SimDevice({ size: 8 * 64, seed: 9, pageSize: 64 });
    const b = new SimDevice({ size: 8 * 64, seed: 9, pageSize: 64 });
    expect(a.fingerprint()).toBe(b.fingerprint());
    expect(new SimDevice({ size: 8 * 64, seed: 10, pageSize: 64 }).fingerprint()).not.toBe(a.fingerprint());
    expect(new SimDevice({ size: 8 * 64 - 8, seed: 9, pageSize: 64 }).fingerprint()).not.toBe(a.fingerprint());
    a.running = true;
    a.step(1);
    expect(a.fingerprint()).not.toBe(b.fingerprint());
    expect(Buffer.compare(referenceBytes(a), referenceBytes(b))).not.toBe(0);
  });
});
