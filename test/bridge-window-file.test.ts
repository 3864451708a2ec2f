// A device's window file: 0600, sized with ftruncate, mapped shared. A
// read(2) through KoffiSyscalls into the mapping (what a data_fd read does
// inside LegacyRegionOverV2) lands in the file's pages, where another
// mapping — the interposer's, in QEMU — sees it. close() unmaps and unlinks.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WindowFile } from '../src/bridge/window-file.js';
import { koffiSyscalls } from '../src/kernel/koffi-syscalls.js';
import { PROT_READ } from '../src/kernel/syscalls.js';

const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-window-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const mapsOf = (path: string) =>
  readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.endsWith(path)).length;

describe('WindowFile', () => {
  it('is a shared mapping: a read(2) into it shows in another mapping of the file', () => {
    const path = join(dir, 'window-1');
    const w = WindowFile.create(path, 8192);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(path).size).toBe(8192);
    const sys = koffiSyscalls();
    const src = join(dir, 'device-data');
    writeFileSync(src, 'stream bytes from the device');
    const fd = sys.open(src, 0);
    expect(sys.read(fd, w.bytes.subarray(100, 120))).toBe(20);
    sys.close(fd);
    const peerFd = openSync(path, 'r');
    const peer = sys.mmap(peerFd, 8192, PROT_READ, 0n);
    closeSync(peerFd);
    expect(Buffer.from(peer.bytes.subarray(100, 120)).toString()).toBe('stream bytes from th');
    sys.munmap(peer);
    expect(mapsOf(path)).toBe(1);
    w.close();
    expect(mapsOf(path)).toBe(0);
    expect(existsSync(path)).toBe(false);
  });

  it('never replaces an existing file', () => {
    const path = join(dir, 'taken');
    writeFileSync(path, 'x');
    expect(() => WindowFile.create(path, 4096)).toThrow(/EEXIST/);
    expect(readFileSync(path, 'utf8')).toBe('x');
  });
});
