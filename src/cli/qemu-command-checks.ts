// What `vfio-mig bridge` checks in a QEMU command line before it runs it:
// the two mistakes that make a migration fail only later, on another host.
//  * The machine type. A migration stream names the machine it was made on, and
//    the destination must run that very type. QEMU 7.2 resolves the unversioned
//    aliases `pc` and `q35` (and the default when -machine is absent, `pc`) to
//    its own pc-i440fx-7.2 / pc-q35-7.2, while QEMU 10 resolves them to its 10.0
//    types and refuses a 7.2 stream ("Machine type received is 'pc-q35-7.2' and
//    local is 'pc-q35-10.0'"). Pinning the versioned type on both hosts works.
//  * VFIO migration in QEMU 7.2 is experimental and off unless the device has
//    `x-enable-migration=on` (hw/vfio/pci.c, default false); without it the
//    device blocks migration and the bridge has nothing to do.
// Warnings, not errors: the command may be something else, or a user may know.

/** QEMU's own aliases for x86 machine types that follow the QEMU version. */
const UNVERSIONED_MACHINES: Record<string, string> = {
  pc: 'pc-i440fx-7.2',
  q35: 'pc-q35-7.2',
  'pc-i440fx': 'pc-i440fx-7.2',
  'pc-q35': 'pc-q35-7.2',
};

/** Values of `-opt X` / `-opt=X` / `--opt X` / `--opt=X` in argv, in order. */
function optionValues(argv: readonly string[], names: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    for (const name of names) {
      for (const dash of ['-', '--']) {
        if (word === `${dash}${name}` && i + 1 < argv.length) out.push(argv[++i]);
        else if (word.startsWith(`${dash}${name}=`)) out.push(word.slice(dash.length + name.length + 1));
      }
    }
  }
  return out;
}

/** QEMU's `key=value,...` option syntax (a leading bare word is the implied key); `,,` is a literal comma. */
export function parseQemuOptions(text: string, impliedKey: string): Map<string, string> {
  const parts = text
    .replace(/,,/g, '\0')
    .split(',')
    .map((p) => p.replace(/\0/g, ','));
  const map = new Map<string, string>();
  parts.forEach((part, i) => {
    const eq = part.indexOf('=');
    if (eq < 0) {
      if (i === 0) map.set(impliedKey, part);
      else map.set(part, 'on'); // a bare flag
    } else {
      map.set(part.slice(0, eq), part.slice(eq + 1));
    }
  });
  return map;
}

/** A -device value as key/value pairs: QEMU's option syntax or (QEMU >= 6.2) JSON. */
function deviceProperties(value: string): Map<string, string> {
  if (value.trimStart().startsWith('{')) {
    try {
      const json = JSON.parse(value) as Record<string, unknown>;
      return new Map(Object.entries(json).map(([k, v]) => [k, String(v)]));
    } catch {
      return new Map();
    }
  }
  return parseQemuOptions(value, 'driver');
}

const isOn = (v: string | undefined) => v !== undefined && ['on', 'yes', 'true', 'y'].includes(v.toLowerCase());

/** Warnings for a command line run under the bridge; [] when nothing looks wrong (or it is not QEMU). */
export function qemuCommandWarnings(argv: readonly string[]): string[] {
  const program = argv[0]?.split('/').pop() ?? '';
  const vfioDevices = optionValues(argv, ['device'])
    .map(deviceProperties)
    .filter((p) => p.get('driver') === 'vfio-pci');
  if (!program.startsWith('qemu-system-') && vfioDevices.length === 0) return [];
  const warnings: string[] = [];

  const machines = optionValues(argv, ['machine', 'M'])
    .map((v) => parseQemuOptions(v, 'type').get('type'))
    .filter((t): t is string => t !== undefined);
  const machine = machines.at(-1);
  if (machine === undefined) {
    warnings.push(
      `no -machine given: QEMU 7.2 runs its default 'pc' (pc-i440fx-7.2), which a newer QEMU resolves to its own version and refuses from 7.2; pin it on both hosts, e.g. -machine pc-i440fx-7.2 (or pc-q35-7.2)`,
    );
  } else if (machine in UNVERSIONED_MACHINES) {
    const pinned = UNVERSIONED_MACHINES[machine];
    warnings.push(
      `-machine ${machine} is ${pinned} on QEMU 7.2 but a newer version on a newer QEMU, which then refuses this VM's stream; pin -machine ${pinned} on both hosts`,
    );
  }

  for (const props of vfioDevices) {
    if (!isOn(props.get('x-enable-migration'))) {
      const name = props.get('id') ?? props.get('sysfsdev') ?? props.get('host') ?? 'a vfio-pci device';
      warnings.push(
        `${name} has no x-enable-migration=on: QEMU 7.2 keeps VFIO migration off by default, so this device blocks migration (add x-enable-migration=on to its -device)`,
      );
    }
  }
  return warnings;
}
