// The padded mtty (test/lab/mtty-pad.patch) under KernelMigrationDevice: a
// stream with real volume (96 bytes + 8 MiB) that the driver checks on
// resume, so that corruption anywhere in it is caught by the kernel.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KernelMigrationDevice, MigState, MigrationError } from '../../index.js';
import { expectMttyHeader, readAll, readScratch, resumeStream, saveStream, writeAll, writeScratch } from '../support/mtty-scenarios.js';
import { DEV_A, DEV_B, fdCount, sysfs } from './lab-env.js';
import { DEFAULT_SEED, MTTY2_STREAM, MiB, padding, paddingBytes, setPadding, withPadding } from './mtty-padding.js';

const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, PRE_COPY: PC } = MigState;
const PAD_MIB = 8;
const PADDED = MTTY2_STREAM + PAD_MIB * MiB;

let a: KernelMigrationDevice;
let b: KernelMigrationDevice;
let fdsBefore: number;

beforeAll(async () => {
  expect(padding()).toEqual({ mib: 0, seed: DEFAULT_SEED }); // what the other lab tests rely on
  fdsBefore = fdCount();
  a = await KernelMigrationDevice.open({ sysfs: sysfs(DEV_A) });
  b = await KernelMigrationDevice.open({ sysfs: sysfs(DEV_B) });
});

// Every scenario starts from RUNNING, whatever an earlier one left behind.
beforeEach(async () => {
  await a.reset();
  await b.reset();
});

afterEach(() => setPadding(0));

afterAll(async () => {
  setPadding(0);
  await a?.reset().catch(() => undefined);
  await b?.reset().catch(() => undefined);
  await a?.close();
  await b?.close();
  expect(fdCount()).toBe(fdsBefore);
});

/** A padded save of A with scratch `mark`, 1 MiB reads as QEMU does. */
async function paddedSave(mark: number, seed = DEFAULT_SEED): Promise<Uint8Array> {
  writeScratch(a, mark);
  return withPadding(PAD_MIB, () => saveStream(a, MiB), seed);
}

/**
 * Resume `stream` into B with the padding on: the error code of the SET out of
 * RESUMING ('ok' if it passed). On a failure B is left in RESUMING, which we
 * opened, and is reset: never SET out of it (mtty_load_state on a bad file).
 */
async function paddedResume(stream: Uint8Array, seed = DEFAULT_SEED): Promise<string> {
  return withPadding(
    PAD_MIB,
    async () => {
      const s = (await b.setState(RS))!;
      try {
        await writeAll(s, stream, MiB);
      } finally {
        await s.close();
      }
      try {
        await b.setState(R);
        return 'ok';
      } catch (e) {
        expect(e).toBeInstanceOf(MigrationError);
        expect(await b.getState()).toBe(RS);
        await b.reset();
        expect(await b.getState()).toBe(R);
        return (e as MigrationError).code;
      }
    },
    seed,
  );
}

describe('the padded mtty: 8 MiB of checked state through KernelMigrationDevice (lab)', () => {
  it('MIG_DATA_SIZE is 96 + mig_pad_mib MiB with padding on, 96 again with it off', async () => {
    expect(await a.stopCopySize()).toBe(BigInt(MTTY2_STREAM));
    setPadding(PAD_MIB);
    expect(await a.stopCopySize()).toBe(BigInt(PADDED));
    setPadding(0);
    expect(await a.stopCopySize()).toBe(BigInt(MTTY2_STREAM));
    expect((await saveStream(a)).length).toBe(MTTY2_STREAM);
  });

  it('a STOP_COPY save read to EOF is 96 + 8 MiB: header, ports, seeded padding; it resumes into B with the mark', async () => {
    const mark = 0x40 + (Date.now() & 0x3f);
    const stream = await paddedSave(mark);
    expect(stream.length).toBe(PADDED);
    expectMttyHeader(stream, 2);
    const pad = stream.subarray(MTTY2_STREAM);
    for (const at of [0, 4 * MiB + 3, pad.length - 61]) {
      expect(pad.subarray(at, at + 61)).toEqual(paddingBytes(DEFAULT_SEED, at, 61));
    }
    writeScratch(b, 0);
    await withPadding(PAD_MIB, () => resumeStream(b, stream, MiB));
    expect(await b.getState()).toBe(R);
    expect(readScratch(b)).toBe(mark);
  });

  it('one flipped padding byte (first, middle, last) fails RESUMING -> STOP with EINVAL; B keeps its state', async () => {
    const stream = await paddedSave(0x21);
    writeScratch(b, 0x12);
    for (const at of [MTTY2_STREAM, MTTY2_STREAM + 4 * MiB + 5, PADDED - 1]) {
      const bad = stream.slice();
      bad[at] ^= 0x01;
      expect({ at, code: await paddedResume(bad) }).toEqual({ at, code: 'EINVAL' });
      expect(readScratch(b)).toBe(0x12); // the failed load applied nothing
    }
    expect(await paddedResume(stream)).toBe('ok'); // the unflipped stream still resumes
    expect(readScratch(b)).toBe(0x21);
  });

  it('the padding is seeded: another seed gives other bytes, and resuming them under seed 1 fails', async () => {
    const other = await paddedSave(0x22, 2n);
    expect(other.subarray(MTTY2_STREAM, MTTY2_STREAM + 64)).toEqual(paddingBytes(2n, 0, 64));
    expect(other.subarray(MTTY2_STREAM, MTTY2_STREAM + 64)).not.toEqual(paddingBytes(DEFAULT_SEED, 0, 64));
    expect(await paddedResume(other)).toBe('EINVAL');
    expect(await paddedResume(other, 2n)).toBe('ok');
  });

  it('a short padded stream fails (one byte short, or unpadded); one byte too many is ENOMEM', async () => {
    const stream = await paddedSave(0x23);
    expect(await paddedResume(stream.subarray(0, PADDED - 1))).toBe('EINVAL');
    expect(await paddedResume(await saveStream(a))).toBe('EINVAL'); // 96 bytes, saved with padding off
    await withPadding(PAD_MIB, async () => {
      const s = (await b.setState(RS))!;
      try {
        await writeAll(s, stream, MiB);
        const e = await s.write(new Uint8Array(1)).catch((x: unknown) => x as MigrationError);
        expect(e).toBeInstanceOf(MigrationError);
        expect((e as MigrationError).code).toBe('ENOMEM'); // the bounds check in mtty_resume_write
      } finally {
        await s.close();
      }
      await b.reset();
    });
  });

  it('PRE_COPY carries only the 24-byte header: the padding comes in STOP_COPY, after the ports', async () => {
    setPadding(PAD_MIB);
    const s = (await a.setState(PC))!;
    try {
      expect(await s.precopyInfo()).toEqual({ initialBytes: 24n, dirtyBytes: 0n });
      const buf = new Uint8Array(4096);
      expect(await s.read(buf)).toBe(24);
      expect(await s.read(buf)).toBe(0);
      expect(await a.stopCopySize()).toBe(BigInt(PADDED));
      expect(await a.setState(SC)).toBeNull();
      const rest = await readAll(s, MiB);
      expect(rest.length).toBe(PADDED - 24);
      expect(rest.subarray(72, 72 + 64)).toEqual(paddingBytes(DEFAULT_SEED, 0, 64));
    } finally {
      await s.close();
    }
    await a.setState(S);
    await a.setState(R);
  });

  it('a saving file keeps the padding it was created with (at PRE_COPY): a change of mig_pad_mib before STOP_COPY changes nothing', async () => {
    for (const [created, changed] of [
      [PAD_MIB, 0],
      [0, PAD_MIB],
    ]) {
      await a.reset();
      setPadding(created);
      const s = (await a.setState(PC))!;
      try {
        setPadding(changed);
        const size = MTTY2_STREAM + created * MiB;
        expect(await a.stopCopySize()).toBe(BigInt(size)); // the open file's size
        expect(await a.setState(SC)).toBeNull(); // the ports and the padding are appended now
        expect((await readAll(s, MiB)).length).toBe(size);
      } finally {
        await s.close();
      }
    }
  });

  it('a resuming file keeps the padding it was created with: a change of mig_pad_mib mid-resume changes nothing', async () => {
    const stream = await paddedSave(0x24);
    for (const changed of [0, 2 * PAD_MIB]) {
      writeScratch(b, 0);
      setPadding(PAD_MIB);
      const into = (await b.setState(RS))!;
      try {
        setPadding(changed);
        await writeAll(into, stream, MiB);
      } finally {
        await into.close();
      }
      await b.setState(R);
      expect(readScratch(b)).toBe(0x24);
    }
  });
});
