// Where one zero-cost path (lib/zero-cost-paths.mjs) spends its time and
// allocates: runs it in a child node under the inspector's CPU profiler, then
// again under its sampling heap profiler (collected objects included, so it
// counts every allocation, not only what survives; JS heap objects only: an
// ArrayBuffer's backing store is not in it), after one unprofiled warm-up
// run, and prints the functions with the most self time and the most bytes
// allocated per chunk, with their source position in dist/. For finding per-chunk work and
// allocations in the translators; not a benchmark (the profilers slow
// everything down).
//
//   node bench/profile.mjs --path v1-face --direction save [--size 1GiB] [--window 1MiB] [--top 25]
import { execFileSync } from 'node:child_process';
import { Session } from 'node:inspector/promises';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { round } from './lib/measure.mjs';
import { parseOptions, parseSize, sizeName } from './lib/options.mjs';
import { ZERO_COST_PATHS } from './lib/zero-cost-paths.mjs';

const USAGE =
  'node bench/profile.mjs --path v1-face|v2-face|direct-v2|direct-v1 --direction save|resume [--size 1GiB] [--window 1MiB] [--top 25]';
const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));

const file = (url) => (url.startsWith('file:') ? relative(ROOT, fileURLToPath(url)) : url);
const where = (f) => `${f.functionName || '(anonymous)'} ${f.url ? file(f.url) : ''}:${f.lineNumber + 1}`;

/** Self time per function (ms) from a CPU profile: samples x their interval. */
function cpuTop(profile, top) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const ms = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const key = where(byId.get(profile.samples[i]).callFrame);
    ms.set(key, (ms.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  }
  const total = [...ms.values()].reduce((a, b) => a + b, 0);
  return [...ms]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([fn, t]) => ({ fn, ms: round(t, 1), share: round(t / total) }));
}

/** Bytes allocated per function and per chunk (sampled every 256 bytes on average) from a heap sampling profile. */
function heapTop(profile, top, chunks) {
  const bytes = new Map();
  const walk = (node) => {
    const key = where(node.callFrame);
    const self = node.selfSize ?? 0;
    if (self) bytes.set(key, (bytes.get(key) ?? 0) + self);
    for (const c of node.children ?? []) walk(c);
  };
  walk(profile.head);
  return [...bytes]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([fn, b]) => ({ fn, MiB: round(b / 2 ** 20, 2), bytesPerChunk: Math.round(b / chunks) }));
}

/**
 * In the child: a warm-up run, one run under the CPU profiler, one under the
 * heap sampler (apart: sampling allocations with their stacks costs more than
 * the path). Prints both profiles and the CPU-profiled run's time.
 */
async function child([path, direction, size, window]) {
  const run = () => ZERO_COST_PATHS[path][direction](parseSize(size), parseSize(window));
  await run();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  const t0 = performance.now();
  await run();
  const seconds = (performance.now() - t0) / 1000;
  const { profile: cpu } = await session.post('Profiler.stop');
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 256,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  await run();
  const { profile: heap } = await session.post('HeapProfiler.stopSampling');
  session.disconnect();
  console.log(JSON.stringify({ seconds, cpu, heap }));
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(argv.slice(1));
  const o = parseOptions(argv, { path: 'v1-face', direction: 'save', size: 2 ** 30, window: 2 ** 20, top: 25 }, USAGE);
  if (!ZERO_COST_PATHS[o.path]?.[o.direction]) throw new Error(`unknown path/direction\nusage: ${USAGE}`);
  const out = execFileSync(process.execPath, [SELF, '--child', o.path, o.direction, sizeName(o.size), sizeName(o.window)], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  const { seconds, cpu, heap } = JSON.parse(out);
  const chunks = Math.ceil(o.size / o.window);
  console.log(
    JSON.stringify(
      {
        path: o.path,
        direction: o.direction,
        size: sizeName(o.size),
        window: sizeName(o.window),
        chunks,
        seconds: round(seconds, 3),
        cpuSelfTime: cpuTop(cpu, o.top),
        allocated: heapTop(heap, o.top, chunks),
      },
      null,
      2,
    ),
  );
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
