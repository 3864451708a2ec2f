// `npm run bench`: every part of the translator benchmarks (issue 14), each
// in a process of its own (node --expose-gc), one JSON object on stdout with
// each part's output and the load average around each; progress on stderr.
//
//   npm run bench                        the default set (about 15 minutes on 2 shared cores)
//   npm run bench -- --long              adds the SimDevice and pipe runs at 8 GiB and roundtrip-8g
//   npm run bench -- --parts data-path,state-change [--reps 9]
//   npm run bench -- --smoke             every part at tiny sizes, one repetition (the test suite runs this)
//
// Parts: data-path (a-d), data-path-8g (d at 8 GiB), real-fd (e), state-change (f),
// memory (g); with --long also data-path-sim-8g, real-fd-8g and roundtrip-8g.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { load } from './lib/measure.mjs';
import { machine, parseOptions } from './lib/options.mjs';

const USAGE = 'npm run bench -- [--long] [--smoke] [--parts data-path,data-path-8g,real-fd,state-change,memory] [--reps N]';
const here = (f) => fileURLToPath(new URL(f, import.meta.url));

/** Each part: its script and arguments, at full size and as a smoke run. */
const PARTS = {
  'data-path': { script: 'data-path.mjs', args: [], smoke: ['--sizes', '4MiB', '--windows', '64KiB,1MiB'] },
  'data-path-8g': {
    script: 'data-path.mjs',
    args: ['--devices', 'zero', '--sizes', '8GiB'],
    smoke: ['--devices', 'zero', '--sizes', '16MiB', '--windows', '1MiB'],
  },
  'real-fd': { script: 'real-fd.mjs', args: [], smoke: ['--sizes', '4MiB', '--windows', '64KiB,1MiB'] },
  'state-change': { script: 'state-change.mjs', args: [], smoke: ['--changes', '20'] },
  memory: { script: 'memory.mjs', args: [], smoke: ['--sizes', '4MiB,16MiB'], noReps: true },
  'data-path-sim-8g': { script: 'data-path.mjs', args: ['--devices', 'sim', '--sizes', '8GiB'], long: true },
  'real-fd-8g': { script: 'real-fd.mjs', args: ['--sizes', '8GiB', '--windows', '1MiB'], long: true },
  'roundtrip-8g': { script: 'roundtrip-8g.mjs', args: [], long: true, noReps: true },
};

function runPart(name, part, o) {
  const args = [...(o.smoke ? part.smoke : part.args)];
  if (!part.noReps && (o.smoke || o.reps)) args.push('--reps', String(o.smoke ? 1 : o.reps));
  const argv = ['--expose-gc', here(part.script), ...args];
  process.stderr.write(`bench: ${name}: node ${argv.join(' ')}\n`);
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, argv, { maxBuffer: 64 << 20 }, (err, stdout) => {
      if (err) reject(new Error(`${name} failed: ${err.message}`));
      else resolve(JSON.parse(stdout));
    });
    child.stderr.pipe(process.stderr);
  });
}

async function main() {
  const o = parseOptions(process.argv.slice(2), { long: false, smoke: false, parts: [], reps: 0 }, USAGE);
  const names = o.parts.length ? o.parts : Object.keys(PARTS).filter((n) => (o.smoke ? PARTS[n].smoke : !PARTS[n].long || o.long));
  const started = new Date().toISOString();
  const parts = {};
  for (const name of names) {
    const part = PARTS[name];
    if (!part) throw new Error(`unknown part '${name}'\nusage: ${USAGE}`);
    if (o.smoke && !part.smoke) throw new Error(`part '${name}' has no smoke run`);
    const loadBefore = load();
    parts[name] = { loadBefore, ...(await runPart(name, part, o)), loadAfter: load() };
  }
  console.log(
    JSON.stringify(
      { bench: 'vfio-mig-shim translators', machine: machine(), started, finished: new Date().toISOString(), options: o, parts },
      null,
      2,
    ),
  );
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
