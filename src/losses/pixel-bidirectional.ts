// The pixel-level bidirectional constraint (PBC): at every voxel the branch with the higher
// cross-entropy against the ground truth learns from the other one.
import { torch, type Tensor } from '../engine/index.ts';
import { klDivergencePerVoxel, requireChannelsFirst, requireSameShape } from './common.ts';

export interface PixelBidirectionalOptions {
  /** Softmax temperature τ of both sides of the KL terms. */
  tau?: number;
  /** Multiply by τ², the usual distillation scaling that keeps gradient sizes independent of τ. */
  scaleByTauSquared?: boolean;
}

export interface PixelBidirectionalLoss {
  /** L_1^pc: branch 1 learns from branch 2 where branch 2's cross-entropy is lower (scalar). */
  branch1: Tensor;
  /** L_2^pc: branch 2 learns from branch 1 everywhere else (scalar). */
  branch2: Tensor;
}

/** Q = −Σ_c Y_c ln σ(logits)_c per voxel: (B, C, …spatial) → (B, …spatial). */
function voxelCrossEntropy(logits: Tensor, onehot: Tensor): Tensor {
  return torch.tidy(() => logits.logSoftmax(1).mul(onehot).sum(1).neg());
}

/** Σ mask·KL / Σ mask, and exactly 0 (with zero gradient) where the mask is empty. */
function maskedMean(values: Tensor, mask: Tensor): Tensor {
  return torch.tidy(() => values.mul(mask).sum().div(mask.sum().clampMin(1)));
}

/**
 * Transfer mask T = 1[Q_1 > Q_2] (ties go to T = 0), then
 * L_1 = (1/N_21) Σ T·KL(σ(Ŷ_2/τ) ‖ σ(Ŷ_1/τ)) and L_2 = (1/N_12) Σ (1−T)·KL(σ(Ŷ_1/τ) ‖ σ(Ŷ_2/τ)),
 * sums over every voxel of the batch, N_21 = ΣT, N_12 = voxels − N_21; the teacher side of each KL is detached.
 * An empty mask gives exactly 0.
 */
export function pixelBidirectionalLoss(
  logits1: Tensor /* (B, C, H, W, D) */,
  logits2: Tensor /* (B, C, H, W, D) */,
  onehot: Tensor /* (B, C, H, W, D), float */,
  { tau = 6, scaleByTauSquared = false }: PixelBidirectionalOptions = {},
): PixelBidirectionalLoss {
  requireChannelsFirst('pixelBidirectionalLoss', 'logits1', logits1);
  requireSameShape('pixelBidirectionalLoss', ['logits1', 'logits2'], logits1, logits2);
  requireSameShape('pixelBidirectionalLoss', ['logits1', 'onehot'], logits1, onehot);
  if (!(tau > 0)) throw new Error(`pixelBidirectionalLoss: tau must be positive, got ${tau}`);
  const scale = scaleByTauSquared ? tau * tau : 1;
  return torch.tidy(() => {
    const branch2Better = torch.noGrad(() =>
      voxelCrossEntropy(logits1, onehot).gt(voxelCrossEntropy(logits2, onehot)).to(logits1.dtype),
    );
    const branch1Better = branch2Better.rsub(1);
    return {
      branch1: maskedMean(klDivergencePerVoxel(logits2, logits1, tau), branch2Better).mul(scale),
      branch2: maskedMean(klDivergencePerVoxel(logits1, logits2, tau), branch1Better).mul(scale),
    };
  });
}
