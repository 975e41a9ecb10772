import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { saveTorchCheckpoint, torch } from '../../src/engine/index.ts';
import { CACHE_FORMAT_VERSION, type CachedCase } from '../../src/data/cache.ts';
import type { Shape3 } from '../../src/data/preprocess.ts';
import { createRng } from '../../src/data/random.ts';
import { sampleClick } from '../../src/priors/sam-med3d/clicks.ts';
import { convertSamMed3dCheckpoint } from '../../src/priors/sam-med3d/convert.ts';
import {
  axisSampling,
  fromWindowSamplings,
  prepareModelInput,
  resampleVolume,
  spacingChange,
  storedIntensities,
  toTargetSamplings,
  windowAround,
  zNormalizePositive,
} from '../../src/priors/sam-med3d/preprocess.ts';
import { createSamMed3dProvider, segmentInteractively } from '../../src/priors/sam-med3d/provider.ts';
import { seededModel, SMALL } from './sam-med3d-helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'smml-sam-provider-'));
const weights = join(dir, 'small.safetensors');
before(() => {
  const model = seededModel(31);
  saveTorchCheckpoint(join(dir, 'small.pth'), new Map([['model_state_dict', model.stateDict()]]));
  convertSamMed3dCheckpoint(join(dir, 'small.pth'), weights, SMALL);
  model.dispose();
});
after(() => rmSync(dir, { recursive: true, force: true }));

const index = (shape: Shape3, [x, y, z]: number[]) => (x * shape[1] + y) * shape[2] + z;

/** A labelled case: a cuboid brain with a tumour of nested balls (classes 1–3 unless `classes` says otherwise). */
function makeCase(shape: Shape3, spacing: number, centre: number[], options: { classes?: number[]; id?: string } = {}): CachedCase & { label: Uint8Array } {
  const voxels = shape[0] * shape[1] * shape[2];
  const present = options.classes ?? [1, 2, 3];
  const label = new Uint8Array(voxels);
  const images = new Float32Array(4 * voxels);
  for (let x = 0; x < shape[0]; x++) {
    for (let y = 0; y < shape[1]; y++) {
      for (let z = 0; z < shape[2]; z++) {
        const v = index(shape, [x, y, z]);
        const r = Math.hypot(x - centre[0], y - centre[1], z - centre[2]);
        const c = r <= 1.5 ? 3 : r <= 2.5 ? 1 : r <= 4 ? 2 : 0;
        label[v] = present.includes(c) ? c : 0;
        for (let k = 0; k < 4; k++) images[k * voxels + v] = Math.sin(0.7 * x + 0.3 * k) + 0.5 * Math.cos(0.4 * y * (k + 1)) + 0.25 * z / shape[2] + 0.8 * c + 0.01;
      }
    }
  }
  const s = spacing;
  return {
    id: options.id ?? 'case-1',
    images,
    label,
    shape,
    extras: {},
    meta: {
      formatVersion: CACHE_FORMAT_VERSION,
      id: options.id ?? 'case-1',
      shape,
      originalShape: shape,
      cropBox: { start: [0, 0, 0], end: shape },
      affine: [
        [s, 0, 0, 0],
        [0, s, 0, 0],
        [0, 0, s, 0],
        [0, 0, 0, 1],
      ],
      referenceFile: 'case-1_flair.nii.gz',
      sourceFiles: {},
      modalities: ['flair', 't1ce', 't1', 't2'],
      normalization: [0, 1, 2, 3].map((k) => ({ mean: 100 + 10 * k, std: 20 })),
      numClasses: 4,
      arrays: {},
    },
  };
}

test('clicks: the first lies in the object; later ones on the errors, positive exactly where the object was missed', () => {
  const shape: Shape3 = [4, 5, 6];
  const truth = new Uint8Array(120);
  for (const p of [[1, 2, 3], [1, 2, 4], [2, 2, 3], [2, 3, 3]]) truth[index(shape, p)] = 1;
  const rng = createRng(8);
  const firsts = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const click = sampleClick(truth, null, shape, rng)!;
    assert.equal(truth[index(shape, click.point)], 1);
    assert.equal(click.positive, true);
    firsts.add(index(shape, click.point));
  }
  assert.equal(firsts.size, 4, 'every object voxel can be drawn');

  const predicted = truth.slice();
  predicted[index(shape, [2, 3, 3])] = 0; // missed
  predicted[index(shape, [0, 0, 0])] = 1; // false positive
  predicted[index(shape, [3, 4, 5])] = 1; // false positive
  const seen = new Map<number, boolean>();
  for (let i = 0; i < 300; i++) {
    const click = sampleClick(truth, predicted, shape, rng)!;
    seen.set(index(shape, click.point), click.positive);
  }
  assert.deepEqual(
    [...seen].sort((a, b) => a[0] - b[0]),
    [
      [index(shape, [0, 0, 0]), false],
      [index(shape, [2, 3, 3]), true],
      [index(shape, [3, 4, 5]), false],
    ],
  );
  assert.equal(sampleClick(truth, truth, shape, rng), null);
  assert.equal(sampleClick(new Uint8Array(120), null, shape, rng), null);
  const [a, b] = [createRng(3), createRng(3)];
  assert.deepEqual(sampleClick(truth, predicted, shape, a), sampleClick(truth, predicted, shape, b));
});

test('resampling to 1.5 mm samples (j + ½)·r − ½ with edge voxels repeated within half a voxel, 0 beyond', () => {
  assert.deepEqual(spacingChange([240, 240, 155], [1, 1, 1]).shape, [160, 160, 104]);
  const change = spacingChange([4, 1, 1], [1, 1, 1]);
  assert.deepEqual(change.shape, [3, 1, 1]);
  const ramp = new Float32Array([10, 20, 30, 40]);
  // positions 0.25, 1.75, 3.25 → 12.5, 27.5, and 40 (edge repeated)
  assert.deepEqual([...resampleVolume(ramp, [4, 1, 1], toTargetSamplings([4, 1, 1], change, 'linear'))], [12.5, 27.5, 40]);
  // nearest: 0.25 → 0, 1.75 → 2, 3.25 → 3
  assert.deepEqual([...resampleVolume(new Uint8Array([1, 2, 3, 4]), [4, 1, 1], toTargetSamplings([4, 1, 1], change, 'nearest'))], [1, 3, 4]);
  const beyond = axisSampling(3, 3, (j) => j * 2 - 0.75, 'linear');
  assert.deepEqual([...beyond.inside], [0, 1, 0]);
  assert.equal(axisSampling(2, 1, () => 0.5, 'nearest').low[0], 1, 'halves round up');
});

test('the window is centred on the bounding box as torchio CropOrPad places it, and pads with zeros', () => {
  const shape: Shape3 = [10, 10, 10];
  const mask = new Uint8Array(1000);
  mask[index(shape, [3, 3, 3])] = 1;
  mask[index(shape, [6, 5, 3])] = 1;
  // x: box 3..6, centre (3 + 7)/2 = 5 → 5 − 4 = 1; y: 3..5, centre 4.5 → 4 − 4 = 0; z: 3..3, centre 3.5 → 3 − 4 = −1
  assert.deepEqual(windowAround(mask, shape, 8), [1, 0, -1]);
  assert.equal(windowAround(new Uint8Array(1000), shape, 8), null);
  const data = new Float32Array([0, 1, 2, 3, 0, 5]);
  assert.equal(zNormalizePositive(data), true);
  // voxels > 0: 1, 2, 3, 5 → mean 2.75, unbiased std √(8.75/3)
  const std = Math.sqrt(8.75 / 3);
  [0, 1, 2, 3, 0, 5].forEach((value, i) => assert.ok(Math.abs(data[i] - (value - 2.75) / std) < 1e-6));
  assert.equal(zNormalizePositive(new Float32Array([0, 4, 0])), false);
  assert.deepEqual([...storedIntensities(new Float32Array([0, 1, -0.5]), { mean: 100, std: 20 })], [0, 120, 90]);
});

test('the model input: resampled, windowed around the tumour, z-normalised; the way back lands on the same voxels', () => {
  const kase = makeCase([30, 12, 10], 1.5, [6, 6, 5]);
  const input = prepareModelInput(kase.images, kase.label, kase.shape, kase.meta, [1.5, 1.5, 1.5], 32)!;
  // At 1.5 mm nothing is resampled; the tumour's box is x 2..10 → start floor(6.5 − 16) = −10.
  assert.deepEqual(input.change.shape, [30, 12, 10]);
  assert.deepEqual(input.start, [-10, -10, -11]);
  const w = (x: number, y: number, z: number) => index([32, 32, 32], [x - input.start[0], y - input.start[1], z - input.start[2]]);
  assert.equal(input.label[w(6, 6, 5)], 3);
  assert.equal(input.label[w(6, 6, 9)], 2);
  assert.equal(input.label[index([32, 32, 32], [0, 0, 0])], 0);
  // FLAIR at its stored intensities (z·20 + 100), normalised over the window's voxels > 0 (all case voxels with x < 22).
  const inWindow: number[] = [];
  for (let x = 0; x < 22; x++) for (let y = 0; y < 12; y++) for (let z = 0; z < 10; z++) inWindow.push(kase.images[index(kase.shape, [x, y, z])] * 20 + 100);
  const mean = inWindow.reduce((a, v) => a + v, 0) / inWindow.length;
  const std = Math.sqrt(inWindow.reduce((a, v) => a + (v - mean) ** 2, 0) / (inWindow.length - 1));
  const flair = input.images[0]!;
  assert.ok(Math.abs(flair[index([32, 32, 32], [0, 0, 0])] - -mean / std) < 1e-4, 'padding reads 0 before normalisation');
  assert.ok(Math.abs(flair[w(6, 6, 5)] - (inWindow[index([22, 12, 10], [6, 6, 5])] - mean) / std) < 1e-4);
  // Voxels x ≥ 22 lie outside the window: the way back gives them 0, voxels inside get their own value.
  const ones = new Float32Array(32 ** 3).fill(1);
  const back = resampleVolume(ones, [32, 32, 32], fromWindowSamplings(kase.shape, input.change, input.start, 32));
  assert.equal(back[index(kase.shape, [21, 0, 0])], 1);
  assert.equal(back[index(kase.shape, [22, 0, 0])], 0);
});

test('interactive segmentation: clicks inside the object first, then on the previous error, deterministic for a seed', () => {
  const model = seededModel(31);
  const truth = new Uint8Array(32 ** 3);
  for (let x = 10; x < 16; x++) for (let y = 12; y < 20; y++) for (let z = 8; z < 14; z++) truth[index([32, 32, 32], [x, y, z])] = 1;
  const embedding = torch.noGrad(() => model.embedImage(torch.randn([1, 1, 32, 32, 32])));
  const run = () => torch.noGrad(() => segmentInteractively(model, embedding, truth, 3, createRng(4)))!;
  const [a, b] = [run(), run()];
  assert.deepEqual(a.clicks, b.clicks);
  assert.deepEqual([...a.probabilities], [...b.probabilities]);
  assert.ok(a.clicks.length >= 1 && a.clicks.length <= 3);
  assert.equal(truth[index([32, 32, 32], a.clicks[0].point)], 1);
  assert.equal(a.clicks[0].positive, true);
  for (const click of a.clicks) assert.equal(click.positive, truth[index([32, 32, 32], click.point)] === 1);
  assert.ok(a.probabilities.every((p) => p >= 0 && p <= 1));
  assert.equal(segmentInteractively(model, embedding, new Uint8Array(32 ** 3), 3, createRng(4)), null);
  embedding.dispose();
  model.dispose();
});

test('the provider returns (C, K, X, Y, Z) probabilities, background = Π(1 − p_c), zeros for absent classes, same for a seed', async () => {
  const kase = makeCase([14, 12, 10], 1, [6, 6, 5], { classes: [1, 2] });
  const provider = createSamMed3dProvider({ weights, clicks: 2, seed: 5 });
  assert.equal(provider.name, 'sam-med3d');
  assert.equal(provider.settings.clicks, 2);
  assert.equal(provider.settings.weights, 'small.safetensors');
  assert.match(String(provider.settings.weightsSha256), /^[0-9a-f]{64}$/);
  const priors = await provider.computeCase(kase);
  const voxels = 14 * 12 * 10;
  assert.equal(priors.length, 4 * 4 * voxels);
  assert.ok(priors.every((p) => p >= 0 && p <= 1));
  const channel = (c: number, k: number) => priors.subarray((c * 4 + k) * voxels, (c * 4 + k + 1) * voxels);
  for (let k = 0; k < 4; k++) {
    assert.ok(channel(3, k).every((p) => p === 0), 'class 3 is absent');
    assert.ok(channel(1, k).some((p) => p > 0) && channel(2, k).some((p) => p > 0));
    for (let v = 0; v < voxels; v += 37) assert.ok(Math.abs(channel(0, k)[v] - (1 - channel(1, k)[v]) * (1 - channel(2, k)[v])) < 1e-6);
  }
  assert.deepEqual([...(await provider.computeCase(kase))], [...priors]);
  const reseeded = await createSamMed3dProvider({ weights, clicks: 2, seed: 6 }).computeCase(kase);
  assert.notDeepEqual([...reseeded], [...priors]);

  const healthy = makeCase([14, 12, 10], 1, [6, 6, 5], { classes: [] });
  const empty = await provider.computeCase(healthy);
  for (let k = 0; k < 4; k++) assert.ok(empty.subarray(k * voxels, (k + 1) * voxels).every((p) => p === 1));
  assert.ok(empty.subarray(4 * voxels).every((p) => p === 0));
  assert.throws(() => createSamMed3dProvider({ weights, clicks: 0 }), /clicks must be a positive integer/);
});
