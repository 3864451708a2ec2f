// Issue 14, part (f): the control path. One state change, as each face's user
// makes it, through a translator vs directly on the device behind it
// (SimV2Driver / SimV1Region over a 1 MiB SimDevice), interleaved
// (lib/measure.mjs); µs per change and the ratio translated / direct.
//
//   v1 face: a v1 state change on LegacyRegionOverV2  vs  setState on the SimV2Driver.
//   v2 face: setState on V2DeviceOverLegacy  vs  a v1 state change on the SimV1Region.
// A v1 state change is measured two ways (`v1Op`): 'read-write' is v1SetState,
// QEMU 7.2's vfio_migration_set_state (read device_state, write the new value:
// two region accesses); 'write' is the device_state write alone.
// Changes: 'stop-start' (001 -> 000 -> 001; RUNNING -> STOP -> RUNNING), and
// 'stop-copy' (001 -> 010 -> 001; RUNNING -> STOP_COPY -> RUNNING, which opens a
// saving session and ends it: the data_fd is closed before going back).
//
//   node --expose-gc bench/state-change.mjs [--changes 2000] [--reps 7]
import {
  LegacyRegionOverV2,
  MigState,
  SimDevice,
  SimV1Region,
  SimV2Driver,
  V1_RUNNING,
  V1_SAVING,
  V2DeviceOverLegacy,
  v1SetState,
  writeDeviceState,
} from '../dist/index.js';
import { compareLatency, interleave, load, timed } from './lib/measure.mjs';
import { machine, parseOptions } from './lib/options.mjs';

const USAGE = 'node --expose-gc bench/state-change.mjs [--changes 2000] [--reps 7]';
const { RUNNING: R, STOP: S, STOP_COPY: SC } = MigState;
const simDevice = () => new SimDevice({ size: 1 << 20, seed: 7 });

/** A v1 change to exactly `value`: read-modify-write with mask 0 (QEMU 7.2), or the write alone. */
const V1_OPS = {
  'read-write': (region, value) => v1SetState(region, 0, value),
  write: (region, value) => writeDeviceState(region, value),
};

/** v2: go to `target` and close the data session it opens, if any (QEMU keeps it until the next change). */
async function v2Set(device, target, session) {
  await session.current?.close();
  session.current = await device.setState(target);
}

/** The v1 and v2 values of the two changes of each kind, in order. */
const CHANGES = {
  'stop-start': { v1: [0, V1_RUNNING], v2: [S, R] },
  'stop-copy': { v1: [V1_SAVING, V1_RUNNING], v2: [SC, R] },
};

function arms(face, kind, v1Op, changes) {
  const { v1, v2 } = CHANGES[kind];
  const change = V1_OPS[v1Op];
  const runV1 = (region) =>
    timed(async () => {
      for (let i = 0; i < changes; i++) await change(region, v1[i % 2]);
      return { ops: changes };
    });
  const runV2 = (device) => {
    const session = {};
    return timed(async () => {
      for (let i = 0; i < changes; i++) await v2Set(device, v2[i % 2], session);
      return { ops: changes };
    });
  };
  if (face === 'v1') {
    return {
      direct: () => runV2(new SimV2Driver(simDevice(), { flags: 1 })),
      translated: () => runV1(new LegacyRegionOverV2(new SimV2Driver(simDevice(), { flags: 1 }))),
    };
  }
  return {
    direct: () => runV1(new SimV1Region(simDevice())),
    translated: () => runV2(new V2DeviceOverLegacy(new SimV1Region(simDevice()))),
  };
}

async function main() {
  const o = parseOptions(process.argv.slice(2), { changes: 2000, reps: 7 }, USAGE);
  if (o.changes % 2) o.changes++; // every run ends where it started
  const cases = [];
  for (const kind of Object.keys(CHANGES)) {
    for (const v1Op of Object.keys(V1_OPS)) {
      for (const face of ['v1', 'v2']) {
        const loadBefore = load();
        const runs = await interleave(o.reps, arms(face, kind, v1Op, o.changes));
        const c = { part: 'f', face, change: kind, v1Op, ...compareLatency(runs.direct, runs.translated), loadBefore, loadAfter: load() };
        cases.push(c);
        process.stderr.write(
          `state-change ${face}-face ${kind} (v1 ${v1Op}): direct ${c.directUs} µs, translated ${c.translatedUs} µs, ratio ${c.timeRatio} (paired ${c.pairedTimeRatio}), load ${c.loadAfter[0]}\n`,
        );
      }
    }
  }
  console.log(JSON.stringify({ bench: 'state-change', machine: machine(), options: o, cases }, null, 2));
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
