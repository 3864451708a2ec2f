// Plain aligned text tables for terminal output. When the table is wider than
// `width` (the terminal's), each row becomes a block of "column  value" lines
// under its first cell, so nothing wraps.
export function renderTextTable(header: string[], rows: string[][], width?: number): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  const table = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  if (width === undefined || table.every((l) => l.length <= width)) return table.join('\n');
  const keyWidth = Math.max(...header.slice(1).map((h) => h.length));
  return rows
    .map((r) => [r[0], ...header.slice(1).map((h, i) => `  ${h.padEnd(keyWidth)}  ${r[i + 1]}`.trimEnd())].join('\n'))
    .join('\n\n');
}
