// Issue 14, part (e): the v1 face (LegacyRegionOverV2) over a v2 device whose
// data session is a kernel pipe fed (save) or drained and checked (resume) by
// another process, so every byte moves through real read(2)/write(2) calls
// made through koffi, as on a kernel data_fd (lib/pipe-streams.mjs). The pair:
// saveV1 / loadV1 (QEMU 7.2) through the translator vs saveV2 / loadV2
// (QEMU 8+) on the device, same chunk size, interleaved (lib/measure.mjs).
// The pipe holds 1 MiB where /proc/sys/fs/pipe-max-size allows it.
//
//   node --expose-gc bench/real-fd.mjs [--sizes 256MiB] [--windows 64KiB,1MiB,4MiB] [--reps 5] [--directions save,resume]
import { LegacyRegionOverV2, loadV1, loadV2, saveV1, saveV2 } from '../dist/index.js';
import { BenchV2Device } from './lib/bench-v2-device.mjs';
import { compareThroughput, interleave, load, timed } from './lib/measure.mjs';
import { nullSink, zeroCostFile } from './lib/migration-files.mjs';
import { machine, parseOptions, sizeName } from './lib/options.mjs';
import { preparePipeStreams } from './lib/pipe-streams.mjs';

const USAGE = 'node --expose-gc bench/real-fd.mjs [--sizes 256MiB] [--windows 64KiB,1MiB,4MiB] [--reps 5] [--directions save,resume]';
const MiB = 2 ** 20;

let pipeCapacity;

/** Prepare a pipe-backed device, time `body(device)`, then check the helper's side. */
async function overPipe(direction, size, body) {
  const streams = await preparePipeStreams(direction, size);
  let result, verdict;
  try {
    result = await timed(() => body(new BenchV2Device(streams)));
  } finally {
    // The helper is reaped whatever happened; its verdict is checked only when the run itself succeeded.
    verdict = await streams.dispose();
  }
  const [moved, bad, capacity] = verdict;
  if (moved !== size || bad) throw new Error(`pipe helper moved ${moved} of ${size} bytes${bad ? ', altered' : ''}`);
  pipeCapacity = capacity;
  return result;
}

function arms(direction, size, window) {
  const bytes = (n) => {
    if (n !== size) throw new Error(`${n} device bytes, expected ${size}`);
    return { bytes: n };
  };
  if (direction === 'save') {
    return {
      direct: () =>
        overPipe('save', size, async (d) => {
          const r = await saveV2(d, nullSink(), { precopyRounds: 0, maxReadBytes: window, reuseBuffer: true });
          return bytes(r.stopCopyBytes);
        }),
      translated: () =>
        overPipe('save', size, async (d) => {
          const r = await saveV1(new LegacyRegionOverV2(d, { windowSize: window }), nullSink(), {
            precopyRounds: 0,
            windowAccess: 'mmap',
            reuseBuffer: true,
          });
          return bytes(r.stopCopyBytes + r.precopyBytes);
        }),
    };
  }
  return {
    direct: () => overPipe('resume', size, async (d) => bytes((await loadV2(d, zeroCostFile(size, window))).deviceBytes)),
    translated: () =>
      overPipe('resume', size, async (d) => {
        const r = await loadV1(new LegacyRegionOverV2(d, { windowSize: window }), zeroCostFile(size, window), { windowAccess: 'mmap' });
        return bytes(r.deviceBytes);
      }),
  };
}

async function main() {
  const o = parseOptions(
    process.argv.slice(2),
    { sizes: [256 * MiB], windows: [64 * 1024, MiB, 4 * MiB], reps: 5, directions: ['save', 'resume'] },
    USAGE,
  );
  const cases = [];
  for (const size of o.sizes) {
    for (const window of o.windows) {
      for (const direction of o.directions) {
        const loadBefore = load();
        const runs = await interleave(o.reps, arms(direction, size, window));
        const c = {
          part: 'e',
          device: 'pipe',
          face: 'v1',
          direction,
          size: sizeName(size),
          window: sizeName(window),
          pipeCapacity,
          ...compareThroughput(runs.direct, runs.translated),
          loadBefore,
          loadAfter: load(),
        };
        cases.push(c);
        process.stderr.write(
          `real-fd pipe v1-face ${direction} ${c.size} window ${c.window}: direct ${c.directMiBps} MiB/s, translated ${c.translatedMiBps} MiB/s, ratio ${c.throughputRatio} (paired ${c.pairedThroughputRatio}), load ${c.loadAfter[0]}\n`,
        );
      }
    }
  }
  console.log(
    JSON.stringify(
      { bench: 'real-fd', machine: machine(), options: { ...o, sizes: o.sizes.map(sizeName), windows: o.windows.map(sizeName) }, cases },
      null,
      2,
    ),
  );
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
