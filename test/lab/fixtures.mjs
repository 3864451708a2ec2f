// The lab's recorded traces (record-traces.test.ts wrote them raw to the
// results share) turned into fixtures and compared with test/fixtures/traces:
//   node test/lab/fixtures.mjs RAW_DIR FIXTURE_DIR [--write]
// QEMU 7.2's bridge traces are normalised; QEMU 10's trace-event logs are
// converted, then normalised (docs/trace-format.md). Prints, per scenario,
// whether its fixture is unchanged, changed (with the diff) or new. A
// recording equal to one of the scenario's accepted variants
// (variants/<scenario>~<label>.jsonl: another choice real QEMU made in the
// same scenario, such as switching over without a pre-copy iteration) counts
// as unchanged. With --write the changed fixtures are replaced, and the raw
// recordings they came from are kept beside them in raw/ (the unit tests
// check that normalising or converting those gives the fixture); with
// --variant LABEL each changed recording is added as the variant LABEL of its
// scenario instead, its fixture kept. Exit 0 when nothing changed or with
// --write/--variant, 3 when a fixture differs from the recording, 2 on bad input.
// Runs on the host after the VM (run.sh), with node, against dist/. After a
// change to the normalisation or the conversion, the fixtures are rebuilt
// from their kept raw recordings with
//   node test/lab/fixtures.mjs test/fixtures/traces/raw test/fixtures/traces --write
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { normaliseTrace } from '../../dist/legacy/qemu/trace/normalise.js';
import { convertQemuTrace } from '../../dist/legacy/qemu/trace/qemu-trace-events.js';
import { formatTrace, parseTrace } from '../../dist/legacy/qemu/trace/trace-format.js';

const [raw, fixtures, ...flags] = process.argv.slice(2);
const variantAt = flags.indexOf('--variant');
const variantLabel = variantAt >= 0 ? flags[variantAt + 1] : undefined;
const known = flags.filter((f, i) => f === '--write' || (variantAt >= 0 && (i === variantAt || i === variantAt + 1)));
if (!raw || !fixtures || known.length !== flags.length || (variantAt >= 0 && !/^[a-z0-9-]+$/.test(variantLabel ?? ''))) {
  console.error('usage: node test/lab/fixtures.mjs RAW_DIR FIXTURE_DIR [--write | --variant LABEL]  (LABEL: a-z, 0-9, -)');
  process.exit(2);
}
if (variantLabel && flags.includes('--write')) {
  console.error('fixtures.mjs: --write replaces fixtures, --variant keeps them: give one');
  process.exit(2);
}
const write = flags.includes('--write');
const variantsDir = join(fixtures, 'variants');
const recorded = JSON.parse(readFileSync(join(raw, 'recorded.json'), 'utf8'));

const rawName = (r) => `${r.scenario}.${r.qemu === '7.2' ? 'jsonl' : 'qemu.log'}`;

/** The accepted variants of a scenario: label and normalised text. */
function variantsOf(scenario) {
  if (!existsSync(variantsDir)) return [];
  return readdirSync(variantsDir)
    .filter((f) => f.startsWith(`${scenario}~`) && f.endsWith('.jsonl'))
    .map((f) => ({ label: f.slice(scenario.length + 1, -'.jsonl'.length), text: readFileSync(join(variantsDir, f), 'utf8') }));
}

/** The fixture text for one recorded scenario. */
function fixtureOf(r) {
  const client = { name: 'QEMU', version: r.version };
  const scenario = { name: r.scenario, summary: r.summary };
  const lines =
    r.qemu === '7.2'
      ? parseTrace(readFileSync(join(raw, rawName(r)), 'utf8'))
      : parseTrace(
          formatTrace(
            convertQemuTrace(readFileSync(join(raw, rawName(r)), 'utf8'), { client, devices: { [r.device.name]: r.device.identity } }),
          ),
        );
  return formatTrace(normaliseTrace(lines, { client, scenario }));
}

let changed = 0;
const kept = join(fixtures, 'raw');
mkdirSync(kept, { recursive: true });
const scratch = mkdtempSync(join(tmpdir(), 'vfio-mig-fixtures-'));
try {
  for (const r of recorded) {
    const path = join(fixtures, `${r.scenario}.jsonl`);
    const now = fixtureOf(r);
    const before = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
    if (before === now) {
      console.log(`lab: fixture ${r.scenario}: unchanged`);
      continue;
    }
    const variant = variantsOf(r.scenario).find((v) => v.text === now);
    if (variant) {
      console.log(`lab: fixture ${r.scenario}: unchanged (its accepted variant "${variant.label}")`);
      continue;
    }
    if (before === undefined) {
      console.log(`lab: fixture ${r.scenario}: new (${now.split('\n').length - 1} lines)`);
    } else {
      const fresh = join(scratch, `${r.scenario}.jsonl`);
      writeFileSync(fresh, now);
      const diff = spawnSync('diff', ['-u', '--label', `${path} (committed)`, '--label', `${path} (recorded now)`, path, fresh], {
        encoding: 'utf8',
      });
      console.log(`lab: fixture ${r.scenario}: CHANGED\n${diff.stdout}`);
    }
    changed++;
    if (variantLabel) {
      mkdirSync(join(variantsDir, 'raw'), { recursive: true });
      writeFileSync(join(variantsDir, `${r.scenario}~${variantLabel}.jsonl`), now);
      copyFileSync(
        join(raw, rawName(r)),
        join(variantsDir, 'raw', `${r.scenario}~${variantLabel}.${rawName(r).split('.').slice(1).join('.')}`),
      );
    }
    if (write) {
      writeFileSync(path, now);
      if (resolve(raw) !== resolve(kept)) copyFileSync(join(raw, rawName(r)), join(kept, rawName(r)));
    }
  }
  if (changed && write) {
    // What the recorder knew about each raw recording, for the tests that rebuild the fixtures from raw/.
    const before = existsSync(join(kept, 'recorded.json')) ? JSON.parse(readFileSync(join(kept, 'recorded.json'), 'utf8')) : [];
    const merged = [...before.filter((b) => !recorded.some((r) => r.scenario === b.scenario)), ...recorded];
    writeFileSync(join(kept, 'recorded.json'), `${JSON.stringify(merged, null, 2)}\n`);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
if (changed && write) console.log(`lab: wrote ${changed} fixture(s) to ${fixtures}`);
if (changed && variantLabel) console.log(`lab: added ${changed} variant(s) "${variantLabel}" to ${variantsDir}`);
if (changed && !write && !variantLabel)
  console.log(`lab: ${changed} fixture(s) differ from this recording; LAB_RECORD=1 npm run lab records them anew`);
process.exit(changed && !write && !variantLabel ? 3 : 0);
