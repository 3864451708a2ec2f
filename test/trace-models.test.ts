// Real QEMU as the oracle for the client models: each recorded scenario
// (test/fixtures/traces, recorded in the lab from unmodified QEMU 7.2 under
// the bridge and QEMU 10) is played by the model of that QEMU
// (legacy/qemu/v1-client.ts saveV1/loadV1 and its VM-state helpers; legacy/qemu/v2-client.ts
// saveV2/loadV2) on the fake kernel's transcription of the same mtty driver,
// behind the same translator the bridge uses, and traced the same way. The
// two traces must match step for step (test/support/trace-compare.ts says
// what a step is and how polls are matched), except where
// docs/qemu-oracle.md lists a known difference: each is listed in
// KNOWN_DIFFERENCES below with its reason, and the test fails when a
// difference appears that is not listed, or a listed one is gone (fixed:
// take it out of the list and the doc).
import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loadV1, saveV1, v1VmStart, v1VmStop } from '../legacy/qemu/v1-client.js';
import type { LegacyRegion } from '../legacy/contracts.js';
import { parseTrace, type TraceLine } from '../legacy/qemu/trace/trace-format.js';
import { FakeSyscalls } from '../testing.js';
import { KernelMigrationDevice } from '../src/kernel/kernel-migration-device.js';
import { MigrationError } from '../src/uapi/errors.js';
import { loadV2, saveV2 } from '../legacy/qemu/v2-client.js';
import type { MigrationDevice } from '../src/v2/contracts.js';
import { MigState } from '../src/v2/states.js';
import { LegacyRegionOverV2 } from '../translate/legacy-region-over-v2.js';
import { KNOWN_DIFFERENCES, type KnownDifference } from './support/known-model-differences.js';
import { diffSteps, v1Steps, v2Steps, type Hunk } from './support/trace-compare.js';
import { TraceRecorder, TracingDevice, TracingRegion } from './support/trace-recorders.js';

const FIXTURES = new URL('./fixtures/traces/', import.meta.url);
const fixture = (name: string): TraceLine[] => parseTrace(readFileSync(new URL(`${name}.jsonl`, FIXTURES), 'utf8'));

/** A fresh mtty-2 behind the fake kernel (src/kernel/testing/mtty-model.ts transcribes samples/vfio-mdev/mtty.c). */
async function fakeMtty(): Promise<KernelMigrationDevice> {
  const sys = new FakeSyscalls({ devices: [{ name: 'mtty-a', group: 3 }] });
  return KernelMigrationDevice.open({ group: 3, name: 'mtty-a' }, sys);
}

/** The region QEMU 7.2 saw: LegacyRegionOverV2 as the bridge serves it (src/bridge/bridged-device.ts). */
const bridged = (device: MigrationDevice): LegacyRegion => new LegacyRegionOverV2(device, { errorRecovery: 'reset' });

/** A migration file's bytes in memory; `failAt` makes the Nth write fail with EPIPE (a pipe whose reader is gone). */
function sink(failAt = Infinity): { out: Writable; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  let writes = 0;
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (++writes >= failAt) return done(new MigrationError('EPIPE', 'the reader of the pipe is gone'));
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  out.on('error', () => undefined);
  return { out, bytes: () => Buffer.concat(chunks) };
}

/** A migration stream with QEMU 7.2's chunking of mtty (24 bytes in pre-copy, 72 in stop-copy): saveV1 of another mtty. */
async function savedStream(): Promise<Buffer> {
  const region = bridged(await fakeMtty());
  const s = sink();
  await saveV1(region, s.out, { precopyRounds: 1, windowAccess: 'mmap' });
  await region.close();
  return s.bytes();
}

/** What the recorded scenario's QEMU 7.2 did, done by the v1 model. QEMU maps the window: the model copies it in one access per chunk. */
const V1_SCENARIOS: Record<string, (r: LegacyRegion) => Promise<void>> = {
  // The VM starts (vfio_vmstate_change running: 1 -> 1), migrate to completion; quit from postmigrate changes nothing.
  'q72-save-running': async (r) => {
    await v1VmStart(r);
    await saveV1(r, sink().out, { precopyRounds: 1, windowAccess: 'mmap' });
  },
  // -S: the VM never ran (its device is still 001 from open); migrate to completion, cont (0 -> 1), quit (shutdown: 1 -> 0).
  'q72-save-prelaunch-cont': async (r) => {
    await saveV1(r, sink().out, { precopyRounds: 1, windowAccess: 'mmap', vmRunning: false });
    await v1VmStart(r);
    await v1VmStop(r);
  },
  // The VM starts; the first migration's output fails (its second write: the pipe reader is gone); the second completes.
  'q72-failed-then-completed': async (r) => {
    await v1VmStart(r);
    await expect(saveV1(r, sink(2).out, { precopyRounds: 1, windowAccess: 'mmap' })).rejects.toMatchObject({ code: 'EPIPE' });
    await saveV1(r, sink().out, { precopyRounds: 1, windowAccess: 'mmap' });
  },
  // The VM starts; migrate_cancel during pre-copy; quit (shutdown: 1 -> 0).
  'q72-cancelled': async (r) => {
    await v1VmStart(r);
    const cancelled = new MigrationError('ECANCELED', 'migrate_cancel');
    await expect(
      saveV1(r, sink().out, { precopyRounds: 1, windowAccess: 'mmap', betweenRounds: () => Promise.reject(cancelled) }),
    ).rejects.toBe(cancelled);
    await v1VmStop(r);
  },
  // -incoming: load (the VM starts afterwards: 4 -> 1), quit (shutdown: 1 -> 0).
  'q72-resume': async (r) => {
    await loadV1(r, Readable.from([await savedStream()]), { windowAccess: 'mmap' });
    await v1VmStop(r);
  },
};

/** QEMU 10 at VM start and stop with a P2P device: vfio_vmstate_change_prepare, then vfio_vmstate_change. */
async function vmStateChange(d: MigrationDevice, running: boolean): Promise<void> {
  await d.setState(MigState.RUNNING_P2P);
  await d.setState(running ? MigState.RUNNING : MigState.STOP);
}

/** What the recorded scenario's QEMU 10 did, done by the v2 model; vfio_migration_realize queried the flags once at start. */
const V2_SCENARIOS: Record<string, (d: MigrationDevice) => Promise<void>> = {
  'q10-save-running': async (d) => {
    await d.migrationFlags();
    await vmStateChange(d, true);
    await saveV2(d, sink().out, { precopyRounds: 1 });
  },
  'q10-resume': async (d) => {
    await d.migrationFlags();
    const source = await fakeMtty();
    const s = sink();
    await saveV2(source, s.out, { precopyRounds: 1 });
    await source.close();
    await loadV2(d, Readable.from([s.bytes()]));
    await vmStateChange(d, false);
  },
};

function expectKnown(scenario: string, hunks: Hunk[]): void {
  const known = KNOWN_DIFFERENCES.filter((k: KnownDifference) => k.scenario === scenario);
  const shown = (hs: Pick<Hunk, 'after' | 'qemu' | 'model'>[]) => hs.map(({ after, qemu, model }) => ({ after, qemu, model }));
  expect(
    shown(hunks),
    `${scenario}: the model and QEMU differ where docs/qemu-oracle.md does not say (QEMU's side at fixture lines ${hunks.map((h) => h.line).join(', ')})`,
  ).toEqual(shown(known));
}

/** The model's trace: `play` on a fresh fake mtty, seen through `face` (a tracing region or device), closed afterwards. */
async function modelTrace<F extends { close(): Promise<void> }>(
  face: (rec: TraceRecorder, mtty: KernelMigrationDevice) => F,
  play: (f: F) => Promise<void>,
): Promise<TraceLine[]> {
  const rec = new TraceRecorder();
  const f = face(rec, await fakeMtty());
  try {
    await play(f);
  } finally {
    await f.close();
  }
  return rec.lines;
}

const v1Face = (rec: TraceRecorder, mtty: KernelMigrationDevice) => new TracingRegion(bridged(mtty), rec);
const v2Face = (rec: TraceRecorder, mtty: KernelMigrationDevice) => new TracingDevice(mtty, rec);

describe('the v1 client model against QEMU 7.2 (recorded under the bridge)', () => {
  for (const [scenario, play] of Object.entries(V1_SCENARIOS)) {
    it(`${scenario}: the same register accesses, but for the known differences`, async () => {
      expectKnown(scenario, diffSteps(v1Steps(fixture(scenario)), v1Steps(await modelTrace(v1Face, play))));
    });
  }
});

describe('the v2 client model against QEMU 10 (its own trace events)', () => {
  for (const [scenario, play] of Object.entries(V2_SCENARIOS)) {
    it(`${scenario}: the same state changes, reads and writes, but for the known differences`, async () => {
      expectKnown(scenario, diffSteps(v2Steps(fixture(scenario)), v2Steps(await modelTrace(v2Face, play))));
    });
  }
});

describe('the comparison itself', () => {
  it("catches a model that leaves out one write: QEMU 7.2's VM-start 1 -> 1 before the save", async () => {
    const lines = await modelTrace(v1Face, (r) => saveV1(r, sink().out, { precopyRounds: 1, windowAccess: 'mmap' }).then(() => undefined));
    const extra = diffSteps(v1Steps(fixture('q72-save-running')), v1Steps(lines)).filter(
      (h) =>
        !KNOWN_DIFFERENCES.some(
          (k) => k.scenario === 'q72-save-running' && k.after === h.after && JSON.stringify(k.qemu) === JSON.stringify(h.qemu),
        ),
    );
    // QEMU's read 1, write 1 (line 7-8) and the save's read 1: the model has only the last read.
    expect(extra).toEqual([
      { after: 'read device_state 0x1', line: 8, qemu: ['write device_state 0x1', 'read device_state 0x1'], model: [] },
    ]);
  });

  it('matches polls as runs: five identical polls are one step, a poll that saw something else is another', () => {
    const poll = (value: number, line: number) =>
      ({
        v: 2,
        t: 0,
        line,
        ev: 'v1',
        dev: 1,
        op: 'read',
        off: 8n,
        width: 8,
        field: 'pending_bytes',
        value: BigInt(value),
        result: 'ok',
      }) as TraceLine;
    const state = (value: number, line: number) =>
      ({
        v: 2,
        t: 0,
        line,
        ev: 'v1',
        dev: 1,
        op: 'write',
        off: 0n,
        width: 4,
        field: 'device_state',
        value: BigInt(value),
        result: 'ok',
      }) as TraceLine;
    const qemu = [
      state(3, 1),
      poll(24, 2),
      poll(24, 3),
      poll(24, 4),
      poll(24, 5),
      poll(24, 6),
      poll(0, 7),
      state(2, 8),
      poll(0, 9),
      poll(0, 10),
    ];
    expect(v1Steps(qemu).map((s) => s.text)).toEqual([
      'write device_state 0x3',
      'read pending_bytes 0x18',
      'read pending_bytes 0x0',
      'write device_state 0x2',
      // In stop-and-copy a pending_bytes read is no poll: each one counts.
      'read pending_bytes 0x0',
      'read pending_bytes 0x0',
    ]);
    expect(diffSteps(v1Steps(qemu), v1Steps([state(3, 1), poll(24, 2), state(2, 3), poll(0, 4), poll(0, 5)]))).toEqual([
      { after: 'read pending_bytes 0x18', line: 7, qemu: ['read pending_bytes 0x0'], model: [] },
    ]);
  });

  it('docs/qemu-oracle.md describes every known difference, under its id and kind', () => {
    const doc = readFileSync(new URL('../docs/qemu-oracle.md', import.meta.url), 'utf8');
    for (const k of KNOWN_DIFFERENCES) {
      expect(doc, k.id).toMatch(new RegExp(`### ${k.id} \\(${k.kind}\\) — [^\\n]*\`${k.scenario}\``));
    }
  });
});
