// Scoring segmentations that already exist: a folder of `<case>.nii.gz` predictions against the cases' labels
// (Dice and HD95 of WT, TC, ET per case, and their means), whoever made the predictions.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BRATS_LABEL_VALUES, discoverBrats, mapBratsLabels, volumeFilesByStem, type BratsLayout } from '../data/brats.ts';
import { writeFileAtomic } from '../data/files.ts';
import { spatialShape, toCOrder } from '../data/preprocess.ts';
import { REGIONS, type Region } from '../data/regions.ts';
import { checkSameGeometry, readVolume, voxelSpacing } from '../data/volume.ts';
import { scoreCase, type RegionScores } from './metrics.ts';
import { csvLines, csvNumber, markdownTable, meanOf, withMean, type RegionValues } from './tables.ts';

/** The label file of every labelled case, and how its values map to classes. */
export interface LabelFolder {
  layout: BratsLayout;
  /** Case id → label file. */
  labels: Map<string, string>;
}

/**
 * Label files of a folder: a BraTS data folder (its cases' segmentations, its own layout) or a flat folder of
 * `<case>.nii.gz` label files (nnU-Net's `labelsTr`) in the convention `layout` names (default BraTS 2018–2021).
 */
export function findLabels(dir: string, layout?: BratsLayout): LabelFolder {
  const flat = volumeFilesByStem(dir);
  if (flat.size > 0) return { layout: layout ?? 'brats2018', labels: flat };
  const dataset = discoverBrats(dir, { layout });
  const labels = new Map(dataset.cases.flatMap((entry) => (entry.label ? [[entry.id, entry.label] as const] : [])));
  if (labels.size === 0) throw new Error(`${dir}: no case has a label file`);
  return { layout: dataset.layout, labels };
}

export interface ScoredCase {
  id: string;
  scores: RegionScores;
}

export interface FolderEvaluation {
  layout: BratsLayout;
  cases: ScoredCase[];
  /** Labelled cases without a prediction (not scored). */
  missing: string[];
  /** Means over the scored cases. */
  mean: { dice: RegionValues; hausdorff95: RegionValues };
}

/** Scores one prediction file against its label file on the label's grid; errors name the files. */
export function scorePredictionFile(prediction: string, label: string, layout: BratsLayout): RegionScores {
  const truthVolume = readVolume(label);
  const predictedVolume = readVolume(prediction);
  checkSameGeometry([truthVolume, predictedVolume], [label, prediction]);
  const shape = spatialShape(truthVolume, label);
  const classes = (volume: typeof truthVolume, file: string) => toCOrder(mapBratsLabels(layout, volume.data, file), shape);
  return scoreCase(classes(predictedVolume, prediction), classes(truthVolume, label), BRATS_LABEL_VALUES[layout].length, shape, {
    spacing: voxelSpacing(truthVolume.affine),
  });
}

export interface EvaluateFolderOptions {
  predictions: string;
  labels: string;
  /** Label convention of a flat label folder (and of the predictions); a BraTS data folder brings its own. */
  layout?: BratsLayout;
  onCase?: (done: number, total: number, id: string) => void;
}

/** Scores every `<case>.nii(.gz)` of `predictions` that has a label; labelled cases without a prediction are listed. */
export function evaluatePredictionFolder(options: EvaluateFolderOptions): FolderEvaluation {
  const { layout, labels } = findLabels(options.labels, options.layout);
  const predictions = volumeFilesByStem(options.predictions);
  const ids = [...labels.keys()].filter((id) => predictions.has(id));
  if (ids.length === 0) {
    throw new Error(`${options.predictions}: no prediction file is named after a labelled case of ${options.labels} (expected <case>.nii.gz)`);
  }
  const cases = ids.map((id, index) => {
    const scores = scorePredictionFile(predictions.get(id)!, labels.get(id)!, layout);
    options.onCase?.(index + 1, ids.length, id);
    return { id, scores };
  });
  const mean = (metric: keyof RegionScores) =>
    withMean(Object.fromEntries(REGIONS.map((region) => [region, meanOf(cases.map((entry) => entry.scores[metric][region]))])) as Record<Region, number>);
  return { layout, cases, missing: [...labels.keys()].filter((id) => !predictions.has(id)), mean: { dice: mean('dice'), hausdorff95: mean('hausdorff95') } };
}

export const FOLDER_RESULT_FILES = ['summary.md', 'summary.json', 'per-case.csv'] as const;

/** The summary table: mean Dice (%) and HD95 (mm) per region over the scored cases. */
export function folderSummaryMarkdown(evaluation: FolderEvaluation): string {
  const values = (row: RegionValues, format: (value: number) => string) => [...REGIONS.map((region) => format(row[region])), format(row.mean)];
  return markdownTable(
    ['Metric', ...REGIONS, 'Mean'],
    [
      ['Dice (%)', ...values(evaluation.mean.dice, (value) => (100 * value).toFixed(2))],
      ['HD95 (mm)', ...values(evaluation.mean.hausdorff95, (value) => value.toFixed(2))],
    ],
    ['l', 'r', 'r', 'r', 'r'],
  );
}

/** Writes summary.md, summary.json and per-case.csv (Dice as fractions, HD95 in mm) into `outDir`, each atomically. */
export function writeFolderResults(outDir: string, evaluation: FolderEvaluation, context: { predictions: string; labels: string }): void {
  fs.mkdirSync(outDir, { recursive: true });
  const header = ['case', ...REGIONS.map((r) => `dice_${r.toLowerCase()}`), ...REGIONS.map((r) => `hd95_${r.toLowerCase()}`)];
  const rows = evaluation.cases.map(({ id, scores }) => [
    id,
    ...REGIONS.map((region) => csvNumber(scores.dice[region])),
    ...REGIONS.map((region) => csvNumber(scores.hausdorff95[region])),
  ]);
  const missing = evaluation.missing.length > 0 ? ['', `Labelled cases without a prediction (not scored): ${evaluation.missing.join(', ')}`] : [];
  const contents: Record<(typeof FOLDER_RESULT_FILES)[number], string> = {
    'summary.md': [
      '# Predictions against labels',
      '',
      `- predictions: ${context.predictions}`,
      `- labels: ${context.labels} (${evaluation.layout} convention)`,
      `- cases: ${evaluation.cases.length}`,
      ...missing,
      '',
      folderSummaryMarkdown(evaluation),
      '',
    ].join('\n'),
    'summary.json': `${JSON.stringify({ ...context, layout: evaluation.layout, regions: REGIONS, mean: evaluation.mean, missing: evaluation.missing, perCase: evaluation.cases }, null, 1)}\n`,
    'per-case.csv': csvLines([header, ...rows]),
  };
  for (const name of FOLDER_RESULT_FILES) writeFileAtomic(path.join(outDir, name), contents[name]);
}
