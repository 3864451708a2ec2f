// vfio-mig replay: a recorded QEMU 7.2 (test/fixtures/traces) against
// simulated and (fake) kernel devices from the command line; what it prints,
// --json, the exit status on a divergence, resume data, and bad input.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeSyscalls } from '../testing.js';
import { runCli, runCliWith } from './support/run-cli.js';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/traces/${name}.jsonl`, import.meta.url));
const SAVE = fixture('q72-save-running');
/** The v1 accesses the save fixture holds (a collapsed poll is one). */
const SAVE_ACCESSES = readFileSync(SAVE, 'utf8')
  .split('\n')
  .filter((l) => l.includes('"ev":"v1"')).length;
const RESUME = fixture('q72-resume');
const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-replay-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('vfio-mig replay', () => {
  it('a recorded save against a simulated v2 device sized like mtty: every access answered as recorded', async () => {
    const r = await runCli('replay', SAVE, '--device', 'sim:v2?size=24&flags=STOP_COPY');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(
      `replayed ${SAVE_ACCESSES} accesses of device 1 from ${SAVE} (QEMU 7.2.22, device-1 mdev mtty-2) against sim:v2?size=24&flags=STOP_COPY: ` +
        'no divergence; saved 96 B (recorded 96 B), resumed 0 B\n',
    );
  });

  it('--json: the report, divergences and all', async () => {
    const r = await runCli('replay', SAVE, '--device', 'sim:v1?size=24', '--json');
    expect(r.status).toBe(0);
    expect(r.json.result).toEqual({
      trace: SAVE,
      device: 'sim:v1?size=24',
      client: { name: 'QEMU', version: '7.2.22' },
      dev: 1,
      accesses: SAVE_ACCESSES,
      divergences: [],
      savedBytes: { recorded: 96, replayed: 96 },
      resumedBytes: 0,
      resumeData: null,
    });
  });

  it('a divergence: printed with its line, exit 1, and in --json', async () => {
    const r = await runCli('replay', SAVE, '--device', 'sim:v2?size=32');
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(
      /^line \d+: read pending_bytes: both streams end here, the recorded one after 96 bytes, the replayed one after 104 \(recorded 96 bytes, replayed 104 bytes\)\n/,
    );
    expect(r.stderr).toMatch(/diverges 1 time\(s\), first at line \d+/);
    const j = await runCli('replay', SAVE, '--device', 'sim:v2?size=32', '--json');
    expect(j.status).toBe(1);
    expect(j.json.result.divergences).toEqual([expect.objectContaining({ kind: 'stream-end', access: 'read pending_bytes' })]);
  });

  it("a recorded resume: by default the device's own state (saved through the same region, then reset) is the data", async () => {
    const r = await runCli('replay', RESUME, '--device', 'sim:v2?size=24', '--json');
    expect(r.status, r.stdout).toBe(0);
    expect(r.json.result).toMatchObject({ divergences: [], resumedBytes: 96, resumeData: 'own state' });
  });

  it('--data FILE: the device bytes of a file vfio-mig save wrote', async () => {
    const state = join(dir, 'state.vmig');
    // --rounds 0: no pre-copy pass, so no page dirtied in between and re-sent: the plain 96-byte stream.
    expect((await runCli('save', 'sim:v2?size=24&seed=9', '--out', state, '--rounds', '0')).status).toBe(0);
    const good = await runCli('replay', RESUME, '--device', 'sim:v1?size=24&seed=9', '--data', state, '--json');
    expect(good.status, good.stdout).toBe(0);
    expect(good.json.result).toMatchObject({ divergences: [], resumedBytes: 96, resumeData: state });
    // Another device's state (a 40-byte device streams 112 bytes): the recording leaves RESUMING after 96 of them.
    const other = join(dir, 'other.vmig');
    expect((await runCli('save', 'sim:v2?size=40', '--out', other, '--rounds', '0')).status).toBe(0);
    const bad = await runCli('replay', RESUME, '--device', 'sim:v2?size=40', '--data', other);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/write device_state: the recording leaves RESUMING after 96 resume bytes; the replay data holds 112/);
  });

  it("a kernel device through the bridge's path (LegacyRegionOverV2 over the fake kernel's mtty)", async () => {
    const sys = new FakeSyscalls({ devices: [{ name: 'mtty-a', group: 3 }] });
    for (const trace of [SAVE, RESUME, fixture('q72-failed-then-completed')]) {
      const r = await runCliWith({ syscalls: sys }, 'replay', trace, '--device', '/dev/vfio/3:mtty-a', '--json');
      expect(r.status, r.stdout).toBe(0);
      expect(r.json.result.divergences).toEqual([]);
    }
  });

  it('a kernel device with a v1 region of its own is replayed directly: a 16-byte window cannot hold the recorded chunks', async () => {
    const sys = new FakeSyscalls({ devices: [{ name: 'v1-dev', group: 5, migrationFlags: null, v1Region: { windowSize: 16 } }] });
    const r = await runCliWith({ syscalls: sys }, 'replay', SAVE, '--device', '/dev/vfio/5:v1-dev', '--json');
    expect(r.status).toBe(1);
    expect(r.json.result.divergences.map((d: { kind: string }) => d.kind)).toContain('stream-end');
  });

  describe('bad input', () => {
    it.each([
      [['replay'], /replay takes one trace file, got none/],
      [['replay', SAVE, RESUME, '--device', 'sim:v2'], /replay takes one trace file, got '.*' '.*'/],
      [['replay', SAVE], /replay needs --device D \(e\.g\. vfio-mig replay .* --device 'sim:v2\?size=24'\)/],
      [
        ['replay', fixture('q10-save-running'), '--device', 'sim:v2'],
        /has no v1 register accesses to replay \(a v2 trace, such as QEMU 10's, is not replayed\)/,
      ],
      [['replay', SAVE, '--device', 'sim:v2', '--dev', '2'], /has no v1 accesses of device 2: it has 1/],
      [['replay', SAVE, '--device', 'sim:v3'], /bad simulated device/],
    ])('%j', async (args, message) => {
      const r = await runCli(...args);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(message);
    });

    it('a missing trace file, a trace that is no trace', async () => {
      const missing = await runCli('replay', join(dir, 'nothing.jsonl'), '--device', 'sim:v2');
      expect(missing.status).toBe(1);
      expect(missing.stderr).toMatch(/ENOENT: cannot read the trace .*nothing\.jsonl/);
      const junk = join(dir, 'junk.jsonl');
      writeFileSync(junk, '{"v":2,"t":0,"ev":"start"}\nnot json\n');
      const bad = await runCli('replay', junk, '--device', 'sim:v2');
      expect(bad.status).toBe(1);
      expect(bad.stderr).toMatch(/EINVAL: trace line 2: not JSON/);
    });
  });
});
