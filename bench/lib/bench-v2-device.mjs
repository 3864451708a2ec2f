// A bench-only v2 migration device (the public MigrationDevice contract) with
// flags STOP_COPY, whose data sessions come from a stream source: the
// zero-cost one (zero-cost-streams.mjs: memcpy from a pre-filled buffer) or a
// kernel pipe served by another process (pipe-streams.mjs). The state machine
// is the kernel's (nextState, one arc at a time, only STOP -> STOP_COPY and
// STOP -> RESUMING open a session, RESUMING -> STOP validates and fails with
// EINVAL leaving the device in RESUMING); sessions the device ended answer
// ENODEV, closed ones EBADF, as a kernel migration file does. No calls are
// queued: the device adds no cost of its own beyond one promise per call.
import { MigFlags, MigrationError, MigState, nextState } from '../../dist/index.js';

const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS } = MigState;

/**
 * What a stream source gives one session:
 *   saving():   { read(buf): number, remaining(): number }
 *   resuming(): { write(buf): number, finish(): void | Promise<void> }  (finish throws to reject the data)
 * plus `streamBytes`, the length of a full stream.
 */
export class BenchV2Device {
  constructor(source) {
    this.source = source;
    this.state = R;
    this.session = null;
    this.closed = false;
  }

  async migrationFlags() {
    this.checkOpen();
    return MigFlags.STOP_COPY;
  }

  async getState() {
    this.checkOpen();
    return this.state;
  }

  async setState(target) {
    this.checkOpen();
    let opened = null;
    while (this.state !== target) {
      const next = nextState(this.state, target, MigFlags.STOP_COPY);
      opened = await this.arc(this.state, next);
      this.state = next;
    }
    return opened;
  }

  async stopCopySize() {
    this.checkOpen();
    return BigInt(this.session?.saving ? this.session.stream.remaining() : this.source.streamBytes);
  }

  async reset() {
    this.checkOpen();
    this.endSession();
    this.state = R;
  }

  async close() {
    this.checkOpen();
    this.endSession();
    this.closed = true;
  }

  async arc(cur, next) {
    if (cur === S && next === SC) return this.open(new BenchSession(this.source.saving(), true));
    if (cur === S && next === RS) return this.open(new BenchSession(this.source.resuming(), false));
    if (cur === RS) await this.session.stream.finish(); // throws: the SET fails, still RESUMING
    if (cur === SC || cur === RS) this.endSession();
    return null;
  }

  open(session) {
    this.endSession();
    this.session = session;
    return session;
  }

  endSession() {
    if (this.session) this.session.ended = true;
    this.session = null;
  }

  checkOpen() {
    if (this.closed) throw new MigrationError('EBADF', 'device is closed');
  }
}

class BenchSession {
  constructor(stream, saving) {
    this.stream = stream;
    this.saving = saving;
    this.ended = false;
    this.closed = false;
  }

  async read(buf) {
    this.check(this.saving);
    return this.stream.read(buf);
  }

  async write(buf) {
    this.check(!this.saving);
    return this.stream.write(buf);
  }

  async precopyInfo() {
    throw new MigrationError('EINVAL', 'no PRE_COPY on this device');
  }

  async close() {
    if (this.closed) throw new MigrationError('EBADF', 'data session already closed');
    this.closed = true;
  }

  check(rightWay) {
    if (this.closed || !rightWay) throw new MigrationError('EBADF', 'data session is closed or the wrong way');
    if (this.ended) throw new MigrationError('ENODEV', 'data session ended by the device');
  }
}
