// runBridge: the command runs with the interposer preloaded and the socket
// in its environment, gets the forwarded signals, and its exit status comes
// back; a descendant that registers is served (the peer check follows the
// real child's pid); the private directory is gone afterwards. A small
// stand-in library plays the interposer (only its loading is checked here).
import { EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildSharedLibrary } from './support/c-program.js';
import { makePrivateDir, privateDirBases } from '../src/bridge/private-dir.js';
import { commandEnv, runBridge, type RunEvent } from '../src/bridge/run-bridge.js';
import { simCandidate, simEntry, type SimEntry } from './support/bridge-rig.js';

const CODEC = join(import.meta.dirname, '..', 'dist/src/bridge/wire-protocol.js');
const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-run-'));
const so = buildSharedLibrary(dir, 'stand-in', 'int vfio_mig_stand_in = 1;\n');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = { interposer: so, windowSize: 4096, mmap: true, runtimeBase: dir };

describe('runBridge', () => {
  it('hands back the exit status, or 128 + the signal that killed the command, or 127 when it is not there', async () => {
    expect((await runBridge({ ...base, command: ['sh', '-c', 'exit 3'] })).status).toBe(3);
    expect(await runBridge({ ...base, command: ['sh', '-c', 'kill -TERM $$'] })).toMatchObject({ status: 143, signal: 'SIGTERM' });
    const missing = await runBridge({ ...base, command: [join(dir, 'no-such-command')] });
    expect(missing).toMatchObject({ status: 127, startError: expect.stringContaining('ENOENT') });
  });

  it('gives the command the interposer first in LD_PRELOAD, the socket (0600 in a 0700 directory) and the timeout; removes the directory after', async () => {
    const out = join(dir, 'env.txt');
    const script = `printf '%s|%s|%s\\n' "$LD_PRELOAD" "$VFIO_MIG_BRIDGE_SOCKET" "$VFIO_MIG_BRIDGE_TIMEOUT_MS" > ${out}
      stat -c %a "$(dirname "$VFIO_MIG_BRIDGE_SOCKET")" "$VFIO_MIG_BRIDGE_SOCKET" >> ${out}`;
    const r = await runBridge({ ...base, command: ['sh', '-c', script], env: { ...process.env, LD_PRELOAD: so }, timeoutMs: 1234 });
    expect(r.status).toBe(0);
    const [vars, dmode, smode] = readFileSync(out, 'utf8').trim().split('\n');
    const [preload, socket, timeout] = vars.split('|');
    expect(preload).toBe(`${so}:${so}`);
    expect(socket).toMatch(new RegExp(`^${dir}/vfio-mig-bridge-[^/]+/bridge\\.sock$`));
    expect(timeout).toBe('1234');
    expect([dmode, smode]).toEqual(['700', '600']);
    expect(existsSync(socket)).toBe(false);
    expect(existsSync(join(socket, '..'))).toBe(false);
  });

  it('refuses an interposer path LD_PRELOAD cannot carry', () => {
    expect(() => commandEnv({}, '/a b/x.so', '/s', 1)).toThrow(/EINVAL/);
    expect(() => commandEnv({}, '/a:b/x.so', '/s', 1)).toThrow(/EINVAL/);
    expect(commandEnv({ LD_PRELOAD: '' }, '/x.so', '/s', 1).LD_PRELOAD).toBe('/x.so');
  });

  it('forwards SIGINT, SIGTERM and SIGHUP to the command', async () => {
    const signals = new EventEmitter();
    const ready = join(dir, 'ready');
    const script = `trap 'exit 40' INT; trap 'exit 41' TERM; trap 'exit 42' HUP; : > ${ready}; while :; do sleep 0.02; done`;
    for (const [sig, status] of [
      ['SIGINT', 40],
      ['SIGTERM', 41],
      ['SIGHUP', 42],
    ] as const) {
      rmSync(ready, { force: true });
      const run = runBridge({ ...base, command: ['sh', '-c', script], signals });
      while (!existsSync(ready)) await new Promise((r) => setTimeout(r, 10));
      signals.emit(sig);
      expect((await run).status).toBe(status);
      expect(signals.listenerCount(sig)).toBe(0);
    }
  });

  it('serves a device the command registers (the peer check follows the started child), and traces the run', async () => {
    expect(existsSync(CODEC), 'run npm run build first').toBe(true);
    const sims = new Map<string, SimEntry>();
    const events: RunEvent[] = [];
    const trace = join(dir, 'trace.jsonl');
    const child = `import net from 'node:net';
import { AnswerReader, decodeRegisterAnswer, encodeRequest } from ${JSON.stringify(CODEC)};
const s = net.connect(process.env.VFIO_MIG_BRIDGE_SOCKET);
const reader = new AnswerReader();
const frames = [encodeRequest({ op: 'read', offset: 0n, count: 4 }), encodeRequest({ op: 'write', offset: 0n, data: Uint8Array.of(2, 0, 0, 0) })];
s.on('data', (c) => { reader.push(c); for (let a = reader.next(); a; a = reader.next()) { const f = frames.shift(); if (f) s.write(f); else s.end(); } });
s.on('connect', () => s.write(encodeRequest({ op: 'register', version: 1, pid: process.pid, fd: 7, numRegions: 9, regionsEnd: 0n, name: 'dev-a' })));`;
    const r = await runBridge({
      ...base,
      command: [process.execPath, '--input-type=module', '-e', child],
      tracePath: trace,
      onEvent: (e) => events.push(e),
      devices: ({ name }) => Promise.resolve(simCandidate(name, simEntry(sims, name))),
    });
    expect(r.status).toBe(0);
    expect(events.map((e) => e.kind)).toEqual(['bridged', 'released']);
    expect(r.devices).toHaveLength(1);
    expect(r.devices[0]).toMatchObject({ live: false, info: { label: 'dev-a', fd: 7 } });
    expect(simEntry(sims, 'dev-a').arcs.at(-1)).toBe('STOP>STOP_COPY'); // 001 -> 010: RUNNING -> STOP -> STOP_COPY
    const lines = readFileSync(trace, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ ev: 'start', command: [process.execPath, '--input-type=module', '-e', child] });
    expect(lines.filter((l) => l.ev === 'v1').map((l) => `${l.op} ${l.value}`)).toEqual(['read 0x1', 'write 0x2']);
    expect(lines.slice(-2).map((l) => l.ev)).toEqual(['exit', 'end']);
  });
});

describe('the private directory', () => {
  it('goes to $XDG_RUNTIME_DIR, else /dev/shm, else the temp dir: the first that takes it', () => {
    expect(privateDirBases({ XDG_RUNTIME_DIR: '/run/user/1000' }).slice(0, 2)).toEqual(['/run/user/1000', '/dev/shm']);
    expect(privateDirBases({})[0]).toBe('/dev/shm');
    const made = makePrivateDir([join(dir, 'missing'), dir]);
    expect(made.path.startsWith(`${dir}/vfio-mig-bridge-`)).toBe(true);
    made.remove();
    expect(existsSync(made.path)).toBe(false);
    expect(() => makePrivateDir([join(dir, 'missing')])).toThrow(
      /EACCES: cannot make the bridge's private directory .*ENOENT.*XDG_RUNTIME_DIR/,
    );
  });
});
