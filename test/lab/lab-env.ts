// What the lab's guest script hands the tests: the four mtty-2 instances and the QEMU 10 root.
import { readdirSync, readlinkSync } from 'node:fs';

function need(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: the lab tests run inside the VM (npm run lab), not on the host`);
  return v;
}

export const DEV_A = need('LAB_DEV_A');
export const DEV_B = need('LAB_DEV_B');
export const DEV_C = need('LAB_DEV_C');
export const DEV_D = need('LAB_DEV_D');
export const sysfs = (uuid: string) => `/sys/bus/mdev/devices/${uuid}`;

/** The CLI's address of an mdev instance: its group node and its name. */
export const address = (uuid: string) =>
  `/dev/vfio/${readlinkSync(`${sysfs(uuid)}/iommu_group`)
    .split('/')
    .pop()}:${uuid}`;

/** Open fds of this process, to prove nothing leaks. */
export const fdCount = (): number => readdirSync('/proc/self/fd').length;
