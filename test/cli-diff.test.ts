// vfio-mig diff: the differential comparison's summary, its JSON, the
// failure report (with a runner that fails), and bad input.
import { describe, expect, it } from 'vitest';
import { CommandFailed, type CliContext } from '../src/cli/command.js';
import { createDiffCommand } from '../src/cli/commands/diff.js';
import { explainError } from '../src/cli/explain-error.js';
import {
  DEFAULT_DIFF_SEED,
  DIFFERENTIAL_PAIRINGS,
  type DifferentialOptions,
  type DifferentialSummary,
} from '../translate/differential/run-differential.js';
import { runCli } from './support/run-cli.js';

const ALL = DIFFERENTIAL_PAIRINGS.map((p) => p.name);

describe('vfio-mig diff', () => {
  it('diff --runs 20 --json: every pairing passes', async () => {
    const r = await runCli('diff', '--runs', '20', '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ ok: true, command: 'diff', result: { seed: DEFAULT_DIFF_SEED, runs: 20, passed: true } });
    const rows = r.json.result.pairings;
    expect(rows.map((p: { pairing: string }) => p.pairing)).toEqual(ALL);
    for (const p of rows) {
      expect(p, p.pairing).toMatchObject({ passed: true, runs: 20, seed: DEFAULT_DIFF_SEED });
      expect(p.commands, p.pairing).toBeGreaterThan(20);
      expect(p.counterexample).toBeUndefined();
      expect(Object.keys(p.events).length, p.pairing).toBeGreaterThan(0);
    }
  });

  it('prints a table per pairing and a verdict; the same seed gives the same runs', async () => {
    const args = ['diff', '--runs', '5', '--pairing', 'v1-p2p,v2-round-trip', '--seed', '0x10', '--max-commands', '12'];
    const r = await runCli(...args);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^differential comparison: seed 16, 5 sequences of up to 12 commands per pairing$/m);
    expect(r.stdout).toMatch(/^pairing +face +runs +commands +time +result +translated$/m);
    expect(r.stdout).toMatch(/^v1-p2p +v1 +5 +\d+ +[\d.]+ s +pass +LegacyRegionOverV2\(SimV2Driver flags=STOP_COPY\|P2P\)$/m);
    expect(r.stdout).toMatch(/^v2-round-trip +v2 +5 +\d+ /m);
    expect(r.stdout).toMatch(/^all 2 pairings agree$/m);
    const a = await runCli(...args, '--json');
    const b = await runCli(...args, '--json');
    expect(a.json.result.pairings.map((p: { commands: number }) => p.commands)).toEqual(
      b.json.result.pairings.map((p: { commands: number }) => p.commands),
    );
  });

  it('a mismatch: the shrunk counterexample, how to reproduce it, exit 1 with the summary kept', async () => {
    const calls: DifferentialOptions[] = [];
    const command = createDiffCommand(async (o): Promise<DifferentialSummary> => {
      calls.push(o);
      if (o.pairing !== 'v1-all')
        return {
          pairing: o.pairing,
          seed: o.seed,
          runs: o.runs!,
          commands: 99,
          passed: true,
          events: { 'left RESUMING': 3, 'device_state 1>3': 5, 'device_state 3>2': 1 },
          durationMs: 5,
        };
      return {
        pairing: o.pairing,
        seed: o.seed,
        runs: 7,
        commands: 40,
        passed: false,
        events: {},
        durationMs: 12,
        report:
          'Property failed after 7 tests\n{ seed: 3, path: "6:1" }\nGot error: DifferentialMismatch: read pending_bytes: reference ok(0n), translated ok(8n)',
        counterexample: ['config {"windowSize":8}', 'SetState(011)', 'ReadPending'],
      };
    });
    const out: string[] = [];
    const ctx: CliContext = {
      json: false,
      debug: false,
      progress: { mode: 'off', columns: 80, write: () => undefined },
      print: (t) => out.push(t),
      note: () => undefined,
      warn: () => undefined,
      stateOut: () => {
        throw new Error('diff writes no state');
      },
      stateIn: () => {
        throw new Error('diff reads no state');
      },
    };
    let failure: unknown;
    try {
      await command.run({ seed: '3', runs: '50', pairing: 'all', 'max-commands': '40' }, [], ctx);
    } catch (e) {
      failure = e;
    }
    expect(calls.map((c) => c.pairing)).toEqual(ALL); // every pairing still runs
    expect(calls.every((c) => c.seed === 3 && c.runs === 50 && c.maxCommands === 40)).toBe(true);
    expect(failure).toBeInstanceOf(CommandFailed);
    const text = out.join('\n');
    expect(text).toMatch(/^v1-all +v1 +7 +40 +0\.0 s +FAIL /m);
    expect(text).toContain(
      'v1-all: the reference (SimV1Region) and the translated face (LegacyRegionOverV2(SimV2Driver flags=STOP_COPY|P2P|PRE_COPY)) disagree after 7 runs',
    );
    expect(text).toContain('  Got error: DifferentialMismatch: read pending_bytes: reference ok(0n), translated ok(8n)');
    expect(text).toContain('  shrunk counterexample:\n    config {"windowSize":8}\n    SetState(011)\n    ReadPending');
    expect(text).toContain('  reproduce: vfio-mig diff --pairing v1-all --seed 3 --runs 50 --max-commands 40');
    expect(text).not.toMatch(/^all \d+ pairings agree/m);
    expect(text).toMatch(/^events over all sequences:\n {2}v1-stop-copy: 2 distinct device_state arcs; left RESUMING 3$/m);
    const explained = explainError(failure);
    expect(explained.usage).toBe(false);
    expect(explained.message).toBe(
      'differential mismatch in v1-all (seed 3); reproduce: vfio-mig diff --pairing v1-all --seed 3 --runs 50 --max-commands 40',
    );
    expect(explained.result).toMatchObject({
      passed: false,
      pairings: expect.arrayContaining([
        expect.objectContaining({
          pairing: 'v1-all',
          passed: false,
          counterexample: ['config {"windowSize":8}', 'SetState(011)', 'ReadPending'],
        }),
      ]),
    });
  });

  it('bad input exits 2 with one line', async () => {
    const cases: [string[], RegExp][] = [
      [['--runs', '0'], /bad --runs 0/],
      [['--runs', 'x'], /bad --runs 'x'/],
      [['--pairing', 'v3-all'], /unknown pairing 'v3-all': use all, or one or more of v1-stop-copy/],
      [['--pairing', ','], /--pairing needs a name/],
      [['--seed', '1.5'], /bad --seed '1\.5'/],
      [['--max-commands', '0'], /bad --max-commands 0/],
      [['v1-all'], /diff takes no arguments/],
      [['--bogus'], /Unknown option '--bogus'/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli('diff', ...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
  });

  it('--help', async () => {
    const r = await runCli('diff', '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('usage: vfio-mig diff [--seed S] [--runs N] [--pairing P[,P...]]');
    expect(r.stdout).toContain('v2-round-trip');
  });
});
