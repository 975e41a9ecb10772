// Semantic priors for the refinement network (docs/method.md §4): the provider contract, the store in the preprocessing
// cache, making them with a provider, importing them from elsewhere, the built-in provider and its measurement.
export { PRIORS_ARRAY, type PriorProvider } from './provider.ts';
export {
  PRIOR_STORAGES,
  writePriors,
  loadPriors,
  storedPriorRecord,
  sameSource,
  checkProbabilities,
  priorShape,
  type PriorStorage,
  type PriorRecord,
  type PriorSource,
} from './store.ts';
export { makePriors, type MakePriorsOptions, type PriorProgress } from './make.ts';
export { importPriors, IMPORTED_PROVIDER, PRIOR_IMPORT_FORMATS, type ImportPriorsOptions, type PriorImportFormat } from './import.ts';
export { readNpy, parseNpy, type NpyArray, type NpyDtype } from './npy.ts';
export {
  fitBuiltinProvider,
  smoothGaussianInPlace,
  BUILTIN_PROVIDER,
  DEFAULT_BUILTIN_SETTINGS,
  type BuiltinPriorSettings,
  type FitBuiltinOptions,
} from './builtin.ts';
export { measurePriors, priorQualityMarkdown, classNames, type PriorQuality, type PriorQualityRow, type MeasurePriorsOptions } from './quality.ts';
export { SamMed3d, type MaskPrediction } from './sam-med3d/model.ts';
export { VIT_B_ORI, parseSamMed3dConfig, type SamMed3dConfig } from './sam-med3d/config.ts';
export { loadSamMed3dWeights, loadSamMed3dModel } from './sam-med3d/weights.ts';
export { convertSamMed3dCheckpoint } from './sam-med3d/convert.ts';
export { createSamMed3dProvider, samMed3dCasePriors, SAM_MED3D_PROVIDER, type SamMed3dProviderOptions } from './sam-med3d/provider.ts';
