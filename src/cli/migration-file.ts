// The file `vfio-mig save` writes and `vfio-mig load` reads: the migration
// stream (legacy/qemu/stream-format.ts, what both clients produce) inside a small
// container that makes the whole file checkable before a device is touched.
// Every integer is big-endian, as in the stream.
//
//   header  32 bytes
//     [0, 8)    magic "VFIOMIGC"
//     [8, 12)   container version (1)
//     [12, 16)  header bytes (32)
//     [16, 24)  file bytes, header to footer; 0 while the save runs
//     [24, 32)  payload bytes; 0 while the save runs
//   payload   the migration stream, as the client wrote it
//   info      UTF-8 JSON: what was saved, from which device, over which protocol
//   footer  64 bytes
//     [0, 8)    magic "VFIOMIGE"
//     [8, 16)   payload bytes
//     [16, 24)  info bytes
//     [24, 32)  file bytes
//     [32, 64)  SHA-256 of payload || info || footer[0, 32)
//
// The header's sizes are filled in when the save is complete (the file is
// written under a temporary name and renamed, so a half-written file never
// has the final name). A file written to a pipe (`--out -`) cannot go back to
// its header: its header's two sizes are all-ones ("streamed"), and the
// footer alone gives them; a stream cut short has no footer and is refused as
// truncated. Every byte is covered: the header's fields are constants or must
// equal the footer's and the file's real size; the rest is hashed.
// Reading is two streaming passes, so a multi-GiB file is never held in
// memory: verifyMigrationFile() checks sizes, hash, the stream's framing and
// every info field (anyone can re-wrap a file: the hash is no signature);
// readPayload() then feeds the device, re-hashing and holding back its last
// chunk until the digest matches, so a file changed in between never completes
// a load.
import { createHash } from 'node:crypto';
import { createReadStream, unlinkSync } from 'node:fs';
import { open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { MigrationError, type ErrnoName } from '../uapi/errors.js';
import { MigStreamDecoder } from '../../legacy/qemu/stream-format.js';

export const FILE_MAGIC = 'VFIOMIGC';
export const FILE_END_MAGIC = 'VFIOMIGE';
export const FILE_VERSION = 1;
export const FILE_HEADER_BYTES = 32;
export const FILE_FOOTER_BYTES = 64;
/** Both header sizes of a file written to a pipe: only the footer knows them. */
const STREAMED = 0xffffffffffffffffn;
/** Footer bytes covered by the digest (everything before it). */
const FOOTER_HASHED = 32;
/** The info section is a few hundred bytes; anything near this is damage. */
const MAX_INFO_BYTES = 1 << 20;
const READ_CHUNK = 1 << 20;

/** What the file says about the state it carries (the info section). */
export interface MigrationFileInfo {
  format: 'vfio-mig-shim migration file';
  /** The device address the state was saved from, as given. */
  source: string;
  /** The protocol the source device speaks natively, and the one the client spoke. */
  native: 'v1' | 'v2';
  via: 'v1' | 'v2';
  /** Device bytes in the stream (pre-copy + stop-and-copy). */
  deviceBytes: number;
  precopyBytes: number;
  stopCopyBytes: number;
  savedAt: string;
  /** Simulated sources only: their geometry and the fingerprint of the state saved. */
  sim?: { size: number; pageSize: number; fingerprint: string };
}

export type FileProblem =
  | 'unreadable'
  | 'unwritable'
  | 'not-a-file'
  | 'bad-magic'
  | 'bad-version'
  | 'incomplete'
  | 'truncated'
  | 'trailing-bytes'
  | 'damaged'
  | 'checksum'
  | 'bad-stream'
  | 'bad-info'
  | 'changed';

/** A migration file that cannot be used; `problem` says why (explain-error.ts words it). */
export class MigrationFileError extends MigrationError {
  constructor(
    readonly path: string,
    readonly problem: FileProblem,
    code: ErrnoName,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(code, `${path}: ${detail}`);
    this.name = 'MigrationFileError';
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

interface Header {
  version: number;
  headerBytes: number;
  fileBytes: number;
  payloadBytes: number;
  streamed: boolean;
}
interface Footer {
  payloadBytes: number;
  infoBytes: number;
  fileBytes: number;
  digest: Buffer;
}

/** The header; 'streamed' for a file written to a pipe (sizes in the footer only). */
export function encodeHeader(fileBytes: number | 'streamed', payloadBytes = 0): Buffer {
  const b = Buffer.alloc(FILE_HEADER_BYTES);
  b.write(FILE_MAGIC, 0, 'latin1');
  b.writeUInt32BE(FILE_VERSION, 8);
  b.writeUInt32BE(FILE_HEADER_BYTES, 12);
  b.writeBigUInt64BE(fileBytes === 'streamed' ? STREAMED : BigInt(fileBytes), 16);
  b.writeBigUInt64BE(fileBytes === 'streamed' ? STREAMED : BigInt(payloadBytes), 24);
  return b;
}

/** The footer without its digest (the hashed part). */
function encodeFooterPrefix(payloadBytes: number, infoBytes: number, fileBytes: number): Buffer {
  const b = Buffer.alloc(FOOTER_HASHED);
  b.write(FILE_END_MAGIC, 0, 'latin1');
  b.writeBigUInt64BE(BigInt(payloadBytes), 8);
  b.writeBigUInt64BE(BigInt(infoBytes), 16);
  b.writeBigUInt64BE(BigInt(fileBytes), 24);
  return b;
}

function u64(b: Buffer, at: number): number {
  const v = b.readBigUInt64BE(at);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

function decodeHeader(path: string, b: Buffer): Header {
  const magic = b.subarray(0, 8);
  if (!magic.equals(Buffer.from(FILE_MAGIC, 'latin1'))) {
    throw new MigrationFileError(path, 'bad-magic', 'EINVAL', `starts with 0x${magic.toString('hex')}, not "${FILE_MAGIC}"`);
  }
  const streamed = b.readBigUInt64BE(16) === STREAMED && b.readBigUInt64BE(24) === STREAMED;
  return { version: b.readUInt32BE(8), headerBytes: b.readUInt32BE(12), fileBytes: u64(b, 16), payloadBytes: u64(b, 24), streamed };
}

function decodeFooter(b: Buffer): Footer | null {
  if (!b.subarray(0, 8).equals(Buffer.from(FILE_END_MAGIC, 'latin1'))) return null;
  return {
    payloadBytes: u64(b, 8),
    infoBytes: u64(b, 16),
    fileBytes: u64(b, 24),
    digest: Buffer.from(b.subarray(FOOTER_HASHED, FILE_FOOTER_BYTES)),
  };
}

/** Node's fs errors (code 'ENOENT', ...) as the file problem they are. */
export function fsProblem(path: string, e: unknown, writing: boolean): MigrationFileError {
  const code = (e as { code?: unknown }).code;
  const name = (typeof code === 'string' ? code : 'EIO') as ErrnoName;
  const problem: FileProblem = name === 'EISDIR' ? 'not-a-file' : writing ? 'unwritable' : 'unreadable';
  const errno = typeof code === 'string' && /^E[A-Z]+$/.test(code) ? name : 'EIO';
  return new MigrationFileError(path, problem, errno, (e as Error).message ?? String(e), { cause: e });
}

// ---- writing -----------------------------------------------------------------

export interface WrittenFile {
  path: string;
  fileBytes: number;
  payloadBytes: number;
  /** Hex SHA-256 from the footer. */
  sha256: string;
}

/** Where a migration file's bytes go: a file written in place, or a pipe written in order. */
interface ByteSink {
  /** Append `b` after everything appended so far. */
  append(b: Uint8Array): Promise<void>;
  /** Everything is appended: make it final (the file: header sizes, fsync, rename). */
  seal(fileBytes: number, payloadBytes: number): Promise<void>;
  /** Give up: close and remove what can be removed (never throws). */
  abort(): Promise<void>;
  /** abort() for a signal handler: synchronous, best effort. */
  discardSync(): void;
}

/** A regular file, written under a temporary sibling name and renamed into place when sealed. */
class FileSink implements ByteSink {
  private at = 0;
  private closed = false;

  constructor(
    private readonly path: string,
    private readonly tmpPath: string,
    private readonly fh: FileHandle,
  ) {}

  async append(b: Uint8Array): Promise<void> {
    await this.writeAt(b, this.at);
    this.at += b.length;
  }

  /** pwrite all of `b` at `position` (a short write continues). */
  private async writeAt(b: Uint8Array, position: number): Promise<void> {
    for (let done = 0; done < b.length;) {
      const { bytesWritten } = await this.fh.write(b, done, b.length - done, position + done);
      if (bytesWritten <= 0) throw Object.assign(new Error('write wrote nothing'), { code: 'EIO' });
      done += bytesWritten;
    }
  }

  async seal(fileBytes: number, payloadBytes: number): Promise<void> {
    await this.writeAt(encodeHeader(fileBytes, payloadBytes), 0);
    await this.fh.datasync();
    this.closed = true;
    await this.fh.close();
    await rename(this.tmpPath, this.path);
  }

  async abort(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.fh.close().catch(() => undefined);
    }
    await unlink(this.tmpPath).catch(() => undefined);
  }

  discardSync(): void {
    try {
      unlinkSync(this.tmpPath);
    } catch {
      // already gone
    }
  }
}

/** A pipe (standard output): bytes in order, nothing to take back; a reader of a cut stream finds no footer. */
class StreamSink implements ByteSink {
  constructor(private readonly out: NodeJS.WritableStream) {}

  append(b: Uint8Array): Promise<void> {
    // Each write's callback says when `out` is done with the bytes (and reports EPIPE and friends).
    return new Promise((resolve, reject) => this.out.write(b, (e?: Error | null) => (e ? reject(e) : resolve())));
  }

  async seal(): Promise<void> {}

  async abort(): Promise<void> {}

  discardSync(): void {}
}

/**
 * Writes a migration file: `stream` takes the migration stream (hand it to
 * saveV2/saveV1; its write callback runs once the bytes are written, so a
 * client may reuse its buffer), then finish() adds info and footer and makes
 * the file final. abort() removes a partial file.
 */
export class MigrationFileWriter {
  readonly stream: Writable;
  private payloadBytes = 0;
  private readonly hash = createHash('sha256');
  private settled = false;

  private constructor(
    readonly path: string,
    private readonly sink: ByteSink,
  ) {
    this.stream = new Writable({
      highWaterMark: 0,
      write: (chunk: Buffer, _enc, done) => {
        // Writable runs one write at a time: appends follow each other.
        this.hash.update(chunk);
        this.sink.append(chunk).then(
          () => {
            this.payloadBytes += chunk.length;
            done();
          },
          (e: unknown) => done(fsProblem(this.path, e, true)),
        );
      },
    });
    // A failed write reaches the client through its write callback; the event would only crash the process.
    this.stream.on('error', () => undefined);
  }

  /** Create `path`'s temporary sibling and write a header that marks the file incomplete. */
  static async create(path: string): Promise<MigrationFileWriter> {
    if (path === '' || path.endsWith('/')) throw new MigrationFileError(path, 'not-a-file', 'EISDIR', 'names a directory, not a file');
    // Refuse a directory now, not at the final rename after the whole save.
    const existing = await stat(path).catch(() => null);
    if (existing && !existing.isFile())
      throw new MigrationFileError(path, 'not-a-file', existing.isDirectory() ? 'EISDIR' : 'EINVAL', 'exists and is not a regular file');
    const tmpPath = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.partial`);
    let fh: FileHandle;
    try {
      fh = await open(tmpPath, 'wx', 0o600);
    } catch (e) {
      throw fsProblem(path, e, true);
    }
    return MigrationFileWriter.begin(path, new FileSink(path, tmpPath, fh), encodeHeader(0, 0));
  }

  /** Write to a pipe (`--out -`): the streamed header now, the sizes in the footer at the end. `name` names it in errors. */
  static async toStream(out: NodeJS.WritableStream, name: string): Promise<MigrationFileWriter> {
    return MigrationFileWriter.begin(name, new StreamSink(out), encodeHeader('streamed'));
  }

  private static async begin(path: string, sink: ByteSink, header: Buffer): Promise<MigrationFileWriter> {
    const writer = new MigrationFileWriter(path, sink);
    try {
      await sink.append(header);
    } catch (e) {
      await writer.abort();
      throw fsProblem(path, e, true);
    }
    return writer;
  }

  /** Info and footer, then the sink makes the file final (a file: header sizes, fsync, rename). */
  async finish(info: MigrationFileInfo): Promise<WrittenFile> {
    if (this.settled) throw new MigrationError('EINVAL', 'migration file already finished');
    try {
      await new Promise<void>((resolve, reject) => this.stream.end((e?: Error | null) => (e ? reject(e) : resolve())));
      const infoBytes = Buffer.from(JSON.stringify(info), 'utf8');
      const fileBytes = FILE_HEADER_BYTES + this.payloadBytes + infoBytes.length + FILE_FOOTER_BYTES;
      const prefix = encodeFooterPrefix(this.payloadBytes, infoBytes.length, fileBytes);
      const digest = this.hash.update(infoBytes).update(prefix).digest();
      await this.sink.append(infoBytes);
      await this.sink.append(Buffer.concat([prefix, digest]));
      await this.sink.seal(fileBytes, this.payloadBytes);
      this.settled = true;
      return { path: this.path, fileBytes, payloadBytes: this.payloadBytes, sha256: digest.toString('hex') };
    } catch (e) {
      await this.abort();
      throw e instanceof MigrationFileError ? e : fsProblem(this.path, e, true);
    }
  }

  /** Remove the temporary file now, synchronously (for a signal handler: the process is about to end). */
  discardSync(): void {
    this.sink.discardSync();
  }

  /** Close and remove the temporary file (idempotent; never throws). */
  async abort(): Promise<void> {
    this.stream.destroy();
    this.settled = true;
    await this.sink.abort();
  }
}

// ---- reading -----------------------------------------------------------------

const FORMAT_NAME: MigrationFileInfo['format'] = 'vfio-mig-shim migration file';
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isProtocol = (v: unknown): v is 'v1' | 'v2' => v === 'v1' || v === 'v2';

/** A value as a message shows it. */
function shown(v: unknown): string {
  if (v === undefined) return 'is missing';
  const json = JSON.stringify(v);
  return `is ${json.length > 40 ? `${json.slice(0, 37)}...` : json}`;
}

/**
 * The info section, every field checked (the checksum is no signature: anyone
 * can re-wrap a file with any info), so nothing after this point meets a value
 * of the wrong kind. `streamDeviceBytes` is what the stream really carries.
 */
function checkInfo(path: string, bytes: Buffer, streamDeviceBytes: number): MigrationFileInfo {
  const bad = (detail: string) => new MigrationFileError(path, 'bad-info', 'EINVAL', `checksum is right but ${detail}`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw bad(`the info section is not UTF-8 JSON (${(e as Error).message})`);
  }
  if (!isRecord(value)) throw bad(`the info section ${shown(value)}, expected an object`);
  function field<T>(from: Record<string, unknown>, name: string, ok: (v: unknown) => v is T, expected: string): T {
    const v = from[name.replace(/^.*\./, '')];
    if (!ok(v)) throw bad(`info field '${name}' ${shown(v)}, expected ${expected}`);
    return v;
  }
  field(value, 'format', (v): v is string => v === FORMAT_NAME, JSON.stringify(FORMAT_NAME));
  const info: MigrationFileInfo = {
    format: FORMAT_NAME,
    source: field(value, 'source', (v): v is string => typeof v === 'string', 'a string'),
    native: field(value, 'native', isProtocol, '"v1" or "v2"'),
    via: field(value, 'via', isProtocol, '"v1" or "v2"'),
    deviceBytes: field(value, 'deviceBytes', isCount, 'a byte count'),
    precopyBytes: field(value, 'precopyBytes', isCount, 'a byte count'),
    stopCopyBytes: field(value, 'stopCopyBytes', isCount, 'a byte count'),
    savedAt: field(value, 'savedAt', (v): v is string => typeof v === 'string', 'a string'),
  };
  if (info.precopyBytes + info.stopCopyBytes !== info.deviceBytes) {
    throw bad(
      `info field 'precopyBytes' + 'stopCopyBytes' is ${info.precopyBytes + info.stopCopyBytes}, but 'deviceBytes' is ${info.deviceBytes}`,
    );
  }
  if (info.deviceBytes !== streamDeviceBytes) {
    throw bad(`info field 'deviceBytes' is ${info.deviceBytes}, but the stream carries ${streamDeviceBytes} device bytes`);
  }
  if (value.sim !== undefined) {
    const sim = field(value, 'sim', isRecord, 'an object');
    info.sim = {
      size: field(sim, 'sim.size', (v): v is number => isCount(v) && v > 0, 'a positive integer'),
      pageSize: field(sim, 'sim.pageSize', (v): v is number => isCount(v) && v > 0, 'a positive integer'),
      fingerprint: field(sim, 'sim.fingerprint', (v): v is string => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v), '64 hex digits'),
    };
  }
  return info;
}

export interface VerifiedFile {
  /** The file's name in messages. */
  path: string;
  /** The file the bytes are read from (for standard input, its private copy). */
  source: string;
  fileBytes: number;
  payloadBytes: number;
  /** Device bytes the stream carries (the sum of its data records). */
  deviceBytes: number;
  sha256: string;
  info: MigrationFileInfo;
  /** SHA-256 of the payload alone, for the second pass. */
  payloadDigest: string;
}

async function readExactly(path: string, fh: FileHandle, length: number, position: number): Promise<Buffer> {
  const b = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    let n: number;
    try {
      ({ bytesRead: n } = await fh.read(b, got, length - got, position + got));
    } catch (e) {
      throw fsProblem(path, e, false);
    }
    if (n === 0) throw new MigrationFileError(path, 'changed', 'EIO', 'the file got shorter while being read');
    got += n;
  }
  return b;
}

/**
 * Check the whole file without touching any device: header, sizes, footer,
 * then one streaming pass over payload and info (SHA-256, the migration
 * stream's framing, the info's fields). `onProgress` gets the bytes hashed so
 * far; `path` names the file in errors (a private copy of standard input is
 * read from `source` but named 'standard input').
 */
export async function verifyMigrationFile(
  source: string,
  onProgress?: (bytes: number, total: number) => void,
  path = source,
): Promise<VerifiedFile> {
  let fh: FileHandle;
  try {
    fh = await open(source, 'r');
  } catch (e) {
    throw fsProblem(path, e, false);
  }
  try {
    let size: number;
    try {
      const st = await fh.stat();
      if (st.isDirectory()) throw Object.assign(new Error(`EISDIR: ${path} is a directory`), { code: 'EISDIR' });
      if (!st.isFile()) throw new MigrationFileError(path, 'not-a-file', 'EINVAL', 'is not a regular file');
      size = st.size;
    } catch (e) {
      throw e instanceof MigrationFileError ? e : fsProblem(path, e, false);
    }
    const headerBytes = await readExactly(path, fh, Math.min(size, FILE_HEADER_BYTES), 0);
    if (size < FILE_HEADER_BYTES) {
      const magic = Buffer.from(FILE_MAGIC, 'latin1');
      if (size === 0 || !magic.subarray(0, Math.min(size, 8)).equals(headerBytes.subarray(0, 8))) {
        throw new MigrationFileError(path, 'bad-magic', 'EINVAL', size === 0 ? 'the file is empty' : `only ${size} bytes, no header`);
      }
      throw new MigrationFileError(path, 'truncated', 'EIO', `${size} bytes, shorter than the ${FILE_HEADER_BYTES}-byte header`);
    }
    const header = decodeHeader(path, headerBytes);
    if (header.version !== FILE_VERSION) {
      throw new MigrationFileError(
        path,
        'bad-version',
        'EINVAL',
        `container version ${header.version}, this vfio-mig reads version ${FILE_VERSION}`,
      );
    }
    if (header.headerBytes !== FILE_HEADER_BYTES) {
      throw new MigrationFileError(path, 'damaged', 'EBADMSG', `header length ${header.headerBytes}, expected ${FILE_HEADER_BYTES}`);
    }
    if (!header.streamed) {
      if (header.fileBytes === 0)
        throw new MigrationFileError(path, 'incomplete', 'EIO', 'the header is still blank: the save that wrote it did not finish');
      if (size < header.fileBytes) throw new MigrationFileError(path, 'truncated', 'EIO', `${size} of ${header.fileBytes} bytes`);
      if (size > header.fileBytes)
        throw new MigrationFileError(
          path,
          'trailing-bytes',
          'EBADMSG',
          `${size - header.fileBytes} bytes after the end of the ${header.fileBytes}-byte file`,
        );
    }
    const footer =
      size >= FILE_HEADER_BYTES + FILE_FOOTER_BYTES
        ? decodeFooter(await readExactly(path, fh, FILE_FOOTER_BYTES, size - FILE_FOOTER_BYTES))
        : null;
    if (!footer && header.streamed) {
      throw new MigrationFileError(
        path,
        'truncated',
        'EIO',
        `a streamed file of ${size} bytes without its end marker "${FILE_END_MAGIC}": the stream was cut short`,
      );
    }
    if (!footer)
      throw new MigrationFileError(path, 'damaged', 'EBADMSG', `no end marker "${FILE_END_MAGIC}" in the last ${FILE_FOOTER_BYTES} bytes`);
    // A streamed header says nothing about the sizes: the footer and the real size must agree alone.
    const expected = header.streamed ? { fileBytes: size, payloadBytes: footer.payloadBytes } : header;
    const infoAt = FILE_HEADER_BYTES + expected.payloadBytes;
    if (
      footer.fileBytes !== expected.fileBytes ||
      footer.payloadBytes !== expected.payloadBytes ||
      infoAt + footer.infoBytes + FILE_FOOTER_BYTES !== size ||
      footer.infoBytes > MAX_INFO_BYTES
    ) {
      throw new MigrationFileError(
        path,
        'damaged',
        'EBADMSG',
        header.streamed
          ? `footer (file ${footer.fileBytes}, payload ${footer.payloadBytes}, info ${footer.infoBytes}) does not add up to the ${size}-byte file`
          : `header (file ${header.fileBytes}, payload ${header.payloadBytes}) and footer (file ${footer.fileBytes}, payload ${footer.payloadBytes}, info ${footer.infoBytes}) disagree`,
      );
    }
    const payloadBytes = expected.payloadBytes;

    // The streaming pass: hash everything hashed, decode the stream's framing on the way.
    const hash = createHash('sha256');
    const decoder = new MigStreamDecoder();
    let streamError: MigrationError | undefined;
    let deviceBytes = 0;
    let hashed = 0;
    const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(1, payloadBytes)));
    for (let at = FILE_HEADER_BYTES; at < infoAt;) {
      const want = Math.min(buf.length, infoAt - at);
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, want, at));
      } catch (e) {
        throw fsProblem(path, e, false);
      }
      if (n === 0) throw new MigrationFileError(path, 'changed', 'EIO', 'the file got shorter while being read');
      const piece = buf.subarray(0, n);
      hash.update(piece);
      if (!streamError) {
        try {
          for (const event of decoder.push(piece)) {
            if (event.kind === 'data') deviceBytes += event.bytes.length;
            // QEMU 8.1+ vfio_load_state (hw/vfio/migration.c) takes this marker only when switchover-ack
            // is negotiated (and the device has PRE_COPY), else -EINVAL; QEMU 7.2 knows no such tag.
            // vfio-mig never negotiates switchover-ack: both its loaders refuse the marker, so verify does.
            if (event.kind === 'init-data-sent') {
              throw new MigrationError(
                'EINVAL',
                `a DEV_INIT_DATA_SENT marker at byte ${decoder.bytesConsumed - 8}: only a QEMU 8.1+ with switchover-ack negotiated takes it, and vfio-mig never negotiates switchover-ack`,
              );
            }
          }
        } catch (e) {
          streamError = e instanceof MigrationError ? e : new MigrationError('EINVAL', String(e));
        }
      }
      at += n;
      hashed += n;
      onProgress?.(hashed, payloadBytes);
    }
    if (!streamError) {
      try {
        decoder.end();
      } catch (e) {
        streamError = e as MigrationError;
      }
    }
    const payloadHash = hash.copy();
    const infoBytes = await readExactly(path, fh, footer.infoBytes, infoAt);
    const digest = hash
      .update(infoBytes)
      .update(encodeFooterPrefix(footer.payloadBytes, footer.infoBytes, footer.fileBytes))
      .digest();
    if (!digest.equals(footer.digest)) {
      throw new MigrationFileError(
        path,
        'checksum',
        'EBADMSG',
        `SHA-256 mismatch: the footer says ${footer.digest.toString('hex').slice(0, 16)}..., the contents hash to ${digest.toString('hex').slice(0, 16)}...`,
      );
    }
    if (streamError) {
      throw new MigrationFileError(
        path,
        'bad-stream',
        'EINVAL',
        `checksum is right but the migration stream inside is malformed (${streamError.message})`,
        { cause: streamError },
      );
    }
    const info = checkInfo(path, infoBytes, deviceBytes);
    return {
      path,
      source,
      fileBytes: size,
      payloadBytes,
      deviceBytes,
      sha256: digest.toString('hex'),
      info,
      payloadDigest: payloadHash.digest('hex'),
    };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * The payload of a verified file, streamed for the second pass. It is hashed
 * again and the last chunk is only yielded once the digest matches the first
 * pass's, so a load never completes with bytes that were not verified.
 */
export async function* readPayload(file: VerifiedFile): AsyncGenerator<Uint8Array> {
  if (file.payloadBytes === 0) return;
  const input = createReadStream(file.source, {
    start: FILE_HEADER_BYTES,
    end: FILE_HEADER_BYTES + file.payloadBytes - 1,
    highWaterMark: READ_CHUNK,
  });
  const hash = createHash('sha256');
  let held: Buffer | null = null;
  let bytes = 0;
  try {
    for await (const chunk of input) {
      const b = chunk as Buffer;
      hash.update(b);
      bytes += b.length;
      if (held) yield held;
      held = b;
    }
  } catch (e) {
    throw e instanceof MigrationFileError ? e : fsProblem(file.path, e, false);
  } finally {
    input.destroy();
  }
  const digest = hash.digest('hex');
  if (bytes !== file.payloadBytes || digest !== file.payloadDigest) {
    throw new MigrationFileError(file.path, 'changed', 'EIO', 'the file changed between verifying and loading it');
  }
  if (held) yield held;
}
