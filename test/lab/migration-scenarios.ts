// One migration between two real QEMUs in the lab, the way a user runs it:
// the source VM runs, `migrate` sends it (to a file through `exec:`, or over a
// live TCP socket on loopback), the destination starts with `-incoming` and
// must reach `running`. The UART scratch registers of the source's mtty
// instances carry marks set before the source started; after both QEMUs have
// exited, the destination's instances must carry them.
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { expect } from 'vitest';
import { setMarks, marksOf, type Marks } from './mtty-marks.js';
import { LAB_RUN_DIR, QemuVm, type MigrationInfo, type VmOptions } from './qemu-vm.js';

export interface ScenarioResult {
  source: MigrationInfo;
  /** What the source's and destination's processes printed (QEMU and, when bridged, the bridge). */
  sourceLog: string;
  destinationLog: string;
}

let port = 47000;

/** Reset every device (setMarks does), put fresh marks on the sources' and zeros on the destinations'. */
async function markDevices(sources: string[], destinations: string[]): Promise<Marks[]> {
  const seed = (Date.now() >> 4) & 0x3f;
  const marks = sources.map((_, i): Marks => [0x80 | seed | (i << 6), 0x40 | seed]);
  for (const [i, uuid] of sources.entries()) await setMarks(uuid, marks[i]);
  for (const uuid of destinations) await setMarks(uuid, [0, 0]);
  return marks;
}

/** After both QEMUs have exited: the destination devices carry the sources' marks. */
async function expectMarks(name: string, destinations: string[], marks: Marks[]): Promise<void> {
  for (const [i, uuid] of destinations.entries()) expect(await marksOf(uuid), `${name}: marks on ${uuid}`).toEqual(marks[i]);
}

/** What a user would see, kept in the lab's results (.lab/results/transcripts/) for the README's walkthrough. */
function writeTranscript(name: string, lines: string[]): void {
  const dir = process.env.LAB_RESULTS ? `${process.env.LAB_RESULTS}/transcripts` : `${LAB_RUN_DIR}/transcripts`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/${name}.txt`, `${lines.join('\n')}\n`);
}

/**
 * Migrate `src` into `dst` (their `devices` pair up in order) and check the marks.
 * `transport`: 'file' runs the source to completion into a file first (exec:cat),
 * then starts the destination from it; 'tcp' runs both at once over loopback.
 */
export async function migrateAndCheck(
  name: string,
  src: Omit<VmOptions, 'name'>,
  dst: Omit<VmOptions, 'name' | 'incoming'>,
  transport: 'file' | 'tcp' = 'file',
): Promise<ScenarioResult> {
  const marks = await markDevices(src.devices, dst.devices);

  const file = `${LAB_RUN_DIR}/${name}.mig`;
  rmSync(file, { force: true });
  const vms: QemuVm[] = [];
  try {
    let source: MigrationInfo;
    let sourceLog: string;
    let destination: QemuVm;
    if (transport === 'file') {
      const s = await QemuVm.start({ ...src, name: `${name}-src` });
      vms.push(s);
      expect(await s.status()).toBe('running');
      await s.migrate(`exec:cat > ${file}`);
      source = await s.waitMigration();
      await s.quit();
      sourceLog = s.log;
      destination = await QemuVm.start({ ...dst, name: `${name}-dst`, incoming: `exec:cat ${file}` });
      vms.push(destination);
    } else {
      const p = port++;
      destination = await QemuVm.start({ ...dst, name: `${name}-dst`, incoming: `tcp:127.0.0.1:${p}` });
      vms.push(destination);
      const s = await QemuVm.start({ ...src, name: `${name}-src` });
      vms.push(s);
      expect(await s.status()).toBe('running');
      await s.migrate(`tcp:127.0.0.1:${p}`);
      source = await s.waitMigration();
      await s.quit();
      sourceLog = s.log;
    }
    writeTranscript(name, [
      `# ${name}: source`,
      `$ ${QemuVm.commandLine({ ...src, name: `${name}-src` }).join(' ')}`,
      sourceLog.trim(),
      '(qemu) info migrate',
      source.text.trim(),
      `# ${name}: destination`,
      `$ ${QemuVm.commandLine({ ...dst, name: `${name}-dst`, incoming: transport === 'file' ? `exec:cat ${file}` : 'tcp:...' }).join(' ')}`,
    ]);
    const summary = source.text
      .split('\n')
      .filter((l) => /status|total time|downtime:/i.test(l))
      .join('; ');
    console.log(`${name}: source ${summary}`);
    expect(source.status, `${name}: source says\n${source.text}\n${sourceLog}`).toBe('completed');
    await destination.waitStatus('running');
    await destination.quit();
    await expectMarks(name, dst.devices, marks);
    return { source, sourceLog, destinationLog: destination.log };
  } finally {
    for (const vm of vms) if (vm.running) await vm.quit();
    rmSync(file, { force: true });
  }
}

export interface TimedMigration extends ScenarioResult {
  /** Bytes of the migration file the source wrote. */
  fileBytes: number;
  /** Destination: from `migrate-incoming` to the status `running` (the load, the device's resume included), ms. */
  resumeMs: number;
}

/**
 * A migration through a file, timed on both sides as a user sees them: the
 * source (after `migrate-set-parameters` with `parameters`, if given) runs
 * `migrate` to completion and QEMU's own numbers are kept; then the
 * destination starts with `-incoming defer` and is timed from
 * `migrate-incoming` to running, so QEMU's (and a bridge's) start-up is not
 * counted. The marks must arrive, as in migrateAndCheck.
 */
export async function timedFileMigration(
  name: string,
  src: Omit<VmOptions, 'name'>,
  dst: Omit<VmOptions, 'name' | 'incoming'>,
  parameters?: Record<string, unknown>,
  timeoutMs = 600_000,
): Promise<TimedMigration> {
  const marks = await markDevices(src.devices, dst.devices);
  const file = `${LAB_RUN_DIR}/${name}.mig`;
  rmSync(file, { force: true });
  const vms: QemuVm[] = [];
  try {
    const s = await QemuVm.start({ ...src, name: `${name}-src` });
    vms.push(s);
    if (parameters) await s.execute('migrate-set-parameters', parameters);
    await s.migrate(`exec:cat > ${file}`);
    const source = await s.waitMigration(timeoutMs);
    await s.quit(); // a bridge prints its summary as it exits
    expect(source.status, `${name}: source says\n${source.text}\n${s.log}`).toBe('completed');
    const fileBytes = statSync(file).size;
    const d = await QemuVm.start({ ...dst, name: `${name}-dst`, incoming: 'defer' });
    vms.push(d);
    const t0 = performance.now();
    await d.execute('migrate-incoming', { uri: `exec:cat ${file}` });
    await d.waitStatus('running', timeoutMs);
    const resumeMs = performance.now() - t0;
    await d.quit();
    await expectMarks(name, dst.devices, marks);
    return { source, sourceLog: s.log, destinationLog: d.log, fileBytes, resumeMs };
  } finally {
    for (const vm of vms) if (vm.running) await vm.quit();
    rmSync(file, { force: true });
  }
}
