// Issue 14, part (g): peak RSS (process.resourceUsage().maxRSS) of one
// process streaming a whole state through each translator, 256 MiB vs 8 GiB,
// each run in a process of its own. Devices: the zero-cost ones (lib/), whose
// own memory does not grow with the state, so what grows is the path's; the
// direct paths run beside for reference. Yardstick: peak RSS at the big size
// <= peak RSS at the small size + one window + 16 MiB.
//
//   node bench/memory.mjs [--sizes 256MiB,8GiB] [--window 1MiB] [--paths v1-face,v2-face,direct-v2,direct-v1] [--directions save,resume]
//
// Paths: lib/zero-cost-paths.mjs.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { load, round } from './lib/measure.mjs';
import { machine, parseOptions, parseSize, sizeName } from './lib/options.mjs';
import { ZERO_COST_PATHS as PATHS } from './lib/zero-cost-paths.mjs';

const USAGE =
  'node bench/memory.mjs [--sizes 256MiB,8GiB] [--window 1MiB] [--paths v1-face,v2-face,direct-v2,direct-v1] [--directions save,resume]';
const SELF = fileURLToPath(import.meta.url);
const MiB = 2 ** 20;
const SLACK_MIB = 16;

/** In the child: one run, then its peak RSS. */
async function child([path, direction, sizeText, windowText]) {
  const size = parseSize(sizeText);
  const t0 = performance.now();
  const bytes = await PATHS[path][direction](size, parseSize(windowText));
  if (bytes !== size) throw new Error(`${path} ${direction}: ${bytes} device bytes, expected ${size}`);
  console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, maxRssKiB: process.resourceUsage().maxRSS }));
}

function runChild(path, direction, size, window) {
  const out = execFileSync(process.execPath, [SELF, '--child', path, direction, sizeName(size), sizeName(window)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return JSON.parse(out.trim().split('\n').at(-1));
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(argv.slice(1));
  const o = parseOptions(
    argv,
    { sizes: [256 * MiB, 8 * 2 ** 30], window: MiB, paths: Object.keys(PATHS), directions: ['save', 'resume'] },
    USAGE,
  );
  const [small, big] = [Math.min(...o.sizes), Math.max(...o.sizes)];
  const cases = [];
  for (const path of o.paths) {
    if (!PATHS[path]) throw new Error(`unknown path '${path}'\nusage: ${USAGE}`);
    for (const direction of o.directions) {
      const loadBefore = load();
      const rss = {};
      for (const size of o.sizes) {
        const r = runChild(path, direction, size, o.window);
        rss[sizeName(size)] = {
          maxRssMiB: round(r.maxRssKiB / 1024, 1),
          seconds: round(r.seconds, 2),
          MiBps: round(size / MiB / r.seconds, 0),
        };
      }
      const growthMiB = round(rss[sizeName(big)].maxRssMiB - rss[sizeName(small)].maxRssMiB, 1);
      const allowedMiB = round(o.window / MiB + SLACK_MIB, 1);
      const c = {
        part: 'g',
        path,
        direction,
        window: sizeName(o.window),
        rss,
        growthMiB,
        allowedGrowthMiB: allowedMiB,
        withinTarget: growthMiB <= allowedMiB,
        rssBigToSmallRatio: round(rss[sizeName(big)].maxRssMiB / rss[sizeName(small)].maxRssMiB),
        loadBefore,
        loadAfter: load(),
      };
      cases.push(c);
      process.stderr.write(
        `memory ${path} ${direction}: ${Object.entries(rss)
          .map(([k, v]) => `${k} ${v.maxRssMiB} MiB`)
          .join(', ')}; growth ${growthMiB} MiB (allowed ${allowedMiB})\n`,
      );
    }
  }
  console.log(
    JSON.stringify(
      { bench: 'memory', machine: machine(), options: { ...o, sizes: o.sizes.map(sizeName), window: sizeName(o.window) }, cases },
      null,
      2,
    ),
  );
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
