// (b) and (c): the translators on a real v2 driver (mtty, Linux 6.12, VM lab).
// (b) QEMU 7.2's v1 client over LegacyRegionOverV2(KernelMigrationDevice)
//     migrates instance A into instance B;
// (c) QEMU 8+'s v2 client over V2DeviceOverLegacy(LegacyRegionOverV2(...))
//     does the same through both translators.
// Each time B must end up equal to A: a direct v2 save of both gives the same bytes.
import { Readable, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  KernelMigrationDevice,
  LegacyRegionOverV2,
  MigFlags,
  MigState,
  V2DeviceOverLegacy,
  loadV1,
  loadV2,
  saveV1,
  saveV2,
} from '../../index.js';
import { expectFsmAgreement, expectMttyHeader, fsmDifferential, readScratch, saveStream, writeScratch } from '../support/mtty-scenarios.js';
import { DEV_A, DEV_B, fdCount, sysfs } from './lab-env.js';

/** A Writable that keeps what it is given. */
function sink(): { out: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      parts.push(Buffer.from(chunk));
      cb();
    },
  });
  return { out, bytes: () => Buffer.concat(parts) };
}

const open = (uuid: string) => KernelMigrationDevice.open({ sysfs: sysfs(uuid) });

let fdsBefore: number;
let marks: [number, number];

beforeEach(async () => {
  fdsBefore = fdCount();
  // Fresh marks on A (both ports), a different value on B, both devices RUNNING.
  const seed = Date.now() & 0x3f;
  marks = [0x80 | seed, 0x40 | seed];
  for (const [uuid, values] of [
    [DEV_A, marks],
    [DEV_B, [0, 0]],
  ] as const) {
    const d = await open(uuid);
    await d.reset();
    writeScratch(d, values[0], 0);
    writeScratch(d, values[1], 1);
    await d.close();
  }
});

afterEach(() => {
  expect(fdCount()).toBe(fdsBefore);
});

/** Reopen both instances and check B carries A's marks and equals A byte for byte. */
async function expectBEqualsA(): Promise<void> {
  const a = await open(DEV_A);
  const b = await open(DEV_B);
  try {
    // A migrated source is left stopped: normalise with a reset (docs/PROTOCOL.md §7 H3).
    await a.reset();
    await b.reset();
    expect([readScratch(b, 0), readScratch(b, 1)]).toEqual(marks);
    const sa = await saveStream(a);
    const sb = await saveStream(b);
    expectMttyHeader(sa, 2);
    expect(sb).toEqual(sa);
  } finally {
    await a.close();
    await b.close();
  }
}

describe('translators on the real mtty (lab)', () => {
  for (const [name, src, dst] of [
    ['1 MiB windows', undefined, undefined],
    ['a 16-byte source window', 16, undefined],
    ['a 16-byte destination window', undefined, 16],
  ] as const) {
    it(`(b) QEMU 7.2 client over LegacyRegionOverV2: A migrates into B, ${name}`, async () => {
      const ra = new LegacyRegionOverV2(await open(DEV_A), { windowSize: src });
      const rb = new LegacyRegionOverV2(await open(DEV_B), { windowSize: dst });
      try {
        const { out, bytes } = sink();
        const saved = await saveV1(ra, out, { precopyRounds: 2 });
        expect(saved.usedPrecopy).toBe(true);
        expect(saved.precopyBytes + saved.stopCopyBytes).toBe(96);
        const loaded = await loadV1(rb, Readable.from([bytes()]));
        expect(loaded.deviceBytes).toBe(96);
      } finally {
        await ra.close();
        await rb.close();
      }
      await expectBEqualsA();
    });
  }

  it('(c) QEMU v2 client over V2DeviceOverLegacy(LegacyRegionOverV2(KernelMigrationDevice)): A migrates into B', async () => {
    const va = new V2DeviceOverLegacy(new LegacyRegionOverV2(await open(DEV_A)));
    const vb = new V2DeviceOverLegacy(new LegacyRegionOverV2(await open(DEV_B)));
    try {
      expect(await va.migrationFlags()).toBe(MigFlags.STOP_COPY | MigFlags.PRE_COPY);
      const { out, bytes } = sink();
      const saved = await saveV2(va, out, { precopyRounds: 2 });
      expect(saved.precopyBytes + saved.stopCopyBytes).toBe(96);
      await loadV2(vb, Readable.from([bytes()]));
      expect(await vb.getState()).toBe(MigState.RUNNING);
    } finally {
      await va.close();
      await vb.close();
    }
    await expectBEqualsA();
  });

  it('(c) the double translation agrees with nextState on every SET, on the real device', async () => {
    const va = new V2DeviceOverLegacy(new LegacyRegionOverV2(await open(DEV_A)));
    try {
      expectFsmAgreement(await fsmDifferential(va));
    } finally {
      await va.close();
    }
    const a = await open(DEV_A);
    expect(await a.getState()).toBe(MigState.RUNNING);
    await a.close();
  });
});
