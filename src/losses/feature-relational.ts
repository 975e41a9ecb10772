// The feature-level relational constraint (FRC): the two branches' bottleneck features should relate the
// class prototypes of the batch to each other in the same way, weighted by how uncertain the branches are.
import { torch, type Tensor } from '../engine/index.ts';
import { requireChannelsFirst, requireSameShape } from './common.ts';

/** Prototype norms are clamped to at least this before normalising, so an all-zero prototype has similarity 0. */
const NORM_FLOOR = 1e-8;

/**
 * Nearest-neighbour resampling of class-index labels: output voxel i takes input voxel floor(i·in/out) on each
 * spatial axis (PyTorch's interpolate(mode='nearest') rule). labels (B, …spatial) → (B, …size).
 */
export function nearestLabelDownsample(labels: Tensor, size: number[]): Tensor {
  if (labels.ndim !== size.length + 1) {
    throw new Error(`nearestLabelDownsample: labels of shape [${labels.shape.join(', ')}] cannot be resampled to [${size.join(', ')}]`);
  }
  return torch.tidy(() => {
    let resampled = labels;
    size.forEach((outSize, axis) => {
      const inSize = labels.size(axis + 1);
      if (inSize === outSize) return;
      const source = Array.from({ length: outSize }, (_, i) => Math.floor((i * inSize) / outSize));
      resampled = resampled.indexSelect(axis + 1, torch.tensor(source, [outSize], { dtype: 'int64', device: labels.device }));
    });
    return resampled === labels ? labels.clone() : resampled;
  });
}

/**
 * H^{b,c} = mean over the voxels of sample b of −σ_c ln σ_c (0·ln 0 = 0), without gradient.
 * logits (B, C, …spatial) → (B, C).
 */
export function classEntropy(logits: Tensor): Tensor {
  return torch.noGrad(() =>
    torch.tidy(() => {
      const probs = logits.softmax(1);
      const terms = torch.where(probs.gt(0), probs.mul(logits.logSoftmax(1)).neg(), 0);
      return terms.flatten(2).mean(2);
    }),
  );
}

/** Mean feature of each (sample, class) pair listed in `present` (row b·C + c). → (M, d). */
function prototypes(features: Tensor /* (B, d, …P) */, membership: Tensor /* (B, V, C) */, counts: Tensor /* (B, C) */, present: Tensor): Tensor {
  return torch.tidy(() => {
    const sums = features.flatten(2).bmm(membership).transpose(1, 2); // (B, C, d)
    const means = sums.div(counts.clampMin(1).unsqueeze(2));
    return means.reshape(-1, features.size(1)).indexSelect(0, present);
  });
}

/** Cosine similarity of every pair of rows: (M, d) → (M, M). */
function cosineSimilarityMatrix(rows: Tensor): Tensor {
  return torch.tidy(() => {
    const norms = rows.square().sum(1, true).clampMin(NORM_FLOOR * NORM_FLOOR).sqrt();
    const unit = rows.div(norms);
    return unit.matmul(unit.transpose(0, 1));
  });
}

/**
 * L_fc = Σ_{b,c} D^{b,c}·W^{b,c} over the M (sample, class) pairs present in the labels downsampled to the
 * feature grid, where D^{b,c} = Σ over its row of (R_1 − R_2)², R_i = cosine similarities of branch i's class
 * prototypes (mean bottleneck feature over the pair's voxels), and W^{b,c} = ½(H_1^{b,c} + H_2^{b,c}) the mean
 * softmax entropy of class c over sample b (detached). Gradient flows into both feat1 and feat2: the term is
 * shared by the two branches. Fewer than two prototypes give exactly 0 (a constant).
 */
export function featureRelationalLoss(
  feat1: Tensor /* (B, d, P, P, P) */,
  feat2: Tensor /* (B, d, P, P, P) */,
  logits1: Tensor /* (B, C, H, W, D) */,
  logits2: Tensor /* (B, C, H, W, D) */,
  labels: Tensor /* (B, H, W, D), integer class indices */,
): Tensor {
  const where = 'featureRelationalLoss';
  requireChannelsFirst(where, 'feat1', feat1);
  requireSameShape(where, ['feat1', 'feat2'], feat1, feat2);
  requireChannelsFirst(where, 'logits1', logits1);
  requireSameShape(where, ['logits1', 'logits2'], logits1, logits2);
  const [batch, classes, ...fullSize] = logits1.shape;
  const [featBatch, , ...gridSize] = feat1.shape;
  if (labels.shape.join() !== [batch, ...fullSize].join()) {
    throw new Error(`${where}: labels have shape [${labels.shape.join(', ')}], expected [${[batch, ...fullSize].join(', ')}] to match logits`);
  }
  if (featBatch !== batch || gridSize.length !== fullSize.length) {
    throw new Error(`${where}: features of shape [${feat1.shape.join(', ')}] do not fit logits of shape [${logits1.shape.join(', ')}]`);
  }
  if (labels.dtype.startsWith('float') || labels.dtype === 'bfloat16' || labels.dtype === 'bool') {
    throw new Error(`${where}: labels must hold integer class indices, got dtype ${labels.dtype}`);
  }
  if (labels.numel > 0) {
    const [lowest, highest] = torch.tidy(() => [labels.amin().item(), labels.amax().item()]);
    if (lowest < 0 || highest >= classes) {
      throw new Error(`${where}: labels range over [${lowest}, ${highest}] but the logits have ${classes} classes`);
    }
  }
  return torch.tidy(() => {
    const gridLabels = nearestLabelDownsample(labels.long(), gridSize);
    const membership = torch.oneHot(gridLabels.flatten(1), classes).to(feat1.dtype); // (B, V, C)
    const counts = membership.sum(1); // (B, C)
    const present = counts
      .toArray()
      .flatMap((count, row) => (count > 0 ? [row] : []));
    if (present.length < 2) return torch.zeros([], { dtype: feat1.dtype, device: feat1.device });
    const presentIndex = torch.tensor(present, [present.length], { dtype: 'int64', device: feat1.device });
    const similarity1 = cosineSimilarityMatrix(prototypes(feat1, membership, counts, presentIndex));
    const similarity2 = cosineSimilarityMatrix(prototypes(feat2, membership, counts, presentIndex));
    const discrepancy = similarity1.sub(similarity2).square().sum(1); // D, (M)
    const uncertainty = classEntropy(logits1).add(classEntropy(logits2)).mul(0.5).reshape(-1).indexSelect(0, presentIndex); // W, (M)
    return discrepancy.mul(uncertainty.to(discrepancy.dtype)).sum();
  });
}
