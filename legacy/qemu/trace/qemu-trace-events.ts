// QEMU 8+'s own VFIO migration trace events (hw/vfio/trace-events, the `log`
// trace backend Debian builds: `-trace enable=vfio_migration_* ... -D FILE
// -msg timestamp=on`) converted into the trace format (docs/trace-format.md),
// so a native v2 client's migration is a trace like the bridge's.
//
// A log line is `PID@SEC.USEC:EVENT  (DEVICE) ARGS` (without `-msg
// timestamp=on`: `EVENT  (DEVICE) ARGS`). QEMU traces some calls itself and
// not others; the rest follow from its code (hw/vfio/migration.c, 10.0) and
// are marked `derived: true`:
//  * vfio_migration_set_state NEW + vfio_migration_set_device_state NEW: a
//    SET that succeeded. set_state with NEW equal to the cached state: no
//    ioctl (QEMU returns early). set_state NEW followed by set_device_state
//    RECOVER: SET NEW failed and SET RECOVER succeeded; followed by RUNNING
//    with recover ERROR: SET NEW failed and the device was reset. QEMU's
//    trace has no errno for a failed SET (error_report prints it on stderr):
//    its result is 'failed'.
//  * the first SET PRE_COPY (recover RUNNING) is vfio_save_setup's: it is
//    preceded by VFIO_DEVICE_FEATURE MIG_DATA_SIZE and followed by
//    PRECOPY_INFO (vfio_query_stop_copy_size, vfio_query_precopy_size);
//    vfio_save_setup's own line (traced last) gives the read buffer size,
//    min(1 MiB, MIG_DATA_SIZE). Saving from STOP: MIG_DATA_SIZE at that line.
//  * vfio_state_pending_exact: MIG_DATA_SIZE (its stopcopy size), and
//    PRECOPY_INFO (its initial and dirty sizes) when the device is in
//    PRE_COPY or PRE_COPY_P2P (vfio_device_state_is_precopy).
//  * vfio_save_block N: a data_fd read of the buffer size that returned N
//    (traced only for N > 0). A vfio_save_iterate with no vfio_save_block
//    since the last one: a read that returned 0 (or ENOMSG: QEMU traces only
//    the first ENOMSG, vfio_save_block_precopy_empty_hit).
//    vfio_save_complete_precopy ret 0: the read that returned 0 and ended
//    the stop-copy loop.
//  * vfio_load_state_device_data size N: N bytes written to the data_fd
//    (qemu_file_get_to_fd writes what its buffer holds: one write unless the
//    chunk crosses the end of QEMU's 32 KiB file buffer, which the trace
//    cannot show).
//  * vfio_save_cleanup, vfio_load_cleanup: the data_fd closed.
//  * vfio_migration_realize: VFIO_DEVICE_FEATURE GET MIGRATION (the flags).
// Other events (vfio_vmstate_change, notifiers, estimates) are no device calls.
import { MigrationError } from '../../../src/uapi/errors.js';
import { isSavingState, MigState, parseState } from '../../../src/v2/states.js';
import { TRACE_FORMAT_VERSION, type TraceLine } from './trace-format.js';

export interface QemuTraceOptions {
  /** The QEMU that wrote the log. */
  client: { name: string; version?: string };
  /** What each device named in the log is (bus, type, driver), by its QEMU name. */
  devices?: Record<string, { bus?: string; type?: string; driver?: string }>;
}

interface LogLine {
  line: number;
  t: number | undefined;
  event: string;
  device: string;
  args: string;
}

const LINE = /^(?:\d+@(\d+)\.(\d+):)?(vfio_\w+)\s+\(([^)]*)\)\s?(.*)$/;

function parseLog(text: string): LogLine[] {
  const out: LogLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const m = LINE.exec(raw.trim());
    if (!m) return; // other log output (warnings, other trace events): not device calls
    const t = m[1] === undefined ? undefined : Number(m[1]) * 1000 + Number(m[2]) / 1000;
    out.push({ line: i + 1, t, event: m[3], device: m[4].trim(), args: m[5].trim() });
  });
  return out;
}

function stateArg(args: string, key: RegExp, l: LogLine): MigState {
  const m = key.exec(args);
  const s = m ? parseState(m[1]) : undefined;
  if (s === undefined) throw new MigrationError('EINVAL', `QEMU trace line ${l.line}: no state in '${l.event} ${args}'`);
  return s;
}

function numberArg(args: string, key: RegExp): number | undefined {
  const m = key.exec(args);
  return m ? Number(m[1]) : undefined;
}

interface DeviceState {
  dev: number;
  state: MigState;
  bufferSize: number | undefined;
  /** A SET whose outcome the next set_device_state tells. */
  pendingSet?: { next: MigState; recover: MigState; at: LogLine };
  /** vfio_save_block seen since the last iterate. */
  blockSinceIterate: boolean;
  sessionOpen: boolean;
  /** vfio_save_setup's SET PRE_COPY is done and its own line not yet seen. */
  inSetup: boolean;
  /** vfio_save_setup's MIG_DATA_SIZE line, whose answer its own line tells. */
  setupSize?: TraceLine;
}

/** Convert a QEMU trace-event log into trace lines (not yet normalised). */
export function convertQemuTrace(text: string, options: QemuTraceOptions): TraceLine[] {
  const log = parseLog(text);
  const origin = log.find((l) => l.t !== undefined)?.t ?? 0;
  const out: TraceLine[] = [];
  const devices = new Map<string, DeviceState>();
  let at: LogLine = log[0];
  const emit = (ev: string, fields: Record<string, unknown>) => {
    out.push({
      v: TRACE_FORMAT_VERSION,
      t: at?.t === undefined ? 0 : Math.round((at.t - origin) * 1000) / 1000,
      ev,
      ...fields,
    } as TraceLine);
  };
  emit('start', { source: 'qemu trace events' });
  emit('client', { ...options.client });

  const deviceOf = (l: LogLine): DeviceState => {
    let d = devices.get(l.device);
    if (!d) {
      d = {
        dev: devices.size + 1,
        state: MigState.RUNNING,
        bufferSize: undefined,
        blockSinceIterate: false,
        sessionOpen: false,
        inSetup: false,
      };
      devices.set(l.device, d);
      emit('device', { dev: d.dev, name: l.device, protocol: 'v2', ...options.devices?.[l.device] });
    }
    return d;
  };
  const call = (d: DeviceState, name: string, fields: Record<string, unknown> = {}, derived = true): TraceLine => {
    emit('v2', { dev: d.dev, call: name, ...fields, result: fields.result ?? 'ok', ...(derived ? { derived: true } : {}) });
    return out[out.length - 1];
  };
  const read = (d: DeviceState, result: string, ret?: number) =>
    emit('data', {
      dev: d.dev,
      op: 'read',
      ...(d.bufferSize === undefined ? {} : { size: d.bufferSize }),
      result,
      ...(ret === undefined ? {} : { ret }),
      derived: true,
    });

  /** A SET reached the device and succeeded: the state, and the data_fd a new saving or resuming session brings. */
  const setOk = (d: DeviceState, next: MigState) => {
    const opens = (isSavingState(next) && !isSavingState(d.state)) || (next === MigState.RESUMING && d.state !== MigState.RESUMING);
    if (next === MigState.PRE_COPY && d.pendingSet?.recover === MigState.RUNNING && !d.sessionOpen) {
      d.setupSize = call(d, 'stopCopySize'); // vfio_save_setup: vfio_query_stop_copy_size before the SET
      d.inSetup = true;
    }
    call(d, 'setState', { arg: MigState[next], ...(opens ? { ret: 'session' } : {}) }, false);
    if (opens) d.sessionOpen = true;
    d.state = next;
    if (d.inSetup) call(d, 'precopyInfo'); // vfio_save_setup: vfio_query_precopy_size after it
  };

  /** The outcome of the SET in flight, told by the next vfio_migration_set_device_state (or by its absence). */
  const settle = (d: DeviceState, told: MigState | undefined) => {
    const p = d.pendingSet;
    if (!p) return;
    if (told === p.next) {
      setOk(d, p.next);
    } else {
      call(d, 'setState', { arg: MigState[p.next], result: 'failed' }, false);
      if (told !== undefined && told === p.recover && p.recover !== MigState.ERROR) {
        setOk(d, p.recover);
      } else {
        if (p.recover !== MigState.ERROR) call(d, 'setState', { arg: MigState[p.recover], result: 'failed' }, false);
        call(d, 'reset');
        d.state = MigState.RUNNING;
        d.sessionOpen = false;
      }
    }
    d.pendingSet = undefined;
  };

  for (const l of log) {
    at = l;
    const d = deviceOf(l);
    if (d.pendingSet && l.event !== 'vfio_migration_set_device_state') settle(d, undefined);
    switch (l.event) {
      case 'vfio_migration_realize':
        call(d, 'migrationFlags');
        break;
      case 'vfio_migration_set_state': {
        const next = stateArg(l.args, /new state (\w+)/, l);
        const recover = stateArg(l.args, /recover state (\w+)/, l);
        if (next !== d.state) d.pendingSet = { next, recover, at: l }; // equal: QEMU returns before the ioctl
        break;
      }
      case 'vfio_migration_set_device_state': {
        const s = stateArg(l.args, /state (\w+)/, l);
        if (d.pendingSet) settle(d, s);
        else d.state = s;
        break;
      }
      case 'vfio_save_setup': {
        // The buffer is min(1 MiB, MIG_DATA_SIZE): below 1 MiB it is the answer.
        d.bufferSize = numberArg(l.args, /data buffer size (\d+)/);
        const size = d.bufferSize !== undefined && d.bufferSize < 1 << 20 ? { ret: `0x${d.bufferSize.toString(16)}` } : {};
        if (d.inSetup && d.setupSize) Object.assign(d.setupSize, size);
        else call(d, 'stopCopySize', size);
        d.inSetup = false;
        d.setupSize = undefined;
        d.blockSinceIterate = false;
        break;
      }
      case 'vfio_state_pending_exact': {
        const stop = numberArg(l.args, /stopcopy size (\d+)/);
        call(d, 'stopCopySize', stop === undefined ? {} : { ret: `0x${stop.toString(16)}` });
        if (d.state === MigState.PRE_COPY || d.state === MigState.PRE_COPY_P2P) {
          const initial = numberArg(l.args, /precopy initial size (\d+)/);
          const dirty = numberArg(l.args, /precopy dirty size (\d+)/);
          call(
            d,
            'precopyInfo',
            initial === undefined || dirty === undefined
              ? {}
              : { ret: { initial: `0x${initial.toString(16)}`, dirty: `0x${dirty.toString(16)}` } },
          );
        }
        break;
      }
      case 'vfio_save_block':
        read(d, 'ok', numberArg(l.args, /data_size (\d+)/));
        d.blockSinceIterate = true;
        break;
      case 'vfio_save_block_precopy_empty_hit':
        read(d, 'ENOMSG');
        d.blockSinceIterate = true;
        break;
      case 'vfio_save_iterate_start':
      case 'vfio_save_complete_precopy_start':
        d.blockSinceIterate = false;
        break;
      case 'vfio_save_iterate':
        if (!d.blockSinceIterate) read(d, 'ok', 0);
        d.blockSinceIterate = false;
        break;
      case 'vfio_save_complete_precopy':
        if (numberArg(l.args, /ret (-?\d+)/) === 0) read(d, 'ok', 0);
        break;
      case 'vfio_load_state_device_data': {
        const n = numberArg(l.args, /size (\d+)/);
        const ret = numberArg(l.args, /ret (-?\d+)/);
        emit('data', {
          dev: d.dev,
          op: 'write',
          size: n,
          result: ret === undefined || ret >= 0 ? 'ok' : 'failed',
          ...(ret === 0 ? { ret: n } : {}),
          derived: true,
        });
        break;
      }
      case 'vfio_save_cleanup':
      case 'vfio_load_cleanup':
        if (d.sessionOpen) emit('data', { dev: d.dev, op: 'close', result: 'ok', derived: true });
        d.sessionOpen = false;
        break;
      default:
        break; // no device call
    }
  }
  for (const d of devices.values()) settle(d, undefined);
  return out;
}
