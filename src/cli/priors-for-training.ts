// Runs that switch the refinement network on from one command (demo, ablate) make missing priors themselves.
import type { TrainingConfig } from '../training/config.ts';
import { checkPriors, prepareTrainingData } from '../training/data.ts';
import { resolveModelConfig } from '../training/config.ts';

/** Makes sure the training cases of `config` have semantic priors in the cache. */
export async function ensurePriors(config: TrainingConfig): Promise<void> {
  const data = await prepareTrainingData(config);
  const model = resolveModelConfig(config, data.numClasses);
  checkPriors(data.cacheDir, data.split.train, model.classes * model.modalities);
}
