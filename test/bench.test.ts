// The benchmarks (bench/) are code that must not rot, and their bench-only
// devices must be honest: a zero-cost or pipe-backed device that accepted
// wrong bytes would make every throughput number meaningless. These tests
// check what the devices stream and what they refuse, through both
// translators and directly, and run every bench part once at tiny sizes.
// They assert behaviour only, never a time.
import { execFile } from 'node:child_process';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  LegacyRegionOverV2,
  loadV1,
  loadV2,
  readMigStream,
  saveV1,
  saveV2,
  V2DeviceOverLegacy,
  type LegacyRegion,
  type MigrationDevice,
} from 'vfio-mig-shim';
// @ts-expect-error bench/ is plain JavaScript without type declarations
import { BenchV2Device } from '../bench/lib/bench-v2-device.mjs';
// @ts-expect-error idem
import { memoryRecorder } from '../bench/lib/migration-files.mjs';
// @ts-expect-error idem
import { patternBytes } from '../bench/lib/pattern.mjs';
// @ts-expect-error idem
import { preparePipeStreams } from '../bench/lib/pipe-streams.mjs';
// @ts-expect-error idem
import { ZeroCostV1Region } from '../bench/lib/zero-cost-v1-region.mjs';
// @ts-expect-error idem
import { zeroCostStreams } from '../bench/lib/zero-cost-streams.mjs';

const KiB = 1024;
const SIZE = 5 * 64 * KiB + 64 * KiB; // 6 windows of 64 KiB
const WINDOW = 64 * KiB;

type Recorder = { sink: NodeJS.WritableStream; replay: () => AsyncIterable<Uint8Array> };
const zeroV2 = (): MigrationDevice => new BenchV2Device(zeroCostStreams(SIZE));
const zeroV1 = (): LegacyRegion => new ZeroCostV1Region(SIZE, WINDOW);
const v1opts = { precopyRounds: 0, windowAccess: 'mmap' as const };
const v2opts = { precopyRounds: 0, maxReadBytes: WINDOW };

/** Every way a bench saves: [name, save into a recorder]. */
const SAVES: [string, (r: Recorder) => Promise<unknown>][] = [
  ['saveV2 on the zero-cost v2 device', (r) => saveV2(zeroV2(), r.sink as never, v2opts)],
  [
    'saveV1 through LegacyRegionOverV2 over it',
    (r) => saveV1(new LegacyRegionOverV2(zeroV2(), { windowSize: WINDOW }), r.sink as never, v1opts),
  ],
  ['saveV1 on the zero-cost v1 region', (r) => saveV1(zeroV1(), r.sink as never, v1opts)],
  ['saveV2 through V2DeviceOverLegacy over it', (r) => saveV2(new V2DeviceOverLegacy(zeroV1()), r.sink as never, v2opts)],
];

/** Every way a bench loads: [name, load `input`]. */
const LOADS: [string, (input: AsyncIterable<Uint8Array>) => Promise<unknown>][] = [
  ['loadV2 on the zero-cost v2 device', (i) => loadV2(zeroV2(), i)],
  ['loadV1 through LegacyRegionOverV2 over it', (i) => loadV1(new LegacyRegionOverV2(zeroV2(), { windowSize: WINDOW }), i, v1opts)],
  ['loadV1 on the zero-cost v1 region', (i) => loadV1(zeroV1(), i, v1opts)],
  ['loadV2 through V2DeviceOverLegacy over it', (i) => loadV2(new V2DeviceOverLegacy(zeroV1()), i)],
];

async function saved(save: (r: Recorder) => Promise<unknown>): Promise<Buffer> {
  const rec = memoryRecorder() as Recorder;
  await save(rec);
  const chunks: Buffer[] = [];
  for await (const c of rec.replay()) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

async function deviceBytes(file: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const e of readMigStream(Readable.from([file]))) if (e.kind === 'data') parts.push(Buffer.from(e.bytes));
  return Buffer.concat(parts);
}

/** Offset in `file` of device byte `n` (records of WINDOW after the 24-byte start, 16-byte headers). */
const fileOffsetOf = (n: number) => 24 + Math.floor(n / WINDOW) * (16 + WINDOW) + 16 + (n % WINDOW);

describe('bench-only devices (bench/lib)', () => {
  it.each(SAVES)('%s streams exactly the pattern, chunk after chunk', async (_name, save) => {
    expect((await deviceBytes(await saved(save))).equals(patternBytes(SIZE))).toBe(true);
  });

  it.each(LOADS)('%s takes the file a save wrote', async (_name, load) => {
    const file = await saved(SAVES[0][1]);
    await expect(load(Readable.from([file]))).resolves.toMatchObject({ deviceBytes: SIZE });
  });

  it.each(LOADS)('%s refuses a chunk with its first byte altered, and a stream one chunk short', async (_name, load) => {
    const file = await saved(SAVES[0][1]);
    const altered = Buffer.from(file);
    altered[fileOffsetOf(3 * WINDOW)] ^= 0x40;
    await expect(load(Readable.from([altered]))).rejects.toMatchObject({ code: 'EINVAL' });
    // Drop the last record: the file stays well-formed, the device gets 64 KiB too few.
    const cut = fileOffsetOf(SIZE - WINDOW) - 16;
    const short = Buffer.concat([file.subarray(0, cut), file.subarray(cut + 16 + WINDOW)]);
    await expect(load(Readable.from([short]))).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('the pipe-backed device streams the pattern from another process, and its drain checks every byte', async () => {
    const feed = await preparePipeStreams('save', SIZE);
    const file = await saved((r) =>
      saveV1(new LegacyRegionOverV2(new BenchV2Device(feed), { windowSize: WINDOW }), r.sink as never, v1opts),
    );
    expect(await feed.dispose()).toEqual([SIZE, 0, expect.any(Number)]);
    expect((await deviceBytes(file)).equals(patternBytes(SIZE))).toBe(true);

    const good = await preparePipeStreams('resume', SIZE);
    await expect(loadV2(new BenchV2Device(good), Readable.from([file]))).resolves.toMatchObject({ deviceBytes: SIZE });
    expect((await good.dispose()).slice(0, 2)).toEqual([SIZE, 0]);

    const altered = Buffer.from(file);
    altered[fileOffsetOf(2 * WINDOW + 12345)] ^= 1; // not a sampled byte: only a full check sees it
    const bad = await preparePipeStreams('resume', SIZE);
    await expect(
      loadV1(new LegacyRegionOverV2(new BenchV2Device(bad), { windowSize: WINDOW }), Readable.from([altered]), v1opts),
    ).rejects.toMatchObject({ code: 'EINVAL' });
    expect((await bad.dispose()).slice(0, 2)).toEqual([SIZE, 1]);
  });
});

describe('npm run bench -- --smoke', () => {
  it('runs every part and names every ratio with "ratio"', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['bench/run.mjs', '--smoke'], { maxBuffer: 64 << 20 });
    const out = JSON.parse(stdout) as { parts: Record<string, { cases: Record<string, unknown>[] }> };
    expect(Object.keys(out.parts)).toEqual(['data-path', 'data-path-8g', 'real-fd', 'state-change', 'memory']);
    for (const [name, part] of Object.entries(out.parts)) {
      expect(part.cases.length, name).toBeGreaterThan(0);
      for (const c of part.cases) {
        const ratios = Object.entries(c).filter(([k]) => /ratio/i.test(k));
        expect(ratios.length, `${name}: ${JSON.stringify(c)}`).toBeGreaterThan(0);
        for (const [k, v] of ratios) expect(Number.isFinite(v) && (v as number) > 0, `${name} ${k}`).toBe(true);
      }
    }
    expect(new Set(out.parts['data-path'].cases.map((c) => c.part))).toEqual(new Set(['a', 'b', 'c', 'd']));
  }, 120_000);
});
