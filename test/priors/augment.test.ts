// Priors stored in the cache follow the images and labels through the training loader's random crop, rotation and
// flips. Invariants: priors that copy image channels (in a class-major, then modality, permutation) still equal those
// channels after augmentation — images and priors are both interpolated linearly, from values exact in either
// storage — and priors that are the label's one-hot still equal the one-hot of the cropped and flipped label.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CROP_ONLY, DEFAULT_AUGMENTATION, type AugmentOptions } from '../../src/data/augment.ts';
import { createBatchLoader, type Batch } from '../../src/data/loader.ts';
import type { Shape3 } from '../../src/data/preprocess.ts';
import { createRng, randInt } from '../../src/data/random.ts';
import { PRIORS_ARRAY } from '../../src/priors/provider.ts';
import { writePriors, type PriorStorage } from '../../src/priors/store.ts';
import { writeTinyCache } from './helpers.ts';

const SHAPE: Shape3 = [14, 12, 10];
const VOXELS = 14 * 12 * 10;
const PATCH: Shape3 = [8, 8, 8];
const PATCH_VOXELS = 512;
const IDS = ['p', 'q', 'r'];

/** Prior channel (c, k) copies image channel (c + k) mod 4. */
const sourceChannel = (c: number, k: number) => (c + k) % 4;

let root: string;
before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** Images whose values are exact in the storage (multiples of 1/1024 for float16, levels q/255 for uint8). */
function imageValue(storage: PriorStorage, caseIndex: number, m: number, v: number): number {
  return storage === 'float16' ? ((v * 7 + m * 131 + caseIndex * 17) % 1024) / 1024 : Math.fround(((v * 7 + m * 31 + caseIndex * 17) % 256) / 255);
}

function cacheWithPriors(storage: PriorStorage, priorsOf: (images: Float32Array, label: Uint8Array) => Float32Array): string {
  const cacheDir = fs.mkdtempSync(path.join(root, `${storage}-`));
  const rng = createRng(4);
  const cases = IDS.map((id, caseIndex) => ({
    id,
    shape: SHAPE,
    images: Float32Array.from({ length: 4 * VOXELS }, (_, i) => imageValue(storage, caseIndex, Math.floor(i / VOXELS), i % VOXELS)),
    label: Uint8Array.from({ length: VOXELS }, () => randInt(rng, 0, 4)),
  }));
  writeTinyCache(cacheDir, cases);
  for (const kase of cases) writePriors(cacheDir, kase.id, priorsOf(kase.images, kase.label), { provider: 'test', settings: {} }, storage);
  return cacheDir;
}

async function batchesOf(cacheDir: string, augment: AugmentOptions, epochs: number): Promise<Batch[]> {
  const loader = createBatchLoader({ cacheDir, ids: IDS, batchSize: 2, patchSize: PATCH, seed: 21, augment, workers: 0, extraArrays: [PRIORS_ARRAY] });
  const batches: Batch[] = [];
  try {
    for (let epoch = 0; epoch < epochs; epoch++) for await (const batch of loader.epoch(epoch)) batches.push(batch);
  } finally {
    await loader.close();
  }
  return batches;
}

const channel = (data: Float32Array, count: number, b: number, c: number) => data.subarray((b * count + c) * PATCH_VOXELS, (b * count + c + 1) * PATCH_VOXELS);

describe('priors through the training loader', () => {
  for (const storage of ['float16', 'uint8'] as const) {
    it(`${storage} priors are cropped, rotated and flipped exactly like the images`, async () => {
      const cacheDir = cacheWithPriors(storage, (images) => {
        const priors = new Float32Array(16 * VOXELS);
        for (let c = 0; c < 4; c++) for (let k = 0; k < 4; k++) priors.set(images.subarray(sourceChannel(c, k) * VOXELS, (sourceChannel(c, k) + 1) * VOXELS), (c * 4 + k) * VOXELS);
        return priors;
      });
      const batches = await batchesOf(cacheDir, { ...DEFAULT_AUGMENTATION, intensityShift: 0, intensityScale: 0 }, 4);
      let rotated = 0;
      for (const batch of batches) {
        assert.deepEqual(batch.channels.extras, { [PRIORS_ARRAY]: 16 });
        batch.ids.forEach((_, b) => {
          const flair = channel(batch.images, 4, b, 0);
          // Linear interpolation between neighbouring grid values leaves the storage's value grid.
          const scale = storage === 'float16' ? 1024 : 255;
          if (flair.some((value) => Math.abs(value * scale - Math.round(value * scale)) > 1e-3)) rotated++;
          for (let c = 0; c < 4; c++)
            for (let k = 0; k < 4; k++) assert.deepEqual(channel(batch.extras[PRIORS_ARRAY], 16, b, c * 4 + k), channel(batch.images, 4, b, sourceChannel(c, k)), `sample ${b} prior ${c}, ${k}`);
        });
      }
      assert.ok(rotated > 0, 'some samples were rotated');
    });
  }

  it('one-hot label priors still match the label after random crops and flips', async () => {
    const cacheDir = cacheWithPriors('uint8', (_, label) => {
      const priors = new Float32Array(16 * VOXELS);
      for (let c = 0; c < 4; c++) for (let k = 0; k < 4; k++) for (let v = 0; v < VOXELS; v++) priors[(c * 4 + k) * VOXELS + v] = label[v] === c ? 1 : 0;
      return priors;
    });
    const batches = await batchesOf(cacheDir, { ...CROP_ONLY, flip: true }, 3);
    for (const batch of batches) {
      batch.ids.forEach((_, b) => {
        const labels = batch.labels.subarray(b * PATCH_VOXELS, (b + 1) * PATCH_VOXELS);
        for (let c = 0; c < 4; c++) {
          const oneHot = Float32Array.from(labels, (l) => (l === c ? 1 : 0));
          for (let k = 0; k < 4; k++) assert.deepEqual(channel(batch.extras[PRIORS_ARRAY], 16, b, c * 4 + k), oneHot);
        }
      });
    }
  });
});
