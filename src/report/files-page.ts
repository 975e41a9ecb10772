// A viewer page for NIfTI files given on the command line (`smml view a.nii.gz b.nii.gz …`), e.g. a
// `smml predict` output over its inputs: grey-level volumes are the backgrounds, label volumes the overlays.
import * as path from 'node:path';
import { readVolume } from '../data/volume.ts';
import { reportPage } from './html.ts';
import { labelCentre, labelLegend } from './viewer-data.ts';
import type { ViewerCase, ViewerManifest, ViewerVolume } from './viewer/manifest.ts';

/** A label map holds few distinct non-negative integers; anything else is an image. */
const MAX_LABELS = 16;

function isLabelMap(data: ArrayLike<number | bigint>): boolean {
  const seen = new Set<number>();
  for (let i = 0; i < data.length; i++) {
    const value = Number(data[i]);
    if (!Number.isInteger(value) || value < 0) return false;
    seen.add(value);
    if (seen.size > MAX_LABELS) return false;
  }
  return true;
}

export interface ServedFile {
  /** The file on disk. */
  file: string;
  /** Its URL path relative to the page. */
  url: string;
}

/** The page showing `files`; throws when none of them is a grey-level image to draw the labels over. */
export function filesPage(files: readonly ServedFile[]): string {
  const images: ViewerVolume[] = [];
  const overlays: ViewerVolume[] = [];
  let focus: ViewerCase['focus'];
  for (const { file, url } of files) {
    const volume = readVolume(file);
    const labelled = isLabelMap(volume.data);
    (labelled ? overlays : images).push({ name: path.basename(file), url });
    if (labelled) focus ??= labelCentre(volume.data, volume.shape.slice(0, 3) as [number, number, number]);
  }
  if (images.length === 0) {
    throw new Error(`${files.map((entry) => entry.file).join(', ')}: only label maps given; add at least one image (a sequence) to draw them over`);
  }
  const manifest: ViewerManifest = {
    overlayTitle: 'label map',
    labels: labelLegend('brats2018'),
    cases: [{ id: 'files', images, overlays, focus }],
  };
  const list = files.map((entry) => `- \`${path.resolve(entry.file)}\``).join('\n');
  return reportPage('smml view', `# smml view\n\n${list}\n`, [], manifest);
}
