// The body both differential test files share: run pairings with DIFF_SEED /
// DIFF_RUNS (default fixed seed, 1000 sequences), print seed and shrunk
// sequence on failure, and check the sequences got somewhere.
import { describe, expect, it } from 'vitest';
import { DEFAULT_DIFF_SEED, runDifferential, type DifferentialPairing } from '../../translate/differential/run-differential.js';

const seed = process.env.DIFF_SEED ? Number(process.env.DIFF_SEED) : DEFAULT_DIFF_SEED;
const runs = process.env.DIFF_RUNS ? Number(process.env.DIFF_RUNS) : 1000;

/** `einvalEvent`: the event counting refused state changes on that face. */
export function differentialSuite(face: string, pairings: readonly DifferentialPairing[], einvalEvent: string): void {
  describe(`${face} differential (seed ${seed}, ${runs} sequences per pairing)`, () => {
    it.each(pairings)('%s', async (pairing) => {
      const s = await runDifferential({ seed, runs, pairing, maxCommands: 60 });
      if (!s.passed) throw new Error(`differential ${pairing} failed (seed ${seed}):\n${s.report}\n${(s.counterexample ?? []).join('\n')}`);
      expect(s.runs).toBe(runs);
      // The sequences must get somewhere: whole streams saved and compared, resumes applied, refusals hit.
      if (runs >= 1000) {
        expect(s.events['stream complete, compared'] ?? 0).toBeGreaterThan(runs / 50);
        expect(s.events['left RESUMING'] ?? 0).toBeGreaterThan(runs / 50);
        expect(s.events[einvalEvent] ?? 0).toBeGreaterThan(runs / 10);
      }
    });
  });
}
