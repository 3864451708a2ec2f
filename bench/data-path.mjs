// Issue 14, parts (a)-(d): the data path through each translator against the
// same work done directly, in one process, interleaved (lib/measure.mjs).
//
//   v1 face  (LegacyRegionOverV2 over a v2 device): saveV1 / loadV1 (what QEMU 7.2
//            does) through the translator  vs  saveV2 / loadV2 (QEMU 8+) on the device.
//   v2 face  (V2DeviceOverLegacy over a v1 region):  saveV2 / loadV2 through the
//            translator  vs  saveV1 / loadV1 on the region.
//
// Devices: 'sim' (SimV2Driver / SimV1Region over a SimDevice: every byte
// generated on save and checked on resume) and 'zero' (bench-only devices whose
// data costs nothing, lib/: the ratio is the translator's own cost). Stop-and-copy
// only (precopyRounds 0), the same chunk on both arms: the v2 client reads
// `window` bytes per call, the v1 region / translator window is `window` bytes;
// the v1 client moves the window in one access per chunk (QEMU 7.2's mmap path;
// --access pieces gives its 8-byte trapped path instead, very slow). A resume
// replays the file a direct save wrote, one record per input chunk. Every run
// checks its byte count, and every resume is validated by the device
// (SimDevice: fingerprint; zero-cost: count and samples).
//
//   node --expose-gc bench/data-path.mjs [--sizes 256MiB,8GiB] [--windows 64KiB,1MiB,4MiB]
//        [--reps 5] [--devices sim,zero] [--faces v1,v2] [--directions save,resume]
//        [--pairings protocol,same-client] [--access mmap|pieces] [--all-windows]
// 8 GiB runs at the 1 MiB window only, unless --all-windows.
//
// Pairings (see arms()): 'protocol' compares the translated client with the other
// protocol's client on the device behind the translator (what issue 14 asks: QEMU
// 7.2 through the shim vs QEMU 8+ natively); 'same-client' (zero-cost devices only)
// compares the same client on the translator and on a zero-cost device of its own
// protocol, which leaves the translator's cost alone.
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  LegacyRegionOverV2,
  loadV1,
  loadV2,
  saveV1,
  saveV2,
  SimDevice,
  SimV1Region,
  SimV2Driver,
  V2DeviceOverLegacy,
} from '../dist/index.js';
import { BenchV2Device } from './lib/bench-v2-device.mjs';
import { compareThroughput, interleave, load, timed } from './lib/measure.mjs';
import { fileRecorder, memoryRecorder, nullSink, zeroCostFile } from './lib/migration-files.mjs';
import { machine, parseOptions, sizeName } from './lib/options.mjs';
import { ZeroCostV1Region } from './lib/zero-cost-v1-region.mjs';
import { zeroCostStreams } from './lib/zero-cost-streams.mjs';

const USAGE =
  'node --expose-gc bench/data-path.mjs [--sizes 256MiB,8GiB] [--windows 64KiB,1MiB,4MiB] [--reps 5] [--devices sim,zero] [--faces v1,v2] [--directions save,resume] [--pairings protocol,same-client] [--access mmap|pieces] [--all-windows]';
const MiB = 2 ** 20;
/** States up to this size are recorded in memory for the resume runs, bigger ones in a temp file. */
const IN_MEMORY_LIMIT = 2 ** 30;
const SEED = 7;

/** What a v2 device and a v1 region of each kind are, and how a saved stream is checked. */
const DEVICES = {
  sim: {
    v2: (size) => new SimV2Driver(new SimDevice({ size, seed: SEED }), { flags: 1 }),
    v1: (size, window) => new SimV1Region(new SimDevice({ size, seed: SEED }), { windowSize: window }),
    v2Target: (size) => new SimV2Driver(new SimDevice({ size, seed: 0 }), { flags: 1 }),
    v1Target: (size, window) => new SimV1Region(new SimDevice({ size, seed: 0 }), { windowSize: window }),
    streamBytes: (size) => Number(new SimDevice({ size, seed: SEED }).fullStreamBytes()),
    /** After a load: the target holds the source's state. */
    check(target, size) {
      const want = new SimDevice({ size, seed: SEED }).fingerprint();
      if (target.device.fingerprint() !== want) throw new Error('resumed state differs from the saved one');
    },
  },
  zero: {
    v2: (size) => new BenchV2Device(zeroCostStreams(size)),
    v1: (size, window) => new ZeroCostV1Region(size, window),
    v2Target: (size) => new BenchV2Device(zeroCostStreams(size)),
    v1Target: (size, window) => new ZeroCostV1Region(size, window),
    streamBytes: (size) => size,
    check() {}, // the device validated count and samples when the load left RESUMING
  },
};

/** Which part of issue 14 a case is. */
const issuePart = (device, direction, face) => (device === 'zero' ? 'd' : direction === 'resume' ? 'c' : face === 'v1' ? 'a' : 'b');

function expectBytes(got, want, what) {
  if (got !== want) throw new Error(`${what}: ${got} device bytes, expected ${want}`);
  return { bytes: got };
}

/**
 * The four ways to run a save or a resume: each client on its own protocol's
 * device (native) or through the translator over the other protocol's device.
 * Each builds fresh devices and times only the client call.
 */
function paths(kind, direction, size, window, access, input) {
  const dev = DEVICES[kind];
  const want = dev.streamBytes(size);
  const v1opts = { precopyRounds: 0, windowAccess: access, reuseBuffer: true }; // both clients reuse their record buffer: the null sink keeps none
  const v2opts = { precopyRounds: 0, maxReadBytes: window, reuseBuffer: true };
  if (direction === 'save') {
    const saved = (r, what) => expectBytes(r.precopyBytes + r.stopCopyBytes, want, what);
    const v1 = (region, what) => timed(async () => saved(await saveV1(region, nullSink(), v1opts), what));
    const v2 = (device, what) => timed(async () => saved(await saveV2(device, nullSink(), v2opts), what));
    return {
      v1Native: () => v1(dev.v1(size, window), 'saveV1'),
      v1OverV2: () => v1(new LegacyRegionOverV2(dev.v2(size), { windowSize: window }), 'saveV1 over LegacyRegionOverV2'),
      v2Native: () => v2(dev.v2(size), 'saveV2'),
      v2OverV1: () => v2(new V2DeviceOverLegacy(dev.v1(size, window)), 'saveV2 over V2DeviceOverLegacy'),
    };
  }
  /** Load into `face` (built over `target`), then check that `target` holds the saved state. */
  const loaded = (target, body, what) =>
    timed(async () => {
      const r = expectBytes((await body()).deviceBytes, want, what);
      dev.check(target, size);
      return r;
    });
  const v1 = (target, region, what) => loaded(target, () => loadV1(region, input(), { windowAccess: access }), what);
  const v2 = (target, device, what) => loaded(target, () => loadV2(device, input()), what);
  return {
    v1Native: () => {
      const t = dev.v1Target(size, window);
      return v1(t, t, 'loadV1');
    },
    v1OverV2: () => {
      const t = dev.v2Target(size);
      return v1(t, new LegacyRegionOverV2(t, { windowSize: window }), 'loadV1 over LegacyRegionOverV2');
    },
    v2Native: () => {
      const t = dev.v2Target(size);
      return v2(t, t, 'loadV2');
    },
    v2OverV1: () => {
      const t = dev.v1Target(size, window);
      return v2(t, new V2DeviceOverLegacy(t), 'loadV2 over V2DeviceOverLegacy');
    },
  };
}

/**
 * The pair for a face: the client through the translator, against
 * 'protocol': the other protocol's client on the device behind the translator
 *             (issue 14's comparison: QEMU 7.2 through the shim vs QEMU 8+ native);
 * 'same-client': the same client on a device of its own protocol (with the
 *             zero-cost devices, the translator's cost alone, whatever the clients cost).
 */
function arms(kind, face, direction, pairing, size, window, access, input) {
  const p = paths(kind, direction, size, window, access, input);
  if (face === 'v1') return { direct: pairing === 'protocol' ? p.v2Native : p.v1Native, translated: p.v1OverV2 };
  return { direct: pairing === 'protocol' ? p.v1Native : p.v2Native, translated: p.v2OverV1 };
}

/** The file the resume runs replay: what a direct save of the source writes, one record per `window`. */
async function resumeInput(kind, size, window) {
  if (kind === 'zero') return { replay: () => zeroCostFile(size, window), dispose() {}, where: 'generated' };
  const path = join(tmpdir(), `vfio-mig-bench-${process.pid}.mig`);
  const rec = size <= IN_MEMORY_LIMIT ? memoryRecorder() : fileRecorder(path, window + 16);
  await saveV2(DEVICES.sim.v2(size), rec.sink, { precopyRounds: 0, maxReadBytes: window, reuseBuffer: size > IN_MEMORY_LIMIT });
  await new Promise((resolve, reject) => rec.sink.end((err) => (err ? reject(err) : resolve())));
  return { replay: rec.replay, dispose: () => rmSync(path, { force: true }), where: size <= IN_MEMORY_LIMIT ? 'memory' : 'file' };
}

async function main() {
  const o = parseOptions(
    process.argv.slice(2),
    {
      sizes: [256 * MiB],
      windows: [64 * 1024, MiB, 4 * MiB],
      reps: 5,
      devices: ['sim', 'zero'],
      faces: ['v1', 'v2'],
      directions: ['save', 'resume'],
      pairings: ['protocol', 'same-client'],
      access: 'mmap',
      allWindows: false,
    },
    USAGE,
  );
  const cases = [];
  for (const kind of o.devices) {
    if (!DEVICES[kind]) throw new Error(`unknown device '${kind}'\nusage: ${USAGE}`);
    for (const size of o.sizes) {
      for (const window of o.windows) {
        if (size > IN_MEMORY_LIMIT && window !== MiB && !o.allWindows) continue;
        for (const direction of o.directions) {
          const input = direction === 'resume' ? await resumeInput(kind, size, window) : null;
          try {
            for (const face of o.faces) {
              for (const pairing of kind === 'zero' ? o.pairings : ['protocol']) {
                const loadBefore = load();
                const runs = await interleave(o.reps, arms(kind, face, direction, pairing, size, window, o.access, input?.replay));
                const c = {
                  part: issuePart(kind, direction, face),
                  device: kind,
                  face,
                  direction,
                  pairing,
                  size: sizeName(size),
                  window: sizeName(window),
                  ...(input ? { input: input.where } : {}),
                  ...compareThroughput(runs.direct, runs.translated),
                  loadBefore,
                  loadAfter: load(),
                };
                cases.push(c);
                process.stderr.write(
                  `data-path ${c.device} ${face}-face ${direction} (${pairing}) ${c.size} window ${c.window}: direct ${c.directMiBps} MiB/s, translated ${c.translatedMiBps} MiB/s, ratio ${c.throughputRatio} (paired ${c.pairedThroughputRatio}), load ${c.loadAfter[0]}\n`,
                );
              }
            }
          } finally {
            input?.dispose();
          }
        }
      }
    }
  }
  console.log(
    JSON.stringify(
      { bench: 'data-path', machine: machine(), options: { ...o, sizes: o.sizes.map(sizeName), windows: o.windows.map(sizeName) }, cases },
      null,
      2,
    ),
  );
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
