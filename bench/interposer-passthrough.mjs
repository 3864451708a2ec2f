// What the bridge interposer costs on the path it must keep cheap: an 8-byte pread64 at a BAR
// offset (vCPU threads trap BAR accesses this way), on the bridged device fd and on an
// unrelated fd, with and without the interposer. Prints one JSON object; numbers are the
// median ns of thread CPU time per call over --rounds runs of --calls calls each, modes
// interleaved.
//
//   node bench/interposer-passthrough.mjs [--calls 1000000] [--rounds 7]
//
// Modes: fake (only the test-only fake VFIO device, which does not touch pread: the baseline),
// inert (interposer loaded, VFIO_MIG_BRIDGE_SOCKET unset), bridged (interposer with a bridge
// that accepted the device: its fd is in the interposer's table). Each mode runs twice: with
// the real syscall, and with a stub pread64 preloaded last (bench/pread-stub.c) so that the
// difference to the baseline is the interposer's own cost, not syscall noise.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const VFIO_H = '/usr/src/linux-headers-6.12.117+deb12-common/include/uapi/linux/vfio.h';
const WINDOW = 64 * 1024;

function parseArgs(argv) {
  const opts = { calls: 1_000_000, rounds: 7 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in opts) || argv[i + 1] === undefined) throw new Error(`usage: [--calls 1000000] [--rounds 7] (bad '${argv[i]}')`);
    opts[key] = Number(argv[i + 1]);
  }
  return opts;
}

function build(dir) {
  const cc = (...args) => execFileSync('gcc', args, { stdio: ['ignore', 'inherit', 'inherit'] });
  const so = join(dir, 'interposer.so'),
    fake = join(dir, 'fake.so'),
    loop = join(dir, 'pread-loop'),
    stub = join(dir, 'stub.so');
  cc('-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', '-o', so, here('../src/bridge/interposer.c'), '-ldl', '-lpthread');
  cc(
    '-shared',
    '-fPIC',
    '-O2',
    `-DVFIO_H="${VFIO_H}"`,
    '-D__user=',
    `-I${here('../test/native')}`,
    '-o',
    fake,
    here('../test/native/fake-vfio.c'),
    '-ldl',
  );
  cc('-shared', '-fPIC', '-O2', '-Wall', '-o', stub, here('pread-stub.c'));
  cc('-O2', '-Wall', '-o', loop, here('pread-loop.c'));
  return { so, fake, loop, stub };
}

/** Just enough bridge to accept the device (docs/bridge.md REGISTER); the bench sends nothing else. */
function startBridge(dir) {
  const path = join(dir, 'bridge.sock'),
    windowPath = join(dir, 'window');
  writeFileSync(windowPath, Buffer.alloc(WINDOW));
  const server = createServer((s) => {
    let req = Buffer.alloc(0);
    s.on('data', (d) => {
      req = Buffer.concat([req, d]);
      if (req.length === 24 + 88) s.write(registerAnswer(req, windowPath));
    });
  });
  return new Promise((resolve) => server.listen(path, () => resolve({ path, server })));
}

function registerAnswer(req, windowPath) {
  const regionsEnd = req.readBigUInt64LE(24 + 16),
    TIB = 1n << 40n;
  const out = Buffer.alloc(16 + 304);
  out.writeUInt32LE(0x31424d56, 0);
  out.writeUInt32LE(304, 8);
  out.writeUInt32LE(1, 16);
  out.writeUInt32LE(req.readUInt32LE(24 + 12), 20);
  out.writeUInt32LE(1 | 2 | 4 | 8, 24);
  out.writeBigUInt64LE(((regionsEnd + TIB - 1n) / TIB) * TIB, 32);
  out.writeBigUInt64LE(BigInt(4096 + WINDOW), 40);
  out.writeBigUInt64LE(4096n, 48);
  out.writeBigUInt64LE(BigInt(WINDOW), 56);
  out.write(windowPath, 64, 'latin1');
  return out;
}

/** Asynchronously: the bridge answers from this process's event loop. */
function run(loop, env, calls) {
  return new Promise((resolve, reject) =>
    execFile(loop, [String(calls)], { env: { ...process.env, ...env } }, (err, stdout) =>
      err ? reject(err) : resolve(JSON.parse(stdout)),
    ),
  );
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const opts = parseArgs(process.argv.slice(2));
const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-bench-'));
try {
  const { so, fake, loop, stub } = build(dir);
  for (const f of ['group', 'dev-a', 'plain']) writeFileSync(join(dir, f), Buffer.alloc(4096, 0x5a));
  const bridge = await startBridge(dir);
  const base = { FAKE_VFIO_DIR: dir, VFIO_MIG_BRIDGE_SOCKET: '' };
  const preloads = {
    fake: { ...base, LD_PRELOAD: fake },
    inert: { ...base, LD_PRELOAD: `${so}:${fake}` },
    bridged: { ...base, LD_PRELOAD: `${so}:${fake}`, VFIO_MIG_BRIDGE_SOCKET: bridge.path },
  };
  const modes = [];
  for (const kernel of ['syscall', 'stub']) {
    for (const [name, env] of Object.entries(preloads)) {
      modes.push({ kernel, name, env: kernel === 'stub' ? { ...env, LD_PRELOAD: `${env.LD_PRELOAD}:${stub}` } : env, samples: [] });
    }
  }
  for (let r = 0; r < opts.rounds; r++) {
    for (const m of modes) m.samples.push(await run(loop, m.env, opts.calls));
  }
  bridge.server.close();
  const report = { calls: opts.calls, rounds: opts.rounds };
  for (const kernel of ['syscall', 'stub']) {
    const rows = Object.fromEntries(
      modes
        .filter((m) => m.kernel === kernel)
        .map((m) => [
          m.name,
          {
            deviceFdNs: median(m.samples.map((s) => s.deviceFdNs)),
            plainFdNs: median(m.samples.map((s) => s.plainFdNs)),
            deviceBridged: m.samples.every((s) => s.bridged),
          },
        ]),
    );
    const cost = (mode, key) => Math.round((rows[mode][key] - rows.fake[key]) * 10) / 10;
    report[kernel] = {
      medianNsPerPread64: rows,
      interposerCostNs: {
        inertDeviceFd: cost('inert', 'deviceFdNs'),
        inertPlainFd: cost('inert', 'plainFdNs'),
        bridgedDeviceFd: cost('bridged', 'deviceFdNs'),
        bridgedPlainFd: cost('bridged', 'plainFdNs'),
      },
    };
  }
  console.log(JSON.stringify(report, null, 2));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
