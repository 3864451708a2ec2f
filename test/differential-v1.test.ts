// Differential suite, v1 face: SimV1Region (the reference v1 driver) against
// LegacyRegionOverV2(SimV2Driver) for each of the four v2 flag sets, over
// random command sequences (translate/diff-v1-face.ts). Seeded: DIFF_SEED
// picks the seed (default fixed), DIFF_RUNS the sequences per pairing
// (default 1000). A failure prints the seed, fast-check's replay path and the
// shrunk command sequence.
import { describe, expect, it } from 'vitest';
import { DEFAULT_DIFF_SEED, runDifferential } from '../translate/differential.js';

const seed = process.env.DIFF_SEED ? Number(process.env.DIFF_SEED) : DEFAULT_DIFF_SEED;
const runs = process.env.DIFF_RUNS ? Number(process.env.DIFF_RUNS) : 1000;

describe(`v1 face differential (seed ${seed}, ${runs} sequences per pairing)`, () => {
  it.each(['v1-stop-copy', 'v1-p2p', 'v1-pre-copy', 'v1-all'] as const)('%s', async (pairing) => {
    const s = await runDifferential({ seed, runs, pairing, maxCommands: 60 });
    if (!s.passed) throw new Error(`differential ${pairing} failed (seed ${seed}):\n${s.report}\n${(s.counterexample ?? []).join('\n')}`);
    expect(s.runs).toBe(runs);
    // The sequences must get somewhere: whole streams saved and compared, resumes applied.
    if (runs >= 1000) {
      expect(s.events['stream complete, compared'] ?? 0).toBeGreaterThan(runs / 50);
      expect(s.events['left RESUMING'] ?? 0).toBeGreaterThan(runs / 50);
      expect(s.events['state write EINVAL'] ?? 0).toBeGreaterThan(runs / 10);
    }
  });
});
