/**
 * The migration file both clients write and read (v1-client.ts and
 * v2-client.ts beside it), so a state saved over one protocol loads over
 * the other. It is QEMU's "vfio" savevm section payload (docs/PROTOCOL.md §2.7, the same
 * in QEMU 7.2 and 8-10, hw/vfio/migration.c) behind a file magic; every
 * integer is big-endian 64-bit:
 *
 *   file    := MAGIC setup section* final
 *   MAGIC   := be64 0x5646494f4d494731 ("VFIOMIG1")   (stands in for QEMU's outer QEVM framing)
 *   setup   := DEV_SETUP_STATE END_OF_STATE             (vfio_save_setup)
 *   section := data* END_OF_STATE                       (vfio_save_iterate / vfio_save_complete_precopy)
 *            | data* DEV_INIT_DATA_SENT                 (QEMU >= 8.1 switchover-ack; accepted, never written here)
 *   data    := DEV_DATA_STATE be64 n, then n opaque device bytes (vfio_save_block); n may be 0 (v1 QEMU)
 *   final   := DEV_CONFIG_STATE END_OF_STATE            (vfio_save_state with no config-space payload) ends the file
 *
 * The opaque bytes are whatever the device's data_fd produced, concatenated
 * in order; their segmentation into `data` records carries no meaning.
 */
import { MigrationError } from '../../src/uapi/errors.js';

/** VFIO_MIG_FLAG_* markers (QEMU hw/vfio/migration.c). */
export const VfioMigFlag = {
  END_OF_STATE: 0xffffffffef100001n,
  DEV_CONFIG_STATE: 0xffffffffef100002n,
  DEV_SETUP_STATE: 0xffffffffef100003n,
  DEV_DATA_STATE: 0xffffffffef100004n,
  DEV_INIT_DATA_SENT: 0xffffffffef100005n,
} as const;

/** "VFIOMIG1" read as a big-endian u64: the first 8 bytes of every migration file. */
export const MIG_STREAM_MAGIC = 0x5646494f4d494731n;

/** Bytes of the DEV_DATA_STATE + size prefix in front of each data record. */
export const MIG_STREAM_DATA_HEADER_BYTES = 16;

function be64(values: readonly bigint[]): Uint8Array {
  const out = new Uint8Array(values.length * 8);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setBigUint64(i * 8, v));
  return out;
}

/** MAGIC + the setup section: what a client writes first. */
export function encodeStreamStart(): Uint8Array {
  return be64([MIG_STREAM_MAGIC, VfioMigFlag.DEV_SETUP_STATE, VfioMigFlag.END_OF_STATE]);
}

/** One marker, e.g. END_OF_STATE to close a section. */
export function encodeMarker(tag: bigint): Uint8Array {
  return be64([tag]);
}

/** DEV_DATA_STATE + n, written into `into` (16 bytes) or a new array. */
export function encodeDataHeader(n: number, into: Uint8Array = new Uint8Array(MIG_STREAM_DATA_HEADER_BYTES)): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new MigrationError('EINVAL', `bad data record size ${n}`);
  const view = new DataView(into.buffer, into.byteOffset, MIG_STREAM_DATA_HEADER_BYTES);
  view.setBigUint64(0, VfioMigFlag.DEV_DATA_STATE);
  view.setBigUint64(8, BigInt(n));
  return into;
}

/** The final section: what a client writes last. */
export function encodeStreamEnd(): Uint8Array {
  return be64([VfioMigFlag.DEV_CONFIG_STATE, VfioMigFlag.END_OF_STATE]);
}

export type MigStreamEvent =
  | { kind: 'setup' }
  /** Device bytes, in order; one record may arrive as several pieces (views into the input chunk). */
  | { kind: 'data'; bytes: Uint8Array }
  | { kind: 'end-of-state' }
  | { kind: 'init-data-sent' }
  /** The final section was read: the file is complete. */
  | { kind: 'complete' };

type Expect = 'magic' | 'setup-tag' | 'setup-end' | 'tag' | 'size' | 'payload' | 'config-end' | 'done';

/**
 * Push parser for the format above: feed input chunks of any size; yields
 * events whose data pieces are views into the chunk just pushed (valid until
 * the next push). Malformed input is EINVAL; input that ends before the final
 * section is EIO (as QEMU's qemu-file reports a short read).
 */
export class MigStreamDecoder {
  private expect: Expect = 'magic';
  private readonly word = new Uint8Array(8);
  private wordFill = 0;
  private payloadLeft = 0;
  private consumed = 0;
  /** Data records since the last END_OF_STATE: the final section may only start a section. */
  private sectionHasData = false;

  /** Bytes of input accepted so far. */
  get bytesConsumed(): number {
    return this.consumed;
  }

  get complete(): boolean {
    return this.expect === 'done';
  }

  *push(chunk: Uint8Array): Generator<MigStreamEvent> {
    let at = 0;
    while (at < chunk.length) {
      if (this.expect === 'done') {
        throw new MigrationError('EINVAL', `${chunk.length - at} bytes after the end of the migration stream`);
      }
      if (this.expect === 'payload') {
        const n = Math.min(this.payloadLeft, chunk.length - at);
        const piece = chunk.subarray(at, at + n);
        at += n;
        this.consumed += n;
        this.payloadLeft -= n;
        if (this.payloadLeft === 0) this.expect = 'tag';
        yield { kind: 'data', bytes: piece };
        continue;
      }
      const n = Math.min(8 - this.wordFill, chunk.length - at);
      this.word.set(chunk.subarray(at, at + n), this.wordFill);
      this.wordFill += n;
      at += n;
      this.consumed += n;
      if (this.wordFill < 8) break;
      this.wordFill = 0;
      const value = new DataView(this.word.buffer).getBigUint64(0);
      const event = this.onWord(value);
      if (event) yield event;
    }
  }

  /** The input has ended: EIO unless the final section was read. */
  end(): void {
    if (this.expect !== 'done') {
      throw new MigrationError('EIO', `migration stream ended early (${this.consumed} bytes, expecting ${this.expect})`);
    }
  }

  private onWord(value: bigint): MigStreamEvent | undefined {
    const hex = `0x${value.toString(16)}`;
    switch (this.expect) {
      case 'magic':
        if (value !== MIG_STREAM_MAGIC) throw new MigrationError('EINVAL', `not a migration stream (magic ${hex})`);
        this.expect = 'setup-tag';
        return undefined;
      case 'setup-tag':
        if (value !== VfioMigFlag.DEV_SETUP_STATE) throw new MigrationError('EINVAL', `expected DEV_SETUP_STATE, got ${hex}`);
        this.expect = 'setup-end';
        return { kind: 'setup' };
      case 'setup-end':
        if (value !== VfioMigFlag.END_OF_STATE) throw new MigrationError('EINVAL', `expected END_OF_STATE after setup, got ${hex}`);
        this.expect = 'tag';
        return { kind: 'end-of-state' };
      case 'config-end':
        if (value !== VfioMigFlag.END_OF_STATE) throw new MigrationError('EINVAL', `config payloads are not supported (got ${hex})`);
        this.expect = 'done';
        return { kind: 'complete' };
      case 'size':
        if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new MigrationError('EINVAL', `data record size ${value} too large`);
        this.payloadLeft = Number(value);
        this.sectionHasData = true;
        this.expect = this.payloadLeft > 0 ? 'payload' : 'tag';
        return undefined;
      case 'tag':
        switch (value) {
          case VfioMigFlag.DEV_DATA_STATE:
            this.expect = 'size';
            return undefined;
          case VfioMigFlag.END_OF_STATE:
            this.sectionHasData = false;
            return { kind: 'end-of-state' };
          case VfioMigFlag.DEV_INIT_DATA_SENT:
            this.sectionHasData = false;
            return { kind: 'init-data-sent' };
          case VfioMigFlag.DEV_CONFIG_STATE:
            if (this.sectionHasData) throw new MigrationError('EINVAL', 'DEV_CONFIG_STATE inside an unfinished data section');
            this.expect = 'config-end';
            return undefined;
          default:
            throw new MigrationError('EINVAL', `unknown marker ${hex} in migration stream`);
        }
      default:
        throw new MigrationError('EINVAL', `unexpected word ${hex}`);
    }
  }
}
