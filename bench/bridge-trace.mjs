// Where a bridged source's stop-and-copy time goes, from a `vfio-mig bridge
// --trace` file (docs/bridge.md; the lab keeps them with LAB_BRIDGE_TRACE=1):
// for each v1 register access QEMU made while the device was in STOP_COPY,
// the time since the previous access was answered (QEMU's own work, e.g. its
// memcpy from the mapped window and its write of the chunk, plus the trip
// through the interposer and the socket), and the time the bridge spent in
// device calls (data_fd reads, MIG_DATA_SIZE) while serving it. Medians per
// access kind and per chunk; one JSON object.
//
//   node bench/bridge-trace.mjs TRACE.jsonl [--dev 1]
import { readFileSync } from 'node:fs';
import { median, round } from './lib/measure.mjs';

const FIELDS = { '0x0': 'device_state', '0x8': 'pending_bytes', '0x10': 'data_offset', '0x18': 'data_size' };

function main() {
  const [file, ...rest] = process.argv.slice(2);
  if (!file) throw new Error('usage: node bench/bridge-trace.mjs TRACE.jsonl [--dev 1]');
  const dev = rest[0] === '--dev' ? Number(rest[1]) : 1;
  const events = readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((e) => e.dev === undefined || e.dev === dev);
  const enter = events.findIndex((e) => e.ev === 'v2' && e.call === 'setState' && e.arg === 'STOP_COPY' && e.result === 'ok');
  if (enter < 0) throw new Error('no SET to STOP_COPY in this trace (a destination, or another device?)');
  const leave = events.findIndex((e, i) => i > enter && e.ev === 'v2' && e.call === 'setState' && e.result === 'ok');
  const window = events.slice(enter, leave < 0 ? undefined : leave + 1);
  const perKind = {};
  let last = window[0].t;
  let deviceUs = 0; // device calls since the last v1 access
  const chunks = [];
  let chunk = null;
  for (const e of window) {
    if (e.ev === 'data' || (e.ev === 'v2' && e.call !== 'setState')) {
      deviceUs += e.us ?? 0;
      continue;
    }
    if (e.ev !== 'v1') continue;
    const kind = FIELDS[e.off] ?? 'window';
    const gapMs = e.t - last;
    (perKind[kind] ??= []).push({ gapMs, deviceMs: deviceUs / 1000 });
    if (kind === 'data_offset') {
      if (chunk) chunks.push(chunk);
      chunk = { ms: 0, deviceMs: 0 };
    }
    if (chunk) {
      chunk.ms += gapMs;
      chunk.deviceMs += deviceUs / 1000;
    }
    last = e.t;
    deviceUs = 0;
  }
  if (chunk) chunks.push(chunk);
  const summary = (xs) => ({
    count: xs.length,
    medianGapMs: round(median(xs.map((x) => x.gapMs))),
    medianDeviceMs: round(median(xs.map((x) => x.deviceMs))),
  });
  console.log(
    JSON.stringify(
      {
        file,
        stopCopyMs: round(window.at(-1).t - window[0].t, 1),
        accesses: Object.fromEntries(Object.entries(perKind).map(([k, xs]) => [k, summary(xs)])),
        chunks: {
          count: chunks.length,
          medianMs: round(median(chunks.map((c) => c.ms))),
          medianDeviceMs: round(median(chunks.map((c) => c.deviceMs))),
          medianOtherMs: round(median(chunks.map((c) => c.ms - c.deviceMs))),
        },
      },
      null,
      2,
    ),
  );
}

main();
