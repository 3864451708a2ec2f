// SimDevice: simulated device state of any size (GiBs) that allocates almost
// nothing. Every page's bytes are generated from (seed, page index,
// generation), so the whole state is the seed plus one u32 generation per
// page (8 MiB for 8 GiB at 4 KiB pages), on the source and, after a resume,
// on the destination. Device work (`step`) bumps the generation of
// pseudo-random pages, only while a driver has the device running.
import { createHash } from 'node:crypto';
import { MigrationError } from '../uapi/errors.js';
import { LITTLE_ENDIAN_HOST, mix32, PageGenerator } from './page-generator.js';
import { StateGeometry } from './state-geometry.js';
import { SimStateLoader } from './state-loader.js';
import { SimStateSaver } from './state-saver.js';

export interface SimDeviceOptions {
  /** State size in bytes (any positive safe integer). */
  size: number;
  /** Initial content and the sequence of pages `step` dirties: 0 .. 2^32-1. */
  seed: number;
  /** Default 4096; a multiple of 8. */
  pageSize?: number;
}

export class SimDevice {
  readonly geometry: StateGeometry;
  /** Set by the driver from its state: only a running device does work. */
  running = false;
  private currentSeed: number;
  private generations: Uint32Array;
  private stepCount = 0;
  private saver: SimStateSaver | null = null;
  private readonly reader: PageGenerator;

  constructor(options: SimDeviceOptions) {
    const { size, seed, pageSize = 4096 } = options;
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
      throw new MigrationError('EINVAL', `seed must be an integer 0..2^32-1, got ${seed}`);
    this.geometry = new StateGeometry(size, pageSize);
    this.currentSeed = seed;
    this.generations = new Uint32Array(this.geometry.pageCount);
    this.reader = new PageGenerator(pageSize);
  }

  get size(): number {
    return this.geometry.size;
  }

  get pageSize(): number {
    return this.geometry.pageSize;
  }

  get pageCount(): number {
    return this.geometry.pageCount;
  }

  /** The seed of the current content (a resume adopts the source's). */
  get seed(): number {
    return this.currentSeed;
  }

  /** Units of work done so far (part of the device state: a resume carries it over). */
  get steps(): number {
    return this.stepCount;
  }

  generation(page: number): number {
    return this.generations[page];
  }

  /**
   * Do `n` units of work: each bumps the generation of one page chosen from
   * (seed, step counter). Does nothing while the device is not running.
   * Returns the units done.
   */
  step(n = 1): number {
    if (!this.running) return 0;
    const count = this.geometry.pageCount;
    for (let i = 0; i < n; i++) {
      const k = this.stepCount++;
      const page = mix32(mix32(this.currentSeed ^ 0x1b873593) ^ mix32(k % 0x100000000) ^ Math.floor(k / 0x100000000)) % count;
      this.generations[page] = (this.generations[page] + 1) >>> 0;
      this.saver?.tracker.mark(page);
    }
    return n;
  }

  /** The device's bytes [offset, offset + buf.length) into buf. */
  readBytes(offset: number, buf: Uint8Array): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + buf.length > this.size) {
      throw new MigrationError('EINVAL', `range [${offset}, ${offset + buf.length}) outside a ${this.size}-byte device`);
    }
    let at = 0;
    while (at < buf.length) {
      const page = Math.floor((offset + at) / this.pageSize);
      const within = offset + at - page * this.pageSize;
      const n = Math.min(this.geometry.pageLength(page) - within, buf.length - at);
      this.reader.fill(buf.subarray(at, at + n), this.currentSeed, page, this.generations[page], within);
      at += n;
    }
  }

  /**
   * SHA-256 (hex) of the whole state. Hashes size, page size, seed and the
   * generation array: together they determine every byte (page bytes are a
   * function of seed, index and generation), so equal fingerprints mean equal
   * bytes and any change to a byte changes a generation. O(pages), not O(bytes).
   */
  fingerprint(): string {
    const head = new DataView(new ArrayBuffer(24));
    head.setBigUint64(0, BigInt(this.size), true);
    head.setUint32(8, this.pageSize, true);
    head.setUint32(12, this.currentSeed, true);
    head.setBigUint64(16, BigInt(this.pageCount), true);
    const hash = createHash('sha256').update('vfio-mig-shim SimDevice state v1\n').update(new Uint8Array(head.buffer));
    hash.update(LITTLE_ENDIAN_HOST ? new Uint8Array(this.generations.buffer) : littleEndianCopy(this.generations));
    return hash.digest('hex');
  }

  /** Stream length if every page were sent once (what a fresh stop-copy produces). */
  fullStreamBytes(): bigint {
    return BigInt(this.geometry.fullStreamBytes);
  }

  /**
   * Start a saving stream. The device logs dirty pages for one saver at a
   * time: a new saver closes the previous one (its reads fail with ENODEV).
   */
  createSaver(): SimStateSaver {
    this.saver?.close('superseded by a new saver');
    this.saver = new SimStateSaver(this);
    return this.saver;
  }

  /** Start a resuming stream; the device changes only when its finish() succeeds. */
  createLoader(): SimStateLoader {
    return new SimStateLoader(this);
  }

  /** Used by SimStateSaver when its stream ends or it is closed. */
  detachSaver(saver: SimStateSaver): void {
    if (this.saver === saver) this.saver = null;
  }

  /** Used by SimStateLoader.finish(): take over a validated state (the array is owned from now on). */
  adoptState(seed: number, generations: Uint32Array, steps: number): void {
    if (generations.length !== this.pageCount) throw new MigrationError('EINVAL', 'generation array does not fit the device');
    this.currentSeed = seed >>> 0;
    this.generations = generations;
    this.stepCount = steps;
    this.saver?.close('device state replaced by a resume');
  }
}

function littleEndianCopy(words: Uint32Array): Uint8Array {
  const out = new Uint8Array(words.length * 4);
  const view = new DataView(out.buffer);
  words.forEach((w, i) => view.setUint32(i * 4, w, true));
  return out;
}
