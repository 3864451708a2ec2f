// The command line on a kernel device an earlier user left behind (the fake
// kernel's mtty oopses exactly where the real one does): save, inspect and
// load (--via v1 and --via v2, with data the device rejects) never SET it out
// of a left-over RESUMING, leave it RUNNING, and say what they did.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MigState } from '../index.js';
import { FakeSyscalls } from '../testing.js';
import { abandonIn, rawState } from './support/left-over.js';
import { runCli, runCliWith } from './support/run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-left-over-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ADDRESS = '/dev/vfio/3:mtty-a';
const SPEC = { group: 3, name: 'mtty-a' };
let sys: FakeSyscalls;
let n = 0;
const file = (name: string) => join(dir, `${name}-${++n}.vmig`);

function leftInResuming(): FakeSyscalls {
  sys = new FakeSyscalls({ devices: [{ name: 'mtty-a', group: 3 }] });
  abandonIn(SPEC, sys, MigState.RESUMING); // an aborted destination: data_fd and device closed, no reset
  return sys;
}

afterEach(() => {
  expect(sys.oops, 'the kernel oopsed').toBeNull();
  expect(sys.openFds()).toEqual([]);
});

const stateNow = () => MigState[rawState(SPEC, sys)];

/** A file the mtty device must reject: a 64 KiB simulated state (mtty holds 96 bytes: ENOMEM). */
async function foreignFile(): Promise<string> {
  const out = file('sim');
  const r = await runCli('save', 'sim:v2?size=64KiB', '--out', out);
  expect(r.status, r.stderr).toBe(0);
  return out;
}

describe('a device left in RESUMING (an aborted destination)', () => {
  it('save: resets it (never a SET out of that RESUMING), says so, and saves', async () => {
    leftInResuming();
    const out = file('saved');
    const r = await runCliWith({ syscalls: sys }, 'save', ADDRESS, '--out', out, '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.result).toMatchObject({ deviceBytes: 96, takeover: [{ face: 'v2', found: 'RESUMING', action: 'reset' }] });
    expect(r.stderr).toMatch(
      /note: .*mtty-a was left in RESUMING by an earlier user; it was reset \(VFIO_DEVICE_RESET\) to RUNNING before use/,
    );
    expect(stateNow()).toBe('RUNNING'); // it ran before the save, so it runs again, as after QEMU's savevm
  });

  it('save --stop leaves the device stopped, as a migration source (v2 and v1 faces)', async () => {
    for (const via of ['v2', 'v1']) {
      const r = await runCliWith({ syscalls: sys }, 'save', ADDRESS, '--out', file(`stopped-${via}`), '--via', via, '--stop');
      expect(r.status, r.stderr).toBe(0);
      expect(stateNow()).toBe('STOP');
      const again = await runCliWith({ syscalls: sys }, 'save', ADDRESS, '--out', file(`running-${via}`), '--via', via);
      expect(again.status, again.stderr).toBe(0);
      expect(stateNow()).toBe(via === 'v2' ? 'STOP' : 'RUNNING'); // from STOP: it was not running, so it stays (v2); the v1 face resets non-RUNNING devices first
    }
  });

  it('inspect: shows the state it found and leaves the device RUNNING', async () => {
    leftInResuming();
    const r = await runCliWith({ syscalls: sys }, 'inspect', ADDRESS, '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.result.v2).toMatchObject({ state: 'RUNNING', takeover: { found: 'RESUMING', action: 'reset' } });
    const human = await runCliWith({ syscalls: sys }, 'inspect', ADDRESS);
    expect(human.status, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^state +RUNNING$/m); // this time nothing was left over
    leftInResuming();
    const again = await runCliWith({ syscalls: sys }, 'inspect', ADDRESS);
    expect(again.stdout).toMatch(/^state +RUNNING \(found in RESUMING, left by an earlier user: reset with VFIO_DEVICE_RESET\)$/m);
    expect(stateNow()).toBe('RUNNING');
  });

  for (const via of ['v1', 'v2']) {
    it(`load --via ${via} with data the device rejects: exit 1, ENOMEM, the device reset to RUNNING and the message says so`, async () => {
      const input = await foreignFile();
      leftInResuming();
      const r = await runCliWith({ syscalls: sys }, 'load', ADDRESS, '--in', input, '--via', via, '--json');
      expect(r.status).toBe(1);
      expect(r.json.error.code).toBe('ENOMEM');
      expect(r.json.error.message).toMatch(
        new RegExp(
          `^loading into ${ADDRESS} \\(over ${via}\\) failed: ENOMEM: .*; the device was reset \\(VFIO_DEVICE_RESET\\) and is RUNNING again$`,
        ),
      );
      expect(stateNow()).toBe('RUNNING');
      // and the next user of the device is fine: a save works (a SET out of a left-over RESUMING would oops).
      const save = await runCliWith({ syscalls: sys }, 'save', ADDRESS, '--out', file('after'));
      expect(save.status, save.stderr).toBe(0);
    });
  }
});

describe('a RUNNING device and a load the device rejects', () => {
  for (const via of ['v1', 'v2']) {
    it(`load --via ${via}: the device ends RUNNING after a reset, and says so`, async () => {
      const input = await foreignFile();
      sys = new FakeSyscalls({ devices: [{ name: 'mtty-a', group: 3 }] });
      const r = await runCliWith({ syscalls: sys }, 'load', ADDRESS, '--in', input, '--via', via);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        /failed: ENOMEM: .*the file holds more state than this device has.*; the device was reset \(VFIO_DEVICE_RESET\) and is RUNNING again\n$/,
      );
      expect(r.stderr).not.toMatch(/note:/); // nothing was left over at open
      expect(stateNow()).toBe('RUNNING');
    });
  }
});
