// Line charts as PNG (training curves in reports). Text is left to the Markdown around the figure:
// each series has a named colour that the caption lists.
import { PNG } from 'pngjs';
import { writeFileAtomic } from '../data/files.ts';

export interface Series {
  /** Colour as [r, g, b]. */
  color: readonly [number, number, number];
  /** (x, y) points; non-finite y values are skipped. */
  points: readonly (readonly [number, number])[];
}

export interface ChartOptions {
  width?: number;
  height?: number;
  /** Horizontal grid lines (y ticks) and vertical ones. */
  gridLines?: number;
  /** Plot log10(y) (all values must be positive). */
  logY?: boolean;
}

/** Mean of the last `window` values at each point (a trailing moving average that smooths step noise). */
export function movingAverage(values: readonly number[], window: number): number[] {
  const out: number[] = [];
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i];
    if (i >= window) sum -= values[i - window];
    out.push(sum / Math.min(i + 1, window));
  }
  return out;
}

/** Renders the series on shared axes (white background, light grid, 2-pixel lines) into a PNG buffer. */
export function renderLineChart(series: readonly Series[], opts: ChartOptions = {}): Buffer {
  const width = opts.width ?? 640;
  const height = opts.height ?? 360;
  const margin = 24;
  const png = new PNG({ width, height });
  png.data.fill(255);
  const put = (x: number, y: number, [r, g, b]: readonly [number, number, number]) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const i = (y * width + x) * 4;
    png.data[i] = r;
    png.data[i + 1] = g;
    png.data[i + 2] = b;
    png.data[i + 3] = 255;
  };
  const transform = (y: number) => (opts.logY ? Math.log10(y) : y);
  const finite = series.flatMap((s) => s.points.filter(([, y]) => Number.isFinite(transform(y))));
  if (finite.length === 0) return PNG.sync.write(png);
  const xs = finite.map(([x]) => x);
  const ys = finite.map(([, y]) => transform(y));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const px = (x: number) => Math.round(margin + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * margin));
  const py = (y: number) => Math.round(height - margin - ((transform(y) - y0) / (y1 - y0)) * (height - 2 * margin));

  const grid = opts.gridLines ?? 5;
  for (let k = 0; k <= grid; k++) {
    const gy = Math.round(margin + (k / grid) * (height - 2 * margin));
    const gx = Math.round(margin + (k / grid) * (width - 2 * margin));
    for (let x = margin; x <= width - margin; x++) put(x, gy, [225, 225, 225]);
    for (let y = margin; y <= height - margin; y++) put(gx, y, [225, 225, 225]);
  }
  for (let x = margin; x <= width - margin; x++) put(x, height - margin, [0, 0, 0]);
  for (let y = margin; y <= height - margin; y++) put(margin, y, [0, 0, 0]);

  const line = (ax: number, ay: number, bx: number, by: number, color: readonly [number, number, number]) => {
    const steps = Math.max(Math.abs(bx - ax), Math.abs(by - ay), 1);
    for (let s = 0; s <= steps; s++) {
      const x = Math.round(ax + ((bx - ax) * s) / steps);
      const y = Math.round(ay + ((by - ay) * s) / steps);
      put(x, y, color);
      put(x, y + 1, color);
    }
  };
  for (const s of series) {
    const points = s.points.filter(([, y]) => Number.isFinite(transform(y)));
    for (let i = 1; i < points.length; i++) line(px(points[i - 1][0]), py(points[i - 1][1]), px(points[i][0]), py(points[i][1]), s.color);
    if (points.length === 1) put(px(points[0][0]), py(points[0][1]), s.color);
  }
  return PNG.sync.write(png);
}

export function writeLineChart(file: string, series: readonly Series[], opts: ChartOptions = {}): void {
  writeFileAtomic(file, renderLineChart(series, opts));
}
