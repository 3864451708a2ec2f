// SimV1Region against the v1 uAPI rules (docs/PROTOCOL.md §1), register by register.
// Oracles: the field table of docs/PROTOCOL.md §1.2 (not region-layout's fieldAt), the
// transition tables transcribed from docs/PROTOCOL.md §1.3 / §2.4 (the 'qemu' one derived
// from QEMU 7.2's (mask, value) pairs, not from the implementation's table;
// the libvfio-user ones compiled from that project's source lines),
// and a SimDevice twin's saver for the expected stream bytes.
import { describe, expect, it } from 'vitest';
import { lvuAllowed, type LvuForm } from './support/libvfio-user-oracle.js';
import { errnoOf } from './support/errno.js';
import { stopCopyStream, readRegion as raw } from './support/sim-helpers.js';
import {
  MigrationError,
  SimDevice,
  SimV1Region,
  V1_POLICIES,
  parseV1Policy,
  readDeviceState,
  readU64Field,
  v1AllowedTargets,
  v1TransitionAllowed,
  writeDeviceState,
  writeU64Field,
  type V1Policy,
} from '../index.js';

const SIZE = 10_000;
const PAGE = 512;
const DATA_OFFSET = 4096;

const newDevice = (seed = 1, size = SIZE) => new SimDevice({ size, seed, pageSize: PAGE });

/** The stop-copy stream a fresh saver produces for `seed` after `steps` units of work. */
function referenceStream(seed = 1, steps = 0, size = SIZE): Uint8Array {
  return stopCopyStream({ size, seed, pageSize: PAGE }, steps);
}

/** One save iteration by the registers: pending, then (if > 0) data_offset, data_size, window. */
async function iteration(r: SimV1Region): Promise<{ pending: bigint; bytes: Uint8Array | null }> {
  const pending = await readU64Field(r, 'pending_bytes');
  if (pending === 0n) return { pending, bytes: null };
  const off = Number(await readU64Field(r, 'data_offset'));
  const n = Number(await readU64Field(r, 'data_size'));
  return { pending, bytes: await raw(r, off, n) };
}

/** Stop-copy loop of docs/PROTOCOL.md §1.5 until pending_bytes reads 0; checks pending never reads 0 early. */
async function drain(r: SimV1Region): Promise<{ bytes: Uint8Array; chunks: number; pendings: bigint[] }> {
  const parts: Uint8Array[] = [];
  const pendings: bigint[] = [];
  for (;;) {
    if (pendings.length > 20_000) throw new Error('stop-copy never ends'); // a broken driver must fail, not hang
    const it = await iteration(r);
    pendings.push(it.pending);
    if (!it.bytes) break;
    parts.push(it.bytes);
  }
  return { bytes: Buffer.concat(parts), chunks: parts.length, pendings };
}

/** Resume loop of docs/PROTOCOL.md §1.6: data_offset, window, data_size, in window-sized chunks. */
async function feed(r: SimV1Region, stream: Uint8Array): Promise<void> {
  for (let at = 0; at < stream.length;) {
    const off = Number(await readU64Field(r, 'data_offset'));
    const n = Math.min(r.size - off, stream.length - at);
    await r.writeAt(off, stream.subarray(at, at + n));
    await writeU64Field(r, 'data_size', BigInt(n));
    at += n;
  }
}

/** A fresh region driven to low bits `state` by the single arc 001 -> state (every policy takes it). */
async function regionIn(state: number, policy: V1Policy = 'qemu', windowSize = 1 << 20): Promise<SimV1Region> {
  const r = new SimV1Region(newDevice(), { policy, windowSize });
  if (state === 6) {
    r.armFaults({ failArc: { from: 1, to: 0, errno: 'EIO', toError: true } });
    await expect(writeDeviceState(r, 0)).rejects.toMatchObject({ code: 'EIO' });
  } else if (state !== 1) {
    await writeDeviceState(r, state);
  }
  if (state === 4) await feed(r, referenceStream(7)); // valid data, so leaving RESUMING can succeed
  expect(await readDeviceState(r)).toBe(state);
  return r;
}

const REACHABLE = [0, 1, 2, 3, 4];

describe('geometry', () => {
  it('data section starts on the page after the header; size = data offset + window', async () => {
    for (const windowSize of [1, 100, 4096, 1 << 20]) {
      const r = new SimV1Region(newDevice(), { windowSize });
      expect([r.size, r.dataOffset, r.windowSize]).toEqual([DATA_OFFSET + windowSize, DATA_OFFSET, windowSize]);
      expect(await readU64Field(r, 'data_offset')).toBe(BigInt(DATA_OFFSET));
    }
    expect(new SimV1Region(newDevice()).windowSize).toBe(1 << 20);
  });
  it('rejects a bad window size or policy with EINVAL', () => {
    for (const windowSize of [0, -1, 1.5, NaN]) expect(() => new SimV1Region(newDevice(), { windowSize })).toThrow(/EINVAL/);
    expect(() => new SimV1Region(newDevice(), { policy: 'strict' as V1Policy })).toThrow(/EINVAL/);
  });
  it('opens in 001 with the device running', async () => {
    const d = newDevice();
    const r = new SimV1Region(d);
    expect([await readDeviceState(r), d.running]).toEqual([1, true]);
  });
});

describe('register access: native width and alignment only (docs/PROTOCOL.md §1.2)', () => {
  // docs/PROTOCOL.md §1.2 table: (offset, size) of the five fields.
  const LEGAL = new Set(['0/4', '4/4', '8/8', '16/8', '24/8']);

  it('reads: every offset 0..40 x every width 0..16 in the header area', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 64 });
    for (let off = 0; off <= 40; off++) {
      for (let width = 0; width <= 16; width++) {
        const want = LEGAL.has(`${off}/${width}`) ? 'ok' : 'EINVAL';
        expect(`${off}/${width}: ${await errnoOf(r.readAt(off, new Uint8Array(width)))}`).toBe(`${off}/${width}: ${want}`);
      }
    }
  });

  it('writes (in RESUMING, where data_size is writable): every offset 0..40 x width 0..16', async () => {
    const r = await regionIn(4, 'qemu', 64);
    const valueFor = (width: number) => {
      const b = new Uint8Array(width);
      if (width === 4) b[0] = 4; // device_state 100 again: a same-state write
      return b;
    };
    for (let off = 0; off <= 40; off++) {
      for (let width = 0; width <= 16; width++) {
        const key = `${off}/${width}`;
        const want = !LEGAL.has(key) || key === '8/8' || key === '16/8' ? 'EINVAL' : 'ok';
        expect(`${key}: ${await errnoOf(r.writeAt(off, valueFor(width)))}`).toBe(`${key}: ${want}`);
      }
    }
    expect(await readDeviceState(r)).toBe(4);
  });

  it('the gap between header and window, straddles and the end are EINVAL; the window takes any size', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 64 });
    const end = r.size;
    const bad: [number, number][] = [
      [32, 1],
      [33, 8],
      [100, 4],
      [4095, 1],
      [4095, 2],
      [4088, 16],
      [end - 1, 2],
      [end, 1],
      [end + 8, 8],
      [-8, 8],
      [0.5, 4],
      [Number.MAX_SAFE_INTEGER, 8],
    ];
    for (const [off, width] of bad)
      expect(`${off}/${width}: ${await errnoOf(r.readAt(off, new Uint8Array(width)))}`).toBe(`${off}/${width}: EINVAL`);
    for (let off = DATA_OFFSET; off < DATA_OFFSET + 17; off++) {
      for (let width = 1; width <= 16; width++) expect(await errnoOf(r.readAt(off, new Uint8Array(width)))).toBe('ok');
    }
    expect(await errnoOf(r.readAt(DATA_OFFSET, new Uint8Array(64)))).toBe('ok');
    expect(await errnoOf(r.readAt(end - 1, new Uint8Array(1)))).toBe('ok');
    expect(await errnoOf(r.readAt(DATA_OFFSET, new Uint8Array(65)))).toBe('EINVAL');
  });

  it('pending_bytes and data_offset are read-only in every state; nothing changes', async () => {
    for (const s of REACHABLE) {
      const r = await regionIn(s);
      const before = r.inspect();
      for (const field of ['pending_bytes', 'data_offset'] as const) {
        expect(`${s} ${field}: ${await errnoOf(writeU64Field(r, field, 123n))}`).toBe(`${s} ${field}: EINVAL`);
      }
      expect(r.inspect()).toEqual(before);
      expect(await readU64Field(r, 'data_offset')).toBe(BigInt(DATA_OFFSET));
    }
  });

  it('reserved reads 0 and ignores writes, in every state', async () => {
    for (const s of [...REACHABLE, 6]) {
      const r = await regionIn(s);
      const b = new Uint8Array(4).fill(0xff);
      await r.writeAt(4, b);
      const back = await raw(r, 4, 4);
      expect([s, ...back]).toEqual([s, 0, 0, 0, 0]);
      expect(await readDeviceState(r)).toBe(s);
    }
  });

  it('data_size is written only in RESUMING; the window is written only in RESUMING', async () => {
    for (const s of [0, 1, 2, 3, 6]) {
      const r = await regionIn(s);
      expect(`${s}: ${await errnoOf(writeU64Field(r, 'data_size', 0n))}`).toBe(`${s}: EINVAL`);
      expect(`${s}: ${await errnoOf(r.writeAt(DATA_OFFSET, new Uint8Array(8)))}`).toBe(`${s}: EINVAL`);
    }
  });
});

describe('device_state writes', () => {
  it('!VALID (101, 110, 111, with or without reserved bits) is EINVAL and changes nothing, from every state', async () => {
    for (const s of REACHABLE) {
      const r = await regionIn(s);
      const before = { ...r.inspect(), running: r.device.running };
      for (const v of [5, 6, 7, 0x100 | 5, 0x80000006, 0xfffffff7]) {
        expect(`${s}->${v.toString(16)}: ${await errnoOf(writeDeviceState(r, v))}`).toBe(`${s}->${v.toString(16)}: EINVAL`);
      }
      expect({ ...r.inspect(), running: r.device.running }).toEqual(before);
    }
  });

  it('reserved bits 3..31 are kept as written', async () => {
    const r = new SimV1Region(newDevice());
    await writeDeviceState(r, 0x80000001);
    expect(await readDeviceState(r)).toBe(0x80000001);
    await writeDeviceState(r, 0x00000f03);
    expect(await readDeviceState(r)).toBe(0x00000f03);
    expect(r.inspect().saving).toBe(true);
  });

  it('a same-state write that changes only reserved bits does not restart the stream', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 1000 });
    await writeDeviceState(r, 3);
    const first = (await iteration(r)).bytes!;
    await writeDeviceState(r, 0x100 | 3);
    const second = (await iteration(r)).bytes!;
    await writeDeviceState(r, 2);
    const rest = (await drain(r)).bytes;
    expect(Buffer.concat([first, second, rest])).toEqual(Buffer.from(referenceStream()));
  });

  it('bit0 drives the device: it does work only while RUNNING is set', async () => {
    for (const s of REACHABLE) {
      const r = await regionIn(s);
      expect(`${s}: ${r.device.running}`).toBe(`${s}: ${(s & 1) === 1}`);
      expect(r.device.step(3)).toBe(s & 1 ? 3 : 0);
    }
  });
});

describe('transition policies: full 8x8 tables', () => {
  const arcs = (text: string) => new Set(text.trim().split(/\s+/));
  const bits = (n: number) => n.toString(2).padStart(3, '0');

  // docs/PROTOCOL.md §1.3, documented transitions 0-5 as arcs, plus same-state writes.
  const UAPI = arcs(`001>000  001>010 010>000  001>011 011>010  001>100  100>001
                     000>000 001>001 010>010 011>011 100>100`);
  // libvfio-user's last v1 table, compiled by gcc from its source lines
  // (test/fixtures); 110 is a target there but fails VALID() here first.
  const lvu = (form: LvuForm) => {
    const allowed = lvuAllowed(form);
    return new Set(
      [0, 1, 2, 3, 4].flatMap((from) => [0, 1, 2, 3, 4].filter((to) => allowed[from][to]).map((to) => `${bits(from)}>${bits(to)}`)),
    );
  };
  // docs/PROTOCOL.md §2.4: QEMU 7.2's (mask, value) pairs, applied to every valid state; plus 'uapi', plus 100>000.
  const QEMU_PAIRS: [number, number][] = [
    [7, 2],
    [~1, 0],
    [~1, 2],
    [~2, 0],
    [~7, 4],
    [~7, 1],
    [~6, 1],
  ];
  const QEMU = new Set(UAPI);
  for (const from of [0, 1, 2, 3, 4]) {
    for (const [mask, value] of QEMU_PAIRS) {
      const to = ((from & mask) | value) & 7;
      if (to !== 5 && to !== 6 && to !== 7) QEMU.add(`${bits(from)}>${bits(to)}`);
    }
  }
  QEMU.add('100>000');
  const EXPECTED: Record<V1Policy, Set<string>> = {
    qemu: QEMU,
    uapi: UAPI,
    'libvfio-user': lvu('compiled'),
    'libvfio-user-as-written': lvu('as-written'),
  };

  it('an unknown policy name is EINVAL naming the policies, also through the table lookups (no prototype keys)', () => {
    const failure = (f: () => unknown) => {
      try {
        f();
        return 'ok';
      } catch (e) {
        return e instanceof MigrationError ? e.message : `not a MigrationError: ${String(e)}`;
      }
    };
    expect(failure(() => parseV1Policy('strict'))).toBe(
      "EINVAL: unknown v1 transition policy 'strict' (use qemu, uapi, libvfio-user, libvfio-user-as-written)",
    );
    for (const name of ['strict', 'toString', '__proto__']) {
      expect(failure(() => v1TransitionAllowed(name as V1Policy, 1, 0))).toBe(`EINVAL: unknown v1 transition policy '${name}'`);
      expect(failure(() => v1AllowedTargets(name as V1Policy, 1))).toBe(`EINVAL: unknown v1 transition policy '${name}'`);
    }
  });

  it('the qemu table holds every arc docs/PROTOCOL.md §2.4 lists as a typical result', () => {
    for (const a of [
      '001>011',
      '000>010',
      '011>010',
      '001>000',
      '001>010',
      '010>010',
      '010>000',
      '001>100',
      '100>001',
      '000>001',
      '010>001',
      '011>001',
    ]) {
      expect(QEMU.has(a), a).toBe(true);
    }
    expect(QEMU.has('010>011')).toBe(false);
  });

  for (const policy of V1_POLICIES) {
    it(`${policy}: v1TransitionAllowed over 8x8`, () => {
      for (let from = 0; from < 8; from++) {
        for (let to = 0; to < 8; to++) {
          const key = `${bits(from)}>${bits(to)}`;
          expect(`${key} ${v1TransitionAllowed(policy, from, to)}`).toBe(`${key} ${EXPECTED[policy].has(key)}`);
          // reserved bits play no part
          expect(v1TransitionAllowed(policy, from | 0x40, to | 0x800)).toBe(EXPECTED[policy].has(key));
        }
      }
    });

    it(`${policy}: every reachable row through the registers, with side effects`, async () => {
      for (const from of [...REACHABLE, 6]) {
        for (let to = 0; to < 8; to++) {
          const key = `${bits(from)}>${bits(to)}`;
          const r = await regionIn(from, policy);
          const ok = EXPECTED[policy].has(key);
          expect(`${key} ${await errnoOf(writeDeviceState(r, to))}`).toBe(`${key} ${ok ? 'ok' : 'EINVAL'}`);
          const now = ok ? to : from;
          expect(`${key} -> ${await readDeviceState(r)}`).toBe(`${key} -> ${now}`);
          if (now !== 6) {
            const snap = r.inspect();
            expect(`${key} running=${r.device.running} saving=${snap.saving} resuming=${snap.resuming}`).toBe(
              `${key} running=${(now & 1) === 1} saving=${(now & 2) === 2} resuming=${now === 4}`,
            );
          }
          if (ok && from === 4 && to !== 4) expect(r.device.fingerprint()).toBe(newDevice(7).fingerprint());
        }
      }
    });
  }

  it('rows 101 and 111 cannot be reached: no state write produces them', async () => {
    const r = new SimV1Region(newDevice());
    for (const v of [5, 7]) await expect(writeDeviceState(r, v)).rejects.toMatchObject({ code: 'EINVAL' });
    expect(await readDeviceState(r)).toBe(1);
  });
});

describe('saving: the iteration protocol (docs/PROTOCOL.md §1.5)', () => {
  it('data_offset is the trigger; re-reads of data_offset and data_size within an iteration are stable', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 1000 });
    await writeDeviceState(r, 3);
    expect(await readU64Field(r, 'pending_bytes')).toBeGreaterThan(0n);
    expect(r.inspect().stagedBytes).toBe(0);
    expect(await readU64Field(r, 'data_offset')).toBe(BigInt(DATA_OFFSET));
    const n = await readU64Field(r, 'data_size');
    expect(n).toBe(1000n);
    const a = await raw(r, DATA_OFFSET, 1000);
    for (let i = 0; i < 3; i++) {
      expect(await readU64Field(r, 'data_offset')).toBe(BigInt(DATA_OFFSET));
      expect(await readU64Field(r, 'data_size')).toBe(n);
    }
    expect(await raw(r, DATA_OFFSET, 1000)).toEqual(a);
    expect(r.inspect().stagedBytes).toBe(1000);
    expect(Buffer.from(a)).toEqual(Buffer.from(referenceStream().subarray(0, 1000)));
  });

  it('pending_bytes reads before the trigger have no side effect', async () => {
    const once = new SimV1Region(newDevice(), { windowSize: 700 });
    const many = new SimV1Region(newDevice(), { windowSize: 700 });
    for (const r of [once, many]) await writeDeviceState(r, 3);
    const p = await readU64Field(once, 'pending_bytes');
    for (let i = 0; i < 5; i++) expect(await readU64Field(many, 'pending_bytes')).toBe(p);
    await readU64Field(once, 'data_offset');
    await readU64Field(many, 'data_offset');
    expect(await raw(many, DATA_OFFSET, 700)).toEqual(await raw(once, DATA_OFFSET, 700));
  });

  it('the next pending_bytes read releases the chunk (consumed step); the next trigger continues the stream', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 700 });
    await writeDeviceState(r, 3);
    const a = (await iteration(r)).bytes!;
    await readU64Field(r, 'pending_bytes'); // consumed
    expect(await readU64Field(r, 'data_size')).toBe(0n);
    expect(r.inspect().stagedBytes).toBe(0);
    await readU64Field(r, 'data_offset');
    const b = await raw(r, DATA_OFFSET, Number(await readU64Field(r, 'data_size')));
    expect(Buffer.concat([a, b])).toEqual(Buffer.from(referenceStream().subarray(0, a.length + b.length)));
  });

  it('stop-and-copy: the whole stream, pending_bytes > 0 until the last chunk is consumed, then 0 for good', async () => {
    for (const windowSize of [1, 100, 4096, 1 << 20]) {
      const r = new SimV1Region(newDevice(3), { windowSize });
      await writeDeviceState(r, 2);
      const { bytes, pendings, chunks } = await drain(r);
      expect(Buffer.from(bytes)).toEqual(Buffer.from(referenceStream(3)));
      expect(chunks).toBe(Math.ceil(bytes.length / windowSize));
      expect(pendings.slice(0, -1).every((p) => p > 0n)).toBe(true);
      expect(pendings.at(-1)).toBe(0n);
      expect(await readU64Field(r, 'pending_bytes')).toBe(0n);
      await readU64Field(r, 'data_offset');
      expect(await readU64Field(r, 'data_size')).toBe(0n);
    }
  });

  it('stop-and-copy pending_bytes is backed by read-ahead: a device estimate of 0 does not end the stream early', async () => {
    class LyingDevice extends SimDevice {
      override createSaver() {
        const s = super.createSaver();
        s.remainingBytes = () => 0n;
        return s;
      }
    }
    const r = new SimV1Region(new LyingDevice({ size: SIZE, seed: 1, pageSize: PAGE }), { windowSize: 999 });
    await writeDeviceState(r, 2);
    const { bytes, pendings } = await drain(r);
    expect(Buffer.from(bytes)).toEqual(Buffer.from(referenceStream()));
    expect(pendings.slice(0, -1).every((p) => p > 0n)).toBe(true);
  });

  it('pre-copy carries real dirty data: the device keeps running in 011 and dirtied pages are re-sent', async () => {
    const src = newDevice(5);
    const r = new SimV1Region(src, { windowSize: 4096 });
    await writeDeviceState(r, 3);
    const parts: Uint8Array[] = [];
    for (;;) {
      const it = await iteration(r);
      if (!it.bytes || parts.length > 1000) break;
      parts.push(it.bytes);
    }
    expect(await readU64Field(r, 'pending_bytes')).toBe(0n); // first pass done, nothing dirty
    expect(src.step(4)).toBe(4);
    const dirty = await readU64Field(r, 'pending_bytes');
    expect(dirty).toBeGreaterThan(0n);
    expect(dirty % BigInt(PAGE + 8)).toBe(0n);
    const it = await iteration(r);
    expect(it.bytes!.length).toBeGreaterThan(0);
    parts.push(it.bytes!);
    src.step(3);
    await writeDeviceState(r, 2);
    expect(src.step(5)).toBe(0); // stopped
    parts.push((await drain(r)).bytes);
    await writeDeviceState(r, 0);

    const dst = new SimV1Region(newDevice(9), { windowSize: 333 });
    await writeDeviceState(dst, 4);
    await feed(dst, Buffer.concat(parts));
    await writeDeviceState(dst, 1);
    expect(dst.device.fingerprint()).toBe(src.fingerprint());
    expect(src.steps).toBe(7);
  });

  it('in pre-copy with nothing pending, a trigger gives data_size 0', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 1 << 20 });
    await writeDeviceState(r, 3);
    await iteration(r);
    expect(await readU64Field(r, 'pending_bytes')).toBe(0n);
    await readU64Field(r, 'data_offset');
    expect(await readU64Field(r, 'data_size')).toBe(0n);
  });

  it('re-entering SAVING starts a fresh stream (a new saver), leaving SAVING drops the staged chunk', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 500 });
    await writeDeviceState(r, 3);
    const first = (await iteration(r)).bytes!;
    await writeDeviceState(r, 1);
    expect(r.inspect()).toMatchObject({ saving: false, stagedBytes: 0 });
    expect(await readU64Field(r, 'pending_bytes')).toBe(0n);
    await writeDeviceState(r, 3);
    expect((await iteration(r)).bytes).toEqual(first);
    await writeDeviceState(r, 2);
    await writeDeviceState(r, 0);
    await writeDeviceState(r, 2); // 000 -> 010 (qemu: save_setup of a stopped VM): fresh stream again
    expect(Buffer.from((await drain(r)).bytes)).toEqual(Buffer.from(referenceStream()));
  });

  it('011 -> 010 keeps the stream: pre-copy bytes plus stop-copy bytes form one stream', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 2000 });
    await writeDeviceState(r, 3);
    const a = (await iteration(r)).bytes!;
    await writeDeviceState(r, 2); // the chunk is still staged; the user need not drain first
    const rest = (await drain(r)).bytes;
    expect(Buffer.concat([a, rest])).toEqual(Buffer.from(referenceStream()));
  });
});

describe('resuming (docs/PROTOCOL.md §1.6)', () => {
  it('window bytes are applied only by the data_size write', async () => {
    const stream = referenceStream(4);
    const dst = new SimV1Region(newDevice(8), { windowSize: 1 << 16 });
    await writeDeviceState(dst, 4);
    await dst.writeAt(DATA_OFFSET, stream); // no data_size write
    expect(await errnoOf(writeDeviceState(dst, 1))).toBe('EINVAL'); // nothing arrived: incomplete
    expect(await readDeviceState(dst)).toBe(4);
    expect(dst.device.fingerprint()).toBe(newDevice(8).fingerprint());
    await dst.reset();
    await writeDeviceState(dst, 4);
    await dst.writeAt(DATA_OFFSET, stream);
    await writeU64Field(dst, 'data_size', BigInt(stream.length));
    expect(await readU64Field(dst, 'data_size')).toBe(BigInt(stream.length));
    await writeDeviceState(dst, 1);
    expect(dst.device.fingerprint()).toBe(newDevice(4).fingerprint());
  });

  it('data_size larger than the window is EINVAL; equal to it is fine', async () => {
    const dst = new SimV1Region(newDevice(), { windowSize: 64 });
    await writeDeviceState(dst, 4);
    expect(await errnoOf(writeU64Field(dst, 'data_size', 65n))).toBe('EINVAL');
    expect(await errnoOf(writeU64Field(dst, 'data_size', 1n << 63n))).toBe('EINVAL');
    await dst.writeAt(DATA_OFFSET, referenceStream().subarray(0, 64));
    expect(await errnoOf(writeU64Field(dst, 'data_size', 64n))).toBe('ok');
  });

  it('any chunking is accepted (windows of 1, 7 and 100 bytes)', async () => {
    for (const windowSize of [1, 7, 100]) {
      const dst = new SimV1Region(newDevice(2), { windowSize });
      await writeDeviceState(dst, 4);
      await feed(dst, referenceStream(6, 11));
      await writeDeviceState(dst, 1);
      const want = newDevice(6);
      want.running = true;
      want.step(11);
      expect(dst.device.fingerprint()).toBe(want.fingerprint());
    }
  });

  it('rejected data: a corrupt page fails its data_size write, leaving RESUMING fails, the state stays 100', async () => {
    const stream = Buffer.from(referenceStream(4));
    stream[32 + 8 + 10] ^= 0x40; // inside page 0's bytes
    const dst = new SimV1Region(newDevice(8), { windowSize: 4096 });
    await writeDeviceState(dst, 4);
    expect(await errnoOf(feed(dst, stream))).toBe('EINVAL');
    expect(await errnoOf(writeDeviceState(dst, 1))).toBe('EINVAL');
    expect(await readDeviceState(dst)).toBe(4);
    expect(await errnoOf(writeDeviceState(dst, 0))).toBe('EINVAL');
    expect(dst.device.fingerprint()).toBe(newDevice(8).fingerprint());
    await dst.reset();
    expect(await readDeviceState(dst)).toBe(1);
    expect(dst.inspect()).toMatchObject({ resuming: false, saving: false });
  });

  it('a truncated stream is rejected when leaving RESUMING (100 -> 001 and 100 -> 000)', async () => {
    for (const to of [1, 0]) {
      const dst = new SimV1Region(newDevice(8), { windowSize: 4096 });
      await writeDeviceState(dst, 4);
      await feed(dst, referenceStream(4).subarray(0, 9000));
      expect(await errnoOf(writeDeviceState(dst, to))).toBe('EINVAL');
      expect(await readDeviceState(dst)).toBe(4);
    }
  });

  it('100 -> 000 applies the data without starting the device', async () => {
    const dst = new SimV1Region(newDevice(8));
    await writeDeviceState(dst, 4);
    await feed(dst, referenceStream(4));
    await writeDeviceState(dst, 0);
    expect([dst.device.running, dst.device.fingerprint()]).toEqual([false, newDevice(4).fingerprint()]);
  });
});

describe('error state and reset', () => {
  it('an arc fault with toError: the write fails with the errno, the state reads 110 (reserved kept), only reset leaves', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 512, faults: { failArc: { from: 1, to: 3, errno: 'ENODEV', toError: true } } });
    await writeDeviceState(r, 0x100 | 1);
    expect(await errnoOf(writeDeviceState(r, 0x100 | 3))).toBe('ENODEV');
    expect(await readDeviceState(r)).toBe(0x100 | 6);
    expect(r.inspect()).toMatchObject({ saving: false, resuming: false, stagedBytes: 0 });
    for (const v of [0, 1, 2, 3, 4, 6]) expect(await errnoOf(writeDeviceState(r, v))).toBe('EINVAL');
    expect(await readU64Field(r, 'pending_bytes')).toBe(0n);
    await r.reset();
    expect(await readDeviceState(r)).toBe(1);
    expect(r.device.running).toBe(true);
    await writeDeviceState(r, 2);
    expect(Buffer.from((await drain(r)).bytes)).toEqual(Buffer.from(referenceStream()));
  });

  it('an arc fault without toError leaves the previous state and fires once', async () => {
    const r = new SimV1Region(newDevice(), { faults: { failArc: { from: 3, to: 2 } } });
    await writeDeviceState(r, 3);
    expect(await errnoOf(writeDeviceState(r, 2))).toBe('EIO');
    expect([await readDeviceState(r), r.inspect().saving, r.device.running]).toEqual([3, true, true]);
    await writeDeviceState(r, 2);
    expect(await readDeviceState(r)).toBe(2);
  });

  it('an internal failure (the device throws) is EIO and 110', async () => {
    class BrokenDevice extends SimDevice {
      override createSaver(): never {
        throw new Error('firmware fell over');
      }
    }
    const r = new SimV1Region(new BrokenDevice({ size: SIZE, seed: 1, pageSize: PAGE }));
    expect(await errnoOf(writeDeviceState(r, 3))).toBe('EIO');
    expect(await readDeviceState(r)).toBe(6);
    await r.reset();
    expect(await readDeviceState(r)).toBe(1);
  });

  it('reset mid-save drops the saver and staged bytes; reset mid-resume drops the loader', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 300 });
    await writeDeviceState(r, 3);
    await iteration(r);
    expect(r.inspect().stagedBytes).toBe(300);
    await r.reset();
    expect(r.inspect()).toEqual({ deviceState: 1, saving: false, resuming: false, stagedBytes: 0, closed: false });
    expect(await raw(r, DATA_OFFSET, 300)).toEqual(new Uint8Array(300));
    await writeDeviceState(r, 4);
    await feed(r, referenceStream(2).subarray(0, 500));
    await r.reset();
    expect(r.inspect().resuming).toBe(false);
    await writeDeviceState(r, 4);
    await feed(r, referenceStream(2));
    await writeDeviceState(r, 1);
    expect(r.device.fingerprint()).toBe(newDevice(2).fingerprint());
  });

  it('a failed call does not block the queue; close makes every call EBADF', async () => {
    const r = new SimV1Region(newDevice());
    const calls = [writeDeviceState(r, 5), readDeviceState(r), writeU64Field(r, 'pending_bytes', 1n), readDeviceState(r)];
    expect(await Promise.all(calls.map((c) => errnoOf(c)))).toEqual(['EINVAL', 'ok', 'EINVAL', 'ok']);
    await r.close();
    expect(await errnoOf(readDeviceState(r))).toBe('EBADF');
    expect(await errnoOf(writeDeviceState(r, 0))).toBe('EBADF');
    expect(await errnoOf(r.reset())).toBe('EBADF');
    expect(r.inspect().closed).toBe(true);
  });
});

describe('fault plans on the data path and the stream', () => {
  it('failIo read #1 fails the first trigger; nothing is lost and the next trigger works', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 800 });
    await writeDeviceState(r, 2);
    r.armFaults({ failIo: { op: 'read', nth: 1, errno: 'EAGAIN' } });
    expect(await readU64Field(r, 'pending_bytes')).toBeGreaterThan(0n);
    expect(await errnoOf(readU64Field(r, 'data_offset'))).toBe('EAGAIN');
    expect(await readDeviceState(r)).toBe(2);
    expect(Buffer.from((await drain(r)).bytes)).toEqual(Buffer.from(referenceStream()));
  });

  it('failIo read #2 fails the window read after the trigger; the chunk stays staged', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 800, faults: { failIo: { op: 'read', nth: 2, errno: 'EFAULT' } } });
    await writeDeviceState(r, 2);
    await readU64Field(r, 'pending_bytes');
    await readU64Field(r, 'data_offset');
    expect(await errnoOf(r.readAt(DATA_OFFSET, new Uint8Array(800)))).toBe('EFAULT');
    const chunk = await raw(r, DATA_OFFSET, 800);
    expect(Buffer.from(chunk)).toEqual(Buffer.from(referenceStream().subarray(0, 800)));
  });

  it('failIo write counts window writes and data_size writes', async () => {
    const stream = referenceStream();
    for (const [nth, failing] of [
      [1, 'window'],
      [2, 'data_size'],
      [4, 'data_size'],
    ] as const) {
      const r = new SimV1Region(newDevice(), { windowSize: 1000, faults: { failIo: { op: 'write', nth, errno: 'EIO' } } });
      await writeDeviceState(r, 4);
      let failed = '';
      for (let at = 0; at < stream.length && !failed; at += 1000) {
        const piece = stream.subarray(at, at + 1000);
        if ((await errnoOf(r.writeAt(DATA_OFFSET, piece))) !== 'ok') failed = 'window';
        else if ((await errnoOf(writeU64Field(r, 'data_size', BigInt(piece.length)))) !== 'ok') failed = 'data_size';
      }
      expect(`${nth}: ${failed}`).toBe(`${nth}: ${failing}`);
      expect(await readDeviceState(r)).toBe(4);
    }
  });

  it('truncateStreamAt ends the stop-copy stream after N bytes', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 1000, faults: { truncateStreamAt: 4321 } });
    await writeDeviceState(r, 3);
    const a = (await iteration(r)).bytes!;
    await writeDeviceState(r, 2);
    const { bytes, pendings } = await drain(r);
    expect(Buffer.concat([a, bytes])).toEqual(Buffer.from(referenceStream().subarray(0, 4321)));
    expect(pendings.at(-1)).toBe(0n);
  });

  it('corruptStreamAt flips one bit at that stream offset, in the next saving stream', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 1000 });
    r.armFaults({ corruptStreamAt: 2500 });
    await writeDeviceState(r, 2);
    const got = Buffer.from((await drain(r)).bytes);
    const want = Buffer.from(referenceStream());
    const diff = [...got].flatMap((b, i) => (b !== want[i] ? [[i, b ^ want[i]]] : []));
    expect(diff).toEqual([[2500, 1]]);
  });

  it('stream faults armed while saving apply to the open stream', async () => {
    const r = new SimV1Region(newDevice(), { windowSize: 1000 });
    await writeDeviceState(r, 2);
    const a = (await iteration(r)).bytes!;
    r.armFaults({ truncateStreamAt: 1500 });
    const rest = (await drain(r)).bytes;
    expect(a.length + rest.length).toBe(1500);
  });
});
