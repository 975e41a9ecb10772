// Shared by the inference and evaluation tests: a tiny synthetic data set, a tiny random network and
// a training-run folder holding it, as training writes one.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { torch } from '../../src/engine/index.ts';
import { synthesizeDataset, syntheticCaseId } from '../../src/data/synthetic.ts';
import type { Modality } from '../../src/data/modalities.ts';
import { createModel, type SmmlModel } from '../../src/models/index.ts';
import { parseTrainingConfig } from '../../src/training/config.ts';
import { encodeModelMetadata, MODEL_FORMAT, RUN_FORMAT, RUN_FORMAT_VERSION, runPaths, writeRunConfig } from '../../src/training/run-dir.ts';

// One libtorch thread: these volumes are far too small to gain from more, and on a busy machine
// waiting for a second thread costs much more than the work itself.
torch.setNumThreads(1);

export const BRATS2018_VALUES = [0, 1, 2, 4] as const;

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
}

/** Writes `cases` synthetic cases of 32 × 32 × 21 voxels into `<dir>/data`; returns the root and ids. */
export function tinyDataset(dir: string, cases: number): { root: string; ids: string[] } {
  const root = path.join(dir, 'data');
  synthesizeDataset({ out: root, cases, size: 32, seed: 11 });
  return { root, ids: Array.from({ length: cases }, (_, i) => syntheticCaseId(i)) };
}

/** The four modality files of a case written by `tinyDataset`. */
export function caseFiles(root: string, id: string): Record<Modality, string> {
  const file = (modality: string) => path.join(root, id, `${id}_${modality}.nii.gz`);
  return { flair: file('flair'), t1ce: file('t1ce'), t1: file('t1'), t2: file('t2') };
}

/** The smallest valid network with random weights (seeded), in evaluation mode. */
export function tinyModel(seed = 3): SmmlModel {
  torch.manualSeed(seed);
  const model = createModel('tiny');
  model.eval();
  return model;
}

/** A training-run folder (run.json and model.safetensors) for `model` on the tiny data set. */
export function writeRunFolder(runDir: string, model: SmmlModel, data: { root: string; test: string[] }): void {
  fs.mkdirSync(runDir, { recursive: true });
  const labelConvention = { layout: 'brats2018' as const, values: [...BRATS2018_VALUES] };
  writeRunConfig(runDir, {
    format: RUN_FORMAT,
    formatVersion: RUN_FORMAT_VERSION,
    createdAt: new Date(0).toISOString(),
    config: parseTrainingConfig({ data: { root: data.root } }),
    model: model.config,
    data: {
      root: data.root,
      layout: 'brats2018',
      numClasses: 4,
      labelConvention,
      cacheDir: path.join(runDir, 'cache'),
      split: { train: [], val: [], test: data.test },
    },
  });
  torch.saveModule(
    runPaths(runDir).model,
    model,
    encodeModelMetadata({
      format: MODEL_FORMAT,
      formatVersion: RUN_FORMAT_VERSION,
      modelConfig: model.config,
      numClasses: 4,
      labelConvention,
      epoch: 0,
      validation: null,
    }),
  );
}
