// The Markdown tables of bench/README.md from the JSON `npm run bench` prints,
// or from the lab's bridge volume results (.lab/results/bridge-volume.json):
//
//   npm run -s bench > bench.json && node bench/table.mjs bench.json
//   node bench/table.mjs .lab/results/bridge-volume.json
import { readFileSync } from 'node:fs';

const [file] = process.argv.slice(2);
if (!file) throw new Error('usage: node bench/table.mjs BENCH.json');
const all = JSON.parse(readFileSync(file, 'utf8'));

function table(header, rows) {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** The lab's numbers: one row per size and variant, medians, ratios to QEMU 10 native. */
function labTable(lab) {
  const rows = Object.entries(lab.sizes).flatMap(([size, variants]) =>
    Object.values(variants).map((v) => [
      size,
      v.label,
      v.median.totalTimeMs,
      v.median.downtimeMs,
      v.median.throughputMbps,
      v.median.stopCopyMiBps,
      v.median.resumeMs,
      v.median.bridgeStopCopyMs ?? '',
      v.totalTimeRatio,
      v.downtimeRatio,
      v.throughputRatio,
      v.stopCopyThroughputRatio,
      v.resumeTimeRatio,
    ]),
  );
  return [
    `Medians of ${lab.reps} run(s) per variant; ratios to QEMU 10 native (time: > 1 slower; throughput: < 1 slower).`,
    table(
      [
        'state',
        'variant',
        'total ms',
        'downtime ms',
        'throughput mbps',
        'state/downtime MiB/s',
        'load ms',
        'bridge STOP_COPY ms',
        'totalTimeRatio',
        'downtimeRatio',
        'throughputRatio',
        'stopCopyThroughputRatio',
        'resumeTimeRatio',
      ],
      rows,
    ),
  ].join('\n');
}

if (all.bench === 'bridge-volume') {
  console.log(labTable(all));
  process.exit(0);
}

const FACE = { v1: 'v1 face (LegacyRegionOverV2)', v2: 'v2 face (V2DeviceOverLegacy)' };
const out = [];
const m = all.machine;
out.push(
  `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, Linux ${m.kernel}, node ${m.node}; run ${all.started} – ${all.finished}.`,
);

const dataRows = ['data-path', 'data-path-8g', 'data-path-sim-8g', 'real-fd', 'real-fd-8g']
  .flatMap((p) => all.parts[p]?.cases ?? [])
  .map((c) => [
    c.part,
    c.device,
    FACE[c.face],
    c.direction,
    c.pairing ?? 'protocol',
    c.size,
    c.window,
    c.directMiBps,
    c.translatedMiBps,
    c.throughputRatio,
    c.pairedThroughputRatio,
    c.loadAfter[0],
  ]);
if (dataRows.length) {
  out.push(
    '',
    '#### Data path (a–e): MiB/s, medians; ratio = translated / direct throughput (≥ 0.95 is the target at 1 MiB, zero-cost device)',
  );
  out.push(
    table(
      ['part', 'device', 'face', 'direction', 'direct is', 'state', 'window', 'direct', 'translated', 'throughputRatio', 'paired', 'load'],
      dataRows,
    ),
  );
}
const sc = all.parts['state-change']?.cases ?? [];
if (sc.length) {
  out.push('', '#### State change (f): µs per change, medians; ratio = translated / direct time (< 2 is the target)');
  out.push(
    table(
      ['face', 'change', 'v1 access', 'direct µs', 'translated µs', 'timeRatio', 'paired', 'load'],
      sc.map((c) => [FACE[c.face], c.change, c.v1Op, c.directUs, c.translatedUs, c.timeRatio, c.pairedTimeRatio, c.loadAfter[0]]),
    ),
  );
}
const mem = all.parts.memory?.cases ?? [];
if (mem.length) {
  const sizes = Object.keys(mem[0].rss);
  out.push(
    '',
    `#### Peak RSS (g): MiB, one process per run, zero-cost devices, ${mem[0].window} window (target: growth ≤ window + 16 MiB)`,
  );
  out.push(
    table(
      ['path', 'direction', ...sizes, 'growth', 'allowed', 'within'],
      mem.map((c) => [
        c.path,
        c.direction,
        ...sizes.map((s) => c.rss[s].maxRssMiB),
        c.growthMiB,
        c.allowedGrowthMiB,
        c.withinTarget ? 'yes' : '**no**',
      ]),
    ),
  );
}
const rt = all.parts['roundtrip-8g'];
if (rt)
  out.push(
    '',
    `#### roundtrip-8g: ${rt.deviceBytes} device bytes in ${rt.wallSeconds} s (${rt.throughputMiBps} MiB/s), peak RSS source ${rt.source.maxRssMB} MB, destination ${rt.destination.maxRssMB} MB`,
  );
console.log(out.join('\n'));
