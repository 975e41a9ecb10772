// Normalisation layers with PyTorch's parameter and buffer names, defaults and train/eval behaviour.
import { ones, zeros } from '../creation.ts';
import { batchNorm, instanceNorm, isRecomputing, layerNorm } from '../functional.ts';
import { type Tensor } from '../tensor.ts';
import { Module } from './module.ts';

export interface NormLayerOptions {
  eps?: number;
  /** Weight of the newest batch in the running statistics (0.1). */
  momentum?: number;
  /** Learnable per-channel scale `weight` (ones) and shift `bias` (zeros). */
  affine?: boolean;
  /** Keeps running_mean / running_var / num_batches_tracked buffers and uses them in eval mode. */
  trackRunningStats?: boolean;
}

/** The state shared by BatchNorm3d and InstanceNorm3d (PyTorch's _NormBase). */
abstract class ChannelNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor | null;
  readonly runningVar: Tensor | null;
  readonly numBatchesTracked: Tensor | null;
  readonly eps: number;

  protected constructor(
    readonly numFeatures: number,
    opts: { eps?: number; affine: boolean; trackRunningStats: boolean },
  ) {
    super();
    this.eps = opts.eps ?? 1e-5;
    this.weight = opts.affine ? this.registerParameter('weight', ones([numFeatures])) : null;
    this.bias = opts.affine ? this.registerParameter('bias', zeros([numFeatures])) : null;
    const track = opts.trackRunningStats;
    this.runningMean = track ? this.registerBuffer('running_mean', zeros([numFeatures])) : null;
    this.runningVar = track ? this.registerBuffer('running_var', ones([numFeatures])) : null;
    this.numBatchesTracked = track ? this.registerBuffer('num_batches_tracked', zeros([], { dtype: 'int64' })) : null;
  }

  protected checkInput(layer: string, x: Tensor, dims: number[]): void {
    if (!dims.includes(x.ndim) || x.size(x.ndim - 4) !== this.numFeatures) {
      const expected = dims.includes(4) ? `(B, ${this.numFeatures}, D, H, W) or (${this.numFeatures}, D, H, W)` : `(B, ${this.numFeatures}, D, H, W)`;
      throw new Error(`${layer}: expected input ${expected}, got [${x.shape.join(', ')}]`);
    }
  }
}

/**
 * Normalises each (sample, channel) over D, H, W. PyTorch defaults: affine = false,
 * trackRunningStats = false. With tracked statistics, eval mode normalises with the running values.
 * Accepts (B, C, D, H, W) or unbatched (C, D, H, W).
 */
export class InstanceNorm3d extends ChannelNorm {
  readonly momentum: number;

  constructor(numFeatures: number, opts: NormLayerOptions = {}) {
    super(numFeatures, { eps: opts.eps, affine: opts.affine ?? false, trackRunningStats: opts.trackRunningStats ?? false });
    this.momentum = opts.momentum ?? 0.1;
  }

  forward(x: Tensor): Tensor {
    this.checkInput('InstanceNorm3d', x, [4, 5]);
    const batched = x.ndim === 5 ? x : x.unsqueeze(0);
    const out = instanceNorm(batched, {
      weight: this.weight,
      bias: this.bias,
      runningMean: this.runningMean,
      runningVar: this.runningVar,
      useInputStats: this.training || !this.runningMean,
      momentum: this.momentum,
      eps: this.eps,
    });
    if (batched === x) return out;
    batched.dispose();
    const unbatched = out.squeeze(0);
    out.dispose();
    return unbatched;
  }
}

/**
 * Normalises each channel over the batch and D, H, W. In training mode it uses the batch statistics
 * and updates the running ones (and num_batches_tracked); in eval mode it uses the running ones.
 * PyTorch defaults: affine = true, trackRunningStats = true.
 */
export class BatchNorm3d extends ChannelNorm {
  /** Weight of the newest batch in the running statistics; null averages all batches equally. */
  readonly momentum: number | null;

  constructor(numFeatures: number, opts: Omit<NormLayerOptions, 'momentum'> & { momentum?: number | null } = {}) {
    super(numFeatures, { eps: opts.eps, affine: opts.affine ?? true, trackRunningStats: opts.trackRunningStats ?? true });
    this.momentum = opts.momentum === undefined ? 0.1 : opts.momentum;
  }

  forward(x: Tensor): Tensor {
    this.checkInput('BatchNorm3d', x, [5]);
    const useBatchStats = this.training || !this.runningMean;
    if (useBatchStats && x.numel / this.numFeatures <= 1) {
      throw new Error(`BatchNorm3d: batch statistics need more than one value per channel, got input [${x.shape.join(', ')}]`);
    }
    // A recomputation (checkpoint) repeats a training forward whose statistics were already counted.
    const tracking = !(this.training && isRecomputing());
    const factor = this.training && tracking && this.numBatchesTracked ? this.countBatch(this.numBatchesTracked) : 0;
    return batchNorm(x, {
      weight: this.weight,
      bias: this.bias,
      runningMean: tracking ? this.runningMean : null,
      runningVar: tracking ? this.runningVar : null,
      training: useBatchStats,
      momentum: factor,
      eps: this.eps,
    });
  }

  /** Counts a training batch and returns the weight of its statistics in the running ones. */
  private countBatch(numBatchesTracked: Tensor): number {
    numBatchesTracked.add_(1);
    return this.momentum ?? 1 / numBatchesTracked.item();
  }
}

/** Normalises over the trailing `normalizedShape` dimensions; weight (ones) and bias (zeros) of that shape. */
export class LayerNorm extends Module {
  readonly normalizedShape: number[];
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly eps: number;

  constructor(normalizedShape: number | number[], opts: { eps?: number; elementwiseAffine?: boolean } = {}) {
    super();
    this.eps = opts.eps ?? 1e-5;
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
    const affine = opts.elementwiseAffine ?? true;
    this.weight = affine ? this.registerParameter('weight', ones(this.normalizedShape)) : null;
    this.bias = affine ? this.registerParameter('bias', zeros(this.normalizedShape)) : null;
  }

  forward(x: Tensor): Tensor {
    const trailing = x.shape.slice(x.ndim - this.normalizedShape.length);
    if (x.ndim < this.normalizedShape.length || trailing.some((d, i) => d !== this.normalizedShape[i])) {
      throw new Error(`LayerNorm: expected input (…, ${this.normalizedShape.join(', ')}), got [${x.shape.join(', ')}]`);
    }
    return layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps);
  }
}
