// The HTML page of a report: the report's Markdown rendered by marked, each figure reference replaced by the
// figure's own SVG (so the page opens from disk with every chart), and the 3D viewer's section when there is one.
import { Marked } from 'marked';
import { MANIFEST_ELEMENT_ID, VIEWER_ELEMENT_ID, type ViewerManifest } from './viewer/manifest.ts';

/** A figure of a report: the Markdown links `<name>.png`, the page shows `svg`. */
export interface PageFigure {
  name: string;
  svg: string;
}

/** The file the page loads the viewer from, beside index.html. */
export const VIEWER_SCRIPT = 'viewer.js';

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => HTML_ESCAPES[character]!);
}

/** JSON that can sit inside a `<script>` element: `<` cannot open a closing tag. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

const STYLE = `
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1rem 1.5rem 3rem; color: #222; line-height: 1.45; }
h1 { margin-top: 0.5rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.55rem; } th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 0.25rem; border-radius: 3px; }
figure { margin: 1rem 0 0.3rem; overflow-x: auto; } figure svg { max-width: 100%; height: auto; }
nav { position: sticky; top: 0; background: white; padding: 0.4rem 0; border-bottom: 1px solid #eee; z-index: 1; }
nav a { margin-right: 1rem; }
#${VIEWER_ELEMENT_ID} { border: 1px solid #ccc; border-radius: 6px; padding: 0.6rem; }
.viewer-controls { display: flex; flex-wrap: wrap; gap: 0.4rem 1.2rem; margin-bottom: 0.4rem; }
.viewer-legend { display: flex; gap: 1.2rem; margin-bottom: 0.4rem; font-size: 0.9rem; }
.swatch { display: inline-block; width: 0.9rem; height: 0.9rem; margin-right: 0.35rem; vertical-align: -0.1rem; border-radius: 2px; }
.viewer-body { display: flex; gap: 0.8rem; align-items: flex-start; }
.viewer-canvas { flex: 1; height: 520px; min-width: 0; } .viewer-canvas canvas { width: 100%; height: 100%; display: block; }
.viewer-picker { width: 290px; margin: 0; font-size: 0.85rem; max-height: 520px; overflow-y: auto; }
.overlay-row { display: grid; grid-template-columns: auto 1fr; column-gap: 0.3rem; padding: 0.12rem 0; cursor: pointer; }
.overlay-dice { grid-column: 2; color: #555; font-variant-numeric: tabular-nums; }
.viewer-message { padding: 1rem; background: #fff6e0; }
`;

/**
 * The whole page. `markdown` is the report's Markdown: an image whose target is `<name>.png` of a figure in
 * `figures` becomes that figure's SVG; with `viewer`, a "3D viewer" section follows, loading ./viewer.js.
 */
export function reportPage(title: string, markdown: string, figures: readonly PageFigure[], viewer?: ViewerManifest): string {
  const svgByFile = new Map(figures.map((figure) => [`${figure.name}.png`, figure]));
  const marked = new Marked({
    renderer: {
      image({ href, text }) {
        const figure = svgByFile.get(href);
        if (!figure) return `<img src="${escapeHtml(href)}" alt="${escapeHtml(text)}">`;
        return `<figure id="${escapeHtml(figure.name)}" aria-label="${escapeHtml(text)}">${figure.svg}</figure>`;
      },
    },
  });
  const content = marked.parse(markdown, { async: false });
  const viewerSection = viewer
    ? [
        '<h2 id="viewer-section">3D viewer</h2>',
        `<p>Each held-out case with its four sequences, the ground truth and the prediction from any modality subset; pick a subset on the right (that case's Dice per region beside it). Drag to move the crosshair or rotate the 3D view; scroll to change slices.</p>`,
        `<div id="${VIEWER_ELEMENT_ID}" data-viewer="loading"><p class="viewer-message">Loading the viewer…</p></div>`,
        `<script type="application/json" id="${MANIFEST_ELEMENT_ID}">${scriptJson(viewer)}</script>`,
        `<script src="${VIEWER_SCRIPT}" defer></script>`,
      ].join('\n')
    : '';
  const navigation = viewer ? '<nav><a href="#top">Report</a><a href="#viewer-section">3D viewer</a></nav>' : '';
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    // No favicon request: a page served by `smml view` asks for nothing it does not hold.
    '<link rel="icon" href="data:,">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body id="top">',
    navigation,
    content,
    viewerSection,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}
