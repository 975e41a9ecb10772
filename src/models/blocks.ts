// Building blocks shared by the encoders, decoders and the refinement network.
import { torch, type Tensor } from '../engine/index.ts';

const LEAKY_SLOPE = 0.2;

/**
 * A Conv3d initialised as the authors' code does: kaiming normal weights (a = 0, fan_in, gain √2,
 * i.e. std = √(2 / fan_in)); the bias keeps PyTorch's default U(±1/√fan_in).
 * A 3x3x3 kernel is padded by 1 with `paddingMode`, a 1x1x1 kernel is not padded.
 */
export function kaimingConv3d(
  inChannels: number,
  outChannels: number,
  kernel: 1 | 3,
  opts: { stride?: number; bias?: boolean; paddingMode?: 'zeros' | 'reflect' } = {},
): torch.nn.Conv3d {
  const conv = new torch.nn.Conv3d(inChannels, outChannels, kernel, {
    stride: opts.stride ?? 1,
    padding: kernel === 3 ? 1 : 0,
    paddingMode: opts.paddingMode ?? 'zeros',
    bias: opts.bias ?? true,
  });
  torch.nn.init.kaimingNormal_(conv.weight);
  return conv;
}

/**
 * `block(...inputs)`; with `recompute` its intermediates are not kept for backward but recomputed there
 * (`torch.nn.checkpoint`: the same values and gradients, dropout replayed, for one more forward of the block).
 * `block` reads tensors only through `inputs` and `module`'s parameters: backward runs it again, after the
 * caller's scopes have freed what they made.
 */
export function recomputable<T extends Tensor | Tensor[]>(recompute: boolean, module: torch.nn.Module, block: (...inputs: Tensor[]) => T, inputs: Tensor[]): T {
  return recompute ? torch.nn.checkpoint(module, block, inputs) : block(...inputs);
}

/** Trilinear resize by an integer factor with align_corners = true (as the authors' nn.Upsample). */
export function upsample(x: Tensor /* (B, C, H, W, D) */, factor: number): Tensor {
  if (factor === 1) return x;
  const size = x.shape.slice(2).map((s) => s * factor);
  return torch.interpolate(x, size, 'trilinear', true);
}

/**
 * The pre-norm convolution of mmFormer/RFNet: InstanceNorm (no affine) → LeakyReLU(0.2) →
 * Conv3d with bias and reflect padding. `kernel` 3 pads by 1, `kernel` 1 does not pad.
 */
export class PreNormConv extends torch.nn.Module {
  readonly conv: torch.nn.Conv3d;

  constructor(inChannels: number, outChannels: number, opts: { kernel?: 1 | 3; stride?: number } = {}) {
    super();
    this.conv = this.registerModule('conv', kaimingConv3d(inChannels, outChannels, opts.kernel ?? 3, { stride: opts.stride, paddingMode: 'reflect' }));
  }

  /**
   * With `inputChannels` (int64 indices into the conv's input channels), `x` holds those channels only and the
   * conv reads only their weights: the others' inputs must be zero, which the norm and activation keep at zero,
   * so they would add nothing.
   */
  forward(x: Tensor, inputChannels?: Tensor): Tensor {
    return torch.tidy(() => {
      const normed = torch.instanceNormLeakyRelu(x, LEAKY_SLOPE);
      if (!inputChannels) return this.conv.forward(normed);
      return torch.conv3d(normed, this.conv.weight.indexSelect(1, inputChannels), this.conv.bias, this.conv.options);
    });
  }
}

/** x + b(a(x)) with two pre-norm 3x3x3 convs keeping the width (the encoders' residual pair). */
export class ResidualPair extends torch.nn.Module {
  readonly first: PreNormConv;
  readonly second: PreNormConv;

  constructor(channels: number) {
    super();
    this.first = this.registerModule('first', new PreNormConv(channels, channels));
    this.second = this.registerModule('second', new PreNormConv(channels, channels));
  }

  forward(x: Tensor): Tensor {
    return torch.tidy(() => x.add(this.second.forward(this.first.forward(x))));
  }
}

/**
 * One decoder level going up: upsample ×2, pre-norm 3x3x3 conv to `outChannels`, concatenate with
 * the skip map of that level (skip first), pre-norm 3x3x3 conv 2·out→out, pre-norm 1x1x1 conv.
 * Used by both the fusion decoder and the separate decoder.
 */
export class UpStep extends torch.nn.Module {
  readonly reduce: PreNormConv;
  readonly merge: PreNormConv;
  readonly project: PreNormConv;

  constructor(inChannels: number, outChannels: number) {
    super();
    this.reduce = this.registerModule('reduce', new PreNormConv(inChannels, outChannels));
    this.merge = this.registerModule('merge', new PreNormConv(2 * outChannels, outChannels));
    this.project = this.registerModule('project', new PreNormConv(outChannels, outChannels, { kernel: 1 }));
  }

  forward(below: Tensor /* (B, in, s/2, …) */, skip: Tensor /* (B, out, s, …) */): Tensor {
    return torch.tidy(() => {
      const up = this.reduce.forward(upsample(below, 2));
      return this.project.forward(this.merge.forward(torch.cat([skip, up], 1)));
    });
  }
}

/**
 * Conv3d 3x3x3 (zero padding; no bias, the norm's shift replaces it) → a norm with affine parameters → LeakyReLU
 * (slope 0 is ReLU). The refinement U-Net uses batch norm and ReLU; the plain U-Net instance norm and slope 0.01.
 * The affine norm rules out the fused `instanceNormLeakyRelu` (the scale and shift sit between the two).
 */
export class ConvNormAct extends torch.nn.Module {
  readonly conv: torch.nn.Conv3d;
  readonly norm: torch.nn.BatchNorm3d | torch.nn.InstanceNorm3d;

  constructor(inChannels: number, outChannels: number, readonly opts: { norm: 'batch' | 'instance'; negativeSlope: number; stride?: number }) {
    super();
    this.conv = this.registerModule('conv', kaimingConv3d(inChannels, outChannels, 3, { stride: opts.stride, bias: false }));
    const norm = opts.norm === 'batch' ? new torch.nn.BatchNorm3d(outChannels) : new torch.nn.InstanceNorm3d(outChannels, { affine: true });
    this.norm = this.registerModule('norm', norm);
  }

  forward(x: Tensor): Tensor {
    return torch.tidy(() => {
      const normed = this.norm.forward(this.conv.forward(x));
      return this.opts.negativeSlope === 0 ? normed.relu() : torch.leakyRelu(normed, this.opts.negativeSlope);
    });
  }
}

/** Applies the modality-presence mask: features (B, K, …) are zeroed where mask (B, K) is false. */
export function maskModalities(features: Tensor /* (B, K, …) */, mask: Tensor /* (B, K) bool */): Tensor {
  return torch.tidy(() => {
    const trailing = Array(features.ndim - 2).fill(1);
    return features.mul(mask.to({ dtype: features.dtype, device: features.device }).reshape(mask.size(0), mask.size(1), ...trailing));
  });
}

/** A (B, K) modality mask as rows of flags. */
export function maskRows(mask: Tensor /* (B, K) */): boolean[][] {
  const values = mask.to('float32').toArray();
  const modalities = mask.size(1);
  return Array.from({ length: mask.size(0) }, (_, b) => Array.from({ length: modalities }, (_, k) => values[b * modalities + k] > 0));
}

/** The modalities (indices) that every sample of `mask` (B, K) has, when all samples have the same ones; else null. */
export function sharedModalities(mask: Tensor /* (B, K) */): number[] | null {
  const [first, ...others] = maskRows(mask);
  if (others.some((row) => row.some((present, k) => present !== first[k]))) return null;
  return first.flatMap((present, k) => (present ? [k] : []));
}

/** Throws unless `mask` is (batch, modalities). */
export function checkModalityMask(mask: Tensor, batch: number, modalities: number): void {
  if (mask.ndim !== 2 || mask.size(0) !== batch || mask.size(1) !== modalities) {
    throw new Error(`expected a modality mask (${batch}, ${modalities}), got [${mask.shape.join(', ')}]`);
  }
}
