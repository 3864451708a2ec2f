// The bytes of a SimDevice page are a pure function of (seed, page index,
// generation): an xorshift32 sequence XORed with a Weyl sequence, both keyed
// from the triple (two independent 32-bit keys, so distinct triples give
// distinct pages), stored as little-endian 32-bit words. The last page of a
// device whose size is not a multiple of the page size is the prefix of the
// same word sequence. Hot loops work on whole words, never on single bytes.

/** True on x86-64 and arm64: Uint32Array words are then already little-endian bytes. */
export const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** 32-bit integer mixer (Chris Wellons' lowbias32): a bijection on u32. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

function xorshiftKey(seed: number, index: number, gen: number): number {
  return mix32(mix32(mix32(seed ^ 0x3c6ef372) ^ index) ^ gen) || 0x6d2b79f5; // xorshift32 needs a non-zero state
}

function weylKey(seed: number, index: number, gen: number): number {
  return mix32(mix32(mix32(seed ^ 0xa54ff53a) + gen) ^ mix32(index + 0x510e527f));
}

/** Write the first `count` words of page (seed, index, gen) to words[start ..]. */
export function fillPageWords(words: Uint32Array, start: number, count: number, seed: number, index: number, gen: number): void {
  pageWords(words, start, count, seed, index, gen, false);
}

/** Do words[start .. start+count) equal the first `count` words of page (seed, index, gen)? */
export function pageWordsMatch(words: Uint32Array, start: number, count: number, seed: number, index: number, gen: number): boolean {
  return pageWords(words, start, count, seed, index, gen, true) === 0;
}

/**
 * The page's word sequence over words[start .. start+count): written there,
 * or (`check`) compared with what is there. Returns the OR of the
 * differences (0 when writing, or when every word matched).
 */
function pageWords(words: Uint32Array, start: number, count: number, seed: number, index: number, gen: number, check: boolean): number {
  let x = xorshiftKey(seed, index, gen) | 0;
  let w = weylKey(seed, index, gen) | 0;
  let diff = 0;
  const end = start + count;
  for (let i = start; i < end; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w = (w + 0x9e3779b9) | 0;
    if (check) diff |= words[i] ^ (x ^ w);
    else words[i] = x ^ w;
  }
  return diff;
}

function swapWords(words: Uint32Array, count: number): void {
  for (let i = 0; i < count; i++) {
    const v = words[i];
    words[i] = ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
  }
}

/**
 * Byte-level access for any offset, length and buffer alignment. Aligned
 * whole pages go straight into (or are checked straight from) the caller's
 * memory; everything else passes through one page-sized scratch buffer.
 */
export class PageGenerator {
  private readonly scratchWords: Uint32Array;
  private readonly scratchBytes: Uint8Array;
  /** Which page the scratch holds, so consecutive partial reads of one page generate it once. */
  private cached = { seed: -1, index: -1, gen: -1 };

  constructor(readonly pageSize: number) {
    this.scratchWords = new Uint32Array(Math.ceil(pageSize / 4));
    this.scratchBytes = new Uint8Array(this.scratchWords.buffer);
  }

  /** Bytes [offset, offset + dest.length) of page (seed, index, gen) into dest. */
  fill(dest: Uint8Array, seed: number, index: number, gen: number, offset: number): void {
    const len = dest.length;
    if (LITTLE_ENDIAN_HOST && offset === 0 && (len & 3) === 0 && (dest.byteOffset & 3) === 0) {
      fillPageWords(new Uint32Array(dest.buffer, dest.byteOffset, len >>> 2), 0, len >>> 2, seed, index, gen);
      return;
    }
    this.generate(seed, index, gen);
    dest.set(this.scratchBytes.subarray(offset, offset + len));
  }

  /** Does `src` hold exactly the first src.length bytes of page (seed, index, gen)? */
  matches(src: Uint8Array, seed: number, index: number, gen: number): boolean {
    const len = src.length;
    if (LITTLE_ENDIAN_HOST && (len & 3) === 0 && (src.byteOffset & 3) === 0) {
      return pageWordsMatch(new Uint32Array(src.buffer, src.byteOffset, len >>> 2), 0, len >>> 2, seed, index, gen);
    }
    this.generate(seed, index, gen);
    return Buffer.compare(src, this.scratchBytes.subarray(0, len)) === 0;
  }

  private generate(seed: number, index: number, gen: number): void {
    const c = this.cached;
    if (c.seed === seed && c.index === index && c.gen === gen) return;
    fillPageWords(this.scratchWords, 0, this.scratchWords.length, seed, index, gen);
    if (!LITTLE_ENDIAN_HOST) swapWords(this.scratchWords, this.scratchWords.length);
    this.cached = { seed, index, gen };
  }
}
