import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { driverArcs } from '../src/cli/fsm-render.js';
import { FLAG_SETS, MigState } from '../index.js';
import { requiredArcs } from './support/path-oracle.js';
import { runCli } from './support/run-cli.js';

describe('vfio-mig fsm', () => {
  it('prints the next-step table for all flags', async () => {
    const r = await runCli('fsm');
    expect(r.status).toBe(0);
    const row = r.stdout.split('\n').find((l) => l.startsWith('RUNNING '))!;
    expect(row.split(/\s+/)).toEqual([
      'RUNNING',
      'RUNNING_P2P',
      'RUNNING',
      'RUNNING_P2P',
      'RUNNING_P2P',
      'RUNNING_P2P',
      'PRE_COPY',
      'RUNNING_P2P',
    ]);
    expect(r.stdout).toMatch(/^STOP_COPY .* - +- *$/m); // STOP_COPY -> PRE_COPY(_P2P) refused
  });

  it('prints one path and its JSON form', async () => {
    const r = await runCli('fsm', '--from', 'pre_copy', '--to', 'RESUMING', '--json');
    expect(r.status).toBe(0);
    expect(r.json.result.path).toEqual(['RUNNING', 'RUNNING_P2P', 'STOP', 'RESUMING']);
    const plain = await runCli('fsm', '--flags', 'STOP_COPY', '--from', '2', '--to', '3');
    expect(plain.stdout.trim()).toBe('RUNNING -> STOP -> STOP_COPY');
  });

  it('the arcs it draws are exactly the arcs the kernel requires drivers to implement', () => {
    for (const flags of FLAG_SETS) {
      const drawn = driverArcs(flags)
        .map((a) => `${MigState[a.from]}>${MigState[a.to]}`)
        .sort();
      const required = requiredArcs(flags)
        .map(([f, t]) => `${MigState[f]}>${MigState[t]}`)
        .sort();
      expect(drawn, `flags ${flags}`).toEqual(required);
    }
  });

  it('DOT output renders with Graphviz', async () => {
    for (const flags of ['1', '7']) {
      const r = await runCli('fsm', '--flags', flags, '--format', 'dot');
      expect(r.status).toBe(0);
      const svg = execFileSync('dot', ['-Tsvg'], { input: r.stdout, encoding: 'utf8' });
      expect(svg).toContain('<svg');
      expect(svg).toContain('STOP_COPY');
    }
  });

  it('Mermaid output lists every arc, marking the ones that return a data_fd', async () => {
    const r = await runCli('fsm', '--flags', '5', '--format', 'mermaid');
    expect(r.stdout).toContain('stateDiagram-v2');
    expect(r.stdout).toContain('RUNNING --> PRE_COPY: data_fd');
    expect(r.stdout).toContain('PRE_COPY --> STOP_COPY\n');
  });

  it('bad input: usage errors exit 2 with a one-line message, refused paths exit 1', async () => {
    for (const args of [
      ['--flags', '9'],
      ['--flags', 'BOGUS'],
      ['--flags', '2'],
      ['--format', 'svg'],
      ['--from', 'RUNNING'],
      ['--from', 'NOPE', '--to', 'STOP'],
      ['--bogus'],
      ['extra'],
    ]) {
      const r = await runCli('fsm', ...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(/^vfio-mig: /);
    }
    const refused = await runCli('fsm', '--from', 'STOP_COPY', '--to', 'PRE_COPY', '--json');
    expect(refused.status).toBe(1);
    expect(refused.json).toMatchObject({ ok: false, error: { code: 'EINVAL' } });
  });

  it('help: global and per command', async () => {
    expect((await runCli('--help')).stdout).toContain('commands:');
    expect((await runCli('fsm', '--help')).stdout).toContain('--format');
    const unknown = await runCli('frobnicate');
    expect(unknown.status).toBe(2);
    expect((await runCli()).status).toBe(2);
  });
});
