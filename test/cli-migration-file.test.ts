// The container `vfio-mig save` writes (src/cli/migration-file.ts): its exact
// layout, the two streaming passes, and the problems explain-error words.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SimDevice, SimV2Driver, saveV2 } from '../index.js';
import { explainError } from '../src/cli/explain-error.js';
import {
  FILE_FOOTER_BYTES,
  FILE_HEADER_BYTES,
  MigrationFileError,
  MigrationFileWriter,
  readPayload,
  verifyMigrationFile,
  type MigrationFileInfo,
} from '../src/cli/migration-file.js';

const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const info = (deviceBytes: number): MigrationFileInfo => ({
  format: 'vfio-mig-shim migration file',
  source: 'test',
  native: 'v2',
  via: 'v2',
  deviceBytes,
  precopyBytes: 0,
  stopCopyBytes: deviceBytes,
  savedAt: '2024-01-01T00:00:00.000Z',
});

async function write(name: string, parts: Uint8Array[], deviceBytes = 0): Promise<string> {
  const path = join(dir, name);
  const w = await MigrationFileWriter.create(path);
  for (const p of parts) await new Promise<void>((resolve, reject) => w.stream.write(p, (e) => (e ? reject(e) : resolve())));
  await w.finish(info(deviceBytes));
  return path;
}

async function problemOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    expect(e).toBeInstanceOf(MigrationFileError);
    return (e as MigrationFileError).problem;
  }
}

/** A file holding the real migration stream of a `size`-byte simulated device; `stream` is that stream. */
async function simFile(name: string, size: number): Promise<{ path: string; stream: Buffer }> {
  const path = join(dir, name);
  const w = await MigrationFileWriter.create(path);
  const r = await saveV2(new SimV2Driver(new SimDevice({ size, seed: 2 }), { flags: 1 }), w.stream, { reuseBuffer: true });
  const written = await w.finish(info(r.stopCopyBytes));
  expect(written.payloadBytes).toBe(r.fileBytes);
  return { path, stream: readFileSync(path).subarray(FILE_HEADER_BYTES, FILE_HEADER_BYTES + r.fileBytes) };
}

describe('layout', () => {
  it('header, payload, info, footer; the header carries the sizes; the footer the SHA-256', async () => {
    const payload = Buffer.from('0123456789');
    const path = await write('layout.vmig', [payload.subarray(0, 3), payload.subarray(3)]);
    const b = readFileSync(path);
    const infoBytes = Buffer.from(JSON.stringify(info(0)));
    expect(b.length).toBe(FILE_HEADER_BYTES + 10 + infoBytes.length + FILE_FOOTER_BYTES);
    expect(b.subarray(0, 8).toString('latin1')).toBe('VFIOMIGC');
    expect(b.readUInt32BE(8)).toBe(1);
    expect(b.readUInt32BE(12)).toBe(32);
    expect(Number(b.readBigUInt64BE(16))).toBe(b.length);
    expect(Number(b.readBigUInt64BE(24))).toBe(10);
    expect(b.subarray(32, 42)).toEqual(payload);
    expect(b.subarray(42, 42 + infoBytes.length)).toEqual(infoBytes);
    const footer = b.subarray(b.length - 64);
    expect(footer.subarray(0, 8).toString('latin1')).toBe('VFIOMIGE');
    expect(Number(footer.readBigUInt64BE(8))).toBe(10);
    expect(Number(footer.readBigUInt64BE(16))).toBe(infoBytes.length);
    expect(Number(footer.readBigUInt64BE(24))).toBe(b.length);
    const digest = createHash('sha256').update(payload).update(infoBytes).update(footer.subarray(0, 32)).digest();
    expect(footer.subarray(32)).toEqual(digest);
  });
});

describe('the two passes', () => {
  it('verify streams a multi-chunk file, decoding the stream; readPayload yields exactly the payload', async () => {
    const { path, stream } = await simFile('big.vmig', 3 << 20);
    const seen: number[] = [];
    const v = await verifyMigrationFile(path, (bytes) => seen.push(bytes));
    expect(stream.subarray(0, 8).toString('latin1')).toBe('VFIOMIG1'); // the migration stream's own magic
    expect(v.payloadBytes).toBe(stream.length);
    expect(v.deviceBytes).toBe(Number(new SimDevice({ size: 3 << 20, seed: 2 }).fullStreamBytes()));
    expect(seen.length).toBeGreaterThan(2); // read in 1 MiB pieces, never whole
    expect(seen.at(-1)).toBe(stream.length);
    expect(v.info).toEqual(info(v.deviceBytes));
    const back: Buffer[] = [];
    for await (const c of readPayload(v)) back.push(Buffer.from(c));
    expect(Buffer.concat(back).equals(stream)).toBe(true);
  });

  it('a file changed after verification: readPayload fails before handing over the last chunk', async () => {
    const { path } = await simFile('changing.vmig', 3 << 20);
    const v = await verifyMigrationFile(path);
    const b = readFileSync(path);
    b[FILE_HEADER_BYTES + 100] ^= 1;
    writeFileSync(path, b);
    let got = 0;
    const problem = await problemOf(
      (async () => {
        for await (const c of readPayload(v)) got += c.length;
      })(),
    );
    expect(problem).toBe('changed');
    expect(got).toBeLessThan(v.payloadBytes);
    expect(got).toBeGreaterThan(0);
  });

  it('a right checksum over a malformed stream is refused too', async () => {
    const path = await write('garbage.vmig', [Buffer.from('VFIOMIG1 but not really a stream')]);
    expect(await problemOf(verifyMigrationFile(path))).toBe('bad-stream');
    const cut = await write('cut.vmig', [Buffer.from('5646494f4d494731ffffffffef100003', 'hex')]);
    await expect(verifyMigrationFile(cut)).rejects.toThrow(/migration stream inside is malformed .*ended early/);
  });

  it('a damaged footer and a header that disagrees with it', async () => {
    const path = await write('footer.vmig', [Buffer.from('x')]);
    const b = readFileSync(path);
    b[b.length - 64] ^= 1;
    writeFileSync(path, b);
    expect(await problemOf(verifyMigrationFile(path))).toBe('damaged');
    const p2 = await write('disagree.vmig', [Buffer.from('xyz')]);
    const c = readFileSync(p2);
    c.writeBigUInt64BE(2n, 24); // payload bytes
    writeFileSync(p2, c);
    await expect(verifyMigrationFile(p2)).rejects.toThrow(/header .* and footer .* disagree/);
  });
});

describe('explain-error wording for files', () => {
  const err = (problem: ConstructorParameters<typeof MigrationFileError>[1], code: ConstructorParameters<typeof MigrationFileError>[2]) =>
    explainError(new MigrationFileError('/srv/state.vmig', problem, code, `${code}: something`)).message;

  it('permission, space and other errno on reading and writing name the fix, on one line', () => {
    expect(err('unreadable', 'EACCES')).toBe(
      "cannot read '/srv/state.vmig': permission denied (run as a user who may read it, or fix its permissions with chmod/chown)",
    );
    expect(err('unwritable', 'EACCES')).toMatch(
      /^cannot write '\/srv\/state\.vmig': permission denied \(choose a directory you may write to/,
    );
    expect(err('unwritable', 'ENOSPC')).toMatch(/no space left on the device \(free some space or save elsewhere\)/);
    expect(err('unwritable', 'EROFS')).toMatch(/read-only file system/);
    expect(err('unreadable', 'EIO')).toBe("cannot read '/srv/state.vmig': EIO (something)");
    for (const p of ['checksum', 'truncated', 'damaged', 'bad-magic', 'changed'] as const) expect(err(p, 'EIO')).not.toContain('\n');
  });

  it("a bug says so and points at --debug; a plain Error is a command's verdict, shown as is", () => {
    expect(explainError(new TypeError('x is undefined'))).toEqual({
      message: 'internal error: x is undefined (run with --debug for the stack trace)',
      usage: false,
    });
    expect(explainError(new Error('fingerprints differ after: a\nb'))).toEqual({ message: 'fingerprints differ after: a b', usage: false });
  });
});
