// Evaluation of a model over modality subsets on labelled cases (docs/method.md §7): each case is
// preprocessed as in training, every sliding window is encoded once and fused for all subsets,
// predictions are post-processed and scored (Dice, HD95) per region.
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { torch, type Tensor } from '../engine/index.ts';
import { selectCases, type BratsCase, type BratsDataset } from '../data/brats.ts';
import { loadCase } from '../data/cache.ts';
import { MODALITIES, SUBSETS, type ModalityMask } from '../data/modalities.ts';
import { voxelSpacing } from '../data/volume.ts';
import { preprocessCase, preprocessDataset, type CropBox, type PreprocessProgress, type Shape3 } from '../data/preprocess.ts';
import { clearOutsideBrain, minEnhancingVoxels, suppressSmallEnhancingTumour } from '../inference/postprocess.ts';
import { subsetLabels, wholeVolumeLabels, type ProcessOptions, type WholeVolumeOptions } from '../inference/predict.ts';
import type { SegmentationModel } from '../models/index.ts';
import { gridDiagonal, scoreCase } from './metrics.ts';
import type { CaseResult, EvaluationResult } from './tables.ts';

/** A preprocessed, labelled case. */
export interface EvaluationCase {
  id: string;
  /** (K, X, Y, Z), z fastest, cropped and z-scored, modalities in MODALITIES order. */
  images: Float32Array;
  /** (X, Y, Z) class indices. */
  label: Uint8Array;
  shape: Shape3;
  /** Voxel size in millimetres along X, Y, Z. */
  spacing: Shape3;
  /** The acquisition grid the case was cropped from: its diagonal is the HD95 of a region found on one side only. */
  gridShape: Shape3;
  /** Where the crop lies in that grid. */
  cropBox: CropBox;
}

/** One case's post-processed predictions, handed out before they are scored and dropped. */
export interface CasePredictions {
  id: string;
  /** Per subset (parallel to the evaluated subsets): class indices (X, Y, Z), z fastest, in the crop. */
  labels: Uint8Array[];
  cropBox: CropBox;
  gridShape: Shape3;
}

export interface EvaluateOptions extends WholeVolumeOptions {
  /** Subsets to score, in output order; default the 15 of SUBSETS (Table 1 order). */
  subsets?: readonly ModalityMask[];
  /** Device of the model; default 'cpu'. */
  device?: string;
  /** ET post-processing threshold in mm³ (docs/method.md §7); default MIN_ENHANCING_VOLUME. */
  minEnhancingVolume?: number;
  /** False skips HD95 (NaN in the scores); default true. */
  hausdorff?: boolean;
  /** Receives each case's predictions (e.g. to write them for a viewer). */
  onPredictions?: (predictions: CasePredictions) => void;
}

/** The case's images (1, K, X, Y, Z) on the device, after checking them and the label against the shape. */
function caseImages(evaluationCase: EvaluationCase, device: string): Tensor {
  const [X, Y, Z] = evaluationCase.shape;
  if (evaluationCase.images.length !== MODALITIES.length * X * Y * Z || evaluationCase.label.length !== X * Y * Z) {
    throw new Error(`case ${evaluationCase.id}: images or label do not match the shape (${X}, ${Y}, ${Z})`);
  }
  return torch.tensor(evaluationCase.images, [1, MODALITIES.length, X, Y, Z], { device });
}

/** Post-processes the predicted labels of every subset and scores them; `started` is when the case began (performance.now()). */
function scorePredictions(model: SegmentationModel, evaluationCase: EvaluationCase, labels: Uint8Array[], options: EvaluateOptions, started: number): CaseResult {
  const subsets = options.subsets ?? SUBSETS;
  const { classes } = model.config;
  labels.forEach((prediction, s) => clearOutsideBrain(prediction, evaluationCase.images, subsets[s]));
  const processed = labels.map((prediction) =>
    suppressSmallEnhancingTumour(prediction, classes, minEnhancingVoxels(evaluationCase.spacing, options.minEnhancingVolume)),
  );
  options.onPredictions?.({ id: evaluationCase.id, labels: processed, cropBox: evaluationCase.cropBox, gridShape: evaluationCase.gridShape });
  const scores = processed.map((prediction) =>
    scoreCase(
      prediction,
      evaluationCase.label,
      classes,
      evaluationCase.shape,
      { spacing: evaluationCase.spacing, worstDistance: gridDiagonal(evaluationCase.gridShape, evaluationCase.spacing), hausdorff: options.hausdorff },
    ),
  );
  return { id: evaluationCase.id, scores, seconds: (performance.now() - started) / 1000 };
}

/** Scores one case under every subset in this process; the scores are parallel to `options.subsets`. */
export function evaluateCase(model: SegmentationModel, evaluationCase: EvaluationCase, options: EvaluateOptions = {}): CaseResult {
  const started = performance.now();
  let labels: Uint8Array[] = [];
  // Assigned rather than returned: tidy would walk every element of returned typed arrays.
  torch.tidy(() => {
    labels = subsetLabels(model, caseImages(evaluationCase, options.device ?? 'cpu'), options.subsets ?? SUBSETS, options);
  });
  return scorePredictions(model, evaluationCase, labels, options, started);
}

/** `evaluateCase`, its windows split between `options.processes` when given. */
async function evaluateCaseAnywhere(model: SegmentationModel, evaluationCase: EvaluationCase, options: EvaluateOptions & ProcessOptions): Promise<CaseResult> {
  const started = performance.now();
  const images = caseImages(evaluationCase, options.device ?? 'cpu');
  let labels: Uint8Array[];
  try {
    labels = await wholeVolumeLabels(model, images, options.subsets ?? SUBSETS, options, `case ${evaluationCase.id}`);
  } finally {
    images.dispose();
  }
  return scorePredictions(model, evaluationCase, labels, options, started);
}

export interface CaseProgress {
  /** 1-based position of the case. */
  done: number;
  total: number;
  result: CaseResult;
}

export interface EvaluateDatasetOptions extends EvaluateOptions, ProcessOptions {
  dataset: BratsDataset;
  /** Cases to evaluate, in output order. */
  caseIds: readonly string[];
  /**
   * Preprocessing cache of the data set (the one training used): cases missing there are
   * preprocessed into it. Without one, cases are preprocessed in memory.
   */
  cacheDir?: string;
  onPreprocess?: (progress: PreprocessProgress) => void;
  /** Before a case starts, e.g. to reset a window progress bar. */
  onCaseStart?: (index: number, total: number, id: string) => void;
  onCase?: (progress: CaseProgress) => void;
}

/** Throws when the model's classes do not fit the data set's labels. */
export function checkModelFitsData(model: SegmentationModel, dataset: Pick<BratsDataset, 'root' | 'numClasses'>): void {
  const { classes, modalities } = model.config;
  if (classes !== dataset.numClasses) {
    throw new Error(`the model predicts ${classes} classes but the data set at ${dataset.root} has ${dataset.numClasses}: it was trained on another label set`);
  }
  if (modalities !== MODALITIES.length) {
    throw new Error(`the model has ${modalities} input modalities; BraTS cases have ${MODALITIES.length} (${MODALITIES.join(', ')})`);
  }
}

/** A labelled case from the preprocessing cache. */
export function loadCachedEvaluationCase(cacheDir: string, id: string): EvaluationCase {
  const cached = loadCase(cacheDir, id);
  if (!cached.label) throw new Error(`case ${id} in ${cacheDir} has no label: evaluation needs the ground truth`);
  if (cached.meta.modalities.join() !== MODALITIES.join()) {
    throw new Error(`case ${id} in ${cacheDir}: channels are ${cached.meta.modalities.join(', ')}, expected ${MODALITIES.join(', ')}`);
  }
  return { id, images: cached.images, label: cached.label, shape: cached.shape, spacing: voxelSpacing(cached.meta.affine), gridShape: cached.meta.originalShape, cropBox: cached.meta.cropBox };
}

function loadEvaluationCase(entry: BratsCase, dataset: BratsDataset, cacheDir: string | undefined): EvaluationCase {
  const missingLabel = () => new Error(`case ${entry.id} (${entry.dir}) has no label: evaluation needs the ground truth`);
  if (!entry.label) throw missingLabel();
  if (cacheDir) return loadCachedEvaluationCase(cacheDir, entry.id);
  const processed = preprocessCase(entry, dataset);
  if (!processed.label) throw missingLabel();
  return { id: entry.id, images: processed.images, label: processed.label, shape: processed.meta.shape, spacing: voxelSpacing(processed.meta.affine), gridShape: processed.meta.originalShape, cropBox: processed.meta.cropBox };
}

/** Evaluates the model on the given cases of a data set, one case in memory at a time. */
export async function evaluateDataset(model: SegmentationModel, options: EvaluateDatasetOptions): Promise<EvaluationResult> {
  const { dataset, cacheDir } = options;
  checkModelFitsData(model, dataset);
  if (options.caseIds.length === 0) throw new Error(`no cases to evaluate in ${dataset.root}`);
  const entries = selectCases(dataset, options.caseIds);
  if (cacheDir) await preprocessDataset({ dataset, cacheDir, verify: 'size', onProgress: options.onPreprocess });
  const subsets = options.subsets ?? SUBSETS;
  const cases: CaseResult[] = [];
  for (const [index, entry] of entries.entries()) {
    options.onCaseStart?.(index, entries.length, entry.id);
    const result = await evaluateCaseAnywhere(model, loadEvaluationCase(entry, dataset, cacheDir), { ...options, subsets });
    cases.push(result);
    options.onCase?.({ done: index + 1, total: entries.length, result });
    await yieldToEventLoop();
  }
  return { subsets, cases };
}
