// The controls of the QEMU scenarios: what real, unmodified QEMUs do with mtty
// in the lab before this project's bridge is involved.
//  * QEMU 7.2 (Debian 12) cannot migrate a v2-only device: it blocks migration
//    with "VFIO device doesn't support migration" (vfio_migration_probe finds no
//    type 3 / subtype 1 region and adds a migration blocker).
//  * QEMU 10 (Debian 13) migrates it natively into a second QEMU 10, on the
//    machine type both versions share (pc-q35-7.2), and the UART scratch mark
//    set on the source arrives on the destination.
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { DEV_A, DEV_B } from './lab-env.js';
import { marksOf, setMarks, type Marks } from './mtty-marks.js';
import { LAB_RUN_DIR, VmPool } from './qemu-vm.js';

const vms = new VmPool();
afterEach(() => vms.quitAll());

describe('real QEMU, no bridge (lab controls)', () => {
  it('QEMU 7.2 refuses to migrate mtty: VFIO device doesn\'t support migration', async () => {
    const vm = await vms.start({ qemu: '7.2', name: 'q72-alone', devices: [DEV_A] });
    const out = await vm.migrate('exec:cat > /dev/null');
    expect(out + vm.log).toContain("VFIO device doesn't support migration");
    expect(await vm.status()).toBe('running');
  });

  it('QEMU 10 -> QEMU 10 on pc-q35-7.2 (native v2): completed, the mark arrives', async () => {
    const file = `${LAB_RUN_DIR}/q10-q10.mig`;
    rmSync(file, { force: true });
    const marks: Marks = [0xa5, 0x5a];
    await setMarks(DEV_A, marks);
    await setMarks(DEV_B, [0, 0]);
    const src = await vms.start({ qemu: '10', name: 'q10-src', devices: [DEV_A] });
    expect(await src.status()).toBe('running');
    await src.migrate(`exec:cat > ${file}`);
    const info = await src.waitMigration();
    console.log(`QEMU 10 -> 10 source: ${info.text.split('\n').filter((l) => /status|total time|downtime/i.test(l)).join('; ')}`);
    expect(info.status).toBe('completed');
    await src.quit();
    const dst = await vms.start({ qemu: '10', name: 'q10-dst', devices: [DEV_B], incoming: `exec:cat ${file}` });
    await dst.waitStatus('running');
    await dst.quit();
    expect(await marksOf(DEV_B)).toEqual(marks);
  });
});
