// vfio-mig diff: the differential comparison (translate/differential/run-differential.ts) from
// the command line: random command sequences against a reference face and a
// translated one, per pairing; a summary per pairing, the shrunk
// counterexample of any mismatch, exit 1 if any pairing disagrees.
import {
  DEFAULT_DIFF_SEED,
  DIFFERENTIAL_PAIRINGS,
  runDifferential,
  type DifferentialOptions,
  type DifferentialPairing,
  type DifferentialSummary,
} from '../../../translate/differential/run-differential.js';
import { CommandFailed, type Command } from '../command.js';
import { parseCount } from '../device-args.js';
import { renderTextTable } from '../text-table.js';
import { UsageError } from '../usage-error.js';

const NAMES = DIFFERENTIAL_PAIRINGS.map((p) => p.name);

function parseSeed(text: string): number {
  // Non-negative, so the seed printed reads back as typed (fast-check takes any integer).
  if (text === 'random') return Math.floor(Math.random() * 2 ** 31);
  const n = /^(0x[0-9a-f]+|-?\d+)$/i.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`bad --seed '${text}': use an integer (decimal or 0x...) or 'random'`);
  return n;
}

function parsePairings(text: string): DifferentialPairing[] {
  if (text === 'all') return NAMES;
  const picked = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const p of picked) {
    if (!NAMES.includes(p as DifferentialPairing))
      throw new UsageError(`unknown pairing '${p}': use all, or one or more of ${NAMES.join(', ')}`);
  }
  if (picked.length === 0) throw new UsageError(`--pairing needs a name: all, ${NAMES.join(', ')}`);
  return [...new Set(picked)] as DifferentialPairing[];
}

/** An event counter for --json: fixed keys; an arc counter ('device_state 1>3') gets from/to. */
export interface EventCount {
  event: string;
  from?: number;
  to?: number;
  count: number;
}

function eventList(events: Record<string, number>): EventCount[] {
  return Object.entries(events).map(([key, count]) => {
    const arc = /^(.*\S) (\d+)>(\d+)$/.exec(key);
    return arc ? { event: arc[1], from: Number(arc[2]), to: Number(arc[3]), count } : { event: key, count };
  });
}

/** Events in one line: per-arc counters ('device_state 1>3') become how many distinct arcs were seen (--json has them all). */
function summariseEvents(events: Record<string, number>): string {
  const arcs = new Map<string, number>();
  const parts: string[] = [];
  for (const [key, count] of Object.entries(events)) {
    const arc = /^(.*\S) \d+>\d+$/.exec(key);
    if (arc) arcs.set(arc[1], (arcs.get(arc[1]) ?? 0) + 1);
    else parts.push(`${key} ${count}`);
  }
  for (const [what, n] of arcs) parts.unshift(`${n} distinct ${what} arcs`);
  return parts.join('; ');
}

/** The command, with the runner injectable (tests drive the failure output with a failing one). */
export function createDiffCommand(runner: (o: DifferentialOptions) => Promise<DifferentialSummary> = runDifferential): Command {
  return {
    name: 'diff',
    summary: 'run the v1/v2 differential comparison (direct vs translated) and summarise it',
    usage: `diff [--seed S] [--runs N] [--pairing P[,P...]] [--max-commands M]

  --seed S          fast-check seed: an integer, or 'random' (default ${DEFAULT_DIFF_SEED}, fixed so runs repeat)
  --runs N          random command sequences per pairing (default 1000, as the test suite)
  --pairing P       all (default) or a comma list of: ${NAMES.join(', ')}
  --max-commands M  longest command sequence (default 60, as the test suite)

  Exit 1 when any pairing observes a difference; the shrunk counterexample and
  the command that reproduces it are printed.`,
    options: {
      seed: { type: 'string' },
      runs: { type: 'string', default: '1000' },
      pairing: { type: 'string', default: 'all' },
      'max-commands': { type: 'string', default: '60' },
    },
    async run(values, positionals, ctx) {
      if (positionals.length) throw new UsageError(`diff takes no arguments, got '${positionals[0]}' (pairings go in --pairing)`);
      const seed = values.seed === undefined ? DEFAULT_DIFF_SEED : parseSeed(String(values.seed));
      const runs = parseCount(String(values.runs), '--runs', 1_000_000);
      if (runs < 1) throw new UsageError('bad --runs 0: run at least one sequence');
      const maxCommands = parseCount(String(values['max-commands']), '--max-commands', 10_000);
      if (maxCommands < 1) throw new UsageError('bad --max-commands 0: use at least 1');
      const pairings = parsePairings(String(values.pairing));

      ctx.print(
        `differential comparison: seed ${seed}, ${runs} sequence${runs === 1 ? '' : 's'} of up to ${maxCommands} commands per pairing\n`,
      );
      const summaries: (DifferentialSummary & { face: string; reference: string; translated: string; rerun?: string })[] = [];
      for (const name of pairings) {
        if (ctx.progress.mode !== 'off') ctx.note(`  ${name} ...`);
        const s = await runner({ seed, runs, pairing: name, maxCommands });
        const info = DIFFERENTIAL_PAIRINGS.find((p) => p.name === name)!;
        summaries.push({
          ...s,
          face: info.face,
          reference: info.reference,
          translated: info.translated,
          ...(s.passed ? {} : { rerun: `vfio-mig diff --pairing ${name} --seed ${seed} --runs ${runs} --max-commands ${maxCommands}` }),
        });
      }
      ctx.print(
        renderTextTable(
          ['pairing', 'face', 'runs', 'commands', 'time', 'result', 'translated'],
          summaries.map((s) => [
            s.pairing,
            s.face,
            String(s.runs),
            String(s.commands),
            `${(s.durationMs / 1000).toFixed(1)} s`,
            s.passed ? 'pass' : 'FAIL',
            s.translated,
          ]),
          ctx.columns,
        ),
      );
      // What the sequences exercised, so a pass is not mistaken for coverage.
      const covered = summaries.filter((s) => Object.keys(s.events ?? {}).length);
      if (covered.length) {
        ctx.print('\nevents over all sequences:');
        for (const s of covered) ctx.print(`  ${s.pairing}: ${summariseEvents(s.events)}`);
      }
      const failed = summaries.filter((s) => !s.passed);
      for (const s of failed) {
        ctx.print(`\n${s.pairing}: the reference (${s.reference}) and the translated face (${s.translated}) disagree after ${s.runs} runs`);
        const why = s.report?.split('\n').find((l) => l.startsWith('Got error:'));
        if (why) ctx.print(`  ${why}`);
        if (s.counterexample?.length) {
          ctx.print('  shrunk counterexample:');
          for (const step of s.counterexample) ctx.print(`    ${step}`);
        }
        ctx.print(`  reproduce: ${s.rerun}`);
      }
      const result = {
        seed,
        runs,
        maxCommands,
        passed: failed.length === 0,
        pairings: summaries.map((s) => ({ ...s, events: eventList(s.events ?? {}) })),
      };
      if (failed.length) {
        throw new CommandFailed(
          `differential mismatch in ${failed.map((s) => s.pairing).join(', ')} (seed ${seed}); reproduce: ${failed[0].rerun}`,
          result,
        );
      }
      ctx.print(`\nall ${summaries.length} pairing${summaries.length === 1 ? '' : 's'} agree`);
      return result;
    },
  };
}

export const diffCommand = createDiffCommand();
