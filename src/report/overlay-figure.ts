// The labelled segmentation figure: one axial slice per panel (src/data/preview.ts draws the voxels), a title
// above each panel and a legend of the label colours below, composed as SVG so the HTML page shows the same
// figure the Markdown report's PNG holds.
import { PREVIEW_GAP, renderSlicePreview, type PreviewVolume } from '../data/preview.ts';
import { svgToPng } from './charts.ts';
import { escapeHtml } from './html.ts';
import type { ViewerLabel } from './viewer/manifest.ts';

const TITLE_HEIGHT = 22;
const LEGEND_HEIGHT = 30;
const FONT = 'font-family="sans-serif" font-size="13"';

/** The figure as SVG (panels embedded as a PNG) and PNG. `name` names the figure in errors. */
export function overlayFigure(name: string, volumes: readonly PreviewVolume[], labels: readonly ViewerLabel[]): { svg: string; png: Buffer } {
  const preview = renderSlicePreview(name, volumes);
  const width = preview.panels.length * preview.panelWidth + (preview.panels.length - 1) * PREVIEW_GAP;
  const height = TITLE_HEIGHT + preview.panelHeight + LEGEND_HEIGHT;
  const titles = preview.panels.map((title, p) => {
    const x = p * (preview.panelWidth + PREVIEW_GAP) + preview.panelWidth / 2;
    return `<text x="${x}" y="${TITLE_HEIGHT - 7}" text-anchor="middle" ${FONT}>${escapeHtml(title)}</text>`;
  });
  let x = 4;
  const legendY = TITLE_HEIGHT + preview.panelHeight + 10;
  const legend = labels.map((label) => {
    const item = `<rect x="${x}" y="${legendY}" width="12" height="12" fill="rgb(${label.colour.join(',')})"/><text x="${x + 17}" y="${legendY + 11}" ${FONT}>${escapeHtml(label.name)}</text>`;
    x += 36 + 8 * label.name.length;
    return item;
  });
  const image = `data:image/png;base64,${preview.png.toString('base64')}`;
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...titles,
    `<image x="0" y="${TITLE_HEIGHT}" width="${width}" height="${preview.panelHeight}" xlink:href="${image}" style="image-rendering: pixelated"/>`,
    ...legend,
    '</svg>',
  ].join('\n');
  return { svg, png: svgToPng(svg) };
}
