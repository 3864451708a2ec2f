// What it costs the bridge to take a device fd from the command it started:
// pidfd_open + pidfd_getfd + close(pidfd) + readlink(/proc/self/fd/N) +
// close(copy), as src/bridge/device-source.ts does it once per device, timed
// from Node through koffi (the real path), and the two ways of moving an fd
// in plain C for scale: pidfd_getfd, and SCM_RIGHTS over a socketpair
// (sendmsg in one process, recvmsg in the other), the alternative Node's
// `net` sockets cannot receive. Prints one JSON object; µs per fd.
//
//   npm run build && node bench/fd-adoption.mjs [--count 20000]
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KoffiSyscalls } from '../dist/src/kernel/koffi-syscalls.js';

const count = Number(process.argv[process.argv.indexOf('--count') + 1] || 20_000);

const C_BENCH = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
int main(int argc, char **argv) {
  int n = atoi(argv[1]);
  int fd = open("/dev/null", O_RDWR);
  pid_t child = fork();
  if (child == 0) { pause(); _exit(0); }
  double t0 = now();
  for (int i = 0; i < n; i++) {
    int pidfd = syscall(SYS_pidfd_open, child, 0);
    int copy = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    if (pidfd < 0 || copy < 0) { perror("pidfd"); return 1; }
    close(copy); close(pidfd);
  }
  double pidfd_us = (now() - t0) / n;
  kill(child, 9); waitpid(child, NULL, 0);
  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
  child = fork();
  if (child == 0) {
    for (int i = 0; i < n; i++) {
      char b = 0; struct iovec io = { &b, 1 };
      union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
      struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
      struct cmsghdr *c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(c), &fd, sizeof(int));
      if (sendmsg(sv[0], &m, 0) != 1) _exit(1);
      if (read(sv[0], &b, 1) != 1) _exit(1); /* one fd in flight at a time, as one device registration */
    }
    _exit(0);
  }
  t0 = now();
  for (int i = 0; i < n; i++) {
    char b; struct iovec io = { &b, 1 };
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
    struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    if (recvmsg(sv[1], &m, MSG_CMSG_CLOEXEC) != 1) return 1;
    int got; memcpy(&got, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
    close(got);
    if (write(sv[1], &b, 1) != 1) return 1;
  }
  double scm_us = (now() - t0) / n;
  waitpid(child, NULL, 0);
  printf("%.3f %.3f\n", pidfd_us, scm_us);
  return 0;
}`;

function cBench() {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-fd-bench-'));
  try {
    writeFileSync(join(dir, 'b.c'), C_BENCH);
    execFileSync('cc', ['-O2', '-o', join(dir, 'b'), join(dir, 'b.c')]);
    const [pidfd, scm] = execFileSync(join(dir, 'b'), [String(count)], { encoding: 'utf8' })
      .trim()
      .split(' ')
      .map(Number);
    return { pidfdGetfdC: pidfd, scmRightsC: scm };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function nodeBench() {
  const sys = new KoffiSyscalls();
  const held = openSync('/dev/null', 'r');
  const child = spawn('sleep', ['600'], { stdio: ['ignore', 'ignore', 'ignore', held] });
  closeSync(held);
  await new Promise((r) => child.once('spawn', r));
  try {
    const adopt = () => {
      const pidfd = sys.pidfdOpen(child.pid);
      const copy = sys.pidfdGetfd(pidfd, 3);
      sys.close(pidfd);
      if (readlinkSync(`/proc/self/fd/${copy}`) !== '/dev/null') throw new Error('wrong fd');
      sys.close(copy);
    };
    for (let i = 0; i < 1000; i++) adopt(); // warm up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) adopt();
    return Number(process.hrtime.bigint() - t0) / 1000 / count;
  } finally {
    child.kill();
  }
}

const node = await nodeBench();
console.log(
  JSON.stringify({
    count,
    kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
    adoptPerDeviceNodeUs: Number(node.toFixed(3)),
    ...cBench(),
  }),
);
