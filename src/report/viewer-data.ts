// The volumes the report's 3D viewer shows, written beside the report: per case its four sequences and ground
// truth (copied, or converted to NIfTI) and the prediction of every evaluated subset as .nii.gz on the case's own
// grid, in the data set's label values, as `smml predict` writes them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BratsCase, BratsDataset } from '../data/brats.ts';
import { writeFileAtomic } from '../data/files.ts';
import { MODALITIES, MODALITY_LABELS, subsetName, type ModalityMask } from '../data/modalities.ts';
import { uncropFromCOrder } from '../data/preprocess.ts';
import { REGIONS } from '../data/regions.ts';
import { readVolume, writeVolume } from '../data/volume.ts';
import type { CasePredictions } from '../evaluation/evaluate.ts';
import type { EvaluationResult } from '../evaluation/tables.ts';
import { toLabelValues } from '../inference/predict.ts';
import type { LabelConvention } from '../training/run-dir.ts';
import { LABEL_COLOURS } from '../data/preview.ts';
import type { ViewerCase, ViewerLabel, ViewerManifest } from './viewer/manifest.ts';

/** Folder of the viewer's volumes inside the report folder. */
export const VIEWER_DATA_DIR = 'volumes';

const LABEL_NAMES: Record<LabelConvention['layout'], [number, string][]> = {
  brats2018: [
    [1, 'NCR/NET (necrosis, non-enhancing tumour)'],
    [2, 'oedema'],
    [4, 'enhancing tumour'],
  ],
  brats2023: [
    [1, 'NCR (necrotic tumour core)'],
    [2, 'oedema'],
    [3, 'enhancing tumour'],
  ],
  brats2015: [
    [1, 'necrosis'],
    [2, 'oedema'],
    [3, 'non-enhancing tumour'],
    [4, 'enhancing tumour'],
  ],
};

/** The label values of a data set's convention with their names and the colours every figure draws them in. */
export function labelLegend(layout: LabelConvention['layout']): ViewerLabel[] {
  return LABEL_NAMES[layout].map(([value, name]) => ({ value, name, colour: [...LABEL_COLOURS.get(value)!] as [number, number, number] }));
}

/** File-name form of a subset: its modalities in MODALITIES order, joined by '-'. */
export function subsetSlug(subset: ModalityMask): string {
  return MODALITIES.filter((_, k) => subset[k]).join('-');
}

const url = (...parts: string[]) => parts.map(encodeURIComponent).join('/');

/** Copies a NIfTI file as it is, or writes another format's volume as NIfTI with its geometry. */
function writeViewerVolume(source: string, target: string): void {
  if (/\.nii\.gz$/i.test(source)) {
    writeFileAtomic(target, fs.readFileSync(source));
    return;
  }
  const volume = readVolume(source);
  writeVolume(target, volume.data, volume.shape, volume);
}

/** Centre of the non-zero voxels of an (I, J, K) i-fastest label map as fractions of the grid; undefined when empty. */
export function labelCentre(labels: ArrayLike<number | bigint>, shape: readonly [number, number, number]): [number, number, number] | undefined {
  const [I, J] = shape;
  const sum = [0, 0, 0];
  let count = 0;
  for (let index = 0; index < labels.length; index++) {
    if (Number(labels[index]) === 0) continue;
    sum[0] += index % I;
    sum[1] += Math.floor(index / I) % J;
    sum[2] += Math.floor(index / (I * J));
    count++;
  }
  if (count === 0) return undefined;
  // Voxel v covers [v, v + 1) of the grid: its centre is at (v + 0.5) / size.
  return [0, 1, 2].map((axis) => (sum[axis]! / count + 0.5) / shape[axis]!) as [number, number, number];
}

export interface ViewerRecorder {
  /** For `evaluateDataset`'s `onPredictions`: writes the case's volumes when it is one the viewer shows. */
  onPredictions: (predictions: CasePredictions) => void;
  /** The manifest of the written cases, with each case's Dice per subset from `result`. */
  manifest: (result: EvaluationResult) => ViewerManifest;
}

/**
 * Writes the viewer's volumes into `<reportDir>/volumes/<case>/` for the cases in `caseIds` as the evaluation
 * produces their predictions (previous contents of that folder are removed first).
 */
export function viewerRecorder(
  reportDir: string,
  dataset: BratsDataset,
  convention: LabelConvention,
  caseIds: readonly string[],
  subsets: readonly ModalityMask[],
): ViewerRecorder {
  const dataDir = path.join(reportDir, VIEWER_DATA_DIR);
  fs.rmSync(dataDir, { recursive: true, force: true });
  const wanted = new Set(caseIds);
  const written: ViewerCase[] = [];
  const entries = new Map<string, BratsCase>(dataset.cases.map((entry) => [entry.id, entry]));

  const onPredictions = ({ id, labels, cropBox, gridShape }: CasePredictions) => {
    const entry = entries.get(id);
    if (!wanted.has(id) || !entry) return;
    const caseDir = path.join(dataDir, id);
    fs.mkdirSync(caseDir, { recursive: true });
    const images = MODALITIES.map((modality) => {
      writeViewerVolume(entry.modalities[modality], path.join(caseDir, `${modality}.nii.gz`));
      return { name: MODALITY_LABELS[modality], url: url(VIEWER_DATA_DIR, id, `${modality}.nii.gz`) };
    });
    let truth: ViewerCase['truth'];
    if (entry.label) {
      writeViewerVolume(entry.label, path.join(caseDir, 'truth.nii.gz'));
      truth = { name: 'ground truth', url: url(VIEWER_DATA_DIR, id, 'truth.nii.gz') };
    }
    const reference = readVolume(entry.label ?? entry.modalities.flair);
    const focus = entry.label ? labelCentre(reference.data, gridShape) : undefined;
    const overlays = labels.map((classes, s) => {
      const file = `prediction-${subsetSlug(subsets[s]!)}.nii.gz`;
      writeVolume(path.join(caseDir, file), uncropFromCOrder(toLabelValues(classes, convention.values), cropBox, gridShape), [...gridShape], reference);
      return { name: subsetName(subsets[s]!), url: url(VIEWER_DATA_DIR, id, file) };
    });
    written.push({ id, images, truth, overlays, focus });
  };

  const manifest = (result: EvaluationResult): ViewerManifest => ({
    overlayTitle: 'prediction from the subset (Dice % on this case)',
    labels: labelLegend(convention.layout),
    cases: written.map((viewerCase) => {
      const scored = result.cases.find((entry) => entry.id === viewerCase.id);
      const overlays = viewerCase.overlays.map((overlay, s) => {
        const scores = scored?.scores[s];
        if (!scores) return overlay;
        const dice: Record<string, number> = Object.fromEntries(REGIONS.map((region) => [region, 100 * scores.dice[region]]));
        return { ...overlay, dice };
      });
      return { ...viewerCase, overlays };
    }),
  });

  return { onPredictions, manifest };
}
