// vfio-mig demo: the project doing its job in both directions, on simulated
// devices, with no hardware and no flags needed.
import { SIM_SIZE_LIMIT, SIM_WINDOW_LIMIT } from '../address.js';
import { MigFlags } from '../../v2/states.js';
import type { Command } from '../command.js';
import { flagNames } from '../device-args.js';
import { demoScenarios, type DemoOptions } from '../demo-scenarios.js';
import { parseFlags, parseSize, formatSize } from '../parse-values.js';
import { progressBar } from '../progress.js';
import { renderTextTable } from '../text-table.js';
import { runTransfer } from '../transfer.js';
import { UsageError } from '../usage-error.js';

function positiveInt(text: string, option: string, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new UsageError(`bad ${option} '${text}': use an integer 0..${max}`);
  return n;
}

export const demoCommand: Command = {
  name: 'demo',
  summary: 'migrate simulated devices through both translators and across protocols',
  usage: `demo [--size 1GiB] [--window 1MiB] [--flags 7] [--rounds 3] [--work PAGES] [--seed 1]

  --size S      device state per migration (default 1GiB)
  --window W    v1 data window, the largest chunk (default 1MiB)
  --flags F     v2 driver flags, STOP_COPY required (default 7: STOP_COPY|P2P|PRE_COPY)
  --rounds N    pre-copy passes while the source keeps working (default 3)
  --work P      pages the running source dirties between passes (default size/256 pages)
  --seed N      device content seed (default 1)`,
  options: {
    size: { type: 'string', default: '1GiB' },
    window: { type: 'string', default: '1MiB' },
    flags: { type: 'string', default: '7' },
    rounds: { type: 'string' },
    work: { type: 'string' },
    seed: { type: 'string', default: '1' },
  },
  async run(values, positionals, ctx) {
    if (positionals.length) throw new UsageError(`demo takes no arguments, got '${positionals[0]}'`);
    const size = parseSize(String(values.size), '--size', SIM_SIZE_LIMIT);
    const window = parseSize(String(values.window), '--window', SIM_WINDOW_LIMIT);
    const flags = parseFlags(String(values.flags));
    if (!(flags & 1)) throw new UsageError('bad --flags: STOP_COPY (1) is mandatory for a v2 driver');
    const options: DemoOptions = {
      size,
      window,
      flags,
      rounds: values.rounds === undefined ? 3 : positiveInt(String(values.rounds), '--rounds', 1000),
      seed: positiveInt(String(values.seed), '--seed', 0xffffffff),
      work: values.work === undefined ? Math.max(1, Math.floor(size / 4096 / 256)) : positiveInt(String(values.work), '--work', 1 << 30),
    };
    if (values.rounds !== undefined && options.rounds > 0 && !(flags & MigFlags.PRE_COPY)) {
      ctx.warn(
        `--rounds ${options.rounds} has no effect on the v2 devices: --flags ${flags} (${flagNames(flags)}) has no PRE_COPY, so the migrations from them move their state in stop-and-copy`,
      );
    }
    ctx.print(`vfio-mig demo: three migrations of ${formatSize(size)} of device state each`);
    ctx.print(`  v1 window ${formatSize(window)}, v2 flags ${flags} (${flagNames(flags)}), ${options.rounds} pre-copy passes`);
    const rows = [];
    for (const scenario of demoScenarios(options)) {
      const bar = progressBar(ctx, scenario.direction, size);
      let stats;
      try {
        stats = await runTransfer(scenario.sides, (p) => bar.update(p));
      } finally {
        bar.stop();
      }
      const sourceFingerprint = scenario.source.fingerprint();
      const destinationFingerprint = scenario.destination.fingerprint();
      rows.push({
        direction: scenario.direction,
        stateBytes: size,
        fileBytes: stats.fileBytes,
        precopyRounds: options.rounds,
        precopyBytes: stats.precopyBytes,
        stopCopyBytes: stats.stopCopyBytes,
        stopCopyMs: Math.round(stats.stopCopyMs),
        totalMs: Math.round(stats.totalMs),
        bytesPerSecond: Math.round(stats.bytesPerSecond),
        sourceFingerprint,
        destinationFingerprint,
        fingerprintMatch: sourceFingerprint === destinationFingerprint,
      });
    }
    ctx.print('');
    ctx.print(
      renderTextTable(
        ['direction', 'state', 'bytes moved', 'pre-copy', 'stop-and-copy', 'throughput', 'fingerprint'],
        rows.map((r) => [
          r.direction,
          formatSize(r.stateBytes),
          formatSize(r.fileBytes),
          `${r.precopyRounds} passes, ${formatSize(r.precopyBytes)}`,
          `${formatSize(r.stopCopyBytes)} in ${r.stopCopyMs} ms`,
          `${formatSize(r.bytesPerSecond)}/s`,
          r.fingerprintMatch
            ? `match ${r.sourceFingerprint.slice(0, 12)}`
            : `MISMATCH ${r.sourceFingerprint.slice(0, 8)} != ${r.destinationFingerprint.slice(0, 8)}`,
        ]),
        ctx.columns,
      ),
    );
    const failed = rows.filter((r) => !r.fingerprintMatch);
    if (failed.length) throw new Error(`fingerprints differ after: ${failed.map((r) => r.direction).join('; ')}`);
    return { options, migrations: rows };
  },
};
