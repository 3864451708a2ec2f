// Who may talk to the bridge: a peer with the bridge's uid that is the
// command the bridge started or one of its descendants (QEMU, or a process
// QEMU started). The parent chain is read from /proc/<pid>/stat.
import { readFileSync } from 'node:fs';
import type { PeerCredentials } from '../kernel/syscalls.js';

/** The parent pid of `pid` (proc(5): the field after the state), undefined when the process is gone. */
export function parentOf(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(fields[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

/** A pid tree deeper than this is not believed (a loop would otherwise never end). */
const MAX_DEPTH = 4096;

export function isSelfOrDescendant(pid: number, ancestor: number, parent: (pid: number) => number | undefined = parentOf): boolean {
  let cur: number | undefined = pid;
  for (let depth = 0; cur !== undefined && cur > 0 && depth < MAX_DEPTH; depth++) {
    if (cur === ancestor) return true;
    if (cur === 1) return false;
    cur = parent(cur);
  }
  return false;
}

/** Why a peer is refused, or undefined when it may talk to the bridge. */
export function peerRefusal(
  peer: PeerCredentials,
  expect: { uid: number; commandPid: number | undefined },
  parent = parentOf,
): string | undefined {
  if (peer.uid !== expect.uid) return `pid ${peer.pid} runs as uid ${peer.uid}, the bridge as uid ${expect.uid}`;
  if (expect.commandPid === undefined) return `pid ${peer.pid} connected before the command was started`;
  if (!isSelfOrDescendant(peer.pid, expect.commandPid, parent)) {
    return `pid ${peer.pid} is neither the command (pid ${expect.commandPid}) nor one of its descendants`;
  }
  return undefined;
}
