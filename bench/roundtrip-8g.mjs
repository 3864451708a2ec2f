// 8 GiB SimDevice round trip over the v2 client, source and destination in
// separate processes: `source` saves to its stdout, which is piped into the
// `destination`'s stdin, which loads. Prints one JSON object with the
// throughput and each side's peak RSS (process.resourceUsage().maxRSS).
//
//   node bench/roundtrip-8g.mjs                 (8 GiB, flags 7; also in `npm run bench -- --long`)
//   node bench/roundtrip-8g.mjs --size 256MiB --flags 1 --rounds 2 --steps 1000
//
// Needs the build (dist/): it imports the package as a user would.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseSize } from './lib/options.mjs';

const SELF = fileURLToPath(import.meta.url);
const RSS_LIMIT_MB = 200;

function parseArgs(argv) {
  const opts = { size: 8 * 2 ** 30, flags: 7, rounds: 2, steps: 20_000, seed: 7 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (!(key in opts) || value === undefined)
      throw new Error(`usage: [--size 8GiB] [--flags 7] [--rounds 2] [--steps 20000] [--seed 7] (bad '${argv[i]}')`);
    opts[key] = key === 'size' ? parseSize(value) : Number(value);
  }
  return opts;
}

const mb = (kb) => Math.round((kb / 1024) * 10) / 10;

async function source(opts) {
  const { SimDevice, SimV2Driver, saveV2 } = await import('../dist/index.js');
  const device = new SimDevice({ size: opts.size, seed: opts.seed });
  const driver = new SimV2Driver(device, { flags: opts.flags });
  const t0 = performance.now();
  const saved = await saveV2(driver, process.stdout, {
    precopyRounds: opts.rounds,
    betweenRounds: () => void device.step(opts.steps),
  });
  await new Promise((resolve) => process.stdout.end(resolve));
  const report = {
    side: 'source',
    seconds: (performance.now() - t0) / 1000,
    precopyBytes: saved.precopyBytes,
    stopCopyBytes: saved.stopCopyBytes,
    fileBytes: saved.fileBytes,
    steps: device.steps,
    fingerprint: device.fingerprint(),
    maxRssMB: mb(process.resourceUsage().maxRSS),
  };
  process.stderr.write(`${JSON.stringify(report)}\n`);
}

async function destination(opts) {
  const { SimDevice, SimV2Driver, loadV2 } = await import('../dist/index.js');
  const device = new SimDevice({ size: opts.size, seed: 0 });
  const driver = new SimV2Driver(device, { flags: opts.flags });
  const t0 = performance.now();
  const loaded = await loadV2(driver, process.stdin);
  const report = {
    side: 'destination',
    seconds: (performance.now() - t0) / 1000,
    deviceBytes: loaded.deviceBytes,
    state: await driver.getState(),
    fingerprint: device.fingerprint(),
    maxRssMB: mb(process.resourceUsage().maxRSS),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

function collect(stream) {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (d) => (text += d));
  return new Promise((resolve) => stream.on('end', () => resolve(text)));
}

async function main() {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === 'source') return source(parseArgs(rest));
  if (mode === 'destination') return destination(parseArgs(rest));
  const args = mode === undefined ? [] : [mode, ...rest];
  const opts = parseArgs(args);
  const t0 = performance.now();
  const src = spawn(process.execPath, [SELF, 'source', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const dst = spawn(process.execPath, [SELF, 'destination', ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  src.stdout.pipe(dst.stdin);
  const [srcText, dstText, srcCode, dstCode] = await Promise.all([
    collect(src.stderr),
    collect(dst.stdout),
    new Promise((r) => src.on('close', r)),
    new Promise((r) => dst.on('close', r)),
  ]);
  const seconds = (performance.now() - t0) / 1000;
  if (srcCode !== 0 || dstCode !== 0) {
    process.stderr.write(`source exit ${srcCode}: ${srcText}\ndestination exit ${dstCode}: ${dstText}\n`);
    process.exit(1);
  }
  const s = JSON.parse(srcText.trim().split('\n').at(-1));
  const d = JSON.parse(dstText.trim().split('\n').at(-1));
  const deviceBytes = s.precopyBytes + s.stopCopyBytes;
  const result = {
    bench: 'roundtrip-8g',
    sizeBytes: opts.size,
    flags: opts.flags,
    precopyRounds: opts.rounds,
    stepsPerRound: opts.steps,
    deviceBytes,
    fileBytes: s.fileBytes,
    wallSeconds: Math.round(seconds * 100) / 100,
    throughputMiBps: Math.round(deviceBytes / 2 ** 20 / seconds),
    source: {
      seconds: Math.round(s.seconds * 100) / 100,
      precopyBytes: s.precopyBytes,
      stopCopyBytes: s.stopCopyBytes,
      steps: s.steps,
      maxRssMB: s.maxRssMB,
    },
    destination: { seconds: Math.round(d.seconds * 100) / 100, deviceBytes: d.deviceBytes, finalState: d.state, maxRssMB: d.maxRssMB },
    fingerprintsEqual: s.fingerprint === d.fingerprint,
    rssLimitMB: RSS_LIMIT_MB,
    withinRssLimit: s.maxRssMB < RSS_LIMIT_MB && d.maxRssMB < RSS_LIMIT_MB,
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  if (!result.fingerprintsEqual || !result.withinRssLimit || d.deviceBytes !== deviceBytes) process.exit(1);
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
