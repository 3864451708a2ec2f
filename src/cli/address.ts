// Device addresses every subcommand takes:
//   sim:v2?size=256MiB&flags=7&seed=1            simulated v2 driver
//   sim:v1?size=256MiB&window=1MiB&policy=qemu   simulated v1 region
//   /dev/vfio/<group>:<device-name>              kernel, group/container API
//   /dev/vfio/devices/vfioN                      kernel, cdev API
import { V1_POLICIES, type V1Policy } from '../../legacy/v1-transitions.js';
import { parseFlags, parseSize, type SizeLimit } from './parse-values.js';
import { UsageError } from './usage-error.js';

/**
 * How large a simulated device may be: it keeps 6 bytes per 4 KiB page in
 * memory (generation, dirty flag, received flag) and `vfio-mig demo` makes six
 * of them; 64 GiB is 96 MiB each. Larger sizes are refused up front, not by a
 * failed allocation halfway through a command.
 */
export const SIM_SIZE_LIMIT: SizeLimit = { max: 64 * 2 ** 30, why: 'a simulated device keeps 6 bytes per 4 KiB page in memory' };
/** The v1 data window: the region's, the translator's and the client's copies are each a buffer in memory. */
export const SIM_WINDOW_LIMIT: SizeLimit = { max: 64 * 2 ** 20, why: 'every copy of a v1 data window is a buffer in memory' };

export type DeviceAddress =
  | { kind: 'sim-v2'; size: number; flags: number; seed: number }
  | { kind: 'sim-v1'; size: number; window: number; seed: number; policy: V1Policy }
  | { kind: 'group'; groupPath: string; deviceName: string }
  | { kind: 'cdev'; path: string };

const EXAMPLES =
  "e.g. 'sim:v2?size=256MiB&flags=7', 'sim:v1?size=64MiB&window=1MiB', '/dev/vfio/12:0000:3b:00.1' or '/dev/vfio/devices/vfio0'";

export function parseAddress(text: string): DeviceAddress {
  if (text.startsWith('sim:')) return parseSim(text);
  const cdev = /^\/dev\/vfio\/devices\/vfio\d+$/.exec(text);
  if (cdev) return { kind: 'cdev', path: text };
  const group = /^(\/dev\/vfio\/(?:noiommu-)?\d+):(.+)$/.exec(text);
  if (group) return { kind: 'group', groupPath: group[1], deviceName: group[2] };
  if (/^\/dev\/vfio\/(?:noiommu-)?\d+$/.test(text)) {
    throw new UsageError(
      `'${text}' names a group, not a device: add ':<device-name>' (the PCI address or mdev UUID, see ls /sys/kernel/iommu_groups/N/devices)`,
    );
  }
  throw new UsageError(`bad device address '${text}': ${EXAMPLES}`);
}

function parseSim(text: string): DeviceAddress {
  const [head, query = ''] = text.slice(4).split('?', 2);
  if (head !== 'v1' && head !== 'v2') throw new UsageError(`bad simulated device '${text}': use sim:v1 or sim:v2`);
  const params = new URLSearchParams(query);
  const allowed = head === 'v2' ? ['size', 'flags', 'seed'] : ['size', 'window', 'seed', 'policy'];
  for (const key of params.keys()) {
    if (!allowed.includes(key)) throw new UsageError(`unknown parameter '${key}' in '${text}': sim:${head} takes ${allowed.join(', ')}`);
    if (params.getAll(key).length > 1) throw new UsageError(`'${key}' given twice in '${text}': give each parameter once`);
  }
  const where = ` in '${text}'`;
  const size = parseSize(params.get('size') ?? '64MiB', 'size', SIM_SIZE_LIMIT, where);
  const seedText = params.get('seed') ?? '1';
  const seed = Number(seedText);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new UsageError(`bad seed '${seedText}': use an integer 0..4294967295`);
  if (head === 'v2') {
    const flags = parseFlags(params.get('flags') ?? '7');
    if (!(flags & 1)) throw new UsageError(`bad flags in '${text}': STOP_COPY (1) is mandatory for a v2 driver`);
    return { kind: 'sim-v2', size, flags, seed };
  }
  const window = parseSize(params.get('window') ?? '1MiB', 'window', SIM_WINDOW_LIMIT, where);
  const policy = params.get('policy') ?? 'qemu';
  if (!(V1_POLICIES as readonly string[]).includes(policy)) {
    throw new UsageError(`bad policy '${policy}': use ${V1_POLICIES.join(', ')}`);
  }
  return { kind: 'sim-v1', size, window, seed, policy: policy as V1Policy };
}
