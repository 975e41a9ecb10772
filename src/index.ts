// Public API of smml: `import { torch, readVolume, createModel, taskLoss, ... } from 'smml'`.
export * from './engine/index.ts';

// data
export { readVolume, writeVolume, checkSameGeometry, checkFinite, type Volume, type VolumeHeader, type VoxelArray } from './data/volume.ts';
export {
  discoverBrats,
  mapBratsLabels,
  readSplit,
  writeSplit,
  makeSplit,
  selectCases,
  SPLIT_PRESETS,
  type BratsCase,
  type BratsDataset,
  type BratsLayout,
  type Split,
} from './data/brats.ts';
export { SUBSETS, MODALITIES, subsetName, parseSubset, type Modality, type ModalityMask } from './data/modalities.ts';
export { regionClasses, REGIONS, type Region } from './data/regions.ts';
export { synthesizeDataset, synthesizeCase, CONTRAST_TABLE, type SyntheticCase, type SyntheticDatasetInfo, type SynthesizeOptions } from './data/synthetic.ts';
export { preprocessCase, preprocessDataset, toCOrder, fromCOrder, uncropFromCOrder, type CropBox } from './data/preprocess.ts';
export { loadCase, addCaseArray, type CachedCase, type CaseManifest } from './data/cache.ts';
export { augmentSample, DEFAULT_AUGMENTATION } from './data/augment.ts';
export { createBatchLoader, type Batch, type BatchLoader, type BatchLoaderOptions } from './data/loader.ts';
export { quantizeProbabilities, dequantizeProbabilities } from './data/quantize.ts';
export { writeSlicePreview, type PreviewVolume } from './data/preview.ts';

// models and losses
export * from './models/index.ts';
export * from './losses/index.ts';

// semantic priors
export * from './priors/index.ts';

// training
export { parseTrainingConfig, applyOverrides, readConfigFile, type TrainingConfig, type TrainingConfigInput } from './training/config.ts';
export { createTrainer, Trainer, TrainingDivergedError, type TrainResult, type TrainerHooks } from './training/trainer.ts';
export { runPaths, readRunConfig, loadTrainedModel, type RunConfig, type TrainedModel, type LabelConvention } from './training/run-dir.ts';
export { readRunLog } from './training/run-log.ts';

// inference and evaluation
export { slidingWindowInference, windowStarts, importanceMap } from './inference/sliding-window.ts';
export { predictCase, predictToFiles, subsetProbabilities, wholeVolumeProbabilities, prepareModalities, type InferenceModel, type CasePrediction } from './inference/predict.ts';
export { InferenceProcesses } from './inference/processes.ts';
export { suppressSmallEnhancingTumour } from './inference/postprocess.ts';
export { dice, hausdorff95, regionMask, scoreCase } from './evaluation/metrics.ts';
export { evaluateCase, evaluateDataset } from './evaluation/evaluate.ts';
export { summarise, writeResults, diceTableMarkdown, hausdorffTableMarkdown, type EvaluationResult, type EvaluationSummary } from './evaluation/tables.ts';
