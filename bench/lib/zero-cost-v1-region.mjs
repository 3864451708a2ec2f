// A bench-only v1 migration region (the public LegacyRegion contract) whose
// data costs nothing: the window is filled with the stream pattern once, at
// construction, and a saving iteration publishes it as it is (no copy, no
// generation); a resume checks each handed-over chunk by count and samples.
// So a benchmark over it measures the v1 user (and a translator in front)
// alone. It keeps the v1 register rules a translator relies on: header fields
// at native width only, data_offset as the trigger, data_size frozen within an
// iteration, pending_bytes 0 only at the end of stop-and-copy, the window
// writable only in RESUMING, leaving RESUMING fails (EINVAL) on an incomplete
// or altered stream. No calls are queued: a real driver's lock costs more.
import { classifyV1Access, MigrationError, V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, v1IsValid } from '../../dist/index.js';
import { looksLikePattern, PATTERN_PERIOD, patternBytes } from './pattern.mjs';

const DATA_OFFSET = 4096;

export class ZeroCostV1Region {
  /**
   * @param {number} streamBytes bytes one save produces and one resume must receive
   * @param {number} windowSize a multiple of the pattern period (64 KiB)
   */
  constructor(streamBytes, windowSize) {
    if (windowSize % PATTERN_PERIOD !== 0)
      throw new MigrationError('EINVAL', `window ${windowSize} is not a multiple of ${PATTERN_PERIOD}`);
    this.streamBytes = streamBytes;
    this.windowSize = windowSize;
    this.size = DATA_OFFSET + windowSize;
    this.pattern = patternBytes(windowSize);
    this.window = Buffer.from(this.pattern);
    this.windowDirty = false;
    this.state = V1_RUNNING;
    this.closed = false;
    this.dropStreams();
  }

  async readAt(offset, buf) {
    const at = this.access(offset, buf.length);
    if (at.kind === 'window') {
      buf.set(this.window.subarray(at.start, at.start + at.length));
      return;
    }
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    switch (at.field) {
      case 'device_state':
        return view.setUint32(0, this.state, true);
      case 'reserved':
        return view.setUint32(0, 0, true);
      case 'pending_bytes':
        return view.setBigUint64(0, BigInt(this.pendingBytes()), true);
      case 'data_offset':
        this.trigger();
        return view.setBigUint64(0, BigInt(DATA_OFFSET), true);
      case 'data_size':
        return view.setBigUint64(0, BigInt(this.resuming ? this.resumeSize : this.chunk), true);
    }
  }

  async writeAt(offset, data) {
    const at = this.access(offset, data.length);
    if (at.kind === 'window') {
      if ((this.state & V1_MASK) !== V1_RESUMING) throw new MigrationError('EINVAL', 'the window is written only in RESUMING');
      this.window.set(data, at.start);
      this.windowDirty = true;
      return;
    }
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    switch (at.field) {
      case 'device_state':
        return this.writeState(view.getUint32(0, true));
      case 'data_size':
        return this.handOver(Number(view.getBigUint64(0, true)));
      case 'reserved':
        return;
      default:
        throw new MigrationError('EINVAL', `${at.field} is read-only`);
    }
  }

  async reset() {
    this.checkOpen();
    this.dropStreams();
    this.state = V1_RUNNING;
  }

  async close() {
    this.closed = true;
    this.dropStreams();
  }

  access(offset, length) {
    this.checkOpen();
    return classifyV1Access(offset, length, DATA_OFFSET, this.size);
  }

  /** Closes the previous iteration; 0 only when stop-and-copy has sent everything (nothing early in pre-copy). */
  pendingBytes() {
    if (!this.saving) return 0;
    this.sent += this.chunk;
    this.chunk = 0;
    this.chunkOpen = false;
    return this.state & V1_RUNNING ? 0 : this.streamBytes - this.sent;
  }

  /** data_offset: the next chunk is the window as filled at construction (chunks start window-aligned). */
  trigger() {
    if (!this.saving || this.chunkOpen) return;
    if (this.windowDirty) this.window.set(this.pattern); // a resume wrote over it
    this.windowDirty = false;
    this.chunkOpen = true;
    this.chunk = this.state & V1_RUNNING ? 0 : Math.min(this.windowSize, this.streamBytes - this.sent);
  }

  handOver(n) {
    if (!this.resuming) throw new MigrationError('EINVAL', 'data_size is written only in RESUMING');
    if (n > this.windowSize) throw new MigrationError('EINVAL', `data_size ${n} exceeds the window`);
    if (!looksLikePattern(this.window.subarray(0, n), this.received)) this.intact = false;
    this.received += n;
    this.resumeSize = n;
  }

  writeState(to) {
    const from = this.state & V1_MASK;
    const t = to & V1_MASK;
    if (!v1IsValid(to) || t === (V1_SAVING | V1_RESUMING)) throw new MigrationError('EINVAL', `device_state ${t} is not a state to write`);
    if (from === V1_RESUMING && t !== V1_RESUMING) {
      if (!this.intact || this.received !== this.streamBytes) {
        throw new MigrationError(
          'EINVAL',
          `resume data rejected: ${this.received} of ${this.streamBytes} bytes${this.intact ? '' : ', altered'}`,
        );
      }
      this.dropStreams();
    }
    if (!(t & V1_SAVING)) this.saving = false;
    else if (!this.saving) {
      this.dropStreams();
      this.saving = true;
    }
    if (t === V1_RESUMING && from !== V1_RESUMING) {
      this.dropStreams();
      this.resuming = true;
    }
    this.state = to >>> 0;
  }

  dropStreams() {
    this.saving = false;
    this.sent = 0;
    this.chunk = 0;
    this.chunkOpen = false;
    this.resuming = false;
    this.received = 0;
    this.resumeSize = 0;
    this.intact = true;
  }

  checkOpen() {
    if (this.closed) throw new MigrationError('EBADF', 'region is closed');
  }
}
