// vfio-mig inspect on simulated devices and on kernel devices (the fake kernel
// stands in for /dev/vfio), and every way opening a device goes wrong.
import { describe, expect, it } from 'vitest';
import { KernelMigrationDevice, SimDevice, VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_SET } from '../index.js';
import { FakeSyscalls, type FakeKernelOptions } from '../testing.js';
import { runCli, runCliWith } from './support/run-cli.js';

function kernel(opts: Partial<FakeKernelOptions> = {}): FakeSyscalls {
  return new FakeSyscalls({
    devices: [
      { name: 'mdev-v2', group: 3 },
      { name: 'mdev-v1', group: 4, migrationFlags: null, v1Region: { windowSize: 64 } },
      { name: 'mdev-both', group: 6, v1Region: { windowSize: 64, mmap: true } },
      { name: 'mdev-none', group: 5, migrationFlags: null },
    ],
    ...opts,
  });
}

const oneLine = (s: string) => s.trim().split('\n');

describe('vfio-mig inspect: simulated devices', () => {
  it('sim:v2 shows flags, state, MIG_DATA_SIZE, no v1 region, and the simulation with its fingerprint', async () => {
    const r = await runCli('inspect', 'sim:v2?size=1MiB&flags=5&seed=9', '--json');
    expect(r.status, r.stderr).toBe(0);
    const sim = new SimDevice({ size: 1 << 20, seed: 9 });
    expect(r.json.result).toMatchObject({
      device: 'sim:v2?size=1MiB&flags=5&seed=9',
      native: 'v2',
      clients: { v1: 'LegacyRegionOverV2', v2: 'native' },
      v2: { flags: 5, flagNames: 'STOP_COPY|PRE_COPY', state: 'RUNNING', stopCopySize: Number(sim.fullStreamBytes()) },
      v1Region: null,
      sim: { size: 1 << 20, pageSize: 4096, pages: 256, seed: 9, steps: 0, flags: 5, fingerprint: sim.fingerprint() },
    });
    const human = await runCli('inspect', 'sim:v2?size=1MiB&flags=5&seed=9');
    expect(human.stdout).toMatch(/^flags +5 \(STOP_COPY\|PRE_COPY\)$/m);
    expect(human.stdout).toMatch(/^state +RUNNING$/m);
    expect(human.stdout).toMatch(/^v1 region +none$/m);
    expect(human.stdout).toContain(`fingerprint    ${sim.fingerprint()}`);
  });

  it('sim:v1 shows its region and what a v2 client sees through V2DeviceOverLegacy', async () => {
    const r = await runCli('inspect', 'sim:v1?size=64KiB&window=4KiB&policy=uapi', '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.result).toMatchObject({
      native: 'v1',
      clients: { v1: 'native', v2: 'V2DeviceOverLegacy' },
      v2: { flags: 5, state: 'RUNNING', stopCopySize: null },
      v1Region: { size: 4096 + 4096, windowSize: 4096, dataOffset: 4096, policy: 'uapi', deviceState: 1 },
      sim: { size: 65536, window: 4096, policy: 'uapi' },
    });
    const human = await runCli('inspect', 'sim:v1?size=64KiB&window=4KiB');
    expect(human.stdout).toMatch(/^v1 region +8 KiB, device_state 001b RUNNING, window 4 KiB at 4096, policy qemu$/m);
    expect(human.stdout).toMatch(/^MIG_DATA_SIZE +unknown: a v1 device reports pending_bytes only while saving$/m);
  });
});

describe('vfio-mig inspect: kernel devices (fake kernel)', () => {
  it('a v2 device: flags, state, MIG_DATA_SIZE, every region; changes nothing and leaves no fd open', async () => {
    const sys = kernel();
    const r = await runCliWith({ syscalls: sys }, 'inspect', '/dev/vfio/3:mdev-v2', '--json');
    expect(r.status, r.stderr).toBe(0);
    const res = r.json.result;
    expect(res).toMatchObject({
      native: 'v2',
      v2: { flags: 7, state: 'RUNNING' },
      v1Region: null,
      kernel: { name: 'mdev-v2', api: 'group', flagNames: 'PCI' },
    });
    expect(res.kernel.regions.map((g: { name: string }) => g.name)).toEqual([
      'BAR0',
      'BAR1',
      'BAR2',
      'BAR3',
      'BAR4',
      'BAR5',
      'ROM',
      'CONFIG',
      'VGA',
    ]);
    expect(res.kernel.regions[7]).toMatchObject({ index: 7, size: 255, flags: ['read', 'write'] });
    // Reads only: no VFIO_DEVICE_FEATURE SET was issued; every fd is closed again.
    const sets = sys.callsOf('ioctl', VFIO_DEVICE_FEATURE).filter((c) => (c.featureFlags ?? 0) & VFIO_DEVICE_FEATURE_SET);
    expect(sets).toEqual([]);
    expect(sys.openFds()).toEqual([]);
    // MIG_DATA_SIZE is what the device itself answers.
    const direct = await KernelMigrationDevice.open({ group: 3, name: 'mdev-v2' }, sys);
    expect(res.v2.stopCopySize).toBe(Number(await direct.stopCopySize()));
    await direct.close();

    const human = await runCliWith({ syscalls: kernel() }, 'inspect', '/dev/vfio/3:mdev-v2');
    expect(human.stdout).toMatch(/^region +name +size +flags +offset$/m);
    expect(human.stdout).toMatch(/^7 +CONFIG +255 B +read write +0x70000000000$/m);
  });

  it('a v1-only device: native v1 region, why there is no native v2 face, the v2 face through the translator', async () => {
    const sys = kernel();
    const r = await runCliWith({ syscalls: sys }, 'inspect', '/dev/vfio/4:mdev-v1', '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.result).toMatchObject({
      native: 'v1',
      clients: { v1: 'native', v2: 'V2DeviceOverLegacy' },
      v2: { flags: 5, state: 'RUNNING', stopCopySize: null },
      v1Region: { index: 9, deviceState: 1, mmap: false },
    });
    expect(r.json.result.v2.nativeUnavailable).toMatch(/^ENOTTY: .*no v2 migration support/);
    expect(r.json.result.kernel.regions[9]).toMatchObject({ name: 'migration (v1)', type: '3/1' });
    expect(sys.openFds()).toEqual([]);
  });

  it('a device with both: v2 native, and v1 clients use its own region', async () => {
    const r = await runCliWith({ syscalls: kernel() }, 'inspect', '/dev/vfio/6:mdev-both', '--json');
    expect(r.json.result).toMatchObject({ native: 'v2', clients: { v1: 'native', v2: 'native' }, v1Region: { index: 9, mmap: true } });
  });
});

describe('vfio-mig inspect: errors people can act on', () => {
  const cases: [string, Partial<FakeKernelOptions>, string, string, RegExp][] = [
    ['vfio module not loaded', { vfio: false }, '/dev/vfio/3:mdev-v2', 'no-vfio', /modprobe vfio-pci.*bind the device to vfio-pci/],
    ['no such group', {}, '/dev/vfio/999:x', 'no-group', /no VFIO group \/dev\/vfio\/999: .*bind it .*ls \/dev\/vfio/],
    [
      'no such device in the group',
      {},
      '/dev/vfio/3:nope',
      'no-device',
      /group \/dev\/vfio\/3 has no device 'nope': .*ls \/sys\/kernel\/iommu_groups\/3\/devices/,
    ],
    [
      'permission denied',
      { denied: ['/dev/vfio/3'] },
      '/dev/vfio/3:mdev-v2',
      'permission',
      /permission denied .*run as root, or give your user the VFIO nodes/,
    ],
    [
      'group not viable',
      { nonViable: [3] },
      '/dev/vfio/3:mdev-v2',
      'not-viable',
      /every device in the IOMMU group must be bound to vfio-pci/,
    ],
    [
      'no migration support',
      {},
      '/dev/vfio/5:mdev-none',
      'no-migration',
      /does not support migration \(ENOTTY on VFIO_DEVICE_FEATURE_MIGRATION and no v1 migration region\)/,
    ],
    ['no cdev', {}, '/dev/vfio/devices/vfio7', 'no-cdev', /address it by group/],
  ];
  for (const [what, opts, address, problem, message] of cases) {
    it(`${what}: one line naming the fix, exit 1, nothing left open`, async () => {
      const sys = kernel(opts);
      const r = await runCliWith({ syscalls: sys }, 'inspect', address);
      expect(r.status).toBe(1);
      expect(oneLine(r.stderr)).toHaveLength(1);
      expect(r.stderr).toMatch(/^vfio-mig: /);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(sys.openFds()).toEqual([]);
      const j = await runCliWith({ syscalls: kernel(opts) }, 'inspect', address, '--json');
      expect(j.json).toMatchObject({ ok: false, command: 'inspect', error: { problem, usage: false } });
    });
  }

  it('a busy group (another process has it open)', async () => {
    const sys = kernel();
    const held = sys.open('/dev/vfio/3', 2);
    const r = await runCliWith({ syscalls: sys }, 'inspect', '/dev/vfio/3:mdev-v2');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/busy: another process .* has the group or device open; stop it/);
    sys.close(held);
  });

  it('the real kernel boundary: a group that does not exist names the fix', async () => {
    // No injected syscalls: koffi against this machine, where /dev/vfio/999 does not exist.
    const r = await runCli('inspect', '/dev/vfio/999:x', '--json');
    expect(r.status).toBe(1);
    expect(r.json.error.code).toBe('ENOENT');
    expect(['no-vfio', 'no-group']).toContain(r.json.error.problem);
    expect(r.stderr).toMatch(/modprobe vfio-pci|bind it/);
    expect(oneLine(r.stderr)).toHaveLength(1);
  });

  it('--debug adds the stack trace (with its cause)', async () => {
    const r = await runCliWith({ syscalls: kernel({ vfio: false }) }, 'inspect', '/dev/vfio/3:mdev-v2', '--debug');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/\n\s+at /);
    expect(r.stderr).toContain('caused by: MigrationError: ENOENT');
  });

  it('bad input is a usage error (exit 2, one line)', async () => {
    for (const args of [[], ['sim:v2', 'sim:v1'], ['eth0'], ['sim:v3'], ['/dev/vfio/12'], ['sim:v2', '--bogus']]) {
      const r = await runCli('inspect', ...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(oneLine(r.stderr), args.join(' ')).toHaveLength(1);
    }
    expect((await runCli('inspect')).stderr).toMatch(/inspect needs a device address/);
  });

  it('--help', async () => {
    const r = await runCli('inspect', '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('usage: vfio-mig inspect <device>');
    expect((await runCli('--help')).stdout).toMatch(/inspect +show a device's migration support/);
  });
});
