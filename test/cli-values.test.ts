import { describe, expect, it } from 'vitest';
import { formatSize, parseFlags, parseSize } from '../src/cli/parse-values.js';
import { UsageError } from '../src/cli/usage-error.js';

describe('CLI value parsing', () => {
  it('sizes', () => {
    expect(parseSize('256MiB')).toBe(256 << 20);
    expect(parseSize('8GiB')).toBe(8 * 2 ** 30);
    expect(parseSize('4k')).toBe(4096);
    expect(parseSize('100')).toBe(100);
    expect(parseSize('1TiB')).toBe(parseSize('1024GiB'));
    expect(parseSize('1.5KiB')).toBe(1536);
    for (const bad of ['', '0', '-1', '1.3', '1EiB', 'lots']) expect(() => parseSize(bad), bad).toThrow(UsageError);
    expect(formatSize(8 * 2 ** 30)).toBe('8 GiB');
    expect(formatSize(1536)).toBe('1.5 KiB');
  });
  it('flags', () => {
    expect(parseFlags('7')).toBe(7);
    expect(parseFlags('0x5')).toBe(5);
    expect(parseFlags('STOP_COPY|pre_copy')).toBe(5);
    expect(parseFlags('all')).toBe(7);
    for (const bad of ['8', 'NOPE', '0x10']) expect(() => parseFlags(bad), bad).toThrow(UsageError);
  });
});
