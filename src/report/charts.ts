// Charts of the reports: Vega-Lite specifications compiled and rendered by Vega to SVG in Node, and the same SVG
// rasterised to PNG by resvg for the Markdown report, so the HTML and Markdown figures cannot disagree.
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export type ChartSpec = TopLevelSpec;

/** One chart of a report: its file stem, its caption and its specification. */
export interface Chart {
  /** File stem of the PNG (`<name>.png`) and id of the figure in the HTML page. */
  name: string;
  caption: string;
  spec: ChartSpec;
}

export interface RenderedChart extends Chart {
  svg: string;
  png: Buffer;
}

/** Fonts resvg draws text with; Vega asks for sans-serif, which resolves to the system's default sans font. */
const FONT_FAMILY = 'DejaVu Sans';
/** PNG pixels per SVG pixel: sharp on high-density screens and in print. */
const PNG_SCALE = 2;

const BASE_CONFIG = {
  font: 'sans-serif',
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12, grid: true },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 360, titleLimit: 360 },
  title: { fontSize: 14, anchor: 'start' as const },
};

/** The spec with the reports' shared look (fonts, sizes), without overriding what the spec sets itself. */
function withBaseConfig(spec: ChartSpec): ChartSpec {
  return { ...spec, config: { ...BASE_CONFIG, ...(spec.config ?? {}) } } as ChartSpec;
}

/** SVG of a Vega-Lite specification, rendered headless by Vega. */
export async function chartSvg(spec: ChartSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(withBaseConfig(spec)).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** PNG of an SVG document (white background where the SVG leaves it transparent). */
export function svgToPng(svg: string): Buffer {
  const rendered = new Resvg(svg, {
    background: 'white',
    fitTo: { mode: 'zoom', value: PNG_SCALE },
    font: { loadSystemFonts: true, defaultFontFamily: FONT_FAMILY, sansSerifFamily: FONT_FAMILY },
  }).render();
  return rendered.asPng();
}

export async function renderChart(chart: Chart): Promise<RenderedChart> {
  const svg = await chartSvg(chart.spec);
  return { ...chart, svg, png: svgToPng(svg) };
}

/** Mean of the last `window` values at each point (a trailing moving average that smooths step noise). */
export function movingAverage(values: readonly number[], window: number): number[] {
  const out: number[] = [];
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i]!;
    if (i >= window) sum -= values[i - window]!;
    out.push(sum / Math.min(i + 1, window));
  }
  return out;
}
