// Optimisers, learning-rate schedules and gradient clipping (torch.optim).
export {
  Optimizer,
  type BaseHyperparameters,
  type ParamGroup,
  type ParamsInput,
  type ParamState,
  type OptimizerMeta,
  type OptimizerStateDict,
} from './optimizer.ts';
export { Adam, type AdamHyperparameters } from './adam.ts';
export { SGD, type SgdHyperparameters } from './sgd.ts';
export { polyLearningRate, PolyLRScheduler, type ScheduledOptimizer } from './schedule.ts';
export { clipGradNorm } from './clip.ts';
