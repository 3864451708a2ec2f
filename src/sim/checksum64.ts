// A 64-bit running checksum over a sequence of 32-bit words: two independent
// multiplicative lanes (FNV-1a over words, and a murmur3-style lane), each
// finalised with an avalanche mix. Order-sensitive; meant to catch damaged,
// dropped or reordered stream metadata, not to resist an adversary.
import { mix32 } from './page-generator.js';

export class Checksum64 {
  private a = 0x811c9dc5 | 0;
  private b = 0x9747b28c | 0;
  private words = 0;

  add(word: number): void {
    this.a = Math.imul(this.a ^ word, 0x01000193);
    let k = Math.imul(word, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    this.b ^= Math.imul(k, 0x1b873593);
    this.b = (this.b << 13) | (this.b >>> 19);
    this.b = (Math.imul(this.b, 5) + 0xe6546b64) | 0;
    this.words++;
  }

  /** Add a 64-bit value as two words, low word first (its little-endian layout). */
  add64(value: bigint | number): void {
    const v = BigInt(value);
    this.add(Number(v & 0xffffffffn));
    this.add(Number((v >> 32n) & 0xffffffffn));
  }

  /** The checksum of everything added so far (adding more afterwards is allowed). */
  value(): bigint {
    const hi = mix32(this.a ^ this.words);
    const lo = mix32(this.b ^ Math.imul(this.words, 0x85ebca6b) ^ hi);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }
}
