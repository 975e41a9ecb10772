// Writes a report folder: the Markdown report with its figures as PNG, and index.html with the same figures as
// SVG, the same text and tables, and the 3D viewer (its script bundled beside the page) when there is one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../data/files.ts';
import { renderChart, type Chart } from './charts.ts';
import { reportPage, VIEWER_SCRIPT } from './html.ts';
import { viewerBundle } from './viewer/bundle.ts';
import type { ViewerManifest } from './viewer/manifest.ts';

/** A figure ready to write: PNG for the Markdown report, SVG for the page. */
export interface ReportFigure {
  name: string;
  svg: string;
  png: Buffer;
}

export interface ReportContent {
  /** Page title. */
  title: string;
  /** The report in Markdown; figures appear where it links `<name>.png` (see `figureMarkdown`). */
  markdown: string;
  figures: readonly ReportFigure[];
  viewer?: ViewerManifest;
}

export const REPORT_PAGE = 'index.html';

/** A figure in the Markdown report: the image, then its caption as a paragraph. */
export function figureMarkdown(name: string, title: string, caption: string): string {
  return `![${title}](${name}.png)\n\n${caption}\n`;
}

/** Renders charts to SVG and PNG, and their Markdown (title from the chart's spec, caption below). */
export async function renderCharts(charts: readonly Chart[]): Promise<{ figures: ReportFigure[]; markdown: string }> {
  const rendered = await Promise.all(charts.map(renderChart));
  const title = (chart: Chart) => (typeof chart.spec.title === 'string' ? chart.spec.title : chart.name);
  return { figures: rendered, markdown: rendered.map((chart) => figureMarkdown(chart.name, title(chart), chart.caption)).join('\n') };
}

/** Writes `<dir>/README.md`, every figure as `<name>.png`, index.html and, with a viewer, viewer.js; returns their names. */
export async function writeReport(dir: string, content: ReportContent): Promise<string[]> {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new Error(`${dir}: cannot create the report folder (${(error as Error).message})`);
  }
  const markdownFile = 'README.md';
  for (const figure of content.figures) writeFileAtomic(path.join(dir, `${figure.name}.png`), figure.png);
  writeFileAtomic(path.join(dir, markdownFile), content.markdown);
  if (content.viewer) writeFileAtomic(path.join(dir, VIEWER_SCRIPT), await viewerBundle());
  writeFileAtomic(path.join(dir, REPORT_PAGE), reportPage(content.title, content.markdown, content.figures, content.viewer));
  return [markdownFile, REPORT_PAGE, ...content.figures.map((figure) => `${figure.name}.png`), ...(content.viewer ? [VIEWER_SCRIPT] : [])];
}
