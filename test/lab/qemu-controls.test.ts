// The controls of the QEMU scenarios: what real, unmodified QEMUs do with mtty
// in the lab before this project's bridge is involved.
//  * QEMU 7.2 (Debian 12) cannot migrate a v2-only device: vfio_migration_probe
//    finds no type 3 / subtype 1 region and adds a migration blocker.
//  * QEMU 10 (Debian 13) migrates it natively into a second QEMU 10, on the
//    machine type both versions share (pc-q35-7.2): the UART marks arrive.
import { describe, expect, it } from 'vitest';
import { DEV_A, DEV_B } from './lab-env.js';
import { migrateAndCheck } from './migration-scenarios.js';
import { QemuVm } from './qemu-vm.js';

describe('real QEMU, no bridge (lab controls)', () => {
  it("QEMU 7.2 refuses to migrate mtty: VFIO device doesn't support migration", async () => {
    const vm = await QemuVm.start({ qemu: '7.2', name: 'q72-alone', devices: [DEV_A] });
    try {
      const out = await vm.migrate('exec:cat > /dev/null');
      expect(out + vm.log).toContain("VFIO device doesn't support migration");
      expect(await vm.status()).toBe('running');
    } finally {
      await vm.quit();
    }
  });

  it('QEMU 10 -> QEMU 10 on pc-q35-7.2 (native v2): completed, the marks arrive', async () => {
    await migrateAndCheck('q10-q10', { qemu: '10', devices: [DEV_A] }, { qemu: '10', devices: [DEV_B] });
  });
});
