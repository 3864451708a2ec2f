// The command line as people type it: negative numbers as option values,
// seeds that replay as printed, --version, `help <command>`, global options
// before the command, conflicting options reported, JSON whose keys are
// fixed names, and a warning for options a device cannot honour.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { COMMANDS } from '../src/cli/commands/index.js';
import { runCli } from './support/run-cli.js';

const ROOT = join(import.meta.dirname, '..');
afterEach(() => vi.restoreAllMocks());
const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-options-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('option values', () => {
  it('--size -1 is judged by the option, not refused as an "ambiguous argument"', async () => {
    const r = await runCli('demo', '--size', '-1');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe("vfio-mig: bad --size '-1': use a byte count or a number with KiB, MiB, GiB, TiB or PiB\n");
    const rounds = await runCli('save', 'sim:v2', '--out', 'x.vmig', '--rounds', '-3');
    expect(rounds.stderr).toMatch(/^vfio-mig: bad --rounds '-3': use an integer 0\.\.100000\n$/);
  });

  it('diff --seed random prints a seed that replays as printed', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.9); // the upper half of the range, where a signed seed would be negative
    const args = ['diff', '--runs', '3', '--pairing', 'v1-p2p', '--max-commands', '10'];
    const first = await runCli(...args, '--seed', 'random');
    expect(first.status, first.stderr).toBe(0);
    const printed = /^differential comparison: seed (\S+),/m.exec(first.stdout)![1];
    const again = await runCli(...args, '--seed', printed);
    expect(again.status, again.stderr).toBe(0);
    const commands = (s: string) => /^v1-p2p +v1 +3 +(\d+) /m.exec(s)?.[1];
    expect(commands(again.stdout)).toBe(commands(first.stdout));
    expect(commands(first.stdout)).toBeDefined();
  });

  it('a negative seed (from an older vfio-mig) is taken as written', async () => {
    const r = await runCli('diff', '--runs', '1', '--pairing', 'v1-p2p', '--seed', '-12345', '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.result.seed).toBe(-12345);
  });
});

describe('global options and help', () => {
  it('--version prints the package version', async () => {
    const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
    const r = await runCli('--version');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`vfio-mig ${version}\n`);
  });

  it('vfio-mig help <command> is vfio-mig <command> --help; help for an unknown command is a usage error', async () => {
    for (const c of COMMANDS) {
      const viaHelp = await runCli('help', c.name);
      expect(viaHelp.status).toBe(0);
      expect(viaHelp.stdout).toBe((await runCli(c.name, '--help')).stdout);
    }
    const unknown = await runCli('help', 'frobnicate');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
  });

  it('--json (and --debug) before the command', async () => {
    const r = await runCli('--json', 'fsm', '--from', 'RUNNING', '--to', 'STOP');
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, command: 'fsm', result: { path: ['RUNNING_P2P', 'STOP'] } });
    const failed = await runCli('--json', '--debug', 'fsm', '--from', 'STOP_COPY', '--to', 'PRE_COPY');
    expect(failed.status).toBe(1);
    expect(JSON.parse(failed.stdout)).toMatchObject({ ok: false, error: { code: 'EINVAL' } });
    expect(failed.stderr).toMatch(/\n\s+at /); // --debug: the stack
  });

  it('fsm --format dot --json: the conflict is reported', async () => {
    for (const format of ['dot', 'mermaid', 'table']) {
      const r = await runCli('fsm', '--format', format, '--json');
      expect(r.status, format).toBe(2);
      expect(r.stderr).toMatch(/--json and --format both choose what is printed/);
    }
  });
});

describe('diff --json', () => {
  it('events are a list of fixed-key records, not objects keyed by data', async () => {
    const r = await runCli('diff', '--runs', '5', '--pairing', 'v1-p2p', '--json');
    expect(r.status, r.stderr).toBe(0);
    const events = r.json.result.pairings[0].events;
    expect(Array.isArray(events)).toBe(true);
    expect(events.length).toBeGreaterThan(0);
    for (const e of events) {
      expect(Object.keys(e).sort()).toEqual(e.from === undefined ? ['count', 'event'] : ['count', 'event', 'from', 'to']);
      expect(Number.isInteger(e.count)).toBe(true);
    }
    expect(events.some((e: { from?: number }) => Number.isInteger(e.from))).toBe(true); // arcs: device_state 1 -> 3
  });
});

describe('--rounds on a device without PRE_COPY', () => {
  it('save warns (stderr and JSON) when --rounds is given and the device cannot pre-copy', async () => {
    for (const via of [[], ['--via', 'v1']]) {
      const r = await runCli('save', 'sim:v2?size=64KiB&flags=1', '--out', join(dir, 'rounds.vmig'), '--rounds', '3', ...via, '--json');
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(
        /^vfio-mig: warning: --rounds 3 has no effect: sim:v2\?size=64KiB&flags=1 has no PRE_COPY \(migration flags 1: STOP_COPY\)/m,
      );
      expect(r.json.result.warnings).toHaveLength(1);
      expect(r.json.result.precopyBytes).toBe(0);
    }
    // No warning when the device has PRE_COPY, or when --rounds was not given.
    for (const args of [
      ['sim:v2?size=64KiB&flags=5', '--rounds', '3'],
      ['sim:v2?size=64KiB&flags=1'],
      ['sim:v1?size=64KiB', '--rounds', '2'],
    ]) {
      const r = await runCli('save', ...args, '--out', join(dir, 'rounds.vmig'), '--json');
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr, args.join(' ')).not.toMatch(/warning/);
      expect(r.json.result.warnings, args.join(' ')).toEqual([]);
    }
  });

  it('demo warns when --rounds is given with --flags that lack PRE_COPY', async () => {
    const r = await runCli('demo', '--size', '64KiB', '--window', '16KiB', '--flags', '3', '--rounds', '2', '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /^vfio-mig: warning: --rounds 2 has no effect on the v2 devices: --flags 3 \(STOP_COPY\|P2P\) has no PRE_COPY/m,
    );
    const quiet = await runCli('demo', '--size', '64KiB', '--window', '16KiB', '--flags', '7', '--rounds', '2', '--json');
    expect(quiet.stderr).not.toMatch(/warning/);
  });
});
