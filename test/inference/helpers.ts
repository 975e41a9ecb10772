// Shared by the inference and evaluation tests: a tiny synthetic data set, a tiny random network and
// a training-run folder holding it, as training writes one.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { synthesizeDataset, syntheticCaseId } from '../../src/data/synthetic.ts';
import type { Modality, ModalityMask } from '../../src/data/modalities.ts';
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

/** Spatial shape of `phantomImages`. */
export const PHANTOM_SHAPE = [72, 40, 20] as const;

/**
 * Random sequences inside a brain box x 4–29, y 4–35, z 2–17 and zero around it, T1 (channel 2) non-zero in x 4–11 only;
 * with windows of 32 every 16 voxels, the windows at x 32 and 40 hold no brain, and T1 alone reaches only those at x 0.
 */
export function phantomImages(): Tensor /* (1, 4, 72, 40, 20) */ {
  const [X, Y, Z] = PHANTOM_SHAPE;
  torch.manualSeed(21);
  const values = torch.randn([1, 4, X, Y, Z]).add(3).toTypedArray() as Float32Array;
  const at = (k: number, x: number, y: number, z: number) => (((k * X + x) * Y + y) * Z + z);
  for (let k = 0; k < 4; k++)
    for (let x = 0; x < X; x++)
      for (let y = 0; y < Y; y++)
        for (let z = 0; z < Z; z++) {
          const inBrain = x >= 4 && x < 30 && y >= 4 && y < 36 && z >= 2 && z < 18 && (k !== 2 || x < 12);
          if (!inBrain) values[at(k, x, y, z)] = 0;
        }
  return torch.tensor(values, [1, 4, X, Y, Z]);
}

/** Voxels of `phantomImages` where some sequence of the subset is non-zero, (X, Y, Z) flags. */
export function brainOf(images: Float32Array, subset: ModalityMask): Uint8Array {
  const voxels = PHANTOM_SHAPE[0] * PHANTOM_SHAPE[1] * PHANTOM_SHAPE[2];
  return Uint8Array.from({ length: voxels }, (_, v) => (subset.some((present, k) => present && images[k * voxels + v] !== 0) ? 1 : 0));
}
