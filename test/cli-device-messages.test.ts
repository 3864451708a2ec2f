// What a user reads when a real device will not open (fake kernel): the
// errno, the cause and the fix on one line; the same advice as the --debug
// trace; and the cdev API blamed for its own nodes, not /dev/vfio/vfio.
import { describe, expect, it } from 'vitest';
import { FakeSyscalls, type FakeKernelOptions } from '../testing.js';
import { runCliWith } from './support/run-cli.js';

const kernel = (opts: Partial<FakeKernelOptions> = {}) => new FakeSyscalls({ devices: [{ name: 'mdev-v2', group: 3 }], ...opts });
const summaryOf = (stderr: string) => stderr.split('\n')[0];

describe('device errors name the errno and the fix', () => {
  it('a group node whose open gives ENXIO (a stale node, no group behind it)', async () => {
    const sys = kernel();
    sys.inject({ op: 'open', path: '/dev/vfio/3', errno: 'ENXIO' });
    const r = await runCliWith({ syscalls: sys }, 'inspect', '/dev/vfio/3:mdev-v2', '--json');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^vfio-mig: \/dev\/vfio\/3:mdev-v2: ENXIO: .*no VFIO group .*behind \/dev\/vfio\/3.*rebind the device .*ls \/dev\/vfio/,
    );
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.json.error).toMatchObject({ code: 'ENXIO', problem: 'stale-node' });
    expect(sys.openFds()).toEqual([]);
  });

  const cases: [string, Partial<FakeKernelOptions>, string, string][] = [
    ['vfio not loaded', { vfio: false }, '/dev/vfio/3:mdev-v2', 'ENOENT'],
    ['no such group', {}, '/dev/vfio/9:x', 'ENOENT'],
    ['no such device', {}, '/dev/vfio/3:nope', 'ENODEV'],
    ['permission', { denied: ['/dev/vfio/3'] }, '/dev/vfio/3:mdev-v2', 'EACCES'],
    ['not viable', { nonViable: [3] }, '/dev/vfio/3:mdev-v2', 'EBUSY'],
    ['no type1', { type1: false }, '/dev/vfio/3:mdev-v2', 'ENODEV'],
    ['no cdev', {}, '/dev/vfio/devices/vfio7', 'ENOENT'],
  ];
  for (const [what, opts, address, code] of cases) {
    it(`${what}: the summary names ${code}`, async () => {
      const r = await runCliWith({ syscalls: kernel(opts) }, 'inspect', address);
      expect(r.status).toBe(1);
      expect(summaryOf(r.stderr)).toMatch(new RegExp(`^vfio-mig: ${address.replace(/[/.]/g, '\\$&')}: ${code}: `));
    });
  }

  for (const [what, opts, address] of [
    ['vfio not loaded', { vfio: false }, '/dev/vfio/3:mdev-v2'],
    ['no such group', {}, '/dev/vfio/9:x'],
  ] as const) {
    it(`${what}: the summary gives the modprobe advice the --debug trace gives`, async () => {
      const r = await runCliWith({ syscalls: kernel(opts) }, 'inspect', address, '--debug');
      const [summary, ...trace] = r.stderr.split('\n');
      const advice = [...trace.join('\n').matchAll(/modprobe [\w -]+/g)].map((m) => m[0].trim());
      expect(advice.length).toBeGreaterThan(0);
      for (const a of advice) expect(summary).toContain(`'${a}'`);
    });
  }

  it('a cdev address on a kernel without vfio or iommufd: the cdev nodes are blamed, not /dev/vfio/vfio', async () => {
    const r = await runCliWith({ syscalls: kernel({ vfio: false }) }, 'inspect', '/dev/vfio/devices/vfio7', '--json');
    expect(r.status).toBe(1);
    expect(r.json.error.problem).toBe('no-cdev');
    expect(summaryOf(r.stderr)).toMatch(/\/dev\/iommu/);
    expect(summaryOf(r.stderr)).not.toMatch(/\/dev\/vfio\/vfio/);
  });
});
