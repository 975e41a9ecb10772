// The benchmark table: one row per measurement, ours beside PyTorch driven from Python where a
// reference exists, printed as a Markdown table.

export interface BenchRow {
  /** What was measured, including the shape, e.g. "conv3d 64³×16 B1 forward+backward". */
  benchmark: string;
  /** Our result as shown, e.g. "123 ms (58.9 GFLOP/s)". */
  ours: string;
  /** The Python reference's result as shown; absent when there is no reference or it was skipped. */
  python?: string;
  /** Our time divided by the reference's time (below 1: we are faster). */
  ratio?: number;
}

export const TABLE_HEADERS = ['benchmark', 'ours', 'PyTorch (Python)', 'ratio'] as const;

/** Renders rows as a Markdown table with padded columns (readable both raw and rendered). */
export function formatMarkdownTable(headers: readonly string[], rows: readonly string[][]): string {
  const widths = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${widths.map((w, c) => (cells[c] ?? '').padEnd(w)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

export function formatBenchTable(rows: readonly BenchRow[]): string {
  const cells = rows.map((r) => [r.benchmark, r.ours, r.python ?? '—', r.ratio === undefined ? '—' : r.ratio.toFixed(2)]);
  return formatMarkdownTable(TABLE_HEADERS, cells);
}
