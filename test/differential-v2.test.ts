// Differential suite, v2 face: SimV2Driver against V2DeviceOverLegacy over
// SimV1Region (STOP_COPY|PRE_COPY, and STOP_COPY alone with precopy off),
// and the round trip V2DeviceOverLegacy(LegacyRegionOverV2(SimV2Driver))
// against the SimV2Driver it wraps (with and without PRE_COPY) (translate/diff-v2-face.ts). Seeded:
// DIFF_SEED / DIFF_RUNS as in differential-v1.test.ts.
import { describe, expect, it } from 'vitest';
import { DEFAULT_DIFF_SEED, runDifferential } from '../translate/differential.js';

const seed = process.env.DIFF_SEED ? Number(process.env.DIFF_SEED) : DEFAULT_DIFF_SEED;
const runs = process.env.DIFF_RUNS ? Number(process.env.DIFF_RUNS) : 1000;

describe(`v2 face differential (seed ${seed}, ${runs} sequences per pairing)`, () => {
  it.each(['v2-pre-copy', 'v2-stop-copy', 'v2-round-trip', 'v2-round-trip-stop-copy'] as const)('%s', async (pairing) => {
    const s = await runDifferential({ seed, runs, pairing, maxCommands: 60 });
    if (!s.passed) throw new Error(`differential ${pairing} failed (seed ${seed}):\n${s.report}\n${(s.counterexample ?? []).join('\n')}`);
    expect(s.runs).toBe(runs);
    if (runs >= 1000) {
      expect(s.events['stream complete, compared'] ?? 0).toBeGreaterThan(runs / 50);
      expect(s.events['left RESUMING'] ?? 0).toBeGreaterThan(runs / 50);
      expect(s.events['SET EINVAL'] ?? 0).toBeGreaterThan(runs / 10);
    }
  });
});
