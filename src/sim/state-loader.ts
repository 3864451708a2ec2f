// The resuming side of a SimDevice migration (see state-format.ts). Accepts
// any segmentation. The header (magic, version, size, page size) and every
// page (its bytes must be exactly what the generator gives for its index and
// generation) are checked as they arrive: a bad one fails that write and every
// later call with EINVAL. finish() checks that the stream is complete (every
// page, the trailer, record count, checksum) and only then replaces the
// device's state, so a failed resume leaves the device as it was.
import { MigrationError } from '../uapi/errors.js';
import { Checksum64 } from './checksum64.js';
import { PageGenerator } from './page-generator.js';
import type { SimDevice } from './sim-device.js';
import {
  addWords,
  END_MARKER,
  readHeader,
  readTrailer,
  RECORD_HEADER_BYTES,
  STATE_HEADER_BYTES,
  STATE_MAGIC,
  STATE_TRAILER_BYTES,
  STATE_VERSION,
  type StateTrailer,
} from './state-format.js';
import type { StateGeometry } from './state-geometry.js';
import type { StateLoader } from './state-stream.js';

type Stage = 'header' | 'prefix' | 'body' | 'trailer' | 'complete';

export class SimStateLoader implements StateLoader {
  private readonly geometry: StateGeometry;
  private stage: Stage = 'header';
  private readonly meta = new Uint8Array(STATE_TRAILER_BYTES);
  private metaNeed = STATE_HEADER_BYTES;
  private metaFill = 0;
  private seed = 0;
  private gens: Uint32Array | null = null;
  private received: Uint8Array | null = null;
  private receivedPages = 0;
  private records = 0;
  private readonly checksum = new Checksum64();
  private trailer: StateTrailer | null = null;
  private page = 0;
  private pageGen = 0;
  private pageLength = 0;
  private bodyFill = 0;
  private body: Uint8Array | null = null;
  private readonly pages: PageGenerator;
  private written = 0;
  private failure: string | null = null;
  private applied = false;

  constructor(private readonly device: SimDevice) {
    this.geometry = device.geometry;
    this.pages = new PageGenerator(this.geometry.pageSize);
  }

  get bytesWritten(): bigint {
    return BigInt(this.written);
  }

  write(buf: Uint8Array): number {
    if (this.failure) throw new MigrationError('EINVAL', this.failure);
    if (this.applied) throw new MigrationError('EINVAL', 'state already applied');
    if (this.stage === 'complete' && buf.length > 0) throw new MigrationError('ENOSPC', 'data after the end of the state stream');
    let at = 0;
    try {
      while (at < buf.length && this.stage !== 'complete') {
        if (this.stage === 'body') at = this.takeBody(buf, at);
        else at = this.takeMeta(buf, at);
      }
    } catch (err) {
      this.failure = err instanceof Error ? err.message : String(err);
      throw err;
    }
    this.written += at;
    return at; // short only when the stream ended inside `buf`: the rest is ENOSPC on the next call
  }

  finish(): void {
    if (this.failure) throw new MigrationError('EINVAL', this.failure);
    if (this.applied) throw new MigrationError('EINVAL', 'state already applied');
    if (this.stage !== 'complete' || !this.trailer || !this.gens) {
      throw new MigrationError('EINVAL', `incomplete state stream: ${this.written} bytes, cut inside the ${this.stage}`);
    }
    const t = this.trailer;
    const bad = (why: string): never => {
      this.failure = why;
      throw new MigrationError('EINVAL', why);
    };
    if (t.records !== this.records) bad(`trailer counts ${t.records} records, stream had ${this.records}`);
    if (t.checksum !== this.checksum.value())
      bad(`checksum mismatch: trailer ${t.checksum.toString(16)}, computed ${this.checksum.value().toString(16)}`);
    if (this.receivedPages !== this.geometry.pageCount) bad(`${this.geometry.pageCount - this.receivedPages} pages missing`);
    this.device.adoptState(this.seed, this.gens, t.steps);
    this.applied = true;
    this.gens = null;
    this.received = null;
    this.body = null;
  }

  private takeMeta(buf: Uint8Array, at: number): number {
    const n = Math.min(this.metaNeed - this.metaFill, buf.length - at);
    this.meta.set(buf.subarray(at, at + n), this.metaFill);
    this.metaFill += n;
    if (this.metaFill === this.metaNeed) this.onMeta();
    return at + n;
  }

  private onMeta(): void {
    if (this.stage === 'header') return this.onHeader();
    if (this.stage === 'trailer') {
      addWords(this.checksum, this.meta.subarray(0, 24));
      this.trailer = readTrailer(this.meta);
      this.stage = 'complete';
      return;
    }
    const view = new DataView(this.meta.buffer);
    const index = view.getUint32(0, true);
    const gen = view.getUint32(4, true);
    if (index === END_MARKER) {
      if (gen !== 0) throw new MigrationError('EINVAL', `bad end marker (reserved word ${gen})`);
      this.stage = 'trailer';
      this.metaNeed = STATE_TRAILER_BYTES; // keep the 8 bytes already read
      return;
    }
    if (index >= this.geometry.pageCount)
      throw new MigrationError('EINVAL', `record for page ${index}, device has ${this.geometry.pageCount}`);
    this.checksum.add(index);
    this.checksum.add(gen);
    this.page = index;
    this.pageGen = gen;
    this.pageLength = this.geometry.pageLength(index);
    this.bodyFill = 0;
    this.stage = 'body';
  }

  private onHeader(): void {
    const h = readHeader(this.meta);
    const g = this.geometry;
    if (h.magic !== STATE_MAGIC) throw new MigrationError('EINVAL', `bad state magic 0x${h.magic.toString(16)}`);
    if (h.version !== STATE_VERSION) throw new MigrationError('EINVAL', `unsupported state version ${h.version}`);
    if (h.size !== g.size) throw new MigrationError('EINVAL', `state is ${h.size} bytes, device is ${g.size}`);
    if (h.pageSize !== g.pageSize) throw new MigrationError('EINVAL', `state page size ${h.pageSize}, device ${g.pageSize}`);
    if (h.pageCount !== g.pageCount || h.reserved !== 0) throw new MigrationError('EINVAL', 'inconsistent state header');
    addWords(this.checksum, this.meta.subarray(0, STATE_HEADER_BYTES));
    this.seed = h.seed;
    this.gens = new Uint32Array(g.pageCount);
    this.received = new Uint8Array(g.pageCount);
    this.nextPrefix();
  }

  private takeBody(buf: Uint8Array, at: number): number {
    const available = buf.length - at;
    if (this.bodyFill === 0 && available >= this.pageLength) {
      this.checkPage(buf.subarray(at, at + this.pageLength));
      return at + this.pageLength;
    }
    this.body ??= new Uint8Array(this.geometry.pageSize);
    const n = Math.min(this.pageLength - this.bodyFill, available);
    this.body.set(buf.subarray(at, at + n), this.bodyFill);
    this.bodyFill += n;
    if (this.bodyFill === this.pageLength) this.checkPage(this.body.subarray(0, this.pageLength));
    return at + n;
  }

  private checkPage(bytes: Uint8Array): void {
    if (!this.pages.matches(bytes, this.seed, this.page, this.pageGen)) {
      throw new MigrationError('EINVAL', `page ${this.page} does not hold the data of generation ${this.pageGen}`);
    }
    if (this.received![this.page] === 0) {
      this.received![this.page] = 1;
      this.receivedPages++;
    }
    this.gens![this.page] = this.pageGen;
    this.records++;
    this.nextPrefix();
  }

  private nextPrefix(): void {
    this.stage = 'prefix';
    this.metaNeed = RECORD_HEADER_BYTES;
    this.metaFill = 0;
  }
}
