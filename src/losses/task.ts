// The task loss of one prediction (RFNet's): class-weighted cross-entropy plus soft Dice; the class weights can be
// switched off (plain cross-entropy, as nnU-Net trains), see docs/learning.md (E26).
import { torch, type Tensor } from '../engine/index.ts';
import { requireChannelsFirst, requireSameShape } from './common.ts';

/** Probabilities below this are raised to it before the logarithm, so confident mistakes cost at most −ln 0.005. */
const PROBABILITY_FLOOR = 0.005;
const DICE_EPSILON = 1e-7;

const spatialDims = (t: Tensor): number[] => Array.from({ length: t.ndim - 2 }, (_, i) => i + 2);

/**
 * Completes sums taken over the samples of a batch. In one process the batch is all there is (the identity);
 * in data-parallel training it adds the other processes' samples, so that a batch-wide term is the same
 * whatever the number of processes.
 */
export type BatchSum = (sums: Tensor) => Tensor;

const localBatch: BatchSum = (sums) => sums;

/**
 * How the cross-entropy weighs the classes. 'one-minus-fraction' (RFNet's and the paper's): per sample,
 * w_c = 1 − (voxels of class c in the sample / voxels in the sample), so that rare classes weigh more. 'none':
 * w_c = 1 for every class.
 */
export const CROSS_ENTROPY_CLASS_WEIGHTS = ['one-minus-fraction', 'none'] as const;
export type CrossEntropyClassWeights = (typeof CROSS_ENTROPY_CLASS_WEIGHTS)[number];

/**
 * Weighted cross-entropy: mean over the voxels of the batch of Σ_c −w_c·Y_c·ln(clamp(p_c, 0.005, 1)), with the
 * class weights w_c chosen by `classWeights`.
 */
export function weightedCrossEntropy(
  probs: Tensor /* (B, C, H, W, D) */,
  onehot: Tensor /* (B, C, H, W, D) */,
  classWeights: CrossEntropyClassWeights = 'one-minus-fraction',
): Tensor {
  requireChannelsFirst('weightedCrossEntropy', 'probs', probs);
  requireSameShape('weightedCrossEntropy', ['probs', 'onehot'], probs, onehot);
  return torch.tidy(() => {
    // With one-hot Y only the true class y of a voxel has a term, w_y·ln(clamp(p_y)): taking p_y and w_y first gives
    // the same values (the other terms are exact zeros) and keeps one map for backward instead of C.
    const trueLogProbs = probs.mul(onehot).sum(1).clamp(PROBABILITY_FLOOR, 1).log();
    if (classWeights === 'none') return trueLogProbs.mean().neg();
    const dims = spatialDims(onehot);
    const voxelsPerSample = dims.reduce((n, d) => n * onehot.size(d), 1);
    const weights = onehot.sum(dims, true).div(voxelsPerSample).rsub(1); // (B, C, 1, 1, 1)
    const trueWeights = weights.mul(onehot).sum(1);
    return trueWeights.mul(trueLogProbs).mean().neg();
  });
}

/** Soft Dice loss 1 − (1/C) Σ_c 2Σ(p_c·Y_c) / (Σp_c + ΣY_c + 1e-7), every sum over the whole batch (completed by `batchSum`). */
export function diceLoss(probs: Tensor /* (B, C, H, W, D) */, onehot: Tensor /* (B, C, H, W, D) */, batchSum: BatchSum = localBatch): Tensor {
  requireChannelsFirst('diceLoss', 'probs', probs);
  requireSameShape('diceLoss', ['probs', 'onehot'], probs, onehot);
  return torch.tidy(() => {
    const dims = [0, ...spatialDims(onehot)];
    const [overlap, size] = batchSum(torch.stack([probs.mul(onehot).sum(dims), probs.sum(dims).add(onehot.sum(dims))])).unbind(0);
    return overlap.mul(2).div(size.add(DICE_EPSILON)).mean().rsub(1);
  });
}

/**
 * Task(p) = weighted cross-entropy + Dice loss of class probabilities `probs` (softmax already applied)
 * against the float one-hot ground truth. Returns a scalar tensor.
 */
export function taskLoss(
  probs: Tensor /* (B, C, H, W, D) */,
  onehot: Tensor /* (B, C, H, W, D) */,
  batchSum: BatchSum = localBatch,
  classWeights: CrossEntropyClassWeights = 'one-minus-fraction',
): Tensor {
  return torch.tidy(() => weightedCrossEntropy(probs, onehot, classWeights).add(diceLoss(probs, onehot, batchSum)));
}
