import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { torch } from '../../src/engine/index.ts';
import { featureRelationalLoss, nearestLabelDownsample } from '../../src/losses/index.ts';
import { assertClose, float64, softmaxAt } from './helpers.ts';

const int64 = (values: number[], shape: number[]) => torch.tensor(values, shape, { dtype: 'int64' });

test('nearestLabelDownsample takes input voxel floor(i·in/out) on each axis', () => {
  const labels = torch.arange(0, 30).reshape(1, 5, 6); // value = 6·x + y
  // x: floor(i·5/3) = [0, 1, 3]; y: floor(i·6/2) = [0, 3].
  assert.deepEqual(nearestLabelDownsample(labels, [3, 2]).toArray(), [0, 3, 6, 9, 18, 21]);
  assert.deepEqual(nearestLabelDownsample(labels, [5, 6]).toArray(), labels.toArray());
});

test('featureRelationalLoss matches the hand calculation', () => {
  // B = 2, C = 2, d = 2, full resolution (4, 1, 1), feature grid (2, 1, 1): grid voxel i reads label 2i.
  // Sample 0 labels [0, 0, 1, 1] → grid [0, 1]; sample 1 labels [1, 0, 1, 0] → grid [1, 1] (class 0 vanishes).
  // Present pairs, in order: (0,0), (0,1), (1,1).
  const labels = int64([0, 0, 1, 1, 1, 0, 1, 0], [2, 4, 1, 1]);
  // Features as (B, d, 2, 1, 1); grid voxel features: branch 1 s0 (1,0), (1,1); s1 (0,2), (1,0).
  const feat1 = float64([1, 1, 0, 1, 0, 1, 2, 0], [2, 2, 2, 1, 1], true);
  // branch 2: s0 (0,1), (1,1); s1 (3,0), (1,1).
  const feat2 = float64([0, 1, 1, 1, 3, 1, 0, 1], [2, 2, 2, 1, 1], true);
  // Prototypes: branch 1 (1,0), (1,1), (0.5,1); branch 2 (0,1), (1,1), (2,0.5).
  // Cosines, branch 1: (0,0)-(0,1) 1/√2, (0,0)-(1,1) 0.5/√1.25, (0,1)-(1,1) 1.5/√2.5.
  // Cosines, branch 2: (0,0)-(0,1) 1/√2, (0,0)-(1,1) 0.5/√4.25, (0,1)-(1,1) 2.5/√8.5.
  const gapA = 0; // (0,0)-(0,1)
  const gapB = 0.5 / Math.sqrt(1.25) - 0.5 / Math.sqrt(4.25);
  const gapC = 1.5 / Math.sqrt(2.5) - 2.5 / Math.sqrt(8.5);
  const discrepancy = [gapA ** 2 + gapB ** 2, gapA ** 2 + gapC ** 2, gapB ** 2 + gapC ** 2];
  // Logits (B, 2, 4, 1, 1). Branch 1: s0 all zeros (σ = ½ everywhere); s1 class-1 logits [ln 3, ln 3, 0, 0] (σ_1 = ¾, ¾, ½, ½).
  // Branch 2: s0 class-1 logits ln ¼ everywhere (σ_1 = 0.2); s1 all zeros.
  const ln3 = Math.log(3);
  const logits1 = float64([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ln3, ln3, 0, 0], [2, 2, 4, 1, 1], true);
  const logits2 = float64([0, 0, 0, 0, ...Array(4).fill(Math.log(0.25)), 0, 0, 0, 0, 0, 0, 0, 0], [2, 2, 4, 1, 1], true);
  const half = 0.5 * Math.log(2); // −½ ln ½
  const entropy1 = { s0c0: half, s0c1: half, s1c1: (2 * -0.75 * Math.log(0.75) + 2 * half) / 4 };
  const entropy2 = { s0c0: -0.8 * Math.log(0.8), s0c1: -0.2 * Math.log(0.2), s1c1: half };
  const weight = [
    (entropy1.s0c0 + entropy2.s0c0) / 2,
    (entropy1.s0c1 + entropy2.s0c1) / 2,
    (entropy1.s1c1 + entropy2.s1c1) / 2,
  ];
  const expected = discrepancy.reduce((sum, d, i) => sum + d * weight[i], 0);
  const loss = featureRelationalLoss(feat1, feat2, logits1, logits2, labels);
  assertClose(loss.item(), expected, 1e-12);
  const [toFeat1, toFeat2, toLogits1, toLogits2] = torch.grad([loss], [feat1, feat2, logits1, logits2]);
  assert.ok(toFeat1!.abs().sum().item() > 0 && toFeat2!.abs().sum().item() > 0, 'both branches receive gradient');
  assert.ok(toLogits1 === null && toLogits2 === null, 'the uncertainty weights are detached');
});

/** Loops from the definition; features flat (B, d, V) on the grid `grid`, logits (B, C, full voxels). */
function referenceFrc(
  f1: ArrayLike<number>,
  f2: ArrayLike<number>,
  l1: ArrayLike<number>,
  l2: ArrayLike<number>,
  labels: number[],
  dims: { batch: number; classes: number; channels: number; full: number[]; grid: number[] },
): number {
  const { batch, classes, channels, full, grid } = dims;
  const gridVoxels = grid.reduce((a, b) => a * b, 1);
  const fullVoxels = full.reduce((a, b) => a * b, 1);
  const [x, y, z] = [0, 1, 2].map((axis) => Array.from({ length: grid[axis] }, (_, i) => Math.floor((i * full[axis]) / grid[axis])));
  const pairs: { proto1: number[]; proto2: number[]; weight: number }[] = [];
  for (let b = 0; b < batch; b++) {
    const gridLabels: number[] = [];
    for (const i of x) for (const j of y) for (const k of z) gridLabels.push(labels[b * fullVoxels + (i * full[1] + j) * full[2] + k]);
    for (let c = 0; c < classes; c++) {
      const members = gridLabels.flatMap((label, v) => (label === c ? [v] : []));
      if (members.length === 0) continue;
      const mean = (f: ArrayLike<number>) =>
        Array.from({ length: channels }, (_, ch) => members.reduce((s, v) => s + f[(b * channels + ch) * gridVoxels + v], 0) / members.length);
      const entropy = (l: ArrayLike<number>) => {
        let sum = 0;
        for (let v = 0; v < fullVoxels; v++) {
          const p = softmaxAt(l, classes, fullVoxels, b, v)[c];
          if (p > 0) sum -= p * Math.log(p);
        }
        return sum / fullVoxels;
      };
      pairs.push({ proto1: mean(f1), proto2: mean(f2), weight: (entropy(l1) + entropy(l2)) / 2 });
    }
  }
  const cosine = (a: number[], b: number[]) => {
    const dot = a.reduce((s, ai, i) => s + ai * b[i], 0);
    const norm = (u: number[]) => Math.max(1e-8, Math.sqrt(u.reduce((s, ui) => s + ui * ui, 0)));
    return dot / (norm(a) * norm(b));
  };
  let loss = 0;
  for (const row of pairs) {
    let d = 0;
    for (const other of pairs) d += (cosine(row.proto1, other.proto1) - cosine(row.proto2, other.proto2)) ** 2;
    loss += d * row.weight;
  }
  return loss;
}

function randomCase(seed: number, batch: number) {
  torch.manualSeed(seed);
  const dims = { batch, classes: 3, channels: 4, full: [4, 4, 3], grid: [2, 2, 2] };
  const feat1 = torch.randn([batch, dims.channels, ...dims.grid], { dtype: 'float64' }).requiresGrad_();
  const feat2 = torch.randn([batch, dims.channels, ...dims.grid], { dtype: 'float64' }).requiresGrad_();
  const logits1 = torch.randn([batch, dims.classes, ...dims.full], { dtype: 'float64' });
  const logits2 = torch.randn([batch, dims.classes, ...dims.full], { dtype: 'float64' });
  const labels = torch.randint(0, dims.classes, [batch, ...dims.full]);
  const reference = (f1: ArrayLike<number>, f2: ArrayLike<number>) =>
    referenceFrc(f1, f2, logits1.toTypedArray() as Float64Array, logits2.toTypedArray() as Float64Array, labels.toArray(), dims);
  return { feat1, feat2, logits1, logits2, labels, reference };
}

test('featureRelationalLoss agrees with loops on random inputs, gradients with central differences', () => {
  for (const [seed, batch] of [[1, 2], [2, 2], [3, 1]]) {
    const { feat1, feat2, logits1, logits2, labels, reference } = randomCase(seed, batch);
    const [f1, f2] = [Array.from(feat1.toTypedArray() as Float64Array), Array.from(feat2.toTypedArray() as Float64Array)];
    const loss = featureRelationalLoss(feat1, feat2, logits1, logits2, labels);
    assertClose(loss.item(), reference(f1, f2), 1e-10, `loss, seed ${seed}, batch ${batch}`);
    const [grad1, grad2] = torch.grad([loss], [feat1, feat2]).map((g) => g!.toArray());
    const step = 1e-6;
    for (const [values, grad, name] of [[f1, grad1, 'feat1'], [f2, grad2, 'feat2']] as const) {
      for (const index of [0, 5, 17, values.length - 1]) {
        const shifted = (delta: number) => values.map((v, i) => (i === index ? v + delta : v));
        const numeric =
          name === 'feat1'
            ? (reference(shifted(step), f2) - reference(shifted(-step), f2)) / (2 * step)
            : (reference(f1, shifted(step)) - reference(f1, shifted(-step))) / (2 * step);
        assertClose(grad[index], numeric, 1e-6, `d/d${name}[${index}], seed ${seed}`);
      }
    }
  }
});

test('batch size 1 with a single present class, and an empty batch, give exactly 0', () => {
  const single = featureRelationalLoss(
    torch.randn([1, 4, 2, 2, 2], { dtype: 'float64', requiresGrad: true }),
    torch.randn([1, 4, 2, 2, 2], { dtype: 'float64', requiresGrad: true }),
    torch.randn([1, 3, 4, 4, 4], { dtype: 'float64' }),
    torch.randn([1, 3, 4, 4, 4], { dtype: 'float64' }),
    torch.full([1, 4, 4, 4], 2, { dtype: 'int64' }),
  );
  assert.equal(single.item(), 0);
  const empty = featureRelationalLoss(
    torch.randn([0, 4, 2, 2, 2], { dtype: 'float64' }),
    torch.randn([0, 4, 2, 2, 2], { dtype: 'float64' }),
    torch.randn([0, 3, 4, 4, 4], { dtype: 'float64' }),
    torch.randn([0, 3, 4, 4, 4], { dtype: 'float64' }),
    torch.zeros([0, 4, 4, 4], { dtype: 'int64' }),
  );
  assert.equal(empty.item(), 0);
});

test('classes absent from the batch and all-zero features stay finite', () => {
  // Only classes 0 and 1 of 3 occur; branch 1's features are all zero (zero prototypes, similarity 0).
  const labels = int64([0, 0, 1, 1, 0, 1, 0, 1], [2, 4, 1, 1]);
  const feat1 = torch.zeros([2, 3, 2, 1, 1], { dtype: 'float64', requiresGrad: true });
  const feat2 = torch.randn([2, 3, 2, 1, 1], { dtype: 'float64', requiresGrad: true });
  const logits = torch.randn([2, 3, 4, 1, 1], { dtype: 'float64' });
  const loss = featureRelationalLoss(feat1, feat2, logits, logits, labels);
  assert.ok(Number.isFinite(loss.item()) && loss.item() > 0);
  loss.backward();
  for (const g of [feat1.grad!, feat2.grad!]) assert.ok(g.toArray().every(Number.isFinite));
});

test('featureRelationalLoss rejects labels outside the classes, float labels and mismatched shapes', () => {
  const feat = torch.randn([1, 2, 2, 1, 1]);
  const logits = torch.randn([1, 2, 4, 1, 1]);
  assert.throws(() => featureRelationalLoss(feat, feat, logits, logits, int64([0, 1, 2, 0], [1, 4, 1, 1])), /labels range over \[0, 2\]/);
  assert.throws(() => featureRelationalLoss(feat, feat, logits, logits, torch.zeros([1, 4, 1, 1])), /integer class indices/);
  assert.throws(() => featureRelationalLoss(feat, feat, logits, logits, int64([0, 1], [1, 2, 1, 1])), /labels have shape/);
});
