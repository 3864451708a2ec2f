// Command-line options shared by the benches: `--name value` pairs, sizes as
// 256MiB / 8GiB / 64KiB, lists comma-separated. Unknown names are an error
// that prints the usage.
import { cpus, release, totalmem } from 'node:os';

export function parseSize(text) {
  const m = /^(\d+)\s*(|B|KiB|MiB|GiB)$/i.exec(String(text));
  if (!m) throw new Error(`bad size '${text}' (e.g. 64KiB, 1MiB, 8GiB)`);
  return Number(m[1]) * { '': 1, b: 1, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30 }[m[2].toLowerCase()];
}

export function sizeName(bytes) {
  for (const [unit, n] of [
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ])
    if (bytes % n === 0) return `${bytes / n}${unit}`;
  return `${bytes}B`;
}

/**
 * `defaults` maps each option to its default; arrays take comma-separated
 * lists (sizes parsed when the default holds numbers and the name says size
 * or window), numbers take numbers, booleans are flags without a value.
 */
export function parseOptions(argv, defaults, usage) {
  const opts = structuredClone(defaults);
  const fail = (why) => {
    throw new Error(`${why}\nusage: ${usage}`);
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '').replace(/-(\w)/g, (_, c) => c.toUpperCase());
    if (!argv[i].startsWith('--') || !(key in defaults)) fail(`unknown option '${argv[i]}'`);
    const d = defaults[key];
    if (typeof d === 'boolean') {
      opts[key] = true;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) fail(`'${argv[i - 1]}' needs a value`);
    if (Array.isArray(d))
      opts[key] = value
        .split(',')
        .filter(Boolean)
        .map((v) => (/size|window/i.test(key) ? parseSize(v) : v));
    else if (typeof d === 'number') opts[key] = /size|window/i.test(key) ? parseSize(value) : Number(value);
    else opts[key] = value;
  }
  return opts;
}

/** The machine a result was measured on. */
export function machine() {
  const c = cpus();
  return { cpus: c.length, cpuModel: c[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version };
}
