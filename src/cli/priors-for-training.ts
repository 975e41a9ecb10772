// Commands that switch the refinement network on in one go (demo, ablate) make missing priors themselves with the
// built-in provider; priors already in the cache (SAM-Med3D, imported) are used as they are.
import { readCaseManifest } from '../data/cache.ts';
import { fitBuiltinProvider } from '../priors/builtin.ts';
import { makePriors } from '../priors/make.ts';
import { storedPriorRecord } from '../priors/store.ts';
import { resolveModelConfig, type TrainingConfig } from '../training/config.ts';
import { checkPriors, prepareTrainingData } from '../training/data.ts';

/**
 * Makes sure every training case of `config` has semantic priors: when none has any, makes them with the
 * built-in provider (fitted on the training split); otherwise checks them (a partly covered split is an
 * error naming the cases without). Returns the providers of the priors in use.
 */
export async function ensurePriors(config: TrainingConfig): Promise<string[]> {
  const data = await prepareTrainingData(config);
  const model = resolveModelConfig(config, data.numClasses);
  const records = data.split.train.map((id) => storedPriorRecord(readCaseManifest(data.cacheDir, id)));
  if (records.every((record) => record === undefined)) {
    console.log(`priors: none in ${data.cacheDir}; making them with the built-in provider (a stand-in for SAM-Med3D) on ${data.split.train.length} training cases`);
    const provider = await fitBuiltinProvider({ cacheDir: data.cacheDir, trainIds: data.split.train });
    await makePriors({ cacheDir: data.cacheDir, ids: data.split.train, provider });
    return [provider.name];
  }
  checkPriors(data.cacheDir, data.split.train, model.classes * model.modalities);
  return [...new Set(records.map((record) => record!.provider))];
}
