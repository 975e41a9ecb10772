// The data side of a training run: find the labelled BraTS cases, preprocess them into the cache (finished
// cases are skipped), split them, and check that the cache has what the configuration needs.
import * as path from 'node:path';
import { discoverBrats, makeSplit, readSplit, selectCases, type BratsDataset } from '../data/brats.ts';
import { loadCaseLabel, readCacheIndex, readCaseManifest } from '../data/cache.ts';
import { preprocessDataset, type PreprocessProgress } from '../data/preprocess.ts';
import { enhancementStratum } from '../data/regions.ts';
import { voxelSpacing } from '../data/volume.ts';
import { PRIORS_ARRAY } from '../priors/provider.ts';
import type { TrainingConfig } from './config.ts';
import type { RunData } from './run-dir.ts';

/** Name of the default cache folder inside the data root. */
export const DEFAULT_CACHE_FOLDER = '.smml-cache';

export function cacheDirOf(config: TrainingConfig): string {
  return path.resolve(config.data.cacheDir ?? path.join(config.data.root, DEFAULT_CACHE_FOLDER));
}

function labelledOnly(dataset: BratsDataset): BratsDataset {
  const cases = dataset.cases.filter((entry) => entry.label !== undefined);
  if (cases.length === 0) throw new Error(`${dataset.root}: no case has a label file; training needs labelled cases`);
  return { ...dataset, cases };
}

/** A case's stratum for the split, from its cached label: whether its tumour core mostly enhances. */
function enhancementStratumOf(cacheDir: string, numClasses: number): (id: string) => string {
  return (id) => enhancementStratum(loadCaseLabel(cacheDir, readCaseManifest(cacheDir, id)), numClasses);
}

function splitOf(config: TrainingConfig, dataset: BratsDataset, cacheDir: string): RunData['split'] {
  const { split } = config.data;
  if (split.trainFile) {
    const read = (file: string | undefined) => {
      if (!file) return [];
      const ids = readSplit(file);
      selectCases(dataset, ids, file);
      return ids;
    };
    const result = { train: read(split.trainFile), val: read(split.valFile), test: read(split.testFile) };
    const all = [...result.train, ...result.val, ...result.test];
    const repeated = all.filter((id, i) => all.indexOf(id) !== i);
    if (repeated.length > 0) throw new Error(`split files: case(s) in more than one part: ${[...new Set(repeated)].slice(0, 10).join(', ')}`);
    return result;
  }
  if (split.valFile || split.testFile) throw new Error('data.split: valFile/testFile need trainFile as well');
  return makeSplit(
    dataset.cases.map((entry) => entry.id),
    split.seed,
    split.proportions,
    split.stratify === 'enhancement' ? enhancementStratumOf(cacheDir, dataset.numClasses) : undefined,
  );
}

/**
 * Discovers the labelled cases under `data.root`, preprocesses them into the cache and splits them.
 * Returns the data description stored in run.json.
 */
export async function prepareTrainingData(config: TrainingConfig, onProgress?: (progress: PreprocessProgress) => void): Promise<RunData> {
  const root = path.resolve(config.data.root);
  const dataset = labelledOnly(discoverBrats(root, { layout: config.data.layout }));
  const cacheDir = cacheDirOf(config);
  await preprocessDataset({ dataset, cacheDir, imageDtype: config.data.imageDtype, onProgress });
  const split = splitOf(config, dataset, cacheDir);
  if (split.train.length === 0) throw new Error(`${root}: the split leaves no training case (${dataset.cases.length} labelled cases)`);
  return {
    root,
    layout: dataset.layout,
    numClasses: dataset.numClasses,
    labelConvention: { layout: dataset.layout, values: [...dataset.labelValues] },
    cacheDir,
    split,
    spacing: medianSpacing(split.train.map((id) => voxelSpacing(readCaseManifest(cacheDir, id).affine))),
  };
}

/** Per axis, the median voxel size (mm) of the given cases: the grid the network learns on (inference resamples to it). */
export function medianSpacing(spacings: readonly (readonly [number, number, number])[]): [number, number, number] {
  if (spacings.length === 0) throw new Error('medianSpacing: no case');
  return [0, 1, 2].map((axis) => {
    const sorted = spacings.map((spacing) => spacing[axis]).sort((a, b) => a - b);
    const middle = sorted.length >> 1;
    return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  }) as [number, number, number];
}

/** Checks that the cache still holds every training and validation case with `numClasses` classes. */
export function checkCache(data: RunData, ids: readonly string[]): void {
  const index = readCacheIndex(data.cacheDir);
  if (index.numClasses !== data.numClasses) {
    throw new Error(`${data.cacheDir}: the cache holds ${index.numClasses}-class labels, the run expects ${data.numClasses} classes`);
  }
  const cached = new Set(index.cases);
  const missing = ids.filter((id) => !cached.has(id));
  if (missing.length > 0) {
    throw new Error(`${data.cacheDir}: ${missing.length} case(s) of the split are not in the cache: ${missing.slice(0, 10).join(', ')} (preprocess the data again)`);
  }
}

/**
 * Throws naming the cases that lack semantic priors (or whose priors have the wrong shape) when
 * the refinement network is trained.
 */
export function checkPriors(cacheDir: string, ids: readonly string[], channels: number): void {
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const id of ids) {
    const manifest = readCaseManifest(cacheDir, id);
    const entry = manifest.arrays[PRIORS_ARRAY];
    const expected = [channels, ...manifest.shape];
    if (!entry) missing.push(id);
    else if (entry.shape.join() !== expected.join()) wrong.push(`${id} ([${entry.shape.join(', ')}], expected [${expected.join(', ')}])`);
  }
  const list = (items: string[]) => `${items.slice(0, 10).join(', ')}${items.length > 10 ? `, … (${items.length} in all)` : ''}`;
  if (missing.length > 0) {
    throw new Error(
      `the refinement network (losses.srn / losses.refinementKl) needs semantic priors, but ${missing.length} training case(s) in ${cacheDir} have none: ` +
        `${list(missing)}. Make them first (smml priors make --data <root>, or smml priors import), or switch losses.srn and losses.refinementKl off`,
    );
  }
  if (wrong.length > 0) throw new Error(`semantic priors in ${cacheDir} must be (classes × modalities = ${channels}, X, Y, Z) in the case's crop frame: ${list(wrong)}`);
}
