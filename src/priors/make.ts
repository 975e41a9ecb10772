// Making the priors of a set of cached cases with a provider: resumable (cases whose stored priors came from the same
// provider and settings are skipped), each case written atomically as soon as it is done.
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { inspectCachedCase, loadCase } from '../data/cache.ts';
import { PRIORS_ARRAY, type PriorProvider } from './provider.ts';
import { sameSource, storedPriorRecord, writePriors, type PriorStorage } from './store.ts';

/** One case handled by `makePriors` or `importPriors`. */
export interface PriorProgress {
  /** Cases handled so far, this one included. */
  done: number;
  total: number;
  id: string;
  /** 'skipped': priors from the same provider and settings were already stored. */
  status: 'written' | 'skipped';
  /** Wall time spent on the case, seconds. */
  seconds: number;
}

export interface MakePriorsOptions {
  cacheDir: string;
  /** Labelled cases of the cache to make priors for. */
  ids: readonly string[];
  provider: PriorProvider;
  /** Default float16. */
  storedAs?: PriorStorage;
  onProgress?: (progress: PriorProgress) => void;
}

/** Whether a case already holds intact priors from `provider` stored as `storedAs`. */
function alreadyMade(cacheDir: string, id: string, provider: PriorProvider, storedAs: PriorStorage): boolean {
  const inspection = inspectCachedCase(cacheDir, id, 'size', [PRIORS_ARRAY]);
  if (!inspection.finished) return false;
  const record = storedPriorRecord(inspection.manifest);
  return record !== undefined && sameSource(record, { provider: provider.name, settings: provider.settings }, storedAs);
}

/** Makes and stores the priors of `ids`, skipping finished ones (see the module comment). */
export async function makePriors(options: MakePriorsOptions): Promise<{ written: string[]; skipped: string[] }> {
  const storedAs = options.storedAs ?? 'float16';
  const { cacheDir, provider } = options;
  const written: string[] = [];
  const skipped: string[] = [];
  for (const [index, id] of options.ids.entries()) {
    const started = performance.now();
    const skip = alreadyMade(cacheDir, id, provider, storedAs);
    if (skip) {
      skipped.push(id);
    } else {
      const kase = loadCase(cacheDir, id);
      if (!kase.label) throw new Error(`case "${id}" in ${cacheDir} has no label; semantic priors are made for labelled (training) cases`);
      const priors = await provider.computeCase({ ...kase, label: kase.label });
      writePriors(cacheDir, id, priors, { provider: provider.name, settings: provider.settings }, storedAs);
      written.push(id);
    }
    options.onProgress?.({
      done: index + 1,
      total: options.ids.length,
      id,
      status: skip ? 'skipped' : 'written',
      seconds: (performance.now() - started) / 1000,
    });
    await yieldToEventLoop();
  }
  return { written, skipped };
}
