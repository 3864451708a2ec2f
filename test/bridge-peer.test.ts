// Who may talk to the bridge: same uid, and the started command or one of
// its descendants (SO_PEERCRED, then the /proc parent chain). Anyone else
// gets one EPERM answer and a closed connection; nothing is registered.
// Child processes run the built codec (dist/) to speak the protocol.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isSelfOrDescendant, parentOf, peerRefusal } from '../src/bridge/peer-check.js';
import { BridgeClient } from './support/bridge-client.js';
import { bridgeRig, type BridgeRig } from './support/bridge-rig.js';

const CODEC = join(import.meta.dirname, '..', 'dist/src/bridge/wire-protocol.js');
let rig: BridgeRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

/** A node child (or grandchild through sh) that REGISTERs as itself and prints the answer's result and bridged flag. */
function registerFromChild(socket: string, name: string, viaShell: boolean): Promise<string> {
  const script = `import net from 'node:net';
import { AnswerReader, decodeRegisterAnswer, encodeRequest } from ${JSON.stringify(CODEC)};
const s = net.connect(${JSON.stringify(socket)});
const reader = new AnswerReader();
s.on('data', (c) => { reader.push(c); const a = reader.next(); if (a) { console.log(a.result, a.result >= 0 ? decodeRegisterAnswer(a.payload).bridged : '-'); s.destroy(); } });
s.on('connect', () => s.write(encodeRequest({ op: 'register', version: 1, pid: process.pid, fd: 3, numRegions: 9, regionsEnd: 0n, name: ${JSON.stringify(name)} })));`;
  const argv = [process.execPath, '--input-type=module', '-e', script];
  const child = viaShell ? spawn('sh', ['-c', '"$@"; :', 'sh', ...argv]) : spawn(argv[0], argv.slice(1));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  return new Promise((resolve) => child.on('close', () => resolve(out.trim())));
}

describe('peer credentials', () => {
  it('refuses a process that is not the command or its descendant (here: the test process itself)', async () => {
    const other = spawn('sleep', ['30']);
    try {
      rig = await bridgeRig({ commandPid: () => other.pid });
      const c = await BridgeClient.connect(rig.server.socketPath);
      expect((await c.next()).result).toBe(-1); // EPERM, before anything was sent
      await c.closed;
      expect(rig.events).toEqual([
        { kind: 'refused', pid: process.pid, reason: expect.stringContaining(`neither the command (pid ${other.pid})`) },
      ]);
      expect(rig.server.connectionCount).toBe(0);
    } finally {
      other.kill();
    }
  });

  it('refuses everyone before the command has started, and another uid', async () => {
    rig = await bridgeRig({ commandPid: () => undefined });
    const c = await BridgeClient.connect(rig.server.socketPath);
    expect((await c.next()).result).toBe(-1);
    await rig.close();
    rig = await bridgeRig({ uid: process.getuid!() + 1 });
    const d = await BridgeClient.connect(rig.server.socketPath);
    expect((await d.next()).result).toBe(-1);
    expect(rig.events[0]).toMatchObject({ kind: 'refused', reason: expect.stringContaining('uid') });
  });

  it('admits a child and a grandchild of the command', async () => {
    expect(existsSync(CODEC), 'run npm run build first').toBe(true);
    rig = await bridgeRig({ commandPid: () => process.pid });
    expect(await registerFromChild(rig.server.socketPath, 'child', false)).toBe('0 true');
    expect(await registerFromChild(rig.server.socketPath, 'grandchild', true)).toBe('0 true');
    expect(rig.server.devices.map((d) => d.info.label)).toEqual(['child', 'grandchild']);
  });

  it('walks the parent chain from /proc, and stops at pid 1 and at loops', () => {
    expect(parentOf(process.pid)).toBe(process.ppid);
    expect(parentOf(0x3fffffff)).toBeUndefined();
    expect(isSelfOrDescendant(process.pid, process.pid)).toBe(true);
    expect(isSelfOrDescendant(process.pid, process.ppid)).toBe(true);
    const tree = new Map([
      [10, 9],
      [9, 1],
      [20, 21],
      [21, 20],
    ]);
    const parent = (p: number) => tree.get(p);
    expect(isSelfOrDescendant(10, 9, parent)).toBe(true);
    expect(isSelfOrDescendant(10, 1, parent)).toBe(true);
    expect(isSelfOrDescendant(9, 10, parent)).toBe(false);
    expect(isSelfOrDescendant(20, 5, parent)).toBe(false); // a loop ends
    expect(isSelfOrDescendant(30, 5, parent)).toBe(false); // a gone process
    expect(peerRefusal({ pid: 10, uid: 0, gid: 0 }, { uid: 0, commandPid: 9 }, parent)).toBeUndefined();
  });
});
