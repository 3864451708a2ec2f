// Real QEMU as the oracle: record what unmodified QEMUs do with a migrating
// VFIO device, for the fixtures in test/fixtures/traces (docs/trace-format.md).
//  * QEMU 7.2 under `vfio-mig bridge --trace`: every v1 register access it
//    makes and every v2 call the bridge makes for it.
//  * QEMU 10, native v2: its own trace events (-trace vfio_..., the log
//    backend, -D FILE, -msg timestamp=on).
// Each scenario writes its raw trace to the results share (traces/); the
// host (run.sh -> test/lab/fixtures.mjs) normalises and converts them and
// compares them with the committed fixtures, or replaces them
// (LAB_RECORD=1). QEMU 7.2 also writes its own trace events beside the
// bridge's trace: evidence for reading a fixture, not a fixture.
// Then `vfio-mig replay` replays the committed QEMU 7.2 fixtures against the
// real mtty, through the region the bridge would serve.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { address, DEV_A, sysfs } from './lab-env.js';
import { marksOf, setMarks } from './mtty-marks.js';
import { LAB_RUN_DIR, QemuVm, vfioMigBridge, vfioMigCommand, type QemuVersion, type VmOptions } from './qemu-vm.js';

const OUT = `${process.env.LAB_RESULTS ?? LAB_RUN_DIR}/traces`;
const FIXTURES = fileURLToPath(new URL('../fixtures/traces', import.meta.url));
const WORK = `${LAB_RUN_DIR}/traces`; // also /tmp inside the QEMU 10 chroot
mkdirSync(OUT, { recursive: true });
mkdirSync(WORK, { recursive: true });

/** The migration-related trace events of each version (hw/vfio/trace-events); patterns that match nothing are ignored by QEMU. */
const EVENTS: Record<QemuVersion, string[]> = {
  '7.2': ['vfio_migration_*', 'vfio_save_*', 'vfio_load_*', 'vfio_vmstate_change', 'vfio_update_pending'],
  '10': ['vfio_migration_*', 'vfio_save_*', 'vfio_load_*', 'vfio_vmstate_change*', 'vfio_state_pending_*'],
};

/** QEMU's own trace events into `log`. */
const traceArgs = (qemu: QemuVersion, log: string): string[] => [
  ...EVENTS[qemu].flatMap((e) => ['-trace', `enable=${e}`]),
  '-D',
  log,
  '-msg',
  'timestamp=on',
];

function qemuVersion(qemu: QemuVersion): string {
  const argv =
    qemu === '10'
      ? ['chroot', process.env.LAB_TRIXIE ?? '/nonexistent', '/usr/bin/env', '-i', 'PATH=/usr/bin:/bin', 'qemu-system-x86_64', '--version']
      : ['qemu-system-x86_64', '--version'];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  const m = /QEMU emulator version (\S+)/.exec(r.stdout);
  if (!m) throw new Error(`no version from QEMU ${qemu}: ${r.stdout}${r.stderr}`);
  return m[1];
}

interface Identity {
  bus: string;
  type?: string;
  driver?: string;
}
interface Recorded {
  scenario: string;
  qemu: QemuVersion;
  version: string;
  summary: string;
  device: { name: string; identity: Identity };
}

/** What the device is, from sysfs (as the bridge's trace says it: src/kernel/device-identity.ts). */
function identityOf(uuid: string): Identity {
  const last = (link: string) =>
    readlinkSync(`${sysfs(uuid)}/${link}`)
      .split('/')
      .pop()!;
  return { bus: 'mdev', type: last('mdev_type'), driver: last('driver') };
}
const recorded: Recorded[] = [];

/** Which version each QEMU really is, and what the device is, next to the raw traces. */
afterAll(() => writeFileSync(`${OUT}/recorded.json`, `${JSON.stringify(recorded, null, 2)}\n`));

const migFile = (name: string) => `${WORK}/${name}.mig`;

/**
 * Run `scenario` on a VM that records (the bridge's --trace for 7.2, QEMU's
 * own events for both), quit it, and keep its raw traces in the results;
 * migration files named in `removes` are deleted afterwards.
 */
async function record(
  scenario: string,
  o: Omit<VmOptions, 'name' | 'devices' | 'bridge' | 'extraArgs'>,
  summary: string,
  body: (vm: QemuVm) => Promise<void>,
  removes: string[] = [],
): Promise<void> {
  await setMarks(DEV_A, [0x5a, 0xa5]); // a reset device, as every scenario starts
  const log = `${WORK}/${scenario}.qemu.log`;
  const trace = `${WORK}/${scenario}.jsonl`;
  rmSync(log, { force: true });
  rmSync(trace, { force: true });
  recorded.push({ scenario, qemu: o.qemu, version: qemuVersion(o.qemu), summary, device: { name: DEV_A, identity: identityOf(DEV_A) } });
  const vm = await QemuVm.start({
    ...o,
    name: scenario,
    devices: [DEV_A],
    extraArgs: traceArgs(o.qemu, log),
    ...(o.qemu === '7.2' ? { bridge: vfioMigBridge('--trace', trace) } : {}),
  });
  try {
    await body(vm);
  } finally {
    if (vm.running) expect(await vm.quit()).toBe(0);
    copyFileSync(log, `${OUT}/${scenario}.qemu.log`);
    if (o.qemu === '7.2') copyFileSync(trace, `${OUT}/${scenario}.jsonl`);
    for (const name of removes) rmSync(migFile(name), { force: true });
  }
}

/** Until the migration is active, then one more second: its first iteration has read pending_bytes and blocks on the full pipe. */
async function activeForASecond(vm: QemuVm): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await vm.execute<{ status: string }>('query-migrate')).status !== 'active') {
    expect(Date.now(), 'the migration did not become active within 60 s').toBeLessThan(deadline);
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 1000));
  expect((await vm.execute<{ status: string }>('query-migrate')).status).toBe('active');
}

/** SIGKILL the process whose command line is exactly `argv` (the migration pipe's only reader). */
function killProcess(argv: string[]): void {
  const want = `${argv.join('\0')}\0`;
  const pids = readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8') === want;
      } catch {
        return false; // exited meanwhile
      }
    });
  expect(pids, `one process running ${argv.join(' ')}`).toHaveLength(1);
  process.kill(Number(pids[0]), 'SIGKILL');
}

async function migrateTo(vm: QemuVm, uri: string, wanted: string): Promise<void> {
  await vm.migrate(uri);
  const info = await vm.waitMigration();
  expect(info.status, `${vm.options.name}: ${info.text}\n${vm.log}`).toBe(wanted);
}

describe('recorded traces: real QEMU migrating mtty (test/fixtures/traces)', () => {
  it("QEMU 7.2 + bridge saves a running VM (and the file is the resume scenario's)", () =>
    record('q72-save-running', { qemu: '7.2' }, 'a running VM: migrate "exec:cat > FILE" to completion, then quit', async (vm) => {
      expect(await vm.status()).toBe('running');
      await migrateTo(vm, `exec:cat > ${migFile('q72-save-running')}`, 'completed');
    }));

  it('QEMU 7.2 + bridge saves a VM started with -S (prelaunch), then cont', () =>
    record(
      'q72-save-prelaunch-cont',
      { qemu: '7.2', prelaunch: true },
      'a VM started with -S: migrate while in prelaunch to completion, then cont, then quit',
      async (vm) => {
        expect(await vm.status()).toBe('prelaunch');
        await migrateTo(vm, `exec:cat > ${migFile('q72-save-prelaunch-cont')}`, 'completed');
        await vm.execute('cont');
        await vm.waitStatus('running');
      },
      ['q72-save-prelaunch-cont'],
    ));

  it("QEMU 7.2 + bridge: a first migration fails (its pipe's reader dies), a second completes", () =>
    record(
      'q72-failed-then-completed',
      { qemu: '7.2' },
      'a running VM: the first migration\'s pipe reader is killed 1 s after it is active (EPIPE: it fails), migrate "exec:cat > FILE" completes, quit',
      async (vm) => {
        // Not "exec:true": whether true exits before or after QEMU's first iteration is a race (both were
        // recorded). A reader that reads nothing, killed once QEMU is blocked on the full pipe, fails the
        // migration at one point: after the first iteration's pending_bytes read.
        await vm.migrate('exec:exec sleep 599');
        await activeForASecond(vm);
        killProcess(['sleep', '599']);
        expect((await vm.waitMigration()).status).toBe('failed');
        expect(await vm.status()).toBe('running');
        await migrateTo(vm, `exec:cat > ${migFile('q72-failed-then-completed')}`, 'completed');
      },
      ['q72-failed-then-completed'],
    ));

  it('QEMU 7.2 + bridge: a migration cancelled mid-way (migrate_cancel while the pipe is full)', () =>
    record(
      'q72-cancelled',
      { qemu: '7.2' },
      'a running VM: migrate into a pipe nobody reads, migrate_cancel 1 s after it is active (the device in pre-copy), quit',
      async (vm) => {
        // Nobody reads the pipe for 60 s: once QEMU has filled it, its migration thread blocks in the RAM
        // section of an iteration, after that iteration's pending_bytes read, with the device in pre-copy.
        // Waiting for 'active' (not a fixed time) keeps that true on a loaded machine; QEMU kills the
        // command when the migration ends.
        await vm.migrate('exec:sleep 60; cat > /dev/null');
        await activeForASecond(vm);
        await vm.execute('migrate_cancel');
        expect((await vm.waitMigration()).status).toBe('cancelled');
        expect(await vm.status()).toBe('running');
      },
    ));

  it("QEMU 7.2 + bridge resumes the running VM's state (-incoming), runs, quits", () =>
    record(
      'q72-resume',
      { qemu: '7.2', incoming: `exec:cat ${migFile('q72-save-running')}` },
      'the state q72-save-running saved: -incoming "exec:cat FILE", autostart to running, quit',
      (vm) => vm.waitStatus('running'),
      ['q72-save-running'],
    ));

  it('QEMU 10 (native v2) saves a running VM', () =>
    record('q10-save-running', { qemu: '10' }, 'a running VM: migrate "exec:cat > FILE" to completion, then quit', async (vm) => {
      expect(await vm.status()).toBe('running');
      await migrateTo(vm, `exec:cat > ${migFile('q10-save-running')}`, 'completed');
    }));

  it('QEMU 10 (native v2) resumes it (-incoming), runs, quits', () =>
    record(
      'q10-resume',
      { qemu: '10', incoming: `exec:cat ${migFile('q10-save-running')}` },
      'the state q10-save-running saved: -incoming "exec:cat FILE", autostart to running, quit',
      (vm) => vm.waitStatus('running'),
      ['q10-save-running'],
    ));
});

describe("vfio-mig replay on the real mtty (the bridge's path: LegacyRegionOverV2 over the kernel device)", () => {
  const fixtures = readdirSync(FIXTURES).filter((f) => /^q72-.*\.jsonl$/.test(f));
  for (const f of fixtures) {
    it(`${f}: the committed recording replays without divergence`, async () => {
      await setMarks(DEV_A, [0x5a, 0xa5]);
      const [node, bin] = vfioMigCommand();
      const r = spawnSync(node, [bin, 'replay', `${FIXTURES}/${f}`, '--device', address(DEV_A), '--json'], { encoding: 'utf8' });
      expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
      expect(JSON.parse(r.stdout).result).toMatchObject({ divergences: [], savedBytes: { recorded: expect.any(Number) } });
      await marksOf(DEV_A); // and the device is reset for the next one, whatever state the recording left it in
    });
  }
});
