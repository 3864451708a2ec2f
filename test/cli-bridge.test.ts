// `vfio-mig bridge` on the command line: everything after `--` belongs to
// the command (its --help and --json are not ours), usage errors, the exit
// status is the command's, and a run against the real kernel source: a
// command that registers an fd that is no VFIO device gets it adopted with
// pidfd_getfd, identified by readlink and left alone, with one line saying so.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSharedLibrary } from './support/c-program.js';
import { eventLine, summaryLines } from '../src/cli/commands/bridge.js';
import { main } from '../src/cli/main.js';
import { DeviceStats } from '../src/bridge/device-stats.js';
import { synthesizedRegion } from '../src/bridge/region-layout.js';

const CODEC = join(import.meta.dirname, '..', 'dist/src/bridge/wire-protocol.js');
const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-cli-bridge-'));
const so = buildSharedLibrary(dir, 'stand-in', 'int vfio_mig_stand_in = 1;\n');
beforeAll(() => {
  process.env.VFIO_MIG_INTERPOSER = so;
});
afterAll(() => {
  delete process.env.VFIO_MIG_INTERPOSER;
  rmSync(dir, { recursive: true, force: true });
});

async function cli(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const sink = (to: string[]) =>
    new Writable({
      write(c, _e, done) {
        to.push(String(c));
        done();
      },
    });
  const status = await main(args, { stdout: sink(out), stderr: sink(err) });
  return { status, stdout: out.join(''), stderr: err.join('') };
}

describe('vfio-mig bridge', () => {
  it('leaves --help and --json after -- to the command', async () => {
    const help = await cli('bridge', '--window', '0', '--', 'qemu', '--help');
    expect(help.status).toBe(2); // our --window is checked; the command's --help is not ours
    expect(help.stderr).toMatch(/--window/);
    const json = await cli('bridge', '--window', 'bad', '--', 'qemu', '--json');
    expect([json.status, json.stdout]).toEqual([2, '']); // no JSON document on the command's stdout
  });

  it("exits with the command's status and writes nothing to stdout", async () => {
    const r = await cli('bridge', '--', 'sh', '-c', 'exit 5');
    expect(r).toEqual({ status: 5, stdout: '', stderr: '' });
    expect((await cli('bridge', '--quiet', '--', 'sh', '-c', 'kill -INT $$')).status).toBe(130);
    const missing = await cli('bridge', '--', join(dir, 'no-such-command'));
    expect(missing.status).toBe(127);
    expect(missing.stderr).toMatch(/^vfio-mig bridge: cannot run .*no-such-command/);
  });

  it('refuses what makes no sense', async () => {
    expect((await cli('bridge')).stderr).toMatch(/needs a command/);
    expect((await cli('bridge', '--json', '--', 'true')).status).toBe(2);
    expect((await cli('bridge', '--window', '2GiB', '--', 'true')).stderr).toMatch(/more than 1 GiB/);
    expect((await cli('bridge', '--window', '1000', '--', 'true')).stderr).toMatch(/multiple of 4 KiB/);
    expect((await cli('bridge', '--window', '1000', '--no-mmap', '--', 'true')).status).toBe(0);
    expect((await cli('bridge', '--help')).stdout).toMatch(
      /usage: vfio-mig bridge \[--window SIZE\] \[--no-mmap\] \[--trace FILE\] \[--quiet\] -- CMD/,
    );
  });

  it('adopts a registered fd with pidfd_getfd, sees it is no VFIO device, and says so', async () => {
    expect(existsSync(CODEC), 'run npm run build first').toBe(true);
    const child = `import net from 'node:net';
import { AnswerReader, decodeRegisterAnswer, encodeRequest } from ${JSON.stringify(CODEC)};
const s = net.connect(process.env.VFIO_MIG_BRIDGE_SOCKET);
const reader = new AnswerReader();
s.on('data', (c) => { reader.push(c); const a = reader.next(); if (a) { process.exitCode = decodeRegisterAnswer(a.payload).bridged ? 1 : 9; s.end(); } });
s.on('connect', () => s.write(encodeRequest({ op: 'register', version: 1, pid: process.pid, fd: 0, numRegions: 9, regionsEnd: 0n, name: 'not-a-device' })));`;
    const r = await cli('bridge', '--', process.execPath, '--input-type=module', '-e', child);
    expect(r.status).toBe(9); // answered "not bridged"
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^vfio-mig bridge: not bridging not-a-device \(pid \d+\): fd 0 of pid \d+: fd \d+ is .*, not a VFIO device\n$/,
    );
  });
});

describe('what the bridge says', () => {
  const info = {
    id: 1,
    label: '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001',
    pid: 4242,
    fd: 31,
    layout: synthesizedRegion(9, (8n << 40n) + 4096n, 1 << 20, true),
    windowPath: '/run/x/window-1',
  };

  it('one start line per bridged device', () => {
    expect(eventLine({ kind: 'bridged', device: info }, 'qemu')).toEqual({
      text: 'bridging 83b8f4f2-509f-382f-3c1e-e6bfe0fa1001 (pid 4242, fd 31): v1 migration region 9 at 0x90000000000, 1 MiB window, mmap',
      loud: false,
    });
  });

  it('a loud line when a device is reset out of ERROR', () => {
    const ok = eventLine(
      { kind: 'error-recovery', device: info, recovery: { cause: 'EFAULT: SET device_state STOP_COPY', reset: 'ok' } },
      'qemu',
    );
    expect(ok).toMatchObject({
      loud: true,
      text: expect.stringMatching(/^ERROR: 83b8.*went to the v2 ERROR state \(EFAULT: SET device_state STOP_COPY\); reset it/),
    });
    const failed = eventLine({ kind: 'error-recovery', device: info, recovery: { cause: 'EIO', reset: 'EIO' } }, 'qemu');
    expect(failed?.text).toMatch(/reset failed with EIO: device_state reads 110b, QEMU 7.2 will abort/);
  });

  it('a summary line per device', () => {
    const stats = new DeviceStats();
    Object.assign(stats, { chunksSaved: 3, bytesSaved: 96, failedAccesses: 1, errorResets: 1 });
    stats.enterStopCopy(1000);
    stats.leaveStopCopy(1012.25);
    expect(summaryLines([{ info, stats, live: false }])).toEqual([
      'summary 83b8f4f2-509f-382f-3c1e-e6bfe0fa1001: saved 3 chunks (96 B), resumed 0 chunks (0 B), stop-and-copy 12.3 ms, 1 failed access, 1 reset out of ERROR',
    ]);
  });
});
