// The real kernel files the oracles compile against. `.ci/run` (and
// `npm run setup`) install the Debian packages that provide them.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const KERNEL_VERSION = '6.12.117+deb12';
export const UAPI_VFIO_H = `/usr/src/linux-headers-${KERNEL_VERSION}-common/include/uapi/linux/vfio.h`;
export const KERNEL_SOURCE_TARBALL = '/usr/src/linux-source-6.12.tar.xz';

export function requireFile(path: string, pkg: string): string {
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: install the Debian package ${pkg} (npm run setup does)`);
  }
  return path;
}

/** One file out of linux-source-6.12's tarball, cached under the temp dir. */
export function kernelSourceFile(relPath: string): string {
  const cacheDir = join(tmpdir(), `vfio-mig-ksrc-${KERNEL_VERSION}`);
  const cached = join(cacheDir, relPath.replace(/\//g, '__'));
  if (!existsSync(cached)) {
    requireFile(KERNEL_SOURCE_TARBALL, 'linux-source-6.12');
    const text = execFileSync('tar', ['-xJf', KERNEL_SOURCE_TARBALL, '-O', `linux-source-6.12/${relPath}`], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(cached, text);
  }
  return readFileSync(cached, 'utf8');
}

/** `#include` lines for the raw (not headers_install'ed) uapi vfio.h. */
export function includeVfioH(): string {
  return `#define __user\n#include "${requireFile(UAPI_VFIO_H, `linux-headers-${KERNEL_VERSION}-common`)}"\n`;
}
