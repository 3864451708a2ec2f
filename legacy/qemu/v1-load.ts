// QEMU 7.2's load side for one VFIO device with a v1 migration region
// (hw/vfio/migration.c, docs/PROTOCOL.md §2.6): vfio_load_state reads the
// device's section; each data record goes through vfio_load_buffer, which
// splits it to the destination's window: pread data_offset, write at most
// (region size - data_offset) bytes there, pwrite data_size.
import { MigrationError } from '../../src/uapi/errors.js';
import type { LegacyRegion } from '../contracts.js';
import { HEADER_SIZE } from '../region-layout.js';
import { readU64Field, writeU64Field } from '../v1-registers.js';
import { MigStreamDecoder } from './stream-format.js';
import { writeV1Window, type V1WindowAccess } from './v1-window-io.js';

export interface V1LoadResult {
  /** Device bytes written through the window. */
  deviceBytes: number;
  /** data_size writes. */
  chunks: number;
}

export class V1Load {
  readonly result: V1LoadResult = { deviceBytes: 0, chunks: 0 };
  /** The window being filled: its region offset, its size, and how much of it is filled. */
  private dataOffset = 0;
  private room = 0;
  private fill = 0;
  /** Trapped windows only: the bytes staged for the window (mapped ones are written in place). */
  private staging: Uint8Array | null = null;
  /** A window is being filled (data_offset was read for it). */
  private open = false;

  constructor(
    private readonly region: LegacyRegion,
    private readonly access: V1WindowAccess,
    private readonly progress: () => void,
  ) {}

  /**
   * vfio_load_state over the whole input: data records go to the device in
   * windows (vfio_load_buffer); any other section closes the open window.
   * Pieces of one record are contiguous in the input; a new record has its
   * 16-byte header in between, so it starts a new window.
   */
  async vfioLoadState(input: AsyncIterable<unknown>): Promise<void> {
    const decoder = new MigStreamDecoder();
    let recordEnd = -1; // input offset just past the last data piece taken
    for await (const chunk of input) {
      if (!(chunk instanceof Uint8Array))
        throw new MigrationError('EINVAL', 'migration input must be a byte stream (no encoding, not object mode)');
      for (const event of decoder.push(chunk)) {
        if (event.kind === 'data') {
          const sameRecord = decoder.bytesConsumed - event.bytes.length === recordEnd;
          recordEnd = decoder.bytesConsumed;
          if (!sameRecord) await this.closeWindow();
          await this.vfioLoadBuffer(event.bytes);
          continue;
        }
        await this.closeWindow();
        // QEMU 7.2 knows no DEV_INIT_DATA_SENT (v2 switchover-ack): an unknown tag.
        if (event.kind === 'init-data-sent') throw new MigrationError('EINVAL', 'unknown marker DEV_INIT_DATA_SENT for QEMU 7.2');
      }
    }
    decoder.end();
  }

  /**
   * vfio_load_buffer, one window at a time: the bytes fill windows, each
   * handed over when full. Through the mapped window QEMU reads the stream
   * straight into it (qemu_get_buffer into the mmap); trapped, it reads the
   * section into a buffer first and vfio_mig_write()s it in pieces.
   */
  private async vfioLoadBuffer(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length;) {
      if (!this.open) await this.openWindow();
      const n = Math.min(this.room - this.fill, bytes.length - at);
      const piece = bytes.subarray(at, at + n);
      if (this.staging) this.staging.set(piece, this.fill);
      else await this.region.writeAt(this.dataOffset + this.fill, piece);
      this.fill += n;
      at += n;
      if (this.fill === this.room) await this.closeWindow();
    }
  }

  /** pread data_offset: where this window is; it takes at most region size - data_offset bytes. */
  private async openWindow(): Promise<void> {
    const off = await readU64Field(this.region, 'data_offset');
    if (off < BigInt(HEADER_SIZE) || off >= BigInt(this.region.size)) {
      throw new MigrationError('EINVAL', `data_offset ${off} outside the data section of a ${this.region.size}-byte region`);
    }
    this.dataOffset = Number(off);
    this.room = this.region.size - this.dataOffset;
    if (this.access === 'pieces' && this.staging?.length !== this.room) this.staging = new Uint8Array(this.room);
    this.fill = 0;
    this.open = true;
  }

  /** Write the staged bytes (trapped) at data_offset, then pwrite data_size: the device takes them. */
  private async closeWindow(): Promise<void> {
    if (!this.open) return;
    this.open = false;
    if (this.fill === 0) return;
    if (this.staging) await writeV1Window(this.region, this.dataOffset, this.staging.subarray(0, this.fill), this.access);
    await writeU64Field(this.region, 'data_size', BigInt(this.fill));
    this.result.deviceBytes += this.fill;
    this.result.chunks++;
    this.fill = 0;
    this.progress();
  }
}
