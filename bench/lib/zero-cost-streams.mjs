// The zero-cost stream source for BenchV2Device: a saving read is one memcpy
// from a buffer pre-filled with the pattern; a resuming write is one memcpy
// into the device's buffer (a driver's copy_from_user), counted and sampled
// (pattern.mjs). What such a device costs is as little as a device can.
import { MigrationError } from '../../dist/index.js';
import { looksLikePattern, PATTERN_PERIOD, patternBytes } from './pattern.mjs';

/** The largest read or write served at once (a longer buffer gets a short count, as a pipe gives). */
const MAX_READ = 8 << 20;

let filled = null; // the pattern, pre-filled once per process
let landing = null; // where resume writes land, touched once per process

export function zeroCostStreams(streamBytes) {
  filled ??= patternBytes(MAX_READ + PATTERN_PERIOD);
  landing ??= Buffer.alloc(MAX_READ);
  return {
    streamBytes,
    saving() {
      let at = 0;
      return {
        read(buf) {
          const n = Math.min(buf.length, streamBytes - at, MAX_READ);
          const from = at % PATTERN_PERIOD;
          buf.set(filled.subarray(from, from + n));
          at += n;
          return n;
        },
        remaining: () => streamBytes - at,
      };
    },
    resuming() {
      let got = 0;
      let intact = true;
      return {
        write(buf) {
          const n = Math.min(buf.length, MAX_READ);
          landing.set(n === buf.length ? buf : buf.subarray(0, n));
          if (!looksLikePattern(landing.subarray(0, n), got)) intact = false;
          got += n;
          return n;
        },
        finish() {
          if (!intact || got !== streamBytes) {
            throw new MigrationError('EINVAL', `resume data rejected: ${got} of ${streamBytes} bytes${intact ? '' : ', altered'}`);
          }
        },
      };
    },
  };
}
