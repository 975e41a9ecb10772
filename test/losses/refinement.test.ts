import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { torch } from '../../src/engine/index.ts';
import { refinementConsistencyLoss } from '../../src/losses/index.ts';
import { assertAllClose, assertClose, float64, klOf, sigmoidOfGap, softmaxAt } from './helpers.ts';

test('refinementConsistencyLoss matches the hand calculation', () => {
  // Two classes, two voxels, (z_0, z_1) per voxel: initial (1, 0), (0, 2); refined (3, 0), (0, 0).
  const logits = float64([1, 0, 0, 2], [1, 2, 2, 1, 1]);
  const refined = float64([3, 0, 0, 0], [1, 2, 2, 1, 1]);
  const [q0, q1] = [sigmoidOfGap(1, 0), sigmoidOfGap(0, 2)]; // class-1 probabilities of the initial prediction
  const [p0, p1] = [sigmoidOfGap(3, 0), 0.5]; // and of the refined one
  const kl = (p: number, q: number) => p * Math.log(p / q) + (1 - p) * Math.log((1 - p) / (1 - q));
  assertClose(refinementConsistencyLoss(logits, refined).item(), (kl(p0, q0) + kl(p1, q1)) / 2, 1e-12);
});

test('refinementConsistencyLoss agrees with loops and teaches only the initial prediction', () => {
  torch.manualSeed(3);
  const [batch, classes, voxels] = [2, 4, 6];
  const logits = torch.randn([batch, classes, 3, 2, 1], { dtype: 'float64', requiresGrad: true });
  const refined = torch.randn([batch, classes, 3, 2, 1], { dtype: 'float64' }).mul(2).requiresGrad_();
  const [z, r] = [logits.toTypedArray() as Float64Array, refined.toTypedArray() as Float64Array];
  let sum = 0;
  const expectedGrad = new Array(batch * classes * voxels).fill(0);
  for (let b = 0; b < batch; b++) {
    for (let v = 0; v < voxels; v++) {
      const [p, q] = [softmaxAt(r, classes, voxels, b, v), softmaxAt(z, classes, voxels, b, v)];
      sum += klOf(p, q);
      // d KL(p ‖ σ(z)) / dz = σ(z) − p, averaged over the voxels of the batch.
      for (let c = 0; c < classes; c++) expectedGrad[(b * classes + c) * voxels + v] = (q[c] - p[c]) / (batch * voxels);
    }
  }
  const loss = refinementConsistencyLoss(logits, refined);
  assertClose(loss.item(), sum / (batch * voxels), 1e-12);
  const [toLogits, toRefined] = torch.grad([loss], [logits, refined]);
  assertAllClose(toLogits!.toArray(), expectedGrad, 1e-12, 'gradient');
  assert.equal(toRefined, null, 'the refined side is detached');
});

test('identical predictions give 0, and mismatched shapes are rejected', () => {
  const logits = torch.randn([1, 3, 2, 2, 2], { dtype: 'float64' });
  assertClose(refinementConsistencyLoss(logits, logits).item(), 0, 1e-15);
  assert.throws(() => refinementConsistencyLoss(logits, torch.randn([1, 2, 2, 2, 2], { dtype: 'float64' })), /refinedLogits/);
});
