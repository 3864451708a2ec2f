// ABI oracle for what only the kernel backend uses: the vfio cdev / iommufd
// structs and ioctl numbers (gcc + the real 6.12 uapi headers), and the layout
// of mtty's migration stream that the fake transcribes (gcc + the struct
// definitions cut out of the real samples/vfio-mdev/mtty.c).
import { describe, expect, it } from 'vitest';
import {
  IOMMU_DESTROY,
  IOMMU_IOAS_ALLOC,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
  iommu_destroy,
  iommu_ioas_alloc,
  vfio_device_attach_iommufd_pt,
  VFIO_NOIOMMU_IOMMU,
  vfio_device_bind_iommufd,
  type CStruct,
  type FieldMap,
} from '../index.js';
import { MTTY_HEADER_SIZE, MTTY_MAGIC, MTTY_PORT_SIZE, UART_SCR } from '../testing.js';
import { parseNameValues, runC } from './support/c-program.js';
import { KERNEL_VERSION, includeVfioH, kernelSourceFile, requireFile } from './support/kernel-tree.js';

const IOMMUFD_H = `/usr/src/linux-headers-${KERNEL_VERSION}-common/include/uapi/linux/iommufd.h`;

function layoutLines(structs: CStruct<FieldMap>[]): string {
  const lines: string[] = [];
  for (const s of structs) {
    lines.push(`printf("%s %zu\\n", "${s.name}.sizeof", sizeof(struct ${s.name}));`);
    for (const f of Object.keys(s.fields)) lines.push(`printf("%s %zu\\n", "${s.name}.${f}", offsetof(struct ${s.name}, ${f}));`);
  }
  return lines.join('\n');
}

function expectLayouts(structs: CStruct<FieldMap>[], c: Map<string, bigint>): void {
  for (const s of structs) {
    expect(`${s.name}.sizeof=${s.size}`).toBe(`${s.name}.sizeof=${c.get(`${s.name}.sizeof`)}`);
    for (const [f, [, off]] of Object.entries(s.fields)) expect(`${s.name}.${f}=${off}`).toBe(`${s.name}.${f}=${c.get(`${s.name}.${f}`)}`);
  }
}

describe('cdev / iommufd ABI against gcc and the real 6.12 headers', () => {
  it('ioctl numbers and struct layouts match', () => {
    const structs = [
      vfio_device_bind_iommufd,
      vfio_device_attach_iommufd_pt,
      iommu_ioas_alloc,
      iommu_destroy,
    ] as unknown as CStruct<FieldMap>[];
    const consts = {
      VFIO_NOIOMMU_IOMMU,
      VFIO_DEVICE_BIND_IOMMUFD,
      VFIO_DEVICE_ATTACH_IOMMUFD_PT,
      VFIO_DEVICE_DETACH_IOMMUFD_PT,
      IOMMU_IOAS_ALLOC,
      IOMMU_DESTROY,
    };
    const src = `#include <stdio.h>\n#include <stddef.h>\n${includeVfioH()}#include "${requireFile(IOMMUFD_H, `linux-headers-${KERNEL_VERSION}-common`)}"
int main(void) {
${Object.keys(consts)
  .map((k) => `printf("%s %llu\\n", "${k}", (unsigned long long)(${k}));`)
  .join('\n')}
${layoutLines(structs)}
return 0; }\n`;
    const c = parseNameValues(runC(src));
    for (const [k, v] of Object.entries(consts)) expect(`${k}=${v}`).toBe(`${k}=${c.get(k)}`);
    expectLayouts(structs, c);
  });
});

describe('the mtty stream layout the fake transcribes', () => {
  it('matches struct mtty_data / serial_port compiled from the real mtty.c', () => {
    const mtty = kernelSourceFile('samples/vfio-mdev/mtty.c');
    const cut = (name: string) => {
      const m = new RegExp(`struct ${name} \\{[\\s\\S]*?\\n\\};`).exec(mtty);
      if (!m) throw new Error(`struct ${name} not found in mtty.c`);
      return m[0];
    };
    const magic = /#define MTTY_MAGIC (0x[0-9a-f]+)/.exec(mtty)![1];
    const src = `#include <stdio.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <stdbool.h>
typedef uint8_t u8; typedef uint16_t u16; typedef uint32_t u32; typedef uint64_t u64;
#define MAX_FIFO_SIZE 16
${cut('rxtx')}
${cut('serial_port')}
${cut('mtty_data')}
int main(void) {
printf("header %zu\\nport %zu\\nscr %zu\\nmaxfifo %zu\\n", offsetof(struct mtty_data, ports), sizeof(struct serial_port),
  offsetof(struct serial_port, uart_reg) + 7, offsetof(struct serial_port, max_fifo_size));
return 0; }\n`;
    const c = parseNameValues(runC(src));
    expect(BigInt(MTTY_HEADER_SIZE)).toBe(c.get('header'));
    expect(BigInt(MTTY_PORT_SIZE)).toBe(c.get('port'));
    expect(BigInt(UART_SCR)).toBe(c.get('scr'));
    expect(c.get('maxfifo')).toBe(33n);
    expect(MTTY_MAGIC).toBe(BigInt(magic));
  });
});
