// QEMU 10 -> QEMU 10, natively (v2), on the padded mtty (test/lab/mtty-pad.patch):
// a migration whose device state has volume, timed by QEMU's own `info migrate`.
// These are the yardstick numbers a bridged QEMU 7.2 is to be compared with;
// the device's own speed (KernelMigrationDevice, no QEMU) is printed beside them.
// Sizes: LAB_PAD_MIB (MiB, space- or comma-separated; default 64). The migration
// file and the saved stream live in the guest's memory: bigger sizes may need LAB_MEM.
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { KernelMigrationDevice, MigState } from '../../index.js';
import { writeAll } from '../support/mtty-scenarios.js';
import { DEV_A, DEV_B, sysfs } from './lab-env.js';
import { marksOf, setMarks, type Marks } from './mtty-marks.js';
import { DEFAULT_SEED, LAB_PAD_SIZES as SIZES, MTTY2_STREAM, MiB, paddingBytes, withPadding } from './mtty-padding.js';
import { LAB_RUN_DIR, switchoverParameters, VmPool } from './qemu-vm.js';

const { RUNNING: R, STOP_COPY: SC, RESUMING: RS } = MigState;

const vms = new VmPool();
afterEach(() => vms.quitAll());

/** The `info migrate` lines worth comparing across runs. */
function keyLines(info: string): string {
  return info
    .split('\n')
    .filter((l) => /^(Migration status|total time|downtime|setup|throughput|transferred ram|vfio device transferred):/.test(l))
    .join('; ');
}

const rate = (mib: number, ms: number) => `${((mib * 1000) / ms).toFixed(1)} MiB/s`;

/** Load `file` into a fresh QEMU 10 on DEV_B (marks 0 first); its log and B's marks afterwards. */
async function loadInto(file: string, mib: number, label: string): Promise<{ log: string; marks: Marks }> {
  await setMarks(DEV_B, [0, 0]);
  const dst = await vms.start({ qemu: '10', name: 'q10-vol-dst', devices: [DEV_B], incoming: 'defer' });
  const t0 = Date.now();
  await dst.execute('migrate-incoming', { uri: `exec:cat ${file}` });
  await dst.waitStatus('running', 600_000);
  console.log(`QEMU 10 destination, ${mib} MiB${label}: migrate-incoming to running in ${Date.now() - t0} ms`);
  await dst.quit();
  return { log: dst.log, marks: await marksOf(DEV_B) };
}

describe('QEMU 10 -> QEMU 10 with mtty state of real volume (lab)', () => {
  it.each(SIZES)(
    "%i MiB of padding through KernelMigrationDevice alone (the device's own speed, printed)",
    async (mib) => {
      const a = await KernelMigrationDevice.open({ sysfs: sysfs(DEV_A) });
      const b = await KernelMigrationDevice.open({ sysfs: sysfs(DEV_B) });
      try {
        await a.reset();
        await b.reset();
        await withPadding(mib, async () => {
          // 1 MiB calls, as QEMU makes them, straight into one buffer touched beforehand:
          // the time is the driver's and the syscalls', not this process's page faults.
          const stream = new Uint8Array(MTTY2_STREAM + mib * MiB).fill(1);
          const out = (await a.setState(SC))!;
          const t0 = Date.now();
          let at = 0;
          try {
            for (let n; at < stream.length && (n = await out.read(stream.subarray(at, at + MiB))) > 0;) at += n;
            expect(await out.read(new Uint8Array(1))).toBe(0);
          } finally {
            await out.close();
          }
          const t1 = Date.now();
          await a.setState(R);
          expect(at).toBe(stream.length);
          const into = (await b.setState(RS))!;
          const t2 = Date.now();
          try {
            await writeAll(into, stream, MiB);
          } finally {
            await into.close();
          }
          await b.setState(R); // RESUMING -> STOP checks the padding
          const t3 = Date.now();
          console.log(
            `padded mtty alone, ${mib} MiB in 1 MiB calls: save ${t1 - t0} ms (${rate(mib, t1 - t0)}), resume ${t3 - t2} ms (${rate(mib, t3 - t2)})`,
          );
        });
      } finally {
        await a.close();
        await b.reset();
        await b.close();
      }
    },
    600_000,
  );

  it.each(SIZES)(
    '%i MiB of padding: completed, the mark arrives; with one padding byte flipped in the file it does not',
    async (mib) => {
      expect(Number.isInteger(mib) && mib > 0).toBe(true);
      const file = `${LAB_RUN_DIR}/q10-volume.mig`;
      rmSync(file, { force: true });
      const marks: Marks = [0x3c, 0xc3];
      await setMarks(DEV_A, marks);
      try {
        await withPadding(mib, async () => {
          const src = await vms.start({ qemu: '10', name: 'q10-vol-src', devices: [DEV_A] });
          await src.execute('migrate-set-parameters', switchoverParameters(mib));
          await src.migrate(`exec:cat > ${file}`);
          const info = await src.waitMigration(600_000);
          console.log(`QEMU 10 -> 10, ${mib} MiB of mtty padding, source: ${keyLines(info.text)}`);
          expect(info.status).toBe('completed');
          await src.quit();
          expect(statSync(file).size).toBeGreaterThan(mib * MiB);

          // The destination's RESUMING -> STOP is where the driver checks every padding byte.
          const good = await loadInto(file, mib, '');
          expect(good.log).not.toMatch(/Failed setting device state/);
          expect(good.marks).toEqual(marks);

          // Control: the same file with one byte flipped mid-padding. QEMU 10 still reports the
          // migration completed and runs the VM, but the device's load failed (EINVAL) and QEMU
          // reset it (vfio_migration_set_state with recover state ERROR): the mark is lost.
          const bytes = readFileSync(file);
          const at = bytes.indexOf(paddingBytes(DEFAULT_SEED, Math.floor(mib / 2) * MiB, 32));
          expect(at).toBeGreaterThan(0);
          bytes[at + 16] ^= 0x80;
          writeFileSync(file, bytes);
          const bad = await loadInto(file, mib, ', one byte flipped');
          expect(bad.log).toMatch(/Failed setting device state to RUNNING_P2P.*Invalid argument/);
          expect(bad.marks).toEqual([0, 0]);
        });
      } finally {
        rmSync(file, { force: true });
      }
    },
    1_200_000,
  );
});
