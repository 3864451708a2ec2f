// The saving side of a SimDevice migration (see state-format.ts for the
// bytes). Pre-copy: the header and one record per page in index order (the
// first pass, `initialBytes`), then re-sends of pages dirtied after they were
// sent (`dirtyBytes`); read() returns 0 when both are exhausted for now.
// enterStopCopy(): the device no longer changes; the stream is what is left
// of the first pass, the dirty pages, then the trailer; read() returns 0 once
// the trailer has been read. Reads fill the caller's buffer directly.
import { MigrationError } from '../uapi/errors.js';
import type { PrecopyInfo } from '../v2/contracts.js';
import { Checksum64 } from './checksum64.js';
import { DirtyTracker } from './dirty-tracker.js';
import { PageGenerator } from './page-generator.js';
import type { SimDevice } from './sim-device.js';
import { addWords, STATE_HEADER_BYTES, STATE_TRAILER_BYTES, writeHeader, writeRecordHeader, writeTrailer } from './state-format.js';
import type { StateGeometry } from './state-geometry.js';
import type { StateSaver } from './state-stream.js';

type Part = 'first-pass' | 'dirty' | 'trailer';

export class SimStateSaver implements StateSaver {
  /** The dirty log; SimDevice marks pages in it while the saver is attached. */
  readonly tracker: DirtyTracker;
  private readonly geometry: StateGeometry;
  private readonly seed: number;
  private readonly pages: PageGenerator;
  private readonly checksum = new Checksum64();
  private currentPhase: 'precopy' | 'stopcopy' = 'precopy';

  // The item being sent: `meta` bytes (header, record prefix or trailer), then, for a record, the page body.
  private readonly meta = new Uint8Array(STATE_TRAILER_BYTES);
  private metaLength = 0;
  private metaSent = 0;
  private page = -1;
  private pageGen = 0;
  private pageLength = 0;
  private pageSent = 0;
  private part: Part = 'first-pass';

  private headerStarted = false;
  private trailerStarted = false;
  private nextFirstPassPage = 0;
  private records = 0;
  private firstPassLeft: number;
  private dirtyInFlight = 0;
  private trailerLeft = STATE_TRAILER_BYTES;
  private closedBecause: string | null = null;

  constructor(private readonly device: SimDevice) {
    this.geometry = device.geometry;
    this.seed = device.seed;
    this.pages = new PageGenerator(this.geometry.pageSize);
    this.tracker = new DirtyTracker(this.geometry);
    this.firstPassLeft = STATE_HEADER_BYTES + this.geometry.recordBytesFrom(0);
  }

  get phase(): 'precopy' | 'stopcopy' {
    return this.currentPhase;
  }

  /** The trailer has been read: the stream is complete. */
  get finished(): boolean {
    return this.trailerStarted && this.trailerLeft === 0;
  }

  read(buf: Uint8Array): number {
    if (this.closedBecause) throw new MigrationError('ENODEV', `saver closed: ${this.closedBecause}`);
    let at = 0;
    while (at < buf.length) {
      if (this.metaSent === this.metaLength && this.page < 0 && !this.startNextItem()) break;
      if (this.metaSent < this.metaLength) {
        const n = Math.min(this.metaLength - this.metaSent, buf.length - at);
        buf.set(this.meta.subarray(this.metaSent, this.metaSent + n), at);
        this.metaSent += n;
        at += n;
        this.account(n);
        continue;
      }
      const n = Math.min(this.pageLength - this.pageSent, buf.length - at);
      this.pages.fill(buf.subarray(at, at + n), this.seed, this.page, this.pageGen, this.pageSent);
      this.pageSent += n;
      at += n;
      this.account(n);
      if (this.pageSent === this.pageLength) this.page = -1;
    }
    if (this.finished) this.device.detachSaver(this);
    return at;
  }

  precopyInfo(): PrecopyInfo {
    return { initialBytes: BigInt(this.firstPassLeft), dirtyBytes: BigInt(this.tracker.dirtyBytes + this.dirtyInFlight) };
  }

  enterStopCopy(): void {
    this.currentPhase = 'stopcopy';
    this.tracker.frozen = true;
  }

  remainingBytes(): bigint {
    return BigInt(this.firstPassLeft + this.tracker.dirtyBytes + this.dirtyInFlight + this.trailerLeft);
  }

  /** End this saving session early: dirty tracking stops, later reads fail with ENODEV. */
  close(reason = 'closed'): void {
    if (!this.closedBecause) this.closedBecause = reason;
    this.device.detachSaver(this);
  }

  private account(n: number): void {
    if (this.part === 'first-pass') this.firstPassLeft -= n;
    else if (this.part === 'dirty') this.dirtyInFlight -= n;
    else this.trailerLeft -= n;
  }

  private startNextItem(): boolean {
    if (!this.headerStarted) {
      this.headerStarted = true;
      const g = this.geometry;
      writeHeader(this.meta, { size: g.size, pageSize: g.pageSize, seed: this.seed, pageCount: g.pageCount });
      addWords(this.checksum, this.meta.subarray(0, STATE_HEADER_BYTES));
      this.startMeta(STATE_HEADER_BYTES, 'first-pass');
      return true;
    }
    if (this.nextFirstPassPage < this.geometry.pageCount) {
      const index = this.nextFirstPassPage++;
      this.tracker.boundary = this.nextFirstPassPage;
      this.startRecord(index, 'first-pass');
      return true;
    }
    const dirty = this.tracker.takeNext();
    if (dirty >= 0) {
      this.dirtyInFlight = this.geometry.recordBytes(dirty);
      this.startRecord(dirty, 'dirty');
      return true;
    }
    if (this.currentPhase === 'stopcopy' && !this.trailerStarted) {
      this.trailerStarted = true;
      writeTrailer(this.meta, this.records, this.device.steps, 0n);
      addWords(this.checksum, this.meta.subarray(0, 24));
      writeTrailer(this.meta, this.records, this.device.steps, this.checksum.value());
      this.startMeta(STATE_TRAILER_BYTES, 'trailer');
      return true;
    }
    return false;
  }

  private startRecord(index: number, part: Part): void {
    const gen = this.device.generation(index);
    writeRecordHeader(this.meta, index, gen);
    this.checksum.add(index);
    this.checksum.add(gen);
    this.records++;
    this.startMeta(8, part);
    this.page = index;
    this.pageGen = gen;
    this.pageLength = this.geometry.pageLength(index);
    this.pageSent = 0;
  }

  private startMeta(length: number, part: Part): void {
    this.metaLength = length;
    this.metaSent = 0;
    this.part = part;
  }
}
