// SMML's losses (docs/method.md §5) as functions of tensors.
export { CROSS_ENTROPY_CLASS_WEIGHTS, diceLoss, taskLoss, weightedCrossEntropy, type BatchSum, type CrossEntropyClassWeights } from './task.ts';
export { pixelBidirectionalLoss, type PixelBidirectionalLoss, type PixelBidirectionalOptions } from './pixel-bidirectional.ts';
export { classEntropy, featureRelationalLoss, nearestLabelDownsample } from './feature-relational.ts';
export { refinementConsistencyLoss } from './refinement.ts';
export { klDivergencePerVoxel } from './common.ts';
export {
  branchObjectives,
  DEFAULT_OBJECTIVE_CONFIG,
  ownBranchObjective,
  type BranchObjective,
  type BranchPredictions,
  type BranchTerms,
  type LossSwitches,
  type Objective,
  type ObjectiveConfig,
  type ObjectiveInputs,
  type PeerPredictions,
} from './objective.ts';
