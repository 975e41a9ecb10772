// Commands that switch the refinement network on in one go (demo, ablate) make missing priors themselves with the
// built-in provider; priors already in the cache (SAM-Med3D, imported) are used as they are.
import { readCaseManifest } from '../data/cache.ts';
import { fitBuiltinProvider } from '../priors/builtin.ts';
import { makePriors } from '../priors/make.ts';
import { storedPriorRecord } from '../priors/store.ts';
import type { TrainingConfig } from '../training/config.ts';
import { prepareTrainingData } from '../training/data.ts';

/**
 * When no training case of `config` has semantic priors, makes them with the built-in provider (fitted on the
 * training split). Priors already in the cache are left as they are; the trainer checks that they cover the
 * split. Returns the providers of the priors in use.
 */
export async function ensurePriors(config: TrainingConfig): Promise<string[]> {
  const data = await prepareTrainingData(config);
  const providers = data.split.train.flatMap((id) => storedPriorRecord(readCaseManifest(data.cacheDir, id))?.provider ?? []);
  if (providers.length > 0) return [...new Set(providers)];
  console.log(`priors: none in ${data.cacheDir}; making them with the built-in provider (a stand-in for SAM-Med3D) on ${data.split.train.length} training cases`);
  const provider = await fitBuiltinProvider({ cacheDir: data.cacheDir, trainIds: data.split.train });
  await makePriors({ cacheDir: data.cacheDir, ids: data.split.train, provider });
  return [provider.name];
}
