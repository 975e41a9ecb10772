// The SMML networks: configuration presets, one branch, and the dual-branch model.
export * from './config.ts';
export { Branch, type BranchEncoding, type BranchOutput, type TrainingInputs } from './branch.ts';
export { SmmlModel, createModel, modalityMask } from './smml-model.ts';
export { regionStatistics } from './refinement.ts';
export { branchLayerCosts, modelParameterCount, trainingStepFlops, inferenceFlops, type LayerCost, type CostPart } from './cost.ts';
