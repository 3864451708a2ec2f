// Hostile input never reaches `internal error`: a checksum-valid container
// can say anything in its info section (the checksum is no signature: anyone
// can re-wrap a file), and device addresses can ask for any size. Every bad
// value is refused up front, with a MigrationError or a UsageError that names
// it, before a device is opened; fuzzed with fast-check.
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  SimDevice,
  SimV1Region,
  SimV2Driver,
  VfioMigFlag,
  encodeDataHeader,
  encodeMarker,
  encodeStreamEnd,
  encodeStreamStart,
  saveV2,
} from '../index.js';
import { MigrationFileWriter, type MigrationFileInfo } from '../src/cli/migration-file.js';
import { runCli } from './support/run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

const SIZE = 64 << 10;
let n = 0;

/** The real stream of a SIZE-byte simulated device, and the info `vfio-mig save` would write for it. */
const saved = await (async () => {
  const chunks: Buffer[] = [];
  const sink = new (await import('node:stream')).Writable({
    write(c: Buffer, _e, done) {
      chunks.push(Buffer.from(c));
      done();
    },
  });
  const sim = new SimDevice({ size: SIZE, seed: 9 });
  const r = await saveV2(new SimV2Driver(sim, { flags: 1 }), sink);
  const info: MigrationFileInfo = {
    format: 'vfio-mig-shim migration file',
    source: `sim:v2?size=${SIZE}&seed=9`,
    native: 'v2',
    via: 'v2',
    deviceBytes: r.stopCopyBytes,
    precopyBytes: 0,
    stopCopyBytes: r.stopCopyBytes,
    savedAt: '2026-01-01T00:00:00.000Z',
    sim: { size: SIZE, pageSize: 4096, fingerprint: sim.fingerprint() },
  };
  return { stream: Buffer.concat(chunks), info };
})();

/** A container with a right checksum around `stream`, whatever `info` is (the writer serialises any value). */
async function wrap(stream: Uint8Array, info: unknown): Promise<string> {
  const path = join(dir, `f-${++n}.vmig`);
  const w = await MigrationFileWriter.create(path);
  await new Promise<void>((resolve, reject) => w.stream.write(stream, (e) => (e ? reject(e) : resolve())));
  await w.finish(info as MigrationFileInfo);
  return path;
}

/** Load `path` into fresh simulated devices over both protocols: the verdict, and whether a device was touched. */
async function loadEverywhere(path: string): Promise<{ statuses: number[]; stderr: string; touched: boolean; problems: unknown[] }> {
  const v2 = vi.spyOn(SimV2Driver.prototype, 'setState');
  const v1 = vi.spyOn(SimV1Region.prototype, 'writeAt');
  const statuses: number[] = [];
  const problems: unknown[] = [];
  let stderr = '';
  for (const [to, via] of [
    [`sim:v2?size=${SIZE}`, 'v2'],
    [`sim:v1?size=${SIZE}`, 'v1'],
  ]) {
    const r = await runCli('load', to, '--in', path, '--via', via, '--json');
    statuses.push(r.status);
    problems.push(r.json.error?.problem);
    stderr += r.stderr;
  }
  const touched = v2.mock.calls.length + v1.mock.calls.length > 0;
  v2.mockRestore();
  v1.mockRestore();
  return { statuses, stderr, touched, problems };
}

describe('the info section of a checksum-valid file', () => {
  it('(the untouched info loads: the harness can see a load)', async () => {
    const r = await loadEverywhere(await wrap(saved.stream, saved.info));
    expect(r.statuses, r.stderr).toEqual([0, 0]);
    expect(r.touched).toBe(true);
  });

  const bad: [string, (i: any) => unknown, RegExp][] = [
    [
      'a number for sim.fingerprint',
      (i) => {
        i.sim.fingerprint = 42;
      },
      /info field 'sim\.fingerprint' is 42, expected 64 hex digits/,
    ],
    [
      'a short sim.fingerprint',
      (i) => {
        i.sim.fingerprint = 'abc';
      },
      /'sim\.fingerprint' is "abc"/,
    ],
    [
      'a string for sim.size',
      (i) => {
        i.sim.size = '65536';
      },
      /'sim\.size' is "65536", expected a positive integer/,
    ],
    [
      'a fractional sim.size',
      (i) => {
        i.sim.size = 1.5;
      },
      /'sim\.size' is 1\.5/,
    ],
    [
      'sim as an array',
      (i) => {
        i.sim = [];
      },
      /'sim' is \[\], expected an object/,
    ],
    [
      'no source',
      (i) => {
        delete i.source;
      },
      /'source' is missing, expected a string/,
    ],
    [
      'via v3',
      (i) => {
        i.via = 'v3';
      },
      /'via' is "v3", expected "v1" or "v2"/,
    ],
    [
      'a negative deviceBytes',
      (i) => {
        i.deviceBytes = -1;
        i.stopCopyBytes = -1;
      },
      /'deviceBytes' is -1/,
    ],
    [
      'byte counts that do not add up',
      (i) => {
        i.precopyBytes = 5;
      },
      /'precopyBytes' \+ 'stopCopyBytes' is \d+, but 'deviceBytes' is \d+/,
    ],
    [
      'a deviceBytes the stream does not carry',
      (i) => {
        i.deviceBytes += 8;
        i.stopCopyBytes += 8;
      },
      /'deviceBytes' is \d+, but the stream carries \d+ device bytes/,
    ],
    [
      'another format',
      (i) => {
        i.format = 'something else';
      },
      /'format' is "something else"/,
    ],
    ['an array for the whole info', () => [], /the info section is \[\], expected an object/],
  ];
  for (const [what, mutate, message] of bad) {
    it(`${what}: refused before a device is opened, naming the field`, async () => {
      const info = structuredClone(saved.info);
      const r = await loadEverywhere(await wrap(saved.stream, mutate(info) ?? info));
      expect(r.statuses).toEqual([1, 1]);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/internal error/);
      expect(r.problems).toEqual(['bad-info', 'bad-info']);
      expect(r.touched).toBe(false);
    });
  }

  it('fuzzed: any JSON in any field, fields missing, any JSON as the whole info: never an internal error', async () => {
    const keys = [...Object.keys(saved.info), 'sim.size', 'sim.pageSize', 'sim.fingerprint'];
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), key: fc.constantFrom(...keys), value: fc.jsonValue() }),
      fc.record({ kind: fc.constant('delete' as const), key: fc.constantFrom(...keys) }),
      fc.record({ kind: fc.constant('whole' as const), value: fc.jsonValue() }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), async (mutations) => {
        let info: any = structuredClone(saved.info);
        for (const m of mutations) {
          if (m.kind === 'whole') {
            info = m.value;
            continue;
          }
          if (info === null || typeof info !== 'object') continue;
          const [head, tail] = m.key.split('.');
          const target = tail === undefined ? info : info[head];
          if (target === null || typeof target !== 'object') continue;
          if (m.kind === 'set') target[tail ?? head] = m.value;
          else delete target[tail ?? head];
        }
        const r = await loadEverywhere(await wrap(saved.stream, info));
        expect(r.stderr).not.toMatch(/internal error/);
        for (const s of r.statuses) expect([0, 1, 2]).toContain(s);
        if (r.statuses.some((s) => s !== 0) && r.problems.includes('bad-info')) expect(r.touched).toBe(false);
      }),
      { numRuns: 60, seed: 20260101 },
    );
  });

  it('info that is not JSON, or not UTF-8 text: refused as bad-info', async () => {
    const path = await wrap(saved.stream, saved.info);
    // Re-wrap by hand with raw info bytes: the writer only takes values.
    const b = readFileSync(path);
    const payload = b.subarray(32, 32 + saved.stream.length);
    for (const raw of [Buffer.from('{"format": '), Buffer.from([0xff, 0xfe, 0x7b, 0x7d])]) {
      const p = await wrapRaw(payload, raw);
      const r = await loadEverywhere(p);
      expect(r.statuses).toEqual([1, 1]);
      expect(r.problems).toEqual(['bad-info', 'bad-info']);
      expect(r.touched).toBe(false);
    }
  });
});

/** A container around `payload` with `info` as raw bytes and a right checksum (the format written out by hand). */
async function wrapRaw(payload: Buffer, info: Buffer): Promise<string> {
  const { createHash } = await import('node:crypto');
  const fileBytes = 32 + payload.length + info.length + 64;
  const header = Buffer.alloc(32);
  header.write('VFIOMIGC', 0, 'latin1');
  header.writeUInt32BE(1, 8);
  header.writeUInt32BE(32, 12);
  header.writeBigUInt64BE(BigInt(fileBytes), 16);
  header.writeBigUInt64BE(BigInt(payload.length), 24);
  const prefix = Buffer.alloc(32);
  prefix.write('VFIOMIGE', 0, 'latin1');
  prefix.writeBigUInt64BE(BigInt(payload.length), 8);
  prefix.writeBigUInt64BE(BigInt(info.length), 16);
  prefix.writeBigUInt64BE(BigInt(fileBytes), 24);
  const digest = createHash('sha256').update(payload).update(info).update(prefix).digest();
  const path = join(dir, `raw-${++n}.vmig`);
  writeFileSync(path, Buffer.concat([header, payload, info, prefix, digest]));
  return path;
}

describe('the container and the stream', () => {
  it('a header whose sizes leave no room for a footer: refused, not a read at a negative offset', async () => {
    const b = Buffer.alloc(40);
    b.write('VFIOMIGC', 0, 'latin1');
    b.writeUInt32BE(1, 8);
    b.writeUInt32BE(32, 12);
    b.writeBigUInt64BE(40n, 16);
    const path = join(dir, 'tiny.vmig');
    writeFileSync(path, b);
    const r = await loadEverywhere(path);
    expect(r.statuses).toEqual([1, 1]);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.problems).toEqual(['damaged', 'damaged']);
  });

  it('DEV_INIT_DATA_SENT: refused by verify, as both loaders refuse it, before any device byte is written', async () => {
    // QEMU 8.1+ vfio_load_state (hw/vfio/migration.c) accepts the marker only with switchover-ack
    // negotiated (and precopy supported), else -EINVAL; vfio-mig never negotiates switchover-ack,
    // and QEMU 7.2 knows no such tag ("Unknown tag", -EINVAL).
    const data = saved.stream.subarray(24, saved.stream.length - 16); // the data records, without start and end
    const stream = Buffer.concat([encodeStreamStart(), data, encodeMarker(VfioMigFlag.DEV_INIT_DATA_SENT), encodeStreamEnd()]);
    const r = await loadEverywhere(await wrap(stream, saved.info));
    expect(r.statuses).toEqual([1, 1]);
    expect(r.problems).toEqual(['bad-stream', 'bad-stream']);
    expect(r.stderr).toMatch(/DEV_INIT_DATA_SENT .*switchover-ack/);
    expect(r.touched).toBe(false);
    // (The same stream with END_OF_STATE there loads: the marker is the only difference.)
    const fine = Buffer.concat([encodeStreamStart(), data, encodeMarker(VfioMigFlag.END_OF_STATE), encodeStreamEnd()]);
    expect((await loadEverywhere(await wrap(fine, saved.info))).statuses).toEqual([0, 0]);
    expect(encodeDataHeader(0).length).toBe(16);
  });
});

describe('device addresses', () => {
  const tooBig: [string, RegExp][] = [
    ['sim:v1?window=8GiB', /bad window '8GiB' in 'sim:v1\?window=8GiB': at most 64 MiB/],
    ['sim:v2?size=4096GiB', /bad size '4096GiB' in 'sim:v2\?size=4096GiB': at most 64 GiB/],
    ['sim:v2?size=1PiB', /bad size '1PiB' in 'sim:v2\?size=1PiB': at most 64 GiB/],
    ['sim:v2?size=1024GiB', /bad size '1024GiB' in 'sim:v2\?size=1024GiB': at most 64 GiB/],
    ['sim:v2?size=1TiB', /bad size '1TiB' in 'sim:v2\?size=1TiB': at most 64 GiB/],
    ['sim:v1?size=1.3', /bad size '1\.3' in 'sim:v1\?size=1\.3': not a whole number of bytes/],
    ['sim:v2?size=1MiB&size=2MiB', /'size' given twice in 'sim:v2\?size=1MiB&size=2MiB'/],
  ];
  for (const [address, message] of tooBig) {
    it(`${address}: a usage error naming the parameter and the limit`, async () => {
      const r = await runCli('inspect', address);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
    });
  }

  it('the largest accepted values open (64 GiB of simulated state, a 64 MiB window)', async () => {
    const r = await runCli('inspect', 'sim:v1?size=64GiB&window=64MiB', '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.result.sim).toMatchObject({ size: 64 * 2 ** 30, window: 64 << 20 });
  });

  it('demo --size and --window take the same limits, with the same words', async () => {
    expect((await runCli('demo', '--size', '1PiB')).stderr).toMatch(/bad --size '1PiB': at most 64 GiB/);
    expect((await runCli('demo', '--window', '8GiB')).stderr).toMatch(/bad --window '8GiB': at most 64 MiB/);
  });

  it('fuzzed sim addresses: inspect answers or refuses (exit 2), never an internal error', async () => {
    const number = fc.oneof(
      { arbitrary: fc.constantFrom('1', '8', '63', '64', '65', '1024', '4096', '0.5', '1.5'), weight: 4 },
      { arbitrary: fc.nat({ max: 100_000 }).map(String), weight: 2 },
      { arbitrary: fc.constantFrom('', '0', '-1', '0x10', '1e3', 'NaN', 'Infinity', '9'.repeat(20)), weight: 1 },
    );
    const unit = fc.constantFrom('', 'B', 'KiB', 'k', 'MiB', 'm', 'GiB', 'g', 'TiB', 't', 'PiB', 'EiB', 'xb', ' MiB');
    const size = fc.tuple(number, unit).map(([v, u]) => encodeURIComponent(`${v}${u}`));
    const junk = fc.string({ maxLength: 8 }).map(encodeURIComponent);
    const sometimes = <T>(a: fc.Arbitrary<T>) => fc.option(a, { freq: 3 });
    const v1 = fc.record({
      size: sometimes(size),
      window: sometimes(size),
      seed: sometimes(fc.oneof(fc.integer({ min: -2, max: 2 ** 33 }).map(String), junk)),
      policy: sometimes(fc.constantFrom('qemu', 'uapi', 'libvfio-user', 'x', '')),
      extra: fc.option(junk, { freq: 10 }),
    });
    const v2 = fc.record({
      size: sometimes(size),
      flags: sometimes(fc.oneof(fc.nat({ max: 9 }).map(String), fc.constantFrom('all', 'STOP_COPY|PRE_COPY', 'P2P'), junk)),
      seed: sometimes(fc.integer({ min: -2, max: 2 ** 33 }).map(String)),
      extra: fc.option(junk, { freq: 10 }),
    });
    const query = (head: string, params: Record<string, string | null>) => {
      const ps = Object.entries(params)
        .filter(([, v]) => v !== null)
        .map(([k, v]) => (k === 'extra' ? v : `${k}=${v}`));
      return ps.length ? `${head}?${ps.join('&')}` : head;
    };
    const address = fc.oneof(
      { arbitrary: v1.map((p) => query('sim:v1', p)), weight: 5 },
      { arbitrary: v2.map((p) => query('sim:v2', p)), weight: 5 },
      { arbitrary: fc.tuple(fc.constantFrom('sim:v3', 'sim:', 'sim:v1?', 'sim:v2??'), junk).map(([h, j]) => `${h}${j}`), weight: 1 },
    );
    await fc.assert(
      fc.asyncProperty(address, async (a) => {
        const r = await runCli('inspect', a, '--json');
        expect(r.stderr).not.toMatch(/internal error/);
        expect([0, 2]).toContain(r.status);
      }),
      { numRuns: 300, seed: 20260102 },
    );
  });
});
