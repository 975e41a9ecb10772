// Functions over tensors: joining, neural-network operations and losses (the engine's torch.nn.functional).
import { withAutocastOperands } from './autocast.ts';
import { native } from './native.ts';
import { isGradEnabled, Tensor, tidy, wrap, wrapList, type NativeHandle, type TensorOrScalar } from './tensor.ts';

// Anything that is not a list of tensors goes to the addon as it is, which rejects it with the call's name.
const handles = (list: Tensor[]): unknown => (Array.isArray(list) ? list.map((t) => (t instanceof Tensor ? t.handle : t)) : list);
const opt = (t: Tensor | null | undefined) => (t ? t.handle : null);
const operand = (v: TensorOrScalar) => (typeof v === 'object' ? v.handle : v);

/** Repeats a number `n` times, or checks that a list has `n` entries. */
export function ntuple(value: number | number[], n: number, name = 'argument'): number[] {
  if (typeof value === 'number') return Array(n).fill(value);
  if (value.length !== n) throw new Error(`${name}: expected ${n} values, got [${value.join(', ')}]`);
  return value;
}

// -- joining and selection ------------------------------------------------------------------------
export function cat(tensors: Tensor[], dim = 0): Tensor {
  return wrap(native.cat(handles(tensors), dim));
}
export function stack(tensors: Tensor[], dim = 0): Tensor {
  return wrap(native.stack(handles(tensors), dim));
}
/** Elements of `a` where `condition` holds, else of `b`. */
export function where(condition: Tensor, a: TensorOrScalar, b: TensorOrScalar): Tensor {
  return wrap(native.where(condition.handle, operand(a), operand(b)));
}
export function minimum(a: Tensor, b: Tensor): Tensor {
  return a.minimum(b);
}
export function maximum(a: Tensor, b: Tensor): Tensor {
  return a.maximum(b);
}
export function einsum(equation: string, ...operands: Tensor[]): Tensor {
  return wrap(native.einsum(equation, handles(operands)));
}
export function matmul(a: Tensor, b: Tensor): Tensor {
  return a.matmul(b);
}
export function bmm(a: Tensor, b: Tensor): Tensor {
  return a.bmm(b);
}
/** Counts of each non-negative integer value (with optional weights), at least `minLength` bins. */
export function bincount(values: Tensor, weights?: Tensor, minLength = 0): Tensor {
  return wrap(native.bincount(values.handle, opt(weights), minLength));
}

export type PadMode = 'constant' | 'reflect' | 'replicate' | 'circular';
/**
 * Pads the trailing dimensions. `pads` lists (before, after) pairs starting from the LAST dimension,
 * as torch.nn.functional.pad: [wBefore, wAfter, hBefore, hAfter, dBefore, dAfter] for (…, D, H, W).
 */
export function pad(x: Tensor, pads: number[], mode: PadMode = 'constant', value = 0): Tensor {
  return wrap(native.pad(x.handle, pads, mode, value));
}

// -- convolution ------------------------------------------------------------------------------------
export interface ConvOptions {
  stride?: number | number[];
  padding?: number | number[];
  dilation?: number | number[];
  groups?: number;
  /** How `padding` is filled: zeros (default) or reflected/replicated/circular input values. */
  paddingMode?: 'zeros' | 'reflect' | 'replicate' | 'circular';
}

// The addon pads by the padding mode itself: thin 3x3x3 convolutions read reflected borders in place.
function convolution(x: Tensor, weight: Tensor, bias: Tensor | null | undefined, opts: ConvOptions, spatial: number): Tensor {
  const stride = ntuple(opts.stride ?? 1, spatial, 'stride');
  const padding = ntuple(opts.padding ?? 0, spatial, 'padding');
  const dilation = ntuple(opts.dilation ?? 1, spatial, 'dilation');
  const groups = opts.groups ?? 1;
  const paddingMode = opts.paddingMode ?? 'zeros';
  const policy = { convolution: { stride, padding, dilation, groups, paddingMode } };
  return wrap(withAutocastOperands(policy, [x, weight, bias], ([xh, wh, bh]) => native.convolution(xh, wh, bh, stride, padding, dilation, groups, paddingMode)));
}

/** 3D convolution: x (B, Cin, D, H, W), weight (Cout, Cin/groups, kD, kH, kW) → (B, Cout, D', H', W'). */
export function conv3d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: ConvOptions = {}): Tensor {
  return convolution(x, weight, bias, opts, 3);
}
/** 2D convolution: x (B, Cin, H, W), weight (Cout, Cin/groups, kH, kW). */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: ConvOptions = {}): Tensor {
  return convolution(x, weight, bias, opts, 2);
}

export interface ConvTransposeOptions {
  stride?: number | number[];
  padding?: number | number[];
  outputPadding?: number | number[];
  dilation?: number | number[];
  groups?: number;
}
/** Transposed 3D convolution: x (B, Cin, D, H, W), weight (Cin, Cout/groups, kD, kH, kW). */
export function convTranspose3d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: ConvTransposeOptions = {}): Tensor {
  const stride = ntuple(opts.stride ?? 1, 3, 'stride');
  const padding = ntuple(opts.padding ?? 0, 3, 'padding');
  const outputPadding = ntuple(opts.outputPadding ?? 0, 3, 'outputPadding');
  const dilation = ntuple(opts.dilation ?? 1, 3, 'dilation');
  // float32 under autocast: libtorch 1.13 has no bfloat16 transposed 3D convolution on the CPU (oneDNN's route
  // mistakes it for a forward one, the reference kernel lacks the dtype)
  return wrap(
    withAutocastOperands('float32', [x, weight, bias], ([xh, wh, bh]) => native.convTranspose(xh, wh, bh, stride, padding, outputPadding, opts.groups ?? 1, dilation)),
  );
}

// -- normalisation --------------------------------------------------------------------------------
// Under autocast, normalisations (and resizing, below) run in float32: their sums need its precision, and the
// fused and resizing kernels are float32 kernels.
function inFloat32(x: Tensor, op: (x: NativeHandle) => NativeHandle): Tensor {
  return wrap(withAutocastOperands('float32', [x], ([xh]) => op(xh!)));
}

export interface NormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  runningMean?: Tensor | null;
  runningVar?: Tensor | null;
  momentum?: number;
  eps?: number;
}
/** Normalises each (sample, channel) over its spatial positions. With running statistics and
 * `useInputStats = false` it normalises with those instead (eval mode of a tracking InstanceNorm). */
export function instanceNorm(x: Tensor, opts: NormOptions & { useInputStats?: boolean } = {}): Tensor {
  return inFloat32(x, (xh) =>
    native.instanceNorm(
      xh,
      opt(opts.weight),
      opt(opts.bias),
      opt(opts.runningMean),
      opt(opts.runningVar),
      opts.useInputStats ?? true,
      opts.momentum ?? 0.1,
      opts.eps ?? 1e-5,
    ),
  );
}
/**
 * leakyRelu(instanceNorm(x), negativeSlope) for x (B, C, …) without affine parameters or running
 * statistics (biased variance); for float32 on the CPU one fused operation each way (3–4× faster).
 */
export function instanceNormLeakyRelu(x: Tensor, negativeSlope: number, eps = 1e-5): Tensor {
  return inFloat32(x, (xh) => native.instanceNormLeakyRelu(xh, negativeSlope, eps));
}
/** Batch normalisation; in training mode it updates `runningMean`/`runningVar` in place. */
export function batchNorm(x: Tensor, opts: NormOptions & { training: boolean }): Tensor {
  return inFloat32(x, (xh) =>
    native.batchNorm(
      xh,
      opt(opts.weight),
      opt(opts.bias),
      opt(opts.runningMean),
      opt(opts.runningVar),
      opts.training,
      opts.momentum ?? 0.1,
      opts.eps ?? 1e-5,
    ),
  );
}
/** Normalises over the trailing `normalizedShape` dimensions. */
export function layerNorm(x: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return inFloat32(x, (xh) => native.layerNorm(xh, normalizedShape, opt(weight), opt(bias), eps));
}
export function groupNorm(x: Tensor, groups: number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return inFloat32(x, (xh) => native.groupNorm(xh, groups, opt(weight), opt(bias), eps));
}

// -- activations and layers -------------------------------------------------------------------------
/** y = x Wᵀ + b: x (…, in), weight (out, in), bias (out). */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return wrap(native.linear(x.handle, weight.handle, opt(bias)));
}
export function softmax(x: Tensor, dim: number): Tensor {
  return x.softmax(dim);
}
export function logSoftmax(x: Tensor, dim: number): Tensor {
  return x.logSoftmax(dim);
}
export function relu(x: Tensor): Tensor {
  return x.relu();
}
export function sigmoid(x: Tensor): Tensor {
  return x.sigmoid();
}
export function leakyRelu(x: Tensor, negativeSlope = 0.01): Tensor {
  return wrap(native.leakyRelu(x.handle, negativeSlope));
}
/** GELU, exact (erf) by default or the tanh approximation. */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return wrap(native.gelu(x.handle, approximate));
}
/** Inverted dropout: zeroes with probability p and scales the rest by 1/(1−p); identity when not training. */
export function dropout(x: Tensor, p: number, training: boolean): Tensor {
  return wrap(native.dropout(x.handle, p, training));
}

export type InterpolationMode = 'nearest' | 'linear' | 'bilinear' | 'trilinear' | 'bicubic' | 'area';
/** Resizes the spatial dimensions to `size`. `alignCorners` applies to the (bi/tri)linear and cubic modes. */
export function interpolate(x: Tensor, size: number[], mode: InterpolationMode = 'nearest', alignCorners?: boolean): Tensor {
  const aligned = mode === 'nearest' || mode === 'area' ? null : (alignCorners ?? false);
  return inFloat32(x, (xh) => native.interpolate(xh, size, mode, aligned));
}

export type GridSampleMode = 'bilinear' | 'nearest' | 'bicubic';
export type GridSamplePadding = 'zeros' | 'border' | 'reflection';
/**
 * Samples `x` (N, C, D, H, W) (or (N, C, H, W)) at the points of `grid` (N, D', H', W', 3) (or (N, H', W', 2)): normalised
 * coordinates in [−1, 1], x along W first, then H (then D); 'bilinear' is trilinear for 5-D input. Returns (N, C, D', H', W').
 */
export function gridSample(x: Tensor, grid: Tensor, opts: { mode?: GridSampleMode; padding?: GridSamplePadding; alignCorners?: boolean } = {}): Tensor {
  return wrap(native.gridSample(x.handle, grid.handle, opts.mode ?? 'bilinear', opts.padding ?? 'zeros', opts.alignCorners ?? false));
}

export interface PoolOptions {
  stride?: number | number[];
  padding?: number | number[];
  ceilMode?: boolean;
}
export function maxPool3d(x: Tensor, kernel: number | number[], opts: PoolOptions & { dilation?: number | number[] } = {}): Tensor {
  const k = ntuple(kernel, 3, 'kernel');
  return wrap(
    native.maxPool(x.handle, k, ntuple(opts.stride ?? k, 3), ntuple(opts.padding ?? 0, 3), ntuple(opts.dilation ?? 1, 3), opts.ceilMode ?? false),
  );
}
export function avgPool3d(x: Tensor, kernel: number | number[], opts: PoolOptions & { countIncludePad?: boolean } = {}): Tensor {
  const k = ntuple(kernel, 3, 'kernel');
  return wrap(
    native.avgPool(x.handle, k, ntuple(opts.stride ?? k, 3), ntuple(opts.padding ?? 0, 3), opts.ceilMode ?? false, opts.countIncludePad ?? true),
  );
}
export function adaptiveAvgPool3d(x: Tensor, size: number | number[]): Tensor {
  return wrap(native.adaptiveAvgPool(x.handle, ntuple(size, 3)));
}

/** Integer class indices (any shape) → int64 one-hot with a trailing class dimension. */
export function oneHot(indices: Tensor, numClasses: number): Tensor {
  return wrap(native.oneHot(indices.handle, numClasses));
}

// -- attention ------------------------------------------------------------------------------------
/**
 * softmax(q kᵀ / √d + mask) v over the last two dimensions: q (…, Lq, d), k (…, Lk, d), v (…, Lk, dv).
 * `mask` is added to the scores (use −∞ to block positions).
 */
export function scaledDotProductAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: { mask?: Tensor; dropout?: number; training?: boolean; scale?: number } = {},
): Tensor {
  const scale = opts.scale ?? 1 / Math.sqrt(q.size(-1));
  const scaled = q.mul(scale);
  const kT = k.transpose(-2, -1);
  let scores = scaled.matmul(kT);
  scaled.dispose();
  kT.dispose();
  if (opts.mask) {
    const masked = scores.add(opts.mask);
    scores.dispose();
    scores = masked;
  }
  let weights = scores.softmax(-1);
  scores.dispose();
  if (opts.dropout && opts.training) {
    const dropped = dropout(weights, opts.dropout, true);
    weights.dispose();
    weights = dropped;
  }
  const out = weights.matmul(v);
  weights.dispose();
  return out;
}

// -- losses ---------------------------------------------------------------------------------------
export type Reduction = 'none' | 'mean' | 'sum';
/** Cross-entropy of logits (B, C, …) against class indices (B, …) or class probabilities (B, C, …). */
export function crossEntropy(
  logits: Tensor,
  target: Tensor,
  opts: { weight?: Tensor; reduction?: Reduction; ignoreIndex?: number; labelSmoothing?: number } = {},
): Tensor {
  return wrap(
    native.crossEntropy(logits.handle, target.handle, opt(opts.weight), opts.reduction ?? 'mean', opts.ignoreIndex ?? -100, opts.labelSmoothing ?? 0),
  );
}
/** Negative log-likelihood of log-probabilities (B, C, …) against class indices (B, …). */
export function nllLoss(logProbs: Tensor, target: Tensor, opts: { weight?: Tensor; reduction?: Reduction; ignoreIndex?: number } = {}): Tensor {
  return wrap(native.nllLoss(logProbs.handle, target.handle, opt(opts.weight), opts.reduction ?? 'mean', opts.ignoreIndex ?? -100));
}
/**
 * torch.nn.functional.kl_div: pointwise target·(log target − input) with `input` given as
 * log-probabilities (and `target` as log-probabilities when `logTarget`). 'mean' averages over every
 * element; use 'sum' and divide for other normalisations.
 */
export function klDiv(input: Tensor, target: Tensor, opts: { reduction?: Reduction; logTarget?: boolean } = {}): Tensor {
  return wrap(native.klDiv(input.handle, target.handle, opts.reduction ?? 'mean', opts.logTarget ?? false));
}
export function mseLoss(input: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return wrap(native.mseLoss(input.handle, target.handle, reduction));
}
export function binaryCrossEntropyWithLogits(
  logits: Tensor,
  target: Tensor,
  opts: { weight?: Tensor; posWeight?: Tensor; reduction?: Reduction } = {},
): Tensor {
  return wrap(native.binaryCrossEntropyWithLogits(logits.handle, target.handle, opt(opts.weight), opt(opts.posWeight), opts.reduction ?? 'mean'));
}

// -- autograd -------------------------------------------------------------------------------------
/**
 * Gradients of `outputs` with respect to `inputs` (null where an input is unused), like torch.autograd.grad.
 * As there, `retainGraph` defaults to `createGraph`, so that a differentiable gradient can be differentiated again.
 */
export function grad(
  outputs: Tensor[],
  inputs: Tensor[],
  opts: { gradOutputs?: Tensor[]; retainGraph?: boolean; createGraph?: boolean } = {},
): (Tensor | null)[] {
  const result = native.autogradGrad(
    handles(outputs),
    handles(inputs),
    opts.gradOutputs ? handles(opts.gradOutputs) : null,
    opts.retainGraph ?? opts.createGraph ?? false,
    opts.createGraph ?? false,
  ) as (NativeHandle | null)[];
  return result.map((h) => (h ? wrap(h) : null));
}

/** Samples 0/1 with the probabilities in `p`. */
export function bernoulli(p: Tensor): Tensor {
  return wrap(native.bernoulli(p.handle));
}

// Blocks being run again by a backward (they nest when a recomputed block holds recomputed blocks).
let recomputing = 0;

/**
 * True while a backward runs a `checkpoint` block again: layers with side effects in training (batch norm's
 * running statistics) must not apply them a second time.
 */
export function isRecomputing(): boolean {
  return recomputing > 0;
}

/**
 * Activation recomputation (gradient checkpointing): `block(...inputs)` runs without recording its
 * intermediates; backward runs it again with gradients on and differentiates it (native/checkpoint.cc).
 * The result and the gradients are those of `block(...inputs)` itself; dropout inside draws the same masks
 * both times (the CPU generator's state is replayed). `block` must read tensors only through `inputs` and
 * `parameters` (a module's `parameters()`): backward throws for a tensor requiring grad read otherwise, and a
 * captured tensor may be disposed by then. It runs once more during backward, so an error it throws then
 * surfaces from `backward()`. Without gradient recording, or with tensors off the CPU (libtorch differentiates
 * those on its device threads, which cannot call JavaScript), `block` simply runs.
 */
export function checkpoint<T extends Tensor | Tensor[]>(block: (...inputs: Tensor[]) => T, inputs: Tensor[], parameters: Tensor[]): T {
  const onCpu = (t: Tensor) => t.device === 'cpu';
  if (!isGradEnabled() || !inputs.every(onCpu) || !parameters.every(onCpu)) return block(...inputs);
  let single = false;
  let calls = 0;
  const run = (inputHandles: NativeHandle[]): Tensor[] => {
    const again = calls++ > 0;
    if (again) recomputing++;
    try {
      return tidy(() => {
        const result: Tensor | Tensor[] = block(...wrapList(inputHandles));
        single = result instanceof Tensor;
        return result instanceof Tensor ? [result] : result;
      });
    } finally {
      if (again) recomputing--;
    }
  };
  const outputs = wrapList(native.checkpoint(handles(inputs), handles(parameters), run));
  return (single ? outputs[0] : outputs) as T;
}
