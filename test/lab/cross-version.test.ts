// Cross-version live migration, the reason users want the bridge: a Debian 12
// host (QEMU 7.2 under vfio-mig bridge) and a Debian 13 host (QEMU 10, native
// v2) move a VM with a VFIO device both ways. Both sides run machine type
// pc-q35-7.2: QEMU 10 accepts a 7.2 stream only on the same machine type, and
// its compat properties for it keep its own stream 7.2-readable. The vfio
// section is byte-compatible (same markers, same be64-size chunks), and the
// device bytes are mtty's own on both sides. The QEMU 10 -> 10 control is in
// qemu-controls.test.ts.
import { describe, it } from 'vitest';
import { DEV_A, DEV_B } from './lab-env.js';
import { migrateAndCheck } from './migration-scenarios.js';
import { vfioMigBridge } from './qemu-vm.js';

describe('QEMU 7.2 + bridge <-> QEMU 10 (lab)', () => {
  for (const [path, options] of [
    ['mmap', []],
    ['trapped', ['--no-mmap']],
  ] as const) {
    it(`QEMU 7.2 + bridge -> QEMU 10, ${path} data path`, async () => {
      await migrateAndCheck(
        `q72-q10-${path}`,
        { qemu: '7.2', devices: [DEV_A], bridge: vfioMigBridge(...options) },
        { qemu: '10', devices: [DEV_B] },
      );
    });
    it(`QEMU 10 -> QEMU 7.2 + bridge, ${path} data path`, async () => {
      await migrateAndCheck(
        `q10-q72-${path}`,
        { qemu: '10', devices: [DEV_A] },
        { qemu: '7.2', devices: [DEV_B], bridge: vfioMigBridge(...options) },
      );
    });
  }

  it('QEMU 7.2 + bridge -> QEMU 10 over a live TCP socket (loopback), then back over TCP', async () => {
    await migrateAndCheck(
      'q72-q10-tcp',
      { qemu: '7.2', devices: [DEV_A], bridge: vfioMigBridge() },
      { qemu: '10', devices: [DEV_B] },
      'tcp',
    );
    await migrateAndCheck(
      'q10-q72-tcp',
      { qemu: '10', devices: [DEV_B] },
      { qemu: '7.2', devices: [DEV_A], bridge: vfioMigBridge() },
      'tcp',
    );
  });
});
