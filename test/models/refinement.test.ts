import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { torch } from '../../src/engine/index.ts';
import { ModalityReweighting, RefinementUNet, regionStatistics } from '../../src/models/refinement.ts';

// B = 1, C = 3 classes, K = 2 modalities, 2 voxels (H, W, D) = (2, 1, 1): voxel 0 is class 0, voxel 1
// class 1, class 2 is absent. Prior channel c·K + k = class c from modality k.
const PRIORS = [
  [0.8, 0.2], // class 0, modality 0
  [0.4, 0.6], // class 0, modality 1
  [0.1, 0.9], // class 1, modality 0
  [0.3, 0.5], // class 1, modality 1
  [0.7, 0.7], // class 2, modality 0
  [0.2, 0.1], // class 2, modality 1
];
const priors = () => torch.tensor(PRIORS.flat(), [1, 6, 2, 1, 1]);
const onehot = () => torch.tensor([1, 0, 0, 1, 0, 0], [1, 3, 2, 1, 1]);

const close = (actual: number[], expected: number[], tol = 1e-6) =>
  assert.ok(
    actual.length === expected.length && actual.every((v, i) => Math.abs(v - expected[i]) <= tol),
    `got [${actual.join(', ')}], expected [${expected.join(', ')}]`,
  );

test('region statistics: mean prior inside each class region per modality, then the volume fraction', () => {
  const stats = regionStatistics(priors(), onehot());
  assert.deepEqual(stats.shape, [1, 3, 3]); // (B, K + 1, C)
  // rows: modality 0, modality 1, fraction; columns: classes 0, 1, 2 (absent → 0)
  close(stats.toArray(), [0.8, 0.9, 0, 0.4, 0.5, 0, 0.5, 0.5, 0]);
});

test('region statistics average over a larger region and over the batch independently', () => {
  // 4 voxels; sample 0: class 1 on voxels 1..3; sample 1: class 1 on voxel 0 only. C = 2, K = 1.
  const p = torch.tensor([0, 0, 0, 0, 0.2, 0.4, 0.6, 1.0, 0, 0, 0, 0, 0.3, 0.9, 0.9, 0.9], [2, 2, 4, 1, 1]);
  const y = torch.tensor([1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0], [2, 2, 4, 1, 1]);
  const stats = regionStatistics(p, y); // (2, 2, 2)
  close(stats.toArray(), [0, (0.4 + 0.6 + 1.0) / 3, 0.25, 0.75, 0, 0.3, 0.75, 0.25]);
});

test('re-weighting scales each class’s priors by sigmoid weights from the MLP', () => {
  const reweighting = new ModalityReweighting(2, [4]);
  // zero MLP: every weight is sigmoid(last bias) = 0.5 for modality 0 and sigmoid(ln 3) = 0.75 for modality 1
  torch.noGrad(() => {
    for (const p of reweighting.parameters()) p.zero_();
    reweighting.layers[1].bias!.copy_(torch.tensor([0, Math.log(3)]));
  });
  const out = reweighting.forward(priors(), onehot());
  assert.deepEqual(out.shape, [1, 6, 2, 1, 1]);
  const expected = PRIORS.flatMap((row, channel) => row.map((v) => v * (channel % 2 === 0 ? 0.5 : 0.75)));
  close(out.toArray(), expected);
});

test('the weights depend on the statistics through the MLP (not constant)', () => {
  torch.manualSeed(3);
  const reweighting = new ModalityReweighting(2, [8, 8]);
  const weights = reweighting.weights(regionStatistics(priors(), onehot())).toArray(); // (1, C, K)
  assert.equal(weights.length, 6);
  assert.ok(weights.every((w) => w > 0 && w < 1));
  // classes 0 and 1 have different statistics, so different weights
  assert.ok(Math.abs(weights[0] - weights[2]) > 1e-6);
});

test('the U-Net keeps the spatial size, outputs C logits and updates batch-norm statistics in training', () => {
  torch.manualSeed(5);
  const unet = new RefinementUNet(6, [2, 4, 8], 3);
  const x = torch.randn([2, 6, 16, 16, 16]);
  const before = unet.down[2][1].norm.runningMean!.clone();
  const y = unet.forward(x);
  assert.deepEqual(y.shape, [2, 3, 16, 16, 16]);
  assert.ok(unet.down[2][1].norm.runningMean!.sub(before).abs().max().item() > 0);
  unet.eval();
  const a = unet.forward(x);
  const b = unet.forward(x);
  assert.equal(a.sub(b).abs().max().item(), 0, 'eval mode is deterministic');
  assert.throws(() => new RefinementUNet(6, [2, 4, 8], 3).forward(torch.randn([1, 5, 16, 16, 16])), /expected input/);
});
