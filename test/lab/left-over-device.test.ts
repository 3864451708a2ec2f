// The device rule on the real mtty (Linux 6.12, in the VM lab). An instance is
// left the way an aborted QEMU destination leaves it: RESUMING SET on a raw
// device fd, then the data_fd and the device fd closed, no reset — mtty_close
// has freed the resume file and the state stays RESUMING, so a SET out of it
// would oops (mtty_load_state dereferences NULL; run.sh fails the lab on any
// BUG:/Oops on the console, and the guest boots with oops=panic). Then the
// command line as installed (main() of the built dist/src/cli/main.js, what
// the vfio-mig bin runs) does save, inspect, and load --via v1 / --via v2 with
// data mtty rejects, and each leaves the device usable and says what it did.
import { mkdirSync } from 'node:fs';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelMigrationDevice, MigState, koffiSyscalls } from '../../index.js';
// The built CLI, as the vfio-mig bin runs it (run.sh builds dist/ first).
import { main } from '../../dist/src/cli/main.js';
import { abandonIn, rawState } from '../support/left-over.js';
import { readScratch, writeScratch } from '../support/mtty-scenarios.js';
import { address, DEV_A, DEV_B, fdCount, sysfs } from './lab-env.js';

const TMP = `${process.env.LAB_TMP ?? '/tmp/vfio-mig-lab'}/left-over`;
const spec = (uuid: string) => ({ group: Number(address(uuid).replace(/^\/dev\/vfio\/|:.*$/g, '')), name: uuid });
const stateOf = (uuid: string) => MigState[rawState(spec(uuid), koffiSyscalls())];
const leaveInResuming = (uuid: string) => {
  abandonIn(spec(uuid), koffiSyscalls(), MigState.RESUMING);
  expect(stateOf(uuid)).toBe('RESUMING');
};

interface Run {
  status: number;
  stdout: string;
  stderr: string;
  json?: any;
}

async function vfioMig(...args: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const sink = (to: string[]) =>
    new Writable({
      write(chunk, _enc, done) {
        to.push(String(chunk));
        done();
      },
    });
  const status: number = await main(args, { stdout: sink(out), stderr: sink(err) });
  const run: Run = { status, stdout: out.join(''), stderr: err.join('') };
  if (args.includes('--json')) run.json = JSON.parse(run.stdout);
  return run;
}

let fdsBefore: number;
let foreign: string;

beforeAll(async () => {
  fdsBefore = fdCount();
  mkdirSync(TMP, { recursive: true });
  // A state mtty must refuse: 64 KiB of simulated device (mtty-2 holds 96 bytes: ENOMEM in mtty_resume_write).
  foreign = `${TMP}/sim-64k.vmig`;
  const r = await vfioMig('save', 'sim:v2?size=64KiB', '--out', foreign);
  expect(r.status, r.stderr).toBe(0);
});

afterAll(async () => {
  // Hand both instances to the next test file RUNNING.
  for (const uuid of [DEV_A, DEV_B]) {
    const d = await KernelMigrationDevice.open({ sysfs: sysfs(uuid) });
    await d.reset();
    await d.close();
  }
  expect(fdCount()).toBe(fdsBefore);
});

describe('an mtty instance left in RESUMING by an aborted destination (lab)', () => {
  it('vfio-mig save resets it (no SET out of that RESUMING), says so, saves 96 bytes, and leaves it RUNNING', async () => {
    leaveInResuming(DEV_B);
    const r = await vfioMig('save', address(DEV_B), '--out', `${TMP}/b.vmig`, '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.result).toMatchObject({ deviceBytes: 96, takeover: [{ face: 'v2', found: 'RESUMING', action: 'reset' }] });
    expect(r.stderr).toMatch(/note: .* was left in RESUMING by an earlier user; it was reset \(VFIO_DEVICE_RESET\) to RUNNING before use/);
    expect(stateOf(DEV_B)).toBe('RUNNING'); // running before the save, so running after (save --stop leaves it stopped)
  });

  it('vfio-mig inspect shows what it found and leaves the device RUNNING', async () => {
    leaveInResuming(DEV_B);
    const r = await vfioMig('inspect', address(DEV_B));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^state +RUNNING \(found in RESUMING, left by an earlier user: reset with VFIO_DEVICE_RESET\)$/m);
    expect(stateOf(DEV_B)).toBe('RUNNING');
  });

  for (const via of ['v1', 'v2']) {
    it(`vfio-mig load --via ${via} of a state mtty rejects: ENOMEM, the device reset to RUNNING, and the message says so`, async () => {
      leaveInResuming(DEV_B);
      const r = await vfioMig('load', address(DEV_B), '--in', foreign, '--via', via, '--json');
      expect(r.status).toBe(1);
      expect(r.json.error.code).toBe('ENOMEM');
      expect(r.json.error.message).toMatch(/failed: ENOMEM: .*; the device was reset \(VFIO_DEVICE_RESET\) and is RUNNING again$/);
      expect(r.stderr).toMatch(/note: .* was left in RESUMING by an earlier user/);
      expect(stateOf(DEV_B)).toBe('RUNNING');
      // The next user is fine: another save runs arcs out of whatever the load left.
      const again = await vfioMig('save', address(DEV_B), '--out', `${TMP}/b-after-${via}.vmig`);
      expect(again.status, again.stderr).toBe(0);
    });
  }

  it('a good state loads into it (--via v1 and --via v2) after the reset: the UART scratch mark arrives', async () => {
    for (const via of ['v1', 'v2']) {
      const mark = 0x20 + (Date.now() & 0x1f) + (via === 'v1' ? 0x40 : 0);
      const a = await KernelMigrationDevice.open({ sysfs: sysfs(DEV_A) });
      await a.reset();
      writeScratch(a, mark);
      await a.close();
      const file = `${TMP}/a-${via}.vmig`;
      expect((await vfioMig('save', address(DEV_A), '--out', file)).status).toBe(0);
      leaveInResuming(DEV_B);
      const r = await vfioMig('load', address(DEV_B), '--in', file, '--via', via);
      expect(r.status, r.stderr).toBe(0);
      expect(stateOf(DEV_B)).toBe('RUNNING');
      const b = await KernelMigrationDevice.open({ sysfs: sysfs(DEV_B) });
      expect(readScratch(b)).toBe(mark);
      await b.close();
    }
  });
});
