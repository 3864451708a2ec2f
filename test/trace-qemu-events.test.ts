// QEMU 8+'s own trace events into the trace format (legacy/qemu/trace/
// qemu-trace-events.ts). The real logs of the lab are converted in
// trace-format.test.ts (they must give the committed fixtures); here, the
// cases the lab's mtty never shows, each as QEMU 10's hw/vfio/migration.c
// would trace it.
import { describe, expect, it } from 'vitest';
import { convertQemuTrace } from '../legacy/qemu/trace/qemu-trace-events.js';

const UUID = '0d9a4c38-6f1b-4b52-a6f5-1ad1e3a0c0a1';
const client = { name: 'QEMU', version: '10.0.13' };

/** Log lines as the log backend writes them with -msg timestamp=on, 1 ms apart. */
const log = (...events: string[]) =>
  events.map((e, i) => `305@1796039345.${String(100000 + i * 1000).padStart(6, '0')}:${e.replace('DEV', `(${UUID})`)}`).join('\n');

/** The device calls, one short string each ("setState PRE_COPY ok", "read 96 -> 24"). */
function calls(text: string) {
  return convertQemuTrace(text, { client })
    .filter((l) => l.ev === 'v2' || l.ev === 'data')
    .map((l) => {
      const o = l as Record<string, unknown>;
      const s = (v: unknown) => (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'string' ? String(v) : JSON.stringify(v));
      if (l.ev === 'v2')
        return `${s(o.call)}${o.arg ? ` ${s(o.arg)}` : ''} ${s(o.result)}${o.ret !== undefined ? ` ${JSON.stringify(o.ret)}` : ''}${o.derived ? ' (derived)' : ''}`;
      return `${s(o.op)}${o.size !== undefined ? ` ${s(o.size)}` : ''} ${s(o.result)}${o.ret !== undefined ? ` -> ${s(o.ret)}` : ''}`;
    });
}

describe('QEMU trace events -> trace lines', () => {
  it('the header: start, client, then each device at its first event, numbered in order, with what the recorder knows of it', () => {
    const lines = convertQemuTrace(
      [log('vfio_migration_realize  DEV'), '305@1796039345.200000:vfio_migration_realize  (other)'].join('\n'),
      {
        client,
        devices: { [UUID]: { bus: 'mdev', type: 'mtty-2', driver: 'mtty' } },
      },
    );
    expect(lines.slice(0, 3).map((l) => l.ev)).toEqual(['start', 'client', 'device']);
    expect(lines[1]).toMatchObject({ name: 'QEMU', version: '10.0.13' });
    expect(lines.filter((l) => l.ev === 'device')).toEqual([
      { v: 2, t: 0, ev: 'device', dev: 1, name: UUID, protocol: 'v2', bus: 'mdev', type: 'mtty-2', driver: 'mtty' },
      { v: 2, t: 100, ev: 'device', dev: 2, name: 'other', protocol: 'v2' },
    ]);
  });

  it('a SET that succeeded, a SET to the cached state (no ioctl: QEMU returns early), times in ms from the first line', () => {
    const lines = convertQemuTrace(
      log(
        'vfio_migration_set_state  DEV new state RUNNING_P2P, recover state ERROR',
        'vfio_migration_set_device_state  DEV state RUNNING_P2P',
        'vfio_migration_set_state  DEV new state RUNNING_P2P, recover state ERROR',
      ),
      { client },
    );
    expect(lines.filter((l) => l.ev === 'v2')).toEqual([
      { v: 2, t: 1, ev: 'v2', dev: 1, call: 'setState', arg: 'RUNNING_P2P', result: 'ok' },
    ]);
  });

  it('a failed SET: recovered by SET recover_state, or (recover ERROR, or the recover SET failed too) by a reset', () => {
    expect(
      calls(
        log(
          'vfio_migration_set_state  DEV new state PRE_COPY_P2P, recover state RUNNING',
          'vfio_migration_set_device_state  DEV state RUNNING',
        ),
      ),
    ).toEqual(['setState PRE_COPY_P2P failed', 'setState RUNNING ok']);
    expect(
      calls(log('vfio_migration_set_state  DEV new state STOP, recover state ERROR', 'vfio_migration_set_device_state  DEV state RUNNING')),
    ).toEqual(['setState STOP failed', 'reset ok (derived)']);
    expect(
      calls(
        log(
          'vfio_migration_set_state  DEV new state RUNNING_P2P, recover state ERROR',
          'vfio_migration_set_device_state  DEV state RUNNING_P2P',
          'vfio_migration_set_state  DEV new state STOP_COPY, recover state STOP',
          'vfio_migration_set_device_state  DEV state RUNNING',
        ),
      ),
    ).toEqual(['setState RUNNING_P2P ok', 'setState STOP_COPY failed', 'setState STOP failed', 'reset ok (derived)']);
  });

  it('a save from a stopped VM: no PRE_COPY, MIG_DATA_SIZE at vfio_save_setup (the buffer is min(1 MiB, its answer)), reads of the buffer size', () => {
    expect(
      calls(
        log(
          'vfio_migration_set_state  DEV new state STOP, recover state ERROR',
          'vfio_migration_set_device_state  DEV state STOP',
          'vfio_save_setup  DEV data buffer size 96',
          'vfio_save_complete_precopy_start  DEV',
          'vfio_migration_set_state  DEV new state STOP_COPY, recover state STOP',
          'vfio_migration_set_device_state  DEV state STOP_COPY',
          'vfio_save_block  DEV data_size 96',
          'vfio_save_complete_precopy  DEV ret 0',
          'vfio_save_cleanup  DEV',
        ),
      ),
    ).toEqual([
      'setState STOP ok',
      'stopCopySize ok "0x60" (derived)',
      'setState STOP_COPY ok "session"',
      'read 96 ok -> 96',
      'read 96 ok -> 0',
      'close ok',
    ]);
  });

  it('a buffer of 1 MiB says only that MIG_DATA_SIZE was at least that: no answer is made up', () => {
    expect(calls(log('vfio_save_setup  DEV data buffer size 1048576'))).toEqual(['stopCopySize ok (derived)']);
  });

  it('pre-copy: the first ENOMSG (vfio_save_block_precopy_empty_hit) is ENOMSG; an iterate without a block read nothing', () => {
    expect(
      calls(
        log(
          'vfio_migration_set_state  DEV new state PRE_COPY, recover state RUNNING',
          'vfio_migration_set_device_state  DEV state PRE_COPY',
          'vfio_save_setup  DEV data buffer size 4096',
          'vfio_save_iterate_start  DEV',
          'vfio_save_block_precopy_empty_hit  DEV',
          'vfio_save_iterate  DEV precopy initial size 0 precopy dirty size 0',
          'vfio_save_iterate  DEV precopy initial size 0 precopy dirty size 0',
          'vfio_state_pending_exact  DEV precopy 5 postcopy 0 stopcopy size 4096 precopy initial size 0 precopy dirty size 8',
        ),
      ),
    ).toEqual([
      'stopCopySize ok "0x1000" (derived)',
      'setState PRE_COPY ok "session"',
      'precopyInfo ok (derived)',
      'read 4096 ENOMSG',
      'read 4096 ok -> 0',
      'stopCopySize ok "0x1000" (derived)',
      'precopyInfo ok {"initial":"0x0","dirty":"0x8"} (derived)',
    ]);
  });

  it('a resume: RESUMING opens the session, each chunk one write of its size, vfio_load_cleanup closes it; a failed chunk fails', () => {
    expect(
      calls(
        log(
          'vfio_migration_set_state  DEV new state RESUMING, recover state RUNNING',
          'vfio_migration_set_device_state  DEV state RESUMING',
          'vfio_load_state  DEV data 0xffffffffef100004',
          'vfio_load_state_device_data  DEV size 24 ret 0',
          'vfio_load_state_device_data  DEV size 72 ret -14',
          'vfio_load_cleanup  DEV',
        ),
      ),
    ).toEqual(['setState RESUMING ok "session"', 'write 24 ok -> 24', 'write 72 failed', 'close ok']);
  });

  it('lines without timestamps (-msg timestamp=off), other log output and other trace events are read or skipped alike', () => {
    const text = [
      'qemu-system-x86_64: warning: something else',
      `vfio_migration_set_state  (${UUID}) new state STOP, recover state ERROR`,
      `vfio_region_read  (${UUID}:region0+0x7, 1) = 0x5a`,
      `vfio_migration_set_device_state  (${UUID}) state STOP`,
    ].join('\n');
    const lines = convertQemuTrace(text, { client });
    expect(calls(text)).toEqual(['setState STOP ok']);
    expect(lines.every((l) => l.t === 0)).toBe(true);
  });

  it('a state QEMU does not name is refused with the log line (EINVAL)', () => {
    expect(() => convertQemuTrace(log('vfio_migration_set_state  DEV new state SIDEWAYS, recover state ERROR'), { client })).toThrow(
      expect.objectContaining({
        code: 'EINVAL',
        message: expect.stringMatching(/QEMU trace line 1: no state in 'vfio_migration_set_state new state SIDEWAYS/),
      }),
    );
  });
});
