// The networks: configuration presets of both families, SMML (one branch, the dual-branch model) and the plain
// U-Net, and the interface they share.
export * from './config.ts';
export { Branch, type BranchEncoding, type BranchOutput } from './branch.ts';
export { SmmlModel } from './smml-model.ts';
export { UNetModel, type UNetEncoding } from './unet.ts';
export { createModel, modalityMask, type SegmentationModel, type SegmentationOutput, type TrainingInputs } from './segmentation-model.ts';
export { PRECISIONS, inPrecision, trainingForward, type Precision } from './precision.ts';
export { regionStatistics } from './refinement.ts';
export { branchLayerCosts, modelParameterCount, trainingStepFlops, inferenceFlops, type LayerCost, type CostPart } from './cost.ts';
