// vfio-mig bridge's guard rails for the QEMU command line it runs: an
// unversioned machine type (which a newer QEMU resolves to its own version and
// then refuses a 7.2 stream on) and a vfio-pci device without
// x-enable-migration=on (QEMU 7.2's default keeps it from migrating).
import { describe, expect, it } from 'vitest';
import { parseQemuOptions, qemuCommandWarnings } from '../src/cli/qemu-command-checks.js';
import { runCli } from './support/run-cli.js';

const dev = 'vfio-pci,sysfsdev=/sys/bus/mdev/devices/u1,x-enable-migration=on';
const qemu = (...args: string[]) => ['/usr/bin/qemu-system-x86_64', '-m', '1G', ...args];

describe('QEMU command-line checks of vfio-mig bridge', () => {
  it('is quiet for a pinned machine type and devices with migration on', () => {
    for (const m of [
      ['-machine', 'pc-q35-7.2'],
      ['-M', 'pc-i440fx-7.2'],
      ['-machine', 'type=pc-q35-7.2,accel=tcg'],
      ['--machine=pc-q35-7.1'],
    ]) {
      expect(qemuCommandWarnings(qemu(...m, '-device', dev))).toEqual([]);
    }
  });

  it('warns about a missing or unversioned machine type and names the type to pin', () => {
    expect(qemuCommandWarnings(qemu('-device', dev))).toEqual([expect.stringMatching(/no -machine given.*pc-i440fx-7\.2/)]);
    expect(qemuCommandWarnings(qemu('-machine', 'q35', '-device', dev))).toEqual([
      expect.stringMatching(/-machine q35 is pc-q35-7\.2.*pin -machine pc-q35-7\.2/),
    ]);
    expect(qemuCommandWarnings(qemu('-M', 'pc,accel=tcg', '-device', dev))).toEqual([expect.stringMatching(/pin -machine pc-i440fx-7\.2/)]);
    // the last -machine wins, as in QEMU
    expect(qemuCommandWarnings(qemu('-machine', 'pc-q35-7.2', '-machine', 'q35', '-device', dev))).toHaveLength(1);
  });

  it('warns for each vfio-pci device without x-enable-migration=on, in either -device syntax', () => {
    const w = qemuCommandWarnings(
      qemu(
        '-machine',
        'pc-q35-7.2',
        '-device',
        'vfio-pci,sysfsdev=/sys/bus/mdev/devices/u2,id=nic0',
        '-device',
        'driver=vfio-pci,host=0000:3b:00.1,x-enable-migration=off',
        '-device',
        '{"driver":"vfio-pci","host":"0000:3b:00.2","x-enable-migration":true}',
        '-device',
        'virtio-net-pci,id=n1',
      ),
    );
    expect(w).toEqual([
      expect.stringMatching(/^nic0 has no x-enable-migration=on/),
      expect.stringMatching(/^0000:3b:00\.1 has no x-enable-migration=on/),
    ]);
  });

  it('says nothing about commands that are not QEMU', () => {
    expect(qemuCommandWarnings(['vfio-mig', 'save', '/dev/vfio/3:u', '--out', 'f'])).toEqual([]);
  });

  it('reads QEMU option syntax: implied key, bare flags, doubled commas', () => {
    expect([...parseQemuOptions('vfio-pci,host=a,,b,x-enable-migration=on,multifunction', 'driver')]).toEqual([
      ['driver', 'vfio-pci'],
      ['host', 'a,b'],
      ['x-enable-migration', 'on'],
      ['multifunction', 'on'],
    ]);
  });

  it('vfio-mig bridge prints them before it runs the command', async () => {
    const r = await runCli('bridge', '--', 'true', '-machine', 'q35', '-device', 'vfio-pci,host=0000:01:00.0');
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/vfio-mig bridge: warning: -machine q35 is pc-q35-7\.2/);
    expect(r.stderr).toMatch(/vfio-mig bridge: warning: 0000:01:00\.0 has no x-enable-migration=on/);
  });
});
