import { describe, expect, it } from 'vitest';
import { runCli } from './support/run-cli.js';

describe('vfio-mig demo', () => {
  it('migrates in both directions and across protocols with matching fingerprints', async () => {
    const r = await runCli('demo', '--size', '8MiB', '--window', '64KiB', '--rounds', '2', '--json');
    expect(r.status, r.stderr).toBe(0);
    const rows = r.json.result.migrations;
    expect(rows.map((m: { direction: string }) => m.direction)).toEqual([
      'QEMU 7.2 (v1) -> v2 device',
      'QEMU 8+ (v2) -> v1 device',
      'saved over v1, resumed over v2',
    ]);
    for (const m of rows) {
      expect(m.fingerprintMatch, m.direction).toBe(true);
      expect(m.sourceFingerprint).toMatch(/^[0-9a-f]{16,}$/);
      expect(m.precopyBytes + m.stopCopyBytes, m.direction).toBeGreaterThan(8 << 20); // whole state + re-sent dirty pages
      expect(m.stopCopyBytes, m.direction).toBeGreaterThan(0); // the source kept working during pre-copy
      expect(m.fileBytes).toBeGreaterThan(m.precopyBytes + m.stopCopyBytes); // QEMU framing on top
    }
  });

  it('prints a human table with one row per migration', async () => {
    const r = await runCli('demo', '--size', '1MiB', '--window', '4KiB', '--flags', '1', '--rounds', '1');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/direction +state +bytes moved +pre-copy +stop-and-copy +throughput +fingerprint/);
    expect(r.stdout.match(/ match [0-9a-f]{12}/g)).toHaveLength(3);
  });

  it('rejects bad options with exit status 2', async () => {
    for (const args of [['--size', '0'], ['--window', 'big'], ['--flags', '4'], ['--rounds', '-1'], ['--seed', 'x'], ['extra']]) {
      const r = await runCli('demo', ...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });
});
