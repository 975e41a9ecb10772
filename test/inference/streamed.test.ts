// The streamed whole-volume path (batched windows, encode once per batch, windows outside the brain skipped, sums kept
// for one window's extent along x) against the straightforward one: every window through the model one at a time,
// blended over the whole volume.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SUBSETS, type ModalityMask } from '../../src/data/modalities.ts';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { argmaxLabels, subsetLabels, subsetProbabilities } from '../../src/inference/predict.ts';
import { clearOutsideBrain } from '../../src/inference/postprocess.ts';
import { defaultWindowBatch, slidingWindowInference, streamWindows } from '../../src/inference/sliding-window.ts';
import { createModel, modalityMask, type SegmentationModel } from '../../src/models/index.ts';
import { brainOf, PHANTOM_SHAPE, phantomImages, tinyModel } from './helpers.ts';

const [X, Y, Z] = PHANTOM_SHAPE;

/** Every window through the model on its own, blended over the whole volume, one subset at a time. */
function straightforward(model: SegmentationModel, images: Tensor, subsets: readonly ModalityMask[], weighting: 'uniform' | 'gaussian'): Tensor {
  const { patch } = model.config;
  return torch.cat(
    subsets.map((subset) => {
      const mask = modalityMask([subset]);
      return slidingWindowInference(images, [patch, patch, patch], (window) => model.predictProbabilities(window, mask), { overlap: 0.5, weighting });
    }),
    0,
  );
}

function compare(model: SegmentationModel, subsets: readonly ModalityMask[], weighting: 'uniform' | 'gaussian', batchSize: number): void {
  torch.noGrad(() =>
    torch.tidy(() => {
      const images = phantomImages();
      const values = images.toTypedArray() as Float32Array;
      const reference = straightforward(model, images, subsets, weighting);
      const streamed = subsetProbabilities(model, images, subsets, { weighting, batchSize });
      const labels = subsetLabels(model, images, subsets, { weighting, batchSize });
      const referenceLabels = argmaxLabels(reference);
      const expected = reference.toTypedArray() as Float32Array;
      const actual = streamed.toTypedArray() as Float32Array;
      const voxels = X * Y * Z;
      const classes = model.config.classes;
      subsets.forEach((subset, s) => {
        const brain = brainOf(values, subset);
        let maxError = 0;
        for (let c = 0; c < classes; c++)
          for (let v = 0; v < voxels; v++) {
            if (!brain[v]) continue;
            const i = (s * classes + c) * voxels + v;
            maxError = Math.max(maxError, Math.abs(actual[i] - expected[i]));
          }
        assert.ok(maxError < 1e-5, `subset ${s}, ${weighting}, batch ${batchSize}: max difference ${maxError} in the brain`);
        // Labels after the brain is cleared, as prediction and evaluation write them, are the same.
        assert.deepEqual(clearOutsideBrain(labels[s], values, subset), clearOutsideBrain(referenceLabels[s], values, subset), `subset ${s} labels`);
        // Far from the brain (x ≥ 48: only windows without brain cover it) the streamed path says background.
        for (let v = 48 * Y * Z; v < voxels; v += 97) assert.equal(actual[(s * classes) * voxels + v], 1);
      });
    }),
  );
}

test('streamed, batched, skipping windows without brain: the straightforward blend within float rounding (SMML, several subsets)', () => {
  const model = tinyModel();
  const subsets = [SUBSETS[2], SUBSETS[1], SUBSETS[14]]; // T1 alone, T1ce alone, all four
  compare(model, subsets, 'uniform', 3);
  compare(model, subsets, 'gaussian', 1);
});

test('streamed path with one subset, and with the U-Net', () => {
  compare(tinyModel(), [SUBSETS[9]], 'uniform', 4);
  torch.manualSeed(4);
  const unet = createModel('unet-tiny');
  unet.eval();
  compare(unet, [SUBSETS[3], SUBSETS[14]], 'uniform', 2);
});

test('streamWindows hands out x slabs in order, skips windows without the read channels and batches the rest', () => {
  const images = phantomImages();
  const batches: number[] = [];
  const slabs: [number, number][] = [];
  const seen: number[] = [];
  const patch: [number, number, number] = [32, 32, 32];
  // One output reading T1 only: of the 4 × 2 × 1 windows only the two at x 0 hold T1.
  streamWindows(
    images,
    patch,
    2,
    [[false, false, true, false]],
    (windows, needed) => {
      batches.push(windows.size(0));
      assert.deepEqual(needed, [[true, true]]);
      return torch.ones([1, windows.size(0), 2, ...patch]).mul(0.5);
    },
    (x, slab) => {
      slabs.push([x, slab.size(2)]);
      // Covered by a predicted window: 0.5 each; elsewhere background.
      const first = slab.select(0, 0).select(0, 0).select(0, 0).select(0, 0).select(0, 0).item();
      assert.equal(first, x < 32 ? 0.5 : 1);
    },
    { batchSize: 8, onWindow: (done) => seen.push(done) },
  );
  assert.deepEqual(batches, [2]);
  assert.deepEqual(slabs, [[0, 16], [16, 16], [32, 8], [40, 32]]);
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(defaultWindowBatch([32, 32, 32]), 2);
  assert.equal(defaultWindowBatch([48, 48, 48]), 1);
  assert.equal(defaultWindowBatch([128, 128, 128]), 1);
});

test('bf16 mixed precision: float32 probabilities, labels as written the same on at least 99 % of voxels, flips only at near-ties', () => {
  // Eight base channels: the wider levels' convolutions and the transformer run in bfloat16.
  torch.manualSeed(5);
  const model = createModel('tiny', { baseChannels: 8 });
  const subsets = [SUBSETS[14], SUBSETS[0]];
  torch.noGrad(() =>
    torch.tidy(() => {
      const images = phantomImages();
      const values = images.toTypedArray() as Float32Array;
      const reference = subsetProbabilities(model, images, subsets);
      const mixed = subsetProbabilities(model, images, subsets, { precision: 'bf16' });
      assert.equal(mixed.dtype, 'float32');
      assert.ok(mixed.sub(reference).abs().max().item() > 0, 'bf16 computes differently from fp32');
      const probabilities = reference.toTypedArray() as Float32Array;
      const mixedLabels = subsetLabels(model, images, subsets, { precision: 'bf16' });
      const referenceLabels = argmaxLabels(reference);
      const voxels = X * Y * Z;
      const classes = model.config.classes;
      subsets.forEach((subset, s) => {
        const written = [referenceLabels[s], mixedLabels[s]].map((labels) => clearOutsideBrain(labels, values, subset));
        const agreeing = written[0].filter((label, v) => label === written[1][v]).length;
        assert.ok(agreeing >= 0.99 * voxels, `subset ${s}: written labels agree on ${agreeing} of ${voxels} voxels`);
        // This untrained network's classes are close in many voxels: measured 98.8 % (all four) and 98.2 % (FLAIR)
        // agreement in the brain, every flip where float32's two best classes lie within 0.075 of each other.
        const brain = brainOf(values, subset);
        let inBrain = 0;
        let flips = 0;
        for (let v = 0; v < voxels; v++) {
          if (!brain[v]) continue;
          inBrain++;
          if (referenceLabels[s][v] === mixedLabels[s][v]) continue;
          flips++;
          const [first, second] = Array.from({ length: classes }, (_, c) => probabilities[(s * classes + c) * voxels + v]).sort((a, b) => b - a);
          assert.ok(first - second < 0.1, `subset ${s}, voxel ${v}: the labels differ where float32 decides by ${first - second}`);
        }
        assert.ok(flips <= 0.025 * inBrain, `subset ${s}: labels differ on ${flips} of ${inBrain} brain voxels`);
      });
    }),
  );
});
