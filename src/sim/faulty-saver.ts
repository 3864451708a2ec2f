// A StateSaver seen through the stream faults of a FaultPlan: the stream
// ends after `truncateStreamAt` bytes (pre-copy then has nothing more,
// stop-copy reads end of stream) and one bit of byte `corruptStreamAt` is
// flipped (once). Offsets count from the start of this saving stream. Both
// simulated drivers save through it: SimV2Session (v2) and SimV1Region (v1).
import type { PrecopyInfo } from '../v2/contracts.js';
import type { StreamFaults } from './fault-injector.js';
import type { StateSaver } from './state-stream.js';

const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);

export class FaultySaver implements StateSaver {
  private position = 0;
  private readonly faults: StreamFaults = {};

  constructor(
    private readonly saver: StateSaver,
    faults: StreamFaults = {},
  ) {
    this.bind(faults);
  }

  /** Add faults armed while this stream is open. */
  bind(faults: StreamFaults): void {
    if (faults.truncateStreamAt !== undefined) this.faults.truncateStreamAt = faults.truncateStreamAt;
    if (faults.corruptStreamAt !== undefined) this.faults.corruptStreamAt = faults.corruptStreamAt;
  }

  get phase(): 'precopy' | 'stopcopy' {
    return this.saver.phase;
  }

  /** Stream bytes handed out so far. */
  get bytesRead(): number {
    return this.position;
  }

  read(buf: Uint8Array): number {
    const room = Math.min(buf.length, this.left() ?? buf.length);
    if (room === 0) return 0;
    const n = this.saver.read(room === buf.length ? buf : buf.subarray(0, room));
    const flip = this.faults.corruptStreamAt;
    if (flip !== undefined && flip >= this.position && flip < this.position + n) {
      buf[flip - this.position] ^= 0x01;
      delete this.faults.corruptStreamAt;
    }
    this.position += n;
    return n;
  }

  precopyInfo(): PrecopyInfo {
    const info = this.saver.precopyInfo();
    const left = this.left();
    if (left === undefined) return info;
    const initialBytes = min(info.initialBytes, BigInt(left));
    return { initialBytes, dirtyBytes: min(info.dirtyBytes, BigInt(left) - initialBytes) };
  }

  enterStopCopy(): void {
    this.saver.enterStopCopy();
  }

  remainingBytes(): bigint {
    const r = this.saver.remainingBytes();
    const left = this.left();
    return left === undefined ? r : min(r, BigInt(left));
  }

  private left(): number | undefined {
    const cut = this.faults.truncateStreamAt;
    return cut === undefined ? undefined : Math.max(0, cut - this.position);
  }
}
