// The UART scratch registers of an mtty-2 instance's two ports: a mark set on a
// migration's source that must arrive on its destination.
import { KernelMigrationDevice } from '../../index.js';
import { readScratch, writeScratch } from '../support/mtty-scenarios.js';
import { sysfs } from './lab-env.js';

export type Marks = [number, number];

/** Reset the device and set both ports' marks (RUNNING afterwards). */
export async function setMarks(uuid: string, marks: Marks): Promise<void> {
  const d = await KernelMigrationDevice.open({ sysfs: sysfs(uuid) });
  try {
    await d.reset();
    writeScratch(d, marks[0], 0);
    writeScratch(d, marks[1], 1);
  } finally {
    await d.close();
  }
}

/** Both ports' marks; the device is reset afterwards, RUNNING for the next scenario whatever QEMU left. */
export async function marksOf(uuid: string): Promise<Marks> {
  const d = await KernelMigrationDevice.open({ sysfs: sysfs(uuid) });
  try {
    return [readScratch(d, 0), readScratch(d, 1)];
  } finally {
    await d.reset();
    await d.close();
  }
}
