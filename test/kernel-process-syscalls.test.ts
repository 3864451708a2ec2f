// The syscalls the bridge adds to KoffiSyscalls, on the host kernel:
// pidfd_open + pidfd_getfd take a copy of a child's fd (the bridge adopts
// QEMU's device fd this way), SO_PEERCRED names a Unix socket's peer.
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { koffiSyscalls } from '../src/kernel/koffi-syscalls.js';
import { MigrationError } from '../src/uapi/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-proc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fdCount = () => readdirSync('/proc/self/fd').length;

describe('KoffiSyscalls process syscalls', () => {
  const sys = koffiSyscalls();

  it("pidfd_getfd copies a child's fd (same open file), and every fd is closed again", async () => {
    const path = join(dir, 'held-by-child');
    const held = openSync(path, 'w');
    const child = spawn('sleep', ['30'], { stdio: ['ignore', 'ignore', 'ignore', held] });
    closeSync(held);
    try {
      await new Promise((r) => child.once('spawn', r));
      const before = fdCount();
      const pidfd = sys.pidfdOpen(child.pid!);
      const copy = sys.pidfdGetfd(pidfd, 3);
      expect(readlinkSync(`/proc/self/fd/${copy}`)).toBe(path);
      sys.close(copy);
      sys.close(pidfd);
      expect(fdCount()).toBe(before);
      // An fd number the child does not have: EBADF, nothing opened.
      const again = sys.pidfdOpen(child.pid!);
      expect(() => sys.pidfdGetfd(again, 999)).toThrow(MigrationError);
      try {
        sys.pidfdGetfd(again, 999);
      } catch (e) {
        expect((e as MigrationError).code).toBe('EBADF');
      }
      sys.close(again);
      expect(fdCount()).toBe(before);
    } finally {
      child.kill();
    }
  });

  it('SO_PEERCRED names the connecting process', async () => {
    const sock = join(dir, 'peer.sock');
    const accepted = new Promise<Socket>((resolve) => {
      const server = createServer((s) => {
        resolve(s);
        server.close();
      });
      server.listen(sock);
    });
    const client = connect(sock);
    const s = await accepted;
    const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
    expect(sys.peerCredentials(fd)).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    client.destroy();
    s.destroy();
  });
});
