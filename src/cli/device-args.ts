// Arguments the device subcommands share: one device address, --via, and
// running something with a device that is closed afterwards on every path.
import { MigFlags } from '../v2/states.js';
import { parseAddress, type DeviceAddress } from './address.js';
import { openDevice, type OpenedDevice, type Protocol } from './open-device.js';
import type { CliContext } from './command.js';
import { UsageError } from './usage-error.js';

export function oneAddress(positionals: string[], command: string): { text: string; address: DeviceAddress } {
  if (positionals.length === 0)
    throw new UsageError(
      `${command} needs a device address, e.g. 'sim:v2?size=64MiB' or '/dev/vfio/12:0000:3b:00.1' (see vfio-mig ${command} --help)`,
    );
  if (positionals.length > 1)
    throw new UsageError(`${command} takes one device address, got ${positionals.length}: ${positionals.map((p) => `'${p}'`).join(' ')}`);
  return { text: positionals[0], address: parseAddress(positionals[0]) };
}

export function parseVia(value: string | boolean | undefined): Protocol | undefined {
  if (value === undefined) return undefined;
  if (value === 'v1' || value === 'v2') return value;
  throw new UsageError(`bad --via '${String(value)}': use v1 (the region protocol, QEMU <= 7.2) or v2 (FSM + data_fd, QEMU >= 8.0)`);
}

export function parseCount(text: string, option: string, max: number): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n > max) throw new UsageError(`bad ${option} '${text}': use an integer 0..${max}`);
  return n;
}

export function requireOption(value: string | boolean | undefined, option: string, command: string, example: string): string {
  if (typeof value !== 'string' || value === '') throw new UsageError(`${command} needs ${option} (e.g. ${example})`);
  return value;
}

/** "STOP_COPY|P2P|PRE_COPY" for 7. */
export function flagNames(flags: number): string {
  const names = Object.entries(MigFlags)
    .filter(([, bit]) => flags & bit)
    .map(([name]) => name);
  return names.length ? names.join('|') : 'none';
}

/** Open `text`, run `body`, close the device whatever happens; the first error wins. */
export async function withDevice<T>(
  ctx: CliContext,
  text: string,
  address: DeviceAddress,
  body: (dev: OpenedDevice) => Promise<T>,
): Promise<T> {
  const dev = await openDevice(text, address, { syscalls: ctx.syscalls });
  let result: T;
  try {
    result = await body(dev);
  } catch (e) {
    await dev.close().catch(() => undefined);
    throw e;
  }
  await dev.close();
  return result;
}
