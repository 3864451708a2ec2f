// The byte pattern every bench-only device streams: byte i of a stream is
// PATTERN[i % PATTERN_PERIOD], one multiplicative hash per position, so C
// helpers (bench/lib/pipe-helpers.c) produce and check the very same bytes.
// Every window size the benches use is a multiple of the period, so a window
// pre-filled with the pattern is a valid chunk at any window-aligned offset.

/** Bytes before the pattern repeats (64 KiB, the smallest window benched). */
export const PATTERN_PERIOD = 1 << 16;

/** Byte `i` of the pattern (i < PATTERN_PERIOD): the top byte of i * 2654435761 mod 2^32. */
export function patternByte(i) {
  return Math.imul(i, 2654435761) >>> 24;
}

let period = null; // one period of the pattern, computed once

/** `length` bytes of the stream starting at stream offset `from`. */
export function patternBytes(length, from = 0) {
  if (!period) {
    period = Buffer.allocUnsafe(PATTERN_PERIOD);
    for (let i = 0; i < PATTERN_PERIOD; i++) period[i] = patternByte(i);
  }
  const out = Buffer.allocUnsafe(length);
  for (let at = 0; at < length;) at += period.copy(out, at, (from + at) % PATTERN_PERIOD);
  return out;
}

/**
 * A cheap check that `bytes` are the stream's bytes at offset `at`: the first,
 * middle and last byte. The benches measure the path, not the check; the
 * count of bytes and these samples catch a dropped, repeated or shifted chunk.
 */
export function looksLikePattern(bytes, at) {
  const n = bytes.length;
  if (n === 0) return true;
  const ok = (k) => bytes[k] === patternByte((at + k) % PATTERN_PERIOD);
  return ok(0) && ok(n >> 1) && ok(n - 1);
}
