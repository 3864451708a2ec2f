// The bridge's data path with real volume (issue 14, item 3): the padded mtty
// (test/lab/mtty-pad.patch; LAB_PAD_MIB, default 64 MiB) migrated through a
// file by QEMU 10 natively (v2), by QEMU 7.2 under `vfio-mig bridge` with the
// data window mapped (mmap) and with it trapped (--no-mmap, QEMU 7.2 copies it
// in 8-byte preads that the interposer serves), one after another on the same
// two mtty instances, each from its own source into a destination of its own
// kind. QEMU's numbers (query-migrate: total time, downtime, throughput), the
// stop-and-copy throughput (state / downtime), the destination's
// migrate-incoming-to-running time and the bridge's own summary are printed
// and written as JSON to the results (bridge-volume.json), each as a ratio to
// QEMU 10 native. The marks must arrive every time (the padding is checked
// byte by byte by the destination's driver).
// Options (environment): LAB_VOLUME_REPS=N runs the variants N times,
// interleaved (the order rotates), and compares medians (default 1: the lab
// run stays short); LAB_BRIDGE_WINDOW=4MiB adds a mapped variant with that
// `--window`; LAB_BRIDGE_TRACE=1 makes the bridges write `--trace` files, kept
// in the results beside the JSON (bench/bridge-trace.mjs breaks a source's
// stop-and-copy down per chunk).
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEV_A, DEV_B } from './lab-env.js';
import { timedFileMigration, type TimedMigration } from './migration-scenarios.js';
import { LAB_PAD_SIZES, MiB, withPadding } from './mtty-padding.js';
import { LAB_RUN_DIR, switchoverParameters, vfioMigBridge, type BridgeRun, type QemuVersion } from './qemu-vm.js';

/** A way to migrate: QEMU 10 natively, or QEMU 7.2 under the bridge with these bridge options. */
interface Variant {
  key: string;
  label: string;
  qemu: QemuVersion;
  bridgeOptions?: string[];
}

const EXTRA_WINDOW = process.env.LAB_BRIDGE_WINDOW;
const VARIANTS: Variant[] = [
  { key: 'qemu10', label: 'QEMU 10 native', qemu: '10' },
  { key: 'bridgeMmap', label: 'QEMU 7.2 + bridge, mmap', qemu: '7.2', bridgeOptions: [] },
  { key: 'bridgeTrapped', label: 'QEMU 7.2 + bridge, trapped (--no-mmap)', qemu: '7.2', bridgeOptions: ['--no-mmap'] },
  ...(EXTRA_WINDOW
    ? [
        {
          key: `bridgeMmapWindow${EXTRA_WINDOW}`,
          label: `QEMU 7.2 + bridge, mmap, --window ${EXTRA_WINDOW}`,
          qemu: '7.2' as const,
          bridgeOptions: ['--window', EXTRA_WINDOW],
        },
      ]
    : []),
];

const REPS = Number(process.env.LAB_VOLUME_REPS || 1);
const TRACE = process.env.LAB_BRIDGE_TRACE === '1';
const resultsDir = () => process.env.LAB_RESULTS ?? LAB_RUN_DIR;

/** One side's QEMU options; a bridged side traces into the guest's /tmp (a 9p write per line would slow it). */
function side(v: Variant, devices: string[], traceName: string): { qemu: QemuVersion; devices: string[]; bridge?: BridgeRun } {
  if (!v.bridgeOptions) return { qemu: v.qemu, devices };
  const trace = TRACE ? ['--trace', `${LAB_RUN_DIR}/${traceName}`] : [];
  return { qemu: v.qemu, devices, bridge: vfioMigBridge(...v.bridgeOptions, ...trace) };
}

/** Move a side's trace into the results. */
function keepTrace(traceName: string): void {
  if (!TRACE) return;
  copyFileSync(`${LAB_RUN_DIR}/${traceName}`, `${resultsDir()}/${traceName}`);
  rmSync(`${LAB_RUN_DIR}/${traceName}`, { force: true });
}

const round = (x: number, digits = 3) => Number(x.toFixed(digits));

/** The `info migrate` lines with times and sizes, as QEMU (7.2 or 10) prints them. */
const keyLines = (info: string): string =>
  info
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /status|time|downtime|setup|throughput|transferred|total|mbps/i.test(l))
    .join('; ');

/** The bridge's exit summary for the device: bytes saved and its time in STOP_COPY. */
function bridgeSummary(log: string): { bytesSaved: string; stopCopyMs: number } | undefined {
  const m = /summary [^:]+: saved \d+ chunks? \(([^)]+)\), resumed \d+ chunks? \([^)]+\), stop-and-copy ([\d.]+) ms/.exec(log);
  return m ? { bytesSaved: m[1], stopCopyMs: Number(m[2]) } : undefined;
}

/** What one variant measured. */
function numbers(r: TimedMigration, mib: number) {
  const s = r.source;
  const downtimeMs = s.downtimeMs ?? NaN;
  return {
    totalTimeMs: s.totalTimeMs,
    setupTimeMs: s.setupTimeMs,
    downtimeMs,
    throughputMbps: s.mbps,
    fileBytes: r.fileBytes,
    stopCopyMiBps: round((mib * 1000) / downtimeMs, 1),
    resumeMs: Math.round(r.resumeMs),
    resumeMiBps: round((mib * 1000) / r.resumeMs, 1),
    ...(bridgeSummary(r.sourceLog) ? { bridgeSource: bridgeSummary(r.sourceLog) } : {}),
    infoMigrate: keyLines(s.text),
  };
}

type Numbers = ReturnType<typeof numbers>;

/** The numbers compared, as medians over a variant's runs. */
function medians(runs: Numbers[]) {
  const med = (f: (n: Numbers) => number) => {
    const xs = runs.map(f).sort((a, b) => a - b);
    const mid = xs.length >> 1;
    return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
  };
  return {
    totalTimeMs: med((n) => n.totalTimeMs ?? NaN),
    downtimeMs: med((n) => n.downtimeMs),
    throughputMbps: round(
      med((n) => n.throughputMbps ?? NaN),
      2,
    ),
    stopCopyMiBps: med((n) => n.stopCopyMiBps),
    resumeMs: med((n) => n.resumeMs),
    ...(runs[0].bridgeSource ? { bridgeStopCopyMs: med((n) => n.bridgeSource?.stopCopyMs ?? NaN) } : {}),
  };
}

type Medians = ReturnType<typeof medians>;

/** Each variant against QEMU 10 native: > 1 means more (time) or faster (throughput). */
function ratios(v: Medians, native: Medians) {
  return {
    totalTimeRatio: round(v.totalTimeMs / native.totalTimeMs),
    downtimeRatio: round(v.downtimeMs / native.downtimeMs),
    throughputRatio: round(v.throughputMbps / native.throughputMbps),
    stopCopyThroughputRatio: round(v.stopCopyMiBps / native.stopCopyMiBps),
    resumeTimeRatio: round(v.resumeMs / native.resumeMs),
  };
}

function writeResults(results: unknown): void {
  mkdirSync(resultsDir(), { recursive: true });
  writeFileSync(`${resultsDir()}/bridge-volume.json`, `${JSON.stringify(results, null, 2)}\n`);
}

const all: Record<string, unknown> = {};

describe('QEMU 10 native vs QEMU 7.2 + vfio-mig bridge with mtty state of real volume (lab)', () => {
  it.each(LAB_PAD_SIZES)(
    "%i MiB of padding: every variant completes and the marks arrive; QEMU's numbers and the ratios to QEMU 10 printed",
    async (mib) => {
      expect(Number.isInteger(mib) && mib > 0).toBe(true);
      expect(Number.isInteger(REPS) && REPS > 0).toBe(true);
      const measured: Record<string, Numbers[]> = Object.fromEntries(VARIANTS.map((v) => [v.key, []]));
      await withPadding(mib, async () => {
        for (let rep = 0; rep < REPS; rep++)
          for (const [i] of VARIANTS.entries()) {
            const v = VARIANTS[(i + rep) % VARIANTS.length]; // each repetition starts with the next variant
            const traces = [
              `bridge-volume-${v.key}-${mib}MiB-${rep}-source.trace.jsonl`,
              `bridge-volume-${v.key}-${mib}MiB-${rep}-destination.trace.jsonl`,
            ];
            const r = await timedFileMigration(
              `vol-${v.key}`,
              side(v, [DEV_A], traces[0]),
              side(v, [DEV_B], traces[1]),
              v.qemu === '10' ? switchoverParameters(mib) : undefined,
            );
            expect(r.fileBytes).toBeGreaterThan(mib * MiB);
            if (v.bridgeOptions) {
              expect(bridgeSummary(r.sourceLog), `${v.label}: the bridge's summary\n${r.sourceLog}`).toBeDefined();
              traces.forEach(keepTrace);
            }
            const n = numbers(r, mib);
            measured[v.key].push(n);
            console.log(
              `bridge volume, ${mib} MiB, run ${rep + 1}/${REPS}, ${v.label}: total ${n.totalTimeMs} ms, downtime ${n.downtimeMs} ms (${n.stopCopyMiBps} MiB/s), throughput ${round(n.throughputMbps ?? NaN, 1)} mbps, setup ${n.setupTimeMs} ms, file ${n.fileBytes} B; destination migrate-incoming to running ${n.resumeMs} ms${n.bridgeSource ? `; bridge: device in STOP_COPY ${n.bridgeSource.stopCopyMs} ms, saved ${n.bridgeSource.bytesSaved}` : ''}`,
            );
            console.log(`bridge volume, ${mib} MiB, run ${rep + 1}/${REPS}, ${v.label}: info migrate: ${n.infoMigrate}`);
          }
      });
      const native = medians(measured.qemu10);
      const result = Object.fromEntries(
        VARIANTS.map((v) => {
          const m = medians(measured[v.key]);
          return [v.key, { label: v.label, median: m, ...ratios(m, native), runs: measured[v.key] }];
        }),
      );
      for (const v of VARIANTS.slice(1)) {
        const r = result[v.key];
        console.log(
          `bridge volume, ${mib} MiB, ${v.label} / QEMU 10 native (medians of ${REPS}): total time ${r.totalTimeRatio}, downtime ${r.downtimeRatio}, throughput ${r.throughputRatio}, stop-and-copy throughput ${r.stopCopyThroughputRatio}, resume time ${r.resumeTimeRatio}`,
        );
      }
      all[`${mib}MiB`] = result;
      writeResults({
        bench: 'bridge-volume',
        reps: REPS,
        note: 'ratios are variant / QEMU 10 native, from medians; time ratios > 1 are slower, throughput ratios < 1 are slower',
        sizes: all,
      });
    },
    3_600_000,
  );
});
