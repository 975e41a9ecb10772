// Refinement consistency: the SRN's refined prediction teaches the branch's initial prediction.
import { torch, type Tensor } from '../engine/index.ts';
import { klDivergencePerVoxel, requireChannelsFirst, requireSameShape } from './common.ts';

/**
 * L^ref = KL(σ(refined) ‖ σ(logits)) summed over classes, averaged over voxels and batch (scalar).
 * The refined side is detached, so gradient reaches only `logits`.
 */
export function refinementConsistencyLoss(logits: Tensor /* (B, C, H, W, D) */, refinedLogits: Tensor /* (B, C, H, W, D) */): Tensor {
  requireChannelsFirst('refinementConsistencyLoss', 'logits', logits);
  requireSameShape('refinementConsistencyLoss', ['logits', 'refinedLogits'], logits, refinedLogits);
  return torch.tidy(() => klDivergencePerVoxel(refinedLogits, logits).mean());
}
