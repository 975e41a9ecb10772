import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { torch } from '../../src/engine/index.ts';
import { diceLoss, taskLoss, weightedCrossEntropy } from '../../src/losses/index.ts';
import { assertClose, float64, onehotOf } from './helpers.ts';

/** Two classes: p_0 = 1 − p_1 per voxel, laid out as (B, 2, V) then reshaped to (B, 2, …spatial). */
function twoClassProbs(classOne: number[][], spatial: number[]) {
  const values = classOne.flatMap((p1) => [...p1.map((p) => 1 - p), ...p1]);
  return float64(values, [classOne.length, 2, ...spatial]);
}

test('taskLoss of one sample matches the hand calculation (including the 0.005 clamp)', () => {
  // Labels [0, 1, 1, 1]: w_0 = 1 − 1/4 = 0.75, w_1 = 1 − 3/4 = 0.25. p_1 = [0.2, 0.001, 0.6, 0.9].
  const probs = twoClassProbs([[0.2, 0.001, 0.6, 0.9]], [2, 2, 1]);
  const onehot = onehotOf(torch.tensor([0, 1, 1, 1], [1, 2, 2, 1], { dtype: 'int64' }), 2);
  // Voxel 1 has p_1 = 0.001 < 0.005, so its log is ln 0.005.
  const wce = -(0.75 * Math.log(0.8) + 0.25 * Math.log(0.005) + 0.25 * Math.log(0.6) + 0.25 * Math.log(0.9)) / 4;
  // Class 0: overlap 0.8, Σp_0 = 0.8 + 0.999 + 0.4 + 0.1 = 2.299, ΣY_0 = 1.
  // Class 1: overlap 0.001 + 0.6 + 0.9 = 1.501, Σp_1 = 1.701, ΣY_1 = 3.
  const dice = 1 - ((2 * 0.8) / (2.299 + 1 + 1e-7) + (2 * 1.501) / (1.701 + 3 + 1e-7)) / 2;
  assertClose(weightedCrossEntropy(probs, onehot).item(), wce, 1e-12, 'wCE');
  assertClose(diceLoss(probs, onehot).item(), dice, 1e-12, 'Dice');
  assertClose(taskLoss(probs, onehot).item(), wce + dice, 1e-12, 'Task');
});

test('class weights are per sample while Dice sums over the whole batch (class absent from one sample)', () => {
  // Sample 1: labels [0, 1], p_1 = [0.3, 0.8] → w = (0.5, 0.5). Sample 2: labels [0, 0], p_1 = [0.1, 0.5] → w = (0, 1).
  const probs = twoClassProbs([[0.3, 0.8], [0.1, 0.5]], [2, 1, 1]);
  const onehot = onehotOf(torch.tensor([0, 1, 0, 0], [2, 2, 1, 1], { dtype: 'int64' }), 2);
  // Sample 2 contributes nothing: its only class has weight 0.
  const wce = -(0.5 * Math.log(0.7) + 0.5 * Math.log(0.8)) / 4;
  // Class 0: overlap 0.7 + 0.9 + 0.5 = 2.1, Σp_0 = 0.7 + 0.2 + 0.9 + 0.5 = 2.3, ΣY_0 = 3.
  // Class 1: overlap 0.8, Σp_1 = 0.3 + 0.8 + 0.1 + 0.5 = 1.7, ΣY_1 = 1.
  const dice = 1 - ((2 * 2.1) / (2.3 + 3 + 1e-7) + (2 * 0.8) / (1.7 + 1 + 1e-7)) / 2;
  assertClose(taskLoss(probs, onehot).item(), wce + dice, 1e-12, 'Task');
});

test("class weights 'none' give the plain cross-entropy (same clamp), and taskLoss passes the choice on", () => {
  // The probabilities of the first test: every voxel's true-class term weighs 1.
  const probs = twoClassProbs([[0.2, 0.001, 0.6, 0.9]], [2, 2, 1]);
  const onehot = onehotOf(torch.tensor([0, 1, 1, 1], [1, 2, 2, 1], { dtype: 'int64' }), 2);
  const ce = -(Math.log(0.8) + Math.log(0.005) + Math.log(0.6) + Math.log(0.9)) / 4;
  assertClose(weightedCrossEntropy(probs, onehot, 'none').item(), ce, 1e-12, 'CE');
  const dice = diceLoss(probs, onehot).item();
  assertClose(taskLoss(probs, onehot, undefined, 'none').item(), ce + dice, 1e-12, 'Task without class weights');
});

/** Straightforward loops over (B, C, V) arrays, written from the definition. */
function referenceTask(p: Float64Array, y: Float64Array, batch: number, classes: number, voxels: number): number {
  let crossEntropy = 0;
  const overlap = new Array(classes).fill(0);
  const predicted = new Array(classes).fill(0);
  const truth = new Array(classes).fill(0);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < classes; c++) {
      let count = 0;
      for (let v = 0; v < voxels; v++) count += y[(b * classes + c) * voxels + v];
      const weight = 1 - count / voxels;
      for (let v = 0; v < voxels; v++) {
        const i = (b * classes + c) * voxels + v;
        crossEntropy -= weight * y[i] * Math.log(Math.min(1, Math.max(0.005, p[i])));
        overlap[c] += p[i] * y[i];
        predicted[c] += p[i];
        truth[c] += y[i];
      }
    }
  }
  let diceSum = 0;
  for (let c = 0; c < classes; c++) diceSum += (2 * overlap[c]) / (predicted[c] + truth[c] + 1e-7);
  return crossEntropy / (batch * voxels) + 1 - diceSum / classes;
}

test('taskLoss agrees with a loop implementation on random inputs', () => {
  torch.manualSeed(11);
  const [batch, classes, spatial] = [2, 3, [3, 2, 2]];
  const voxels = 12;
  for (let trial = 0; trial < 3; trial++) {
    const probs = torch.randn([batch, classes, ...spatial], { dtype: 'float64' }).mul(3).softmax(1);
    const onehot = onehotOf(torch.randint(0, classes, [batch, ...spatial]), classes);
    const expected = referenceTask(probs.toTypedArray() as Float64Array, onehot.toTypedArray() as Float64Array, batch, classes, voxels);
    assertClose(taskLoss(probs, onehot).item(), expected, 1e-12, `trial ${trial}`);
  }
});

test('a class absent from the whole batch, even with zero probability, gives finite loss and gradients', () => {
  // Three classes, class 2 never present and never predicted.
  const probs = float64([0.9, 0.3, 0.1, 0.7, 0, 0], [1, 3, 2, 1, 1], true);
  const onehot = onehotOf(torch.tensor([0, 1], [1, 2, 1, 1], { dtype: 'int64' }), 3);
  const loss = taskLoss(probs, onehot);
  // w = (0.5, 0.5, 1). Class 0: overlap 0.9, Σp_0 = 1.2; class 1: overlap 0.7, Σp_1 = 0.8; class 2's ratio is 0 / 1e-7 = 0.
  const wce = -(0.5 * Math.log(0.9) + 0.5 * Math.log(0.7)) / 2;
  const dice = 1 - ((2 * 0.9) / (1.2 + 1 + 1e-7) + (2 * 0.7) / (0.8 + 1 + 1e-7) + 0) / 3;
  assertClose(loss.item(), wce + dice, 1e-12, 'Task');
  loss.backward();
  assert.ok(probs.grad!.toArray().every(Number.isFinite));
});

test('taskLoss rejects mismatched shapes', () => {
  const probs = torch.rand([1, 2, 2, 2, 2]);
  assert.throws(() => taskLoss(probs, torch.rand([1, 3, 2, 2, 2])), /taskLoss|onehot/);
});
