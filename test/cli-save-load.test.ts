// vfio-mig save / load: round trips across protocols through files (each
// command its own "process": a simulated device lives only inside one), kernel
// devices through the fake kernel, damaged files refused before the device is
// touched, and the bad-input messages.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, appendFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { SimDevice, SimV1Region, SimV2Driver, saveV2 } from '../index.js';
import { FakeSyscalls, UART_SCR } from '../testing.js';
import { MigrationFileWriter } from '../src/cli/migration-file.js';
import { runCli, runCliWith } from './support/run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

let n = 0;
const file = (name = 'state') => join(dir, `${name}-${++n}.vmig`);
const oneLine = (s: string) => s.trim().split('\n');

function kernel(): FakeSyscalls {
  return new FakeSyscalls({
    devices: [
      { name: 'src-v2', group: 3 },
      { name: 'dst-v2', group: 4 },
      { name: 'dst-v1', group: 5, migrationFlags: null, v1Region: { windowSize: 16 } },
    ],
  });
}

/** A good file to damage: a 1 MiB simulated state (payload > one 1 MiB read, so it streams in pieces). */
async function goodFile(): Promise<string> {
  const out = file('good');
  const r = await runCli('save', 'sim:v2?size=1MiB&seed=5', '--out', out, '--json');
  expect(r.status, r.stderr).toBe(0);
  return out;
}

describe('save then load, across protocols', () => {
  const cases = [
    {
      from: 'sim:v2?size=2MiB&seed=11',
      saveVia: [] as string[],
      to: 'sim:v1?size=2MiB&seed=12&window=64KiB',
      loadVia: ['--via', 'v2'],
      saved: 'v2',
      loaded: 'V2DeviceOverLegacy',
    },
    {
      from: 'sim:v1?size=2MiB&seed=13&window=32KiB',
      saveVia: [],
      to: 'sim:v2?size=2MiB&seed=14&flags=3',
      loadVia: ['--via', 'v1'],
      saved: 'v1',
      loaded: 'LegacyRegionOverV2',
    },
    {
      from: 'sim:v2?size=2MiB&seed=15&flags=1',
      saveVia: ['--via', 'v1'],
      to: 'sim:v2?size=2MiB&seed=16',
      loadVia: [],
      saved: 'v1',
      loaded: null,
    },
    {
      from: 'sim:v1?size=2MiB&seed=17&window=128KiB',
      saveVia: ['--via', 'v2'],
      to: 'sim:v1?size=2MiB&seed=18&window=4KiB',
      loadVia: [],
      saved: 'v2',
      loaded: null,
    },
  ];
  for (const c of cases) {
    it(`${c.from} ${c.saveVia.join(' ') || '(native)'} -> ${c.to} ${c.loadVia.join(' ') || '(native)'}: fingerprints match`, async () => {
      const out = file();
      const save = await runCli('save', c.from, '--out', out, '--rounds', '2', ...c.saveVia, '--json');
      expect(save.status, save.stderr).toBe(0);
      const s = save.json.result;
      expect(s).toMatchObject({ via: c.saved, file: out, fileBytes: statSync(out).size, rounds: 2 });
      expect(s.fingerprint).toMatch(/^[0-9a-f]{64}$/);
      expect(s.precopyBytes + s.stopCopyBytes).toBe(s.deviceBytes);
      expect(s.deviceBytes).toBeGreaterThanOrEqual(2 << 20);
      // The source did work between passes: the state saved is not the fresh device's.
      expect(s.fingerprint).not.toBe(new SimDevice({ size: 2 << 20, seed: Number(/seed=(\d+)/.exec(c.from)![1]) }).fingerprint());

      const load = await runCli('load', c.to, '--in', out, ...c.loadVia, '--json');
      expect(load.status, load.stderr).toBe(0);
      const l = load.json.result;
      expect(l).toMatchObject({ translator: c.loaded, sha256: s.sha256, deviceBytes: s.deviceBytes, fingerprintMatch: true });
      expect(l.fingerprint).toBe(s.fingerprint);
      expect(l.fingerprintBefore).not.toBe(l.fingerprint); // the destination really changed
      expect(l.source).toMatchObject({ device: c.from, via: c.saved, fingerprint: s.fingerprint });
    });
  }

  it('prints what was saved and loaded, and leaves no temporary file behind', async () => {
    const out = file();
    const save = await runCli('save', 'sim:v2?size=1MiB&seed=3', '--out', out, '--rounds', '0');
    expect(save.status, save.stderr).toBe(0);
    expect(save.stdout).toMatch(/^saved sim:v2\?size=1MiB&seed=3 over v2 to .*\.vmig$/m);
    expect(save.stdout).toMatch(/^ {2}device state +1\.0 MiB: pre-copy 0 B in 0 passes, stop-and-copy 1\.0 MiB$/m);
    expect(save.stdout).toMatch(/^ {2}file +1\.0 MiB, sha256 [0-9a-f]{64}$/m);
    const fingerprint = /fingerprint +([0-9a-f]{64})/.exec(save.stdout)![1];
    const load = await runCli('load', 'sim:v1?size=1MiB&seed=4', '--in', out, '--via', 'v2');
    expect(load.status, load.stderr).toBe(0);
    expect(load.stdout).toMatch(/^verified .*: 1\.0 MiB, sha256 [0-9a-f]{64}, saved from sim:v2\?size=1MiB&seed=3 over v2$/m);
    expect(load.stdout).toMatch(/^loaded sim:v1\?size=1MiB&seed=4 over v2 \(through V2DeviceOverLegacy\): 1\.0 MiB of device state$/m);
    expect(load.stdout).toContain(`fingerprint    ${fingerprint} matches the source`);
    expect(readdirSync(dir).filter((f) => f.endsWith('.partial'))).toEqual([]);
  });

  it('a load whose fingerprint differs from the recorded one exits 1 and still reports', async () => {
    // A well-formed file whose info records a fingerprint the state does not have.
    const out = file('lying');
    const sim = new SimDevice({ size: 64 << 10, seed: 1 });
    const writer = await MigrationFileWriter.create(out);
    const r = await saveV2(new SimV2Driver(sim, { flags: 1 }), writer.stream);
    await writer.finish({
      format: 'vfio-mig-shim migration file',
      source: 'sim:v2?size=64KiB',
      native: 'v2',
      via: 'v2',
      savedAt: new Date().toISOString(),
      deviceBytes: r.stopCopyBytes,
      precopyBytes: 0,
      stopCopyBytes: r.stopCopyBytes,
      sim: { size: 64 << 10, pageSize: 4096, fingerprint: 'f'.repeat(64) },
    });
    const load = await runCli('load', 'sim:v2?size=64KiB', '--in', out, '--json');
    expect(load.status).toBe(1);
    expect(load.json).toMatchObject({
      ok: false,
      result: { fingerprintMatch: false, fingerprint: sim.fingerprint() },
      error: { usage: false },
    });
    expect(load.stderr).toMatch(
      /^vfio-mig: sim:v2\?size=64KiB loaded, but its fingerprint [0-9a-f]{16}\.\.\. differs from the source's f{16}\.\.\.\n$/,
    );
  });
});

describe('kernel devices (fake kernel)', () => {
  it('saves an mtty device over v2 and loads it into a v1-only device over v2, and back over v1; no fd left open', async () => {
    const sys = kernel();
    sys.device('src-v2').model.ports[0][UART_SCR] = 0x5a;
    const out = file('mtty');
    const save = await runCliWith({ syscalls: sys }, 'save', '/dev/vfio/3:src-v2', '--out', out, '--json');
    expect(save.status, save.stderr).toBe(0);
    expect(save.json.result).toMatchObject({ native: 'v2', via: 'v2', fingerprint: null, usedPrecopy: true });
    const load = await runCliWith({ syscalls: sys }, 'load', '/dev/vfio/5:dst-v1', '--in', out, '--via', 'v2', '--json');
    expect(load.status, load.stderr).toBe(0);
    expect(load.json.result).toMatchObject({ native: 'v1', via: 'v2', translator: 'V2DeviceOverLegacy', fingerprintMatch: null });
    expect(sys.device('dst-v1').model.ports[0][UART_SCR]).toBe(0x5a);
    expect(sys.openFds()).toEqual([]);

    // And from the v1 device, saved over its own region, into a v2 device over v1.
    const back = file('mtty-back');
    expect((await runCliWith({ syscalls: sys }, 'save', '/dev/vfio/5:dst-v1', '--out', back)).status).toBe(0);
    const again = await runCliWith({ syscalls: sys }, 'load', '/dev/vfio/4:dst-v2', '--in', back, '--via', 'v1', '--json');
    expect(again.status, again.stderr).toBe(0);
    expect(again.json.result).toMatchObject({ via: 'v1', translator: 'LegacyRegionOverV2' });
    expect(sys.device('dst-v2').model.ports[0][UART_SCR]).toBe(0x5a);
    expect(sys.openFds()).toEqual([]);
  });

  it('a device failing mid-save: exit 1 naming the operation, no file, no temporary file, no fd', async () => {
    const sys = kernel();
    sys.inject({ op: 'read', target: 'data', errno: 'EIO' });
    const out = file('failed');
    const r = await runCliWith({ syscalls: sys }, 'save', '/dev/vfio/3:src-v2', '--out', out, '--json');
    expect(r.status).toBe(1);
    expect(r.json.error).toMatchObject({ code: 'EIO' });
    expect(r.stderr).toMatch(/^vfio-mig: saving \/dev\/vfio\/3:src-v2 \(over v2\) failed: EIO: /);
    expect(() => statSync(out)).toThrow();
    expect(readdirSync(dir).filter((f) => f.endsWith('.partial'))).toEqual([]);
    expect(sys.openFds()).toEqual([]);
  });

  it('a state the device refuses: exit 1 with the hint', async () => {
    const mtty = file('mtty2');
    expect((await runCliWith({ syscalls: kernel() }, 'save', '/dev/vfio/3:src-v2', '--out', mtty)).status).toBe(0);
    const r = await runCli('load', 'sim:v2?size=64KiB', '--in', mtty, '--quiet');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^vfio-mig: loading into sim:v2\?size=64KiB \(over v2\) failed: EINVAL: .*was the file saved from this kind of device/,
    );
  });
});

describe('damaged files fail before the device is touched', () => {
  const damages: [string, (path: string) => void, string, RegExp][] = [
    [
      'a flipped byte',
      (p) => {
        const b = readFileSync(p);
        b[b.length >> 1] ^= 0x40;
        writeFileSync(p, b);
      },
      'checksum',
      /is damaged: SHA-256 mismatch/,
    ],
    [
      'a flipped byte in the info',
      (p) => {
        const b = readFileSync(p);
        b[b.length - 64 - 3] ^= 1;
        writeFileSync(p, b);
      },
      'checksum',
      /is damaged: SHA-256 mismatch/,
    ],
    [
      'truncation',
      (p) => truncateSync(p, statSync(p).size - 1000),
      'truncated',
      /is truncated \(\d+ of \d+ bytes\): .*copy it again or save again/,
    ],
    ['truncation to a stub', (p) => truncateSync(p, 20), 'truncated', /is truncated/],
    [
      'a wrong magic',
      (p) => {
        const b = readFileSync(p);
        b.write('QEVM', 0, 'latin1');
        writeFileSync(p, b);
      },
      'bad-magic',
      /is not a vfio-mig migration file \(starts with 0x5145564d.*\): give a file written by 'vfio-mig save'/,
    ],
    [
      'a raw stream without the container',
      (p) => {
        const b = readFileSync(p);
        writeFileSync(p, b.subarray(32, b.length - 200));
      },
      'bad-magic',
      /is not a vfio-mig migration file/,
    ],
    ['an empty file', (p) => writeFileSync(p, ''), 'bad-magic', /the file is empty/],
    ['bytes appended', (p) => appendFileSync(p, 'junk'), 'trailing-bytes', /is damaged: 4 bytes after the end/],
    [
      'a newer container version',
      (p) => {
        const b = readFileSync(p);
        b.writeUInt32BE(2, 8);
        writeFileSync(p, b);
      },
      'bad-version',
      /container version 2, this vfio-mig reads version 1/,
    ],
    [
      'an unfinished save',
      (p) => {
        const b = readFileSync(p);
        b.fill(0, 16, 32);
        writeFileSync(p, b);
      },
      'incomplete',
      /is incomplete: .*did not finish; save again/,
    ],
  ];

  for (const [what, damage, problem, message] of damages) {
    it(`${what}: refused (exit 1, one line), and no device is opened`, async () => {
      const path = await goodFile();
      damage(path);
      // A simulated destination: the driver and region are never asked anything.
      const v2Calls = vi.spyOn(SimV2Driver.prototype, 'setState');
      const v1Writes = vi.spyOn(SimV1Region.prototype, 'writeAt');
      for (const [to, via] of [
        ['sim:v2?size=1MiB', 'v2'],
        ['sim:v1?size=1MiB', 'v1'],
        ['sim:v1?size=1MiB', 'v2'],
      ]) {
        const r = await runCli('load', to, '--in', path, '--via', via, '--json');
        expect(r.status, `${to} --via ${via}`).toBe(1);
        expect(oneLine(r.stderr)).toHaveLength(1);
        expect(r.stderr).toMatch(message);
        expect(r.json).toMatchObject({ ok: false, error: { problem, usage: false } });
      }
      expect(v2Calls).not.toHaveBeenCalled();
      expect(v1Writes).not.toHaveBeenCalled();
      // A kernel destination: not a single syscall.
      const sys = kernel();
      const r = await runCliWith({ syscalls: sys }, 'load', '/dev/vfio/4:dst-v2', '--in', path);
      expect(r.status).toBe(1);
      expect(sys.calls).toEqual([]);
    });
  }

  it('(the same checks let a good file through: the spies and the call log do see a load)', async () => {
    const path = await goodFile();
    const v2Calls = vi.spyOn(SimV2Driver.prototype, 'setState');
    expect((await runCli('load', 'sim:v2?size=1MiB', '--in', path)).status).toBe(0);
    expect(v2Calls).toHaveBeenCalled();
    const sys = kernel();
    await runCliWith({ syscalls: sys }, 'load', '/dev/vfio/4:dst-v2', '--in', path); // refused by mtty, but opened
    expect(sys.calls.length).toBeGreaterThan(0);
  });

  it('unreadable files: missing, a directory', async () => {
    const missing = await runCli('load', 'sim:v2', '--in', join(dir, 'nope.vmig'), '--json');
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/cannot read '.*nope\.vmig': no such file \(check the path\)/);
    expect(missing.json.error).toMatchObject({ code: 'ENOENT', problem: 'unreadable' });
    const directory = await runCli('load', 'sim:v2', '--in', dir);
    expect(directory.status).toBe(1);
    expect(directory.stderr).toMatch(/is a directory or special file, not a migration file/);
  });
});

describe('bad input', () => {
  it('save: usage errors exit 2 with one line', async () => {
    const cases: [string[], RegExp][] = [
      [['save', 'sim:v2'], /save needs --out FILE/],
      [['save', '--out', 'x.vmig'], /save needs a device address/],
      [['save', 'sim:v2', '--out', 'x.vmig', '--via', 'v3'], /bad --via 'v3': use v1 .* or v2/],
      [['save', 'sim:v2', '--out', 'x.vmig', '--rounds', 'many'], /bad --rounds 'many'/],
      [['save', 'sim:v2', '--out', 'x.vmig', '--work', 'lots'], /bad --work 'lots'/],
      [['save', '/dev/vfio/3:a', '--out', 'x.vmig', '--work', '5'], /--work applies to simulated devices only/],
      [['save', 'sim:v9', '--out', 'x.vmig'], /use sim:v1 or sim:v2/],
      [['save', 'sim:v2', '--out'], /--out/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(oneLine(r.stderr), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
    expect(() => statSync('x.vmig')).toThrow();
  });

  it('save: an output that cannot be written fails before the device is opened', async () => {
    const spy = vi.spyOn(SimV2Driver.prototype, 'migrationFlags');
    const r = await runCli('save', 'sim:v2?size=64KiB', '--out', join(dir, 'no', 'such', 'dir', 'f.vmig'), '--json');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot write '.*f\.vmig': its directory does not exist \(create it or choose another path\)/);
    expect(r.json.error).toMatchObject({ code: 'ENOENT', problem: 'unwritable' });
    mkdirSync(join(dir, 'adir.vmig'));
    const onDir = await runCli('save', 'sim:v2?size=64KiB', '--out', join(dir, 'adir.vmig'));
    expect(onDir.status).toBe(1);
    expect(onDir.stderr).toMatch(/adir\.vmig' is a directory or special file, not a migration file: give a file path/);
    expect(spy).not.toHaveBeenCalled();
    expect(readdirSync(dir).filter((f) => f.endsWith('.partial'))).toEqual([]);
  });

  it('load: usage errors exit 2; a simulated destination of the wrong size says which size to give', async () => {
    const path = await goodFile();
    for (const [args, message] of [
      [['load', 'sim:v2'], /load needs --in FILE/],
      [['load', '--in', path], /load needs a device address/],
      [['load', 'sim:v2', '--in', path, '--via', 'v0'], /bad --via/],
      [['load', 'sim:v2', 'sim:v1', '--in', path], /takes one device address/],
    ] as [string[], RegExp][]) {
      const r = await runCli(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const size = await runCli('load', 'sim:v1?size=2MiB', '--in', path);
    expect(size.status).toBe(2);
    expect(size.stderr).toMatch(
      /holds the state of a simulated device of 1 MiB, sim:v1\?size=2MiB has 2 MiB: give the destination size=1MiB/,
    );
  });

  it('--help for both', async () => {
    const save = await runCli('save', '--help');
    expect(save.status).toBe(0);
    expect(save.stdout).toContain('usage: vfio-mig save <device> --out FILE [--via v1|v2] [--rounds N]');
    const load = await runCli('load', '-h');
    expect(load.status).toBe(0);
    expect(load.stdout).toContain('usage: vfio-mig load <device> --in FILE|- [--via v1|v2]');
  });
});
