// The lab's mtty is built with test/lab/mtty-pad.patch: two module parameters
// pad its migration stream with pseudo-random bytes that the driver checks on
// resume, so the data path can carry real volume. Off (0 MiB) by default, so
// every other lab test sees the unpadded 96-byte stream; the volume scenarios
// turn it on and must turn it off again (withPadding).
import { readFileSync, writeFileSync } from 'node:fs';

const PARAMS = '/sys/module/mtty/parameters';

export const MiB = 1 << 20;
/** An unpadded mtty-2 stream: the 24-byte header and two 36-byte ports (mtty_data_size). */
export const MTTY2_STREAM = 96;
/** The padding sizes (MiB) the volume scenarios run: LAB_PAD_MIB, space- or comma-separated; default 64. */
export const LAB_PAD_SIZES = (process.env.LAB_PAD_MIB || '64')
  .split(/[\s,]+/)
  .filter(Boolean)
  .map(Number);

/** The patch's default seed. */
export const DEFAULT_SEED = 1n;

export interface Padding {
  mib: number;
  seed: bigint;
}

export function padding(): Padding {
  return {
    mib: Number(readFileSync(`${PARAMS}/mig_pad_mib`, 'utf8')),
    seed: BigInt(readFileSync(`${PARAMS}/mig_pad_seed`, 'utf8').trim()),
  };
}

/** Set the parameters; migration files opened from now on take them (open ones keep theirs). */
export function setPadding(mib: number, seed = DEFAULT_SEED): void {
  writeFileSync(`${PARAMS}/mig_pad_mib`, String(mib));
  writeFileSync(`${PARAMS}/mig_pad_seed`, String(seed));
}

/** Run `body` with padding on, and switch it off afterwards whatever happens. */
export async function withPadding<T>(mib: number, body: () => Promise<T>, seed = DEFAULT_SEED): Promise<T> {
  setPadding(mib, seed);
  try {
    return await body();
  } finally {
    setPadding(0);
  }
}

const M64 = (1n << 64n) - 1n;

/** Output `i` of splitmix64 seeded with `seed`: word i of the padding (mtty_pad_word). */
function padWord(seed: bigint, i: bigint): bigint {
  let z = (seed + (i + 1n) * 0x9e3779b97f4a7c15n) & M64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

/** The padding's bytes [offset, offset + length), words little endian, as the patch documents them. */
export function paddingBytes(seed: bigint, offset: number, length: number): Uint8Array {
  const first = Math.floor(offset / 8);
  const words = Math.ceil(((offset % 8) + length) / 8);
  const all = new DataView(new ArrayBuffer(words * 8));
  for (let i = 0; i < words; i++) all.setBigUint64(i * 8, padWord(seed, BigInt(first + i)), true);
  return new Uint8Array(all.buffer, offset % 8, length);
}
