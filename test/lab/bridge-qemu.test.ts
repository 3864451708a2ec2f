// The product's promise on a binary nobody here wrote: Debian 12's unmodified
// QEMU 7.2 live-migrates the v2-only mtty device under `vfio-mig bridge`
// (the installed bin, run by the lab's node), on the mmap and on the trapped
// data path, with one and with two devices per VM; legacy tooling (this
// project's own v1 client on a real device fd) through the bridge; and a
// bridge killed mid-migration, after which QEMU fails the migration and the
// VM keeps running. The control (the same QEMU without the bridge refuses)
// is in qemu-controls.test.ts; the lab fails on any guest BUG:/Oops.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KernelMigrationDevice } from '../../index.js';
import { saveStream } from '../support/mtty-scenarios.js';
import { address, DEV_A, DEV_B, DEV_C, DEV_D, sysfs } from './lab-env.js';
import { migrateAndCheck } from './migration-scenarios.js';
import { marksOf, setMarks } from './mtty-marks.js';
import { LAB_RUN_DIR, QemuVm, vfioMigBridge, vfioMigCommand } from './qemu-vm.js';

const vfioMig = vfioMigCommand();
const bridge = vfioMigBridge;

/** The bridge's own lines (start, summary) from a run's output. */
const bridgeLines = (log: string) => log.split('\n').filter((l) => l.startsWith('vfio-mig bridge:'));

/** After the migration both devices hold the same state: a v2 save of each gives the same bytes. */
async function expectSameState(a: string, b: string): Promise<void> {
  const streams: Uint8Array[] = [];
  for (const uuid of [a, b]) {
    const d = await KernelMigrationDevice.open({ sysfs: sysfs(uuid) });
    try {
      await d.reset(); // a migrated source is left in STOP
      streams.push(await saveStream(d));
    } finally {
      await d.close();
    }
  }
  expect(streams[1]).toEqual(streams[0]);
}

describe('QEMU 7.2 under vfio-mig bridge (lab acceptance)', () => {
  for (const [path, options] of [
    ['mmap', []],
    ['trapped', ['--no-mmap']],
  ] as const) {
    it(`QEMU 7.2 -> QEMU 7.2, ${path} data path: completed, running, the marks arrive`, async () => {
      const r = await migrateAndCheck(
        `q72-q72-${path}`,
        { qemu: '7.2', devices: [DEV_A], bridge: bridge(...options) },
        { qemu: '7.2', devices: [DEV_B], bridge: bridge(...options) },
      );
      console.log(
        `bridge (${path}), source:\n  ${bridgeLines(r.sourceLog).join('\n  ')}\nbridge (${path}), destination:\n  ${bridgeLines(r.destinationLog).join('\n  ')}`,
      );
      expect(bridgeLines(r.sourceLog).some((l) => l.includes(DEV_A))).toBe(true);
      expect(r.sourceLog).toMatch(/summary .*saved [1-9]\d* chunks?/);
      expect(r.destinationLog).toMatch(/summary .*resumed [1-9]\d* chunks?/);
      await expectSameState(DEV_A, DEV_B);
    });
  }

  it('two devices in one VM (A, C -> B, D), both bridged independently', async () => {
    const r = await migrateAndCheck(
      'q72-two-devices',
      { qemu: '7.2', devices: [DEV_A, DEV_C], bridge: bridge() },
      { qemu: '7.2', devices: [DEV_B, DEV_D], bridge: bridge() },
    );
    expect(bridgeLines(r.sourceLog).filter((l) => /summary .*saved [1-9]/.test(l))).toHaveLength(2);
    expect(bridgeLines(r.destinationLog).filter((l) => /summary .*resumed [1-9]/.test(l))).toHaveLength(2);
    await expectSameState(DEV_A, DEV_B);
    await expectSameState(DEV_C, DEV_D);
  });

  it('legacy tooling: `vfio-mig bridge -- vfio-mig save A --via v1` drives the synthesized region; the file loads into B', async () => {
    const file = `${LAB_RUN_DIR}/legacy-tool.vmig`;
    rmSync(file, { force: true });
    await setMarks(DEV_A, [0x3c, 0xc3]);
    await setMarks(DEV_B, [0, 0]);
    const save = spawnSync(
      vfioMig[0],
      [vfioMig[1], 'bridge', '--', ...vfioMig, 'save', address(DEV_A), '--via', 'v1', '--rounds', '0', '--out', file, '--json'],
      { encoding: 'utf8' },
    );
    console.log(`bridged save: ${save.stderr.trim()}`);
    expect(save.status, save.stderr).toBe(0);
    const saved = JSON.parse(save.stdout) as { result: { via: string; native: string; translator: unknown; deviceBytes: number } };
    // Inside the bridge the device looks like a v1 kernel's: its own v1 region, no v2 face.
    expect(saved.result).toMatchObject({ via: 'v1', native: 'v1', translator: null, deviceBytes: 96 });
    const load = spawnSync(vfioMig[0], [vfioMig[1], 'load', address(DEV_B), '--in', file], { encoding: 'utf8' });
    expect(load.status, load.stderr).toBe(0);
    expect(await marksOf(DEV_B)).toEqual([0x3c, 0xc3]);
  });

  it('the bridge killed mid-migration: QEMU fails the migration, the VM keeps running', async () => {
    await setMarks(DEV_A, [0x11, 0x22]);
    const vm = await QemuVm.start({ qemu: '7.2', name: 'q72-bridge-killed', devices: [DEV_A], bridge: bridge() });
    const qemu = vm.children();
    expect(qemu).toHaveLength(1);
    try {
      expect(await vm.status()).toBe('running');
      // The pipe stays full for a while, so the migration is still in its pre-copy phase when the bridge dies.
      await vm.migrate('exec:sleep 3; cat > /dev/null');
      await new Promise((r) => setTimeout(r, 1000));
      expect((await vm.execute<{ status: string }>('query-migrate')).status).toBe('active');
      vm.kill('SIGKILL'); // the bridge; QEMU, its child, lives on
      const info = await vm.waitMigration();
      console.log(
        `bridge killed: ${info.text
          .split('\n')
          .filter((l) => /status/i.test(l))
          .join('; ')}`,
      );
      expect(info.status).toBe('failed');
      expect(await vm.status()).toBe('running');
    } finally {
      await vm.quitOrphans(qemu);
    }
    // QEMU is gone; the device is usable again (the takeover rule resets what the dead bridge left).
    expect(await marksOf(DEV_A)).toEqual([0x11, 0x22]);
  });
});
