// The runnable differential comparison (ARCHITECTURE.md: translate/differential):
// random command sequences, fast-check model-based (fc.commands +
// fc.asyncModelRun), against a reference implementation of a face and a
// translated one. Used by the test suite and by `vfio-mig diff`.
//
// fast-check is loaded only when a run starts (dynamic import), so importing
// the package root never needs it.
import type * as FC from 'fast-check';
import { MigrationError } from '../../src/uapi/errors.js';
import { MigFlags } from '../../src/v2/states.js';
import type { LegacyRegion } from '../../legacy/contracts.js';
import type { MigrationDevice } from '../../src/v2/contracts.js';
import type { DiffStats } from './outcome.js';
import { v1CommandArbitraries, v1ConfigArbitrary, v1Setup } from './v1-face.js';
import { v2CommandArbitraries, v2ConfigArbitrary, v2Setup } from './v2-face.js';

const { STOP_COPY: SC, P2P, PRE_COPY: PC } = MigFlags;

export interface DifferentialPairingInfo {
  name: string;
  face: 'v1' | 'v2';
  reference: string;
  translated: string;
}

/** Every pairing: the v1 face for the four v2 flag sets, the v2 face over v1 (with and without pre-copy), and the round trips. */
export const DIFFERENTIAL_PAIRINGS = [
  { name: 'v1-stop-copy', face: 'v1', reference: 'SimV1Region', translated: 'LegacyRegionOverV2(SimV2Driver flags=STOP_COPY)' },
  { name: 'v1-p2p', face: 'v1', reference: 'SimV1Region', translated: 'LegacyRegionOverV2(SimV2Driver flags=STOP_COPY|P2P)' },
  { name: 'v1-pre-copy', face: 'v1', reference: 'SimV1Region', translated: 'LegacyRegionOverV2(SimV2Driver flags=STOP_COPY|PRE_COPY)' },
  { name: 'v1-all', face: 'v1', reference: 'SimV1Region', translated: 'LegacyRegionOverV2(SimV2Driver flags=STOP_COPY|P2P|PRE_COPY)' },
  { name: 'v2-pre-copy', face: 'v2', reference: 'SimV2Driver flags=STOP_COPY|PRE_COPY', translated: 'V2DeviceOverLegacy(SimV1Region)' },
  {
    name: 'v2-stop-copy',
    face: 'v2',
    reference: 'SimV2Driver flags=STOP_COPY',
    translated: 'V2DeviceOverLegacy(SimV1Region, precopy off)',
  },
  {
    name: 'v2-round-trip',
    face: 'v2',
    reference: 'SimV2Driver flags=STOP_COPY|PRE_COPY',
    translated: 'V2DeviceOverLegacy(LegacyRegionOverV2(SimV2Driver flags=STOP_COPY|PRE_COPY))',
  },
  {
    name: 'v2-round-trip-stop-copy',
    face: 'v2',
    reference: 'SimV2Driver flags=STOP_COPY',
    translated: 'V2DeviceOverLegacy(LegacyRegionOverV2(SimV2Driver flags=STOP_COPY), precopy off)',
  },
] as const satisfies readonly DifferentialPairingInfo[];

export type DifferentialPairing = (typeof DIFFERENTIAL_PAIRINGS)[number]['name'];

export interface DifferentialOptions {
  seed: number;
  /** Command sequences to run (default 1000). */
  runs?: number;
  pairing: DifferentialPairing;
  /** Longest command sequence (default 40). */
  maxCommands?: number;
  /**
   * Wrap the translated side before it is compared (v1 face: the region, v2
   * face: the device). For checking that a deliberately broken translator is
   * caught, or a decorated one still agrees; the reference side is untouched.
   */
  wrapTranslated?: { v1?: (region: LegacyRegion) => LegacyRegion; v2?: (device: MigrationDevice) => MigrationDevice };
}

export interface DifferentialSummary {
  pairing: DifferentialPairing;
  seed: number;
  /** Sequences run (the failing one included). */
  runs: number;
  /** Commands executed over all sequences (shrinking excluded). */
  commands: number;
  passed: boolean;
  /** fast-check's report on failure: seed, path, the shrunk command sequence and the mismatch. */
  report?: string;
  /** How often notable things happened over all sequences (e.g. 'stream complete, compared', 'left RESUMING'). */
  events: Record<string, number>;
  /** The shrunk command sequence alone, one command per entry. */
  counterexample?: string[];
  durationMs: number;
}

/** The default seed of the suite (DIFF_SEED overrides it in the tests). */
export const DEFAULT_DIFF_SEED = 0x5eed;

/** Run `runs` random command sequences for `pairing`; never throws for a mismatch, reports it. */
export async function runDifferential(options: DifferentialOptions): Promise<DifferentialSummary> {
  const { seed, pairing } = options;
  const runs = options.runs ?? 1000;
  const maxCommands = options.maxCommands ?? 40;
  if (!Number.isSafeInteger(seed)) throw new MigrationError('EINVAL', `seed must be an integer, got ${seed}`);
  if (!Number.isSafeInteger(runs) || runs < 1) throw new MigrationError('EINVAL', `runs must be a positive integer, got ${runs}`);
  if (!Number.isSafeInteger(maxCommands) || maxCommands < 1)
    throw new MigrationError('EINVAL', `maxCommands must be a positive integer, got ${maxCommands}`);
  const info = DIFFERENTIAL_PAIRINGS.find((p) => p.name === pairing);
  if (!info) {
    throw new MigrationError('EINVAL', `unknown pairing '${String(pairing)}' (use ${DIFFERENTIAL_PAIRINGS.map((p) => p.name).join(', ')})`);
  }
  const fc: typeof FC = await import('fast-check');
  const counter = { commands: 0 };
  const stats: DiffStats = new Map();
  const started = Date.now();
  const details = await fc.check(buildProperty(fc, pairing, maxCommands, counter, stats, options.wrapTranslated ?? {}), {
    seed,
    numRuns: runs,
  });
  const summary: DifferentialSummary = {
    pairing,
    seed,
    runs: details.numRuns,
    commands: counter.commands,
    passed: !details.failed,
    events: Object.fromEntries([...stats].sort(([a], [b]) => a.localeCompare(b))),
    durationMs: Date.now() - started,
  };
  if (details.failed) {
    const err = details.errorInstance;
    const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    summary.report = `${fc.defaultReportMessage(details) ?? 'failed'}\nGot error: ${why}`;
    const example = details.counterexample as [[unknown, { toString(): string }]] | null;
    if (example) {
      const [config, cmds] = example[0];
      summary.counterexample = [`config ${JSON.stringify(config)}`, ...String(cmds).split(/,(?=[A-Z])/)];
    }
  }
  return summary;
}

function buildProperty(
  fc: typeof FC,
  pairing: DifferentialPairing,
  maxCommands: number,
  counter: { commands: number },
  stats: DiffStats,
  wrap: NonNullable<DifferentialOptions['wrapTranslated']>,
): FC.IAsyncProperty<[[unknown, unknown]]> {
  const count = <C>(cmds: Iterable<C>): Iterable<C> => ({
    *[Symbol.iterator]() {
      for (const c of cmds) {
        counter.commands++;
        yield c;
      }
    },
  });
  switch (pairing) {
    case 'v1-stop-copy':
    case 'v1-p2p':
    case 'v1-pre-copy':
    case 'v1-all': {
      const flags = { 'v1-stop-copy': SC, 'v1-p2p': SC | P2P, 'v1-pre-copy': SC | PC, 'v1-all': SC | P2P | PC }[pairing];
      const arb = v1ConfigArbitrary(fc, flags).chain((cfg) =>
        fc.tuple(fc.constant(cfg), fc.commands(v1CommandArbitraries(fc, cfg.windowSize), { maxCommands, size: 'max' })),
      );
      return fc.asyncProperty(arb, async ([cfg, cmds]) => {
        await fc.asyncModelRun(() => v1Setup(cfg, stats, wrap.v1), count(cmds));
      });
    }
    case 'v2-pre-copy':
    case 'v2-stop-copy':
    case 'v2-round-trip':
    case 'v2-round-trip-stop-copy': {
      const flags = pairing === 'v2-stop-copy' || pairing === 'v2-round-trip-stop-copy' ? SC : SC | PC;
      const translated = pairing.startsWith('v2-round-trip') ? 'round-trip' : 'over-sim-v1';
      const arb = fc.tuple(v2ConfigArbitrary(fc, flags, translated), fc.commands(v2CommandArbitraries(fc), { maxCommands, size: 'max' }));
      return fc.asyncProperty(arb, async ([cfg, cmds]) => {
        await fc.asyncModelRun(() => v2Setup(cfg, stats, wrap.v2), count(cmds));
      });
    }
  }
}
