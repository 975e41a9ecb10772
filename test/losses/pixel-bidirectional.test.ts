import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { pixelBidirectionalLoss } from '../../src/losses/index.ts';
import { assertAllClose, assertClose, float64, klOf, onehotOf, sigmoidOfGap, softmaxAt } from './helpers.ts';

/** Binary KL(a ‖ b) between Bernoulli distributions given by their class-1 probabilities. */
const binaryKl = (a: number, b: number) => a * Math.log(a / b) + (1 - a) * Math.log((1 - a) / (1 - b));

test('pixelBidirectionalLoss matches the hand calculation on three voxels', () => {
  // Two classes, voxels v0..v2 with labels [0, 1, 0]; logits listed as (z_0, z_1) per voxel.
  //   branch 1: (2, 0), (0, 1), (1, 0);  branch 2: (0, 0), (0, 3), (0.5, 0).
  // Q_1 = [ln(1+e^-2), ln(1+e^-1), ln(1+e^-1)] = [0.127, 0.313, 0.313];
  // Q_2 = [ln 2, ln(1+e^-3), ln(1+e^-0.5)] = [0.693, 0.049, 0.474] → T = [0, 1, 0], N_21 = 1, N_12 = 2.
  const logits1 = float64([2, 0, 1, 0, 1, 0], [1, 2, 3, 1, 1]);
  const logits2 = float64([0, 0, 0.5, 0, 3, 0], [1, 2, 3, 1, 1]);
  const onehot = onehotOf(torch.tensor([0, 1, 0], [1, 3, 1, 1], { dtype: 'int64' }), 2);
  const tau = 6;
  // Class-1 probabilities at temperature τ.
  const p1 = [sigmoidOfGap(2 / tau, 0), sigmoidOfGap(0, 1 / tau), sigmoidOfGap(1 / tau, 0)];
  const p2 = [sigmoidOfGap(0, 0), sigmoidOfGap(0, 3 / tau), sigmoidOfGap(0.5 / tau, 0)];
  // The paper's equation: no τ² factor (the default); the switch multiplies by τ² = 36.
  const branch1 = binaryKl(p2[1], p1[1]);
  const branch2 = (binaryKl(p1[0], p2[0]) + binaryKl(p1[2], p2[2])) / 2;
  const plain = pixelBidirectionalLoss(logits1, logits2, onehot);
  assertClose(plain.branch1.item(), branch1, 1e-12, 'branch1');
  assertClose(plain.branch2.item(), branch2, 1e-12, 'branch2');
  const scaled = pixelBidirectionalLoss(logits1, logits2, onehot, { tau, scaleByTauSquared: true });
  assertClose(scaled.branch1.item(), branch1 * 36, 1e-12, 'scaled branch1');
  assertClose(scaled.branch2.item(), branch2 * 36, 1e-12, 'scaled branch2');
});

interface ReferencePbc {
  branch1: number;
  branch2: number;
  transfer: number[]; // T per (b, v)
}

/** Loops over a flat (B, C, V) layout, from the definition. */
function referencePbc(l1: ArrayLike<number>, l2: ArrayLike<number>, labels: number[], batch: number, classes: number, voxels: number, tau: number): ReferencePbc {
  let [sum1, sum2, n21] = [0, 0, 0];
  const transfer: number[] = [];
  for (let b = 0; b < batch; b++) {
    for (let v = 0; v < voxels; v++) {
      const label = labels[b * voxels + v];
      const q1 = -Math.log(softmaxAt(l1, classes, voxels, b, v)[label]);
      const q2 = -Math.log(softmaxAt(l2, classes, voxels, b, v)[label]);
      const soft1 = softmaxAt(l1, classes, voxels, b, v, tau);
      const soft2 = softmaxAt(l2, classes, voxels, b, v, tau);
      const t = q1 > q2 ? 1 : 0;
      transfer.push(t);
      n21 += t;
      if (t) sum1 += klOf(soft2, soft1);
      else sum2 += klOf(soft1, soft2);
    }
  }
  const n12 = batch * voxels - n21;
  return { branch1: n21 ? sum1 / n21 : 0, branch2: n12 ? sum2 / n12 : 0, transfer };
}

function randomCase(seed: number) {
  torch.manualSeed(seed);
  const [batch, classes, spatial] = [2, 3, [2, 2, 2]];
  const logits1 = torch.randn([batch, classes, ...spatial], { dtype: 'float64' }).mul(2).requiresGrad_();
  const logits2 = torch.randn([batch, classes, ...spatial], { dtype: 'float64' }).mul(2).requiresGrad_();
  const labels = torch.randint(0, classes, [batch, ...spatial]);
  const reference = referencePbc(logits1.toTypedArray() as Float64Array, logits2.toTypedArray() as Float64Array, labels.toArray(), batch, classes, 8, 6);
  return { batch, classes, voxels: 8, logits1, logits2, onehot: onehotOf(labels, classes), reference };
}

test('pixelBidirectionalLoss agrees with a loop implementation on random inputs', () => {
  for (const seed of [1, 2, 3]) {
    const { logits1, logits2, onehot, reference } = randomCase(seed);
    const loss = pixelBidirectionalLoss(logits1, logits2, onehot);
    assertClose(loss.branch1.item(), reference.branch1, 1e-10, `branch1, seed ${seed}`);
    assertClose(loss.branch2.item(), reference.branch2, 1e-10, `branch2, seed ${seed}`);
  }
});

test('transfer direction: only the less reliable branch receives gradient at each voxel, with the distillation gradient', () => {
  const { batch, classes, voxels, logits1, logits2, onehot, reference } = randomCase(5);
  assert.ok(reference.transfer.includes(0) && reference.transfer.includes(1), 'the draw should mix both directions');
  const loss = pixelBidirectionalLoss(logits1, logits2, onehot);
  loss.branch1.add(loss.branch2).backward();
  const [grad1, grad2] = [logits1.grad!.toArray(), logits2.grad!.toArray()];
  const [z1, z2] = [logits1.toTypedArray() as Float64Array, logits2.toTypedArray() as Float64Array];
  const n21 = reference.transfer.reduce((a, t) => a + t, 0);
  const n12 = batch * voxels - n21;
  const tau = 6;
  for (let b = 0; b < batch; b++) {
    for (let v = 0; v < voxels; v++) {
      const at = (grad: number[]) => Array.from({ length: classes }, (_, c) => grad[(b * classes + c) * voxels + v]);
      const soft1 = softmaxAt(z1, classes, voxels, b, v, tau);
      const soft2 = softmaxAt(z2, classes, voxels, b, v, tau);
      // d/dz KL(p ‖ σ(z/τ)) = (σ(z/τ) − p) / τ, divided by the mask size.
      if (reference.transfer[b * voxels + v]) {
        assertAllClose(at(grad1), soft1.map((q, c) => (q - soft2[c]) / tau / n21), 1e-10, `grad1 at ${b},${v}`);
        assert.ok(at(grad2).every((g) => g === 0), `grad2 at ${b},${v}`);
      } else {
        assertAllClose(at(grad2), soft2.map((q, c) => (q - soft1[c]) / tau / n12), 1e-10, `grad2 at ${b},${v}`);
        assert.ok(at(grad1).every((g) => g === 0), `grad1 at ${b},${v}`);
      }
    }
  }
});

test('the teacher side is detached: each branch term reaches only its own student', () => {
  const { logits1, logits2, onehot } = randomCase(7);
  const loss = pixelBidirectionalLoss(logits1, logits2, onehot);
  const [toStudent1, toTeacher2] = torch.grad([loss.branch1], [logits1, logits2], { retainGraph: true });
  const [toTeacher1, toStudent2] = torch.grad([loss.branch2], [logits1, logits2]);
  const untouched = (g: Tensor | null) => g === null || g.abs().sum().item() === 0;
  assert.ok(untouched(toTeacher2) && untouched(toTeacher1), 'teachers receive no gradient');
  assert.ok(toStudent1!.abs().sum().item() > 0 && toStudent2!.abs().sum().item() > 0, 'students do');
});

test('empty transfer masks (T all zeros, T all ones) give exactly 0 with finite gradients', () => {
  // Labels all class 0; the confident branch has lower cross-entropy at every voxel.
  const onehot = onehotOf(torch.zeros([1, 2, 2, 2], { dtype: 'int64' }), 2);
  const confident = () => torch.tensor([5, 5, 5, 5, 5, 5, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0], [1, 2, 2, 2, 2], { dtype: 'float64', requiresGrad: true });
  const unsure = () => torch.zeros([1, 2, 2, 2, 2], { dtype: 'float64', requiresGrad: true });
  for (const branch1IsBetter of [true, false]) {
    const [logits1, logits2] = branch1IsBetter ? [confident(), unsure()] : [unsure(), confident()];
    const loss = pixelBidirectionalLoss(logits1, logits2, onehot);
    const [empty, full] = branch1IsBetter ? [loss.branch1, loss.branch2] : [loss.branch2, loss.branch1];
    assert.equal(empty.item(), 0, 'the term with an empty mask is exactly 0');
    assert.ok(full.item() > 0);
    loss.branch1.add(loss.branch2).backward();
    for (const g of [logits1.grad!, logits2.grad!]) assert.ok(g.toArray().every(Number.isFinite));
  }
});

test('pixelBidirectionalLoss rejects mismatched shapes and a non-positive tau', () => {
  const logits = torch.zeros([1, 2, 2, 2, 2]);
  assert.throws(() => pixelBidirectionalLoss(logits, torch.zeros([1, 3, 2, 2, 2]), logits), /logits2/);
  assert.throws(() => pixelBidirectionalLoss(logits, logits, logits, { tau: 0 }), /tau/);
});
