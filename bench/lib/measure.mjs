// How every bench compares a direct path with a translated one: both arms
// run in the same process, interleaved (the order flips every repetition),
// after one unmeasured warm-up run each, with a GC in between when node runs
// with --expose-gc; the answer is the medians and their ratio. On a shared
// machine the load changes from one second to the next, so the paired ratio
// (the median over repetitions of translated/direct from the same
// repetition) is given beside the ratio of the medians.
import { loadavg } from 'node:os';

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export const round = (x, digits = 3) => Number(x.toFixed(digits));

export const load = () => loadavg().map((x) => round(x, 2));

function collectGarbage() {
  globalThis.gc?.();
}

/**
 * Run each arm `reps` times, interleaved. An arm is an async function that
 * prepares what it needs, times only the path under test and returns
 * { seconds, bytes? }.
 */
export async function interleave(reps, arms) {
  const names = Object.keys(arms);
  const runs = Object.fromEntries(names.map((n) => [n, []]));
  for (const n of names) {
    collectGarbage();
    await arms[n](); // warm-up
  }
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 ? [...names].reverse() : names;
    for (const n of order) {
      collectGarbage();
      runs[n].push(await arms[n]());
    }
  }
  return runs;
}

/** Medians and ratios of a data-path pair: throughput = bytes / seconds (MiB/s). */
export function compareThroughput(direct, translated) {
  const mibps = (r) => r.bytes / 2 ** 20 / r.seconds;
  const d = direct.map(mibps);
  const t = translated.map(mibps);
  return {
    directMiBps: round(median(d), 1),
    translatedMiBps: round(median(t), 1),
    throughputRatio: round(median(t) / median(d)),
    pairedThroughputRatio: round(median(t.map((x, i) => x / d[i]))),
    directSeconds: direct.map((r) => round(r.seconds, 4)),
    translatedSeconds: translated.map((r) => round(r.seconds, 4)),
  };
}

/** Medians and ratios of a per-operation pair: µs per operation, ratio translated / direct (> 1: slower). */
export function compareLatency(direct, translated) {
  const us = (r) => (r.seconds * 1e6) / r.ops;
  const d = direct.map(us);
  const t = translated.map(us);
  return {
    directUs: round(median(d), 2),
    translatedUs: round(median(t), 2),
    timeRatio: round(median(t) / median(d)),
    pairedTimeRatio: round(median(t.map((x, i) => x / d[i]))),
  };
}

/** Time `body` (an async function); returns { seconds, ...what body returned }. */
export async function timed(body) {
  const t0 = process.hrtime.bigint();
  const out = await body();
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, ...out };
}
