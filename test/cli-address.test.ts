import { describe, expect, it } from 'vitest';
import { parseAddress } from '../src/cli/address.js';
import { UsageError } from '../src/cli/usage-error.js';

describe('device addresses', () => {
  it('parses the four kinds', () => {
    expect(parseAddress('sim:v2?size=256MiB&flags=7')).toEqual({ kind: 'sim-v2', size: 256 << 20, flags: 7, seed: 1 });
    expect(parseAddress('sim:v1?size=8MiB&window=4KiB&policy=uapi&seed=9')).toEqual({
      kind: 'sim-v1',
      size: 8 << 20,
      window: 4096,
      seed: 9,
      policy: 'uapi',
    });
    for (const policy of ['qemu', 'uapi', 'libvfio-user', 'libvfio-user-as-written']) {
      expect(parseAddress(`sim:v1?policy=${policy}`)).toMatchObject({ kind: 'sim-v1', policy });
    }
    expect(parseAddress('/dev/vfio/12:0000:3b:00.1')).toEqual({ kind: 'group', groupPath: '/dev/vfio/12', deviceName: '0000:3b:00.1' });
    expect(parseAddress('/dev/vfio/0:83b8f4f2-509f-382f-3c1e-e6bfe0fa1001')).toMatchObject({ kind: 'group', groupPath: '/dev/vfio/0' });
    expect(parseAddress('/dev/vfio/devices/vfio3')).toEqual({ kind: 'cdev', path: '/dev/vfio/devices/vfio3' });
  });
  it('says what is wrong and how to fix it', () => {
    const cases: [string, RegExp][] = [
      ['sim:v3', /use sim:v1 or sim:v2/],
      ['sim:v2?flags=2', /STOP_COPY \(1\) is mandatory/],
      ['sim:v2?window=1MiB', /unknown parameter 'window'/],
      ['sim:v1?policy=strict', /use qemu, uapi, libvfio-user, libvfio-user-as-written$/],
      ['sim:v2?size=huge', /bad size/],
      ['/dev/vfio/12', /add ':<device-name>'/],
      ['eth0', /e\.g\./],
      ['sim:v2?seed=-4', /bad seed/],
    ];
    for (const [text, message] of cases) {
      expect(() => parseAddress(text), text).toThrow(UsageError);
      expect(() => parseAddress(text), text).toThrow(message);
    }
  });
});
