// 3D convolution layers with PyTorch's parameter names, layouts and default initialisation.
import { empty } from '../creation.ts';
import { conv3d, convTranspose3d, ntuple } from '../functional.ts';
import type { Tensor } from '../tensor.ts';
import { defaultLayerInit_ } from './init.ts';
import { Module } from './module.ts';

export interface Conv3dOptions {
  stride?: number | number[];
  padding?: number | number[];
  dilation?: number | number[];
  groups?: number;
  /** Adds a learnable per-channel bias (default true). */
  bias?: boolean;
  /** How `padding` is filled: zeros (default) or reflected/replicated/circular input values. */
  paddingMode?: 'zeros' | 'reflect' | 'replicate' | 'circular';
}

function checkGroups(layer: string, inChannels: number, outChannels: number, groups: number): void {
  if (!Number.isInteger(groups) || groups < 1) throw new Error(`${layer}: groups must be a positive integer, got ${groups}`);
  if (inChannels % groups !== 0 || outChannels % groups !== 0) {
    throw new Error(`${layer}: in (${inChannels}) and out (${outChannels}) channels must both be divisible by groups (${groups})`);
  }
}

/** Kernel size, stride, padding, dilation and groups common to both layers, validated and expanded to 3 values. */
function convGeometry(
  layer: string,
  inChannels: number,
  outChannels: number,
  kernelSize: number | number[],
  opts: { stride?: number | number[]; padding?: number | number[]; dilation?: number | number[]; groups?: number },
): { kernelSize: number[]; stride: number[]; padding: number[]; dilation: number[]; groups: number } {
  const kernel = ntuple(kernelSize, 3, `${layer} kernel size`);
  const groups = opts.groups ?? 1;
  checkGroups(layer, inChannels, outChannels, groups);
  return {
    kernelSize: kernel,
    stride: ntuple(opts.stride ?? 1, 3, `${layer} stride`),
    padding: ntuple(opts.padding ?? 0, 3, `${layer} padding`),
    dilation: ntuple(opts.dilation ?? 1, 3, `${layer} dilation`),
    groups,
  };
}

function checkInput(layer: string, x: Tensor, inChannels: number): void {
  if (x.ndim !== 5 || x.size(1) !== inChannels) {
    throw new Error(`${layer}: expected input (B, ${inChannels}, D, H, W), got [${x.shape.join(', ')}]`);
  }
}

/** Conv3d: (B, in, D, H, W) → (B, out, D', H', W'); weight (out, in/groups, kD, kH, kW), bias (out). */
export class Conv3d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly kernelSize: number[];
  readonly options: Required<Omit<Conv3dOptions, 'bias'>>;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | number[],
    opts: Conv3dOptions = {},
  ) {
    super();
    const { kernelSize: kernel, stride, padding, dilation, groups } = convGeometry('Conv3d', inChannels, outChannels, kernelSize, opts);
    this.kernelSize = kernel;
    this.options = { stride, padding, dilation, groups, paddingMode: opts.paddingMode ?? 'zeros' };
    this.weight = this.registerParameter('weight', empty([outChannels, inChannels / groups, ...this.kernelSize]));
    this.bias = (opts.bias ?? true) ? this.registerParameter('bias', empty([outChannels])) : null;
    defaultLayerInit_(this.weight, this.bias);
  }

  forward(x: Tensor): Tensor {
    checkInput('Conv3d', x, this.inChannels);
    return conv3d(x, this.weight, this.bias, this.options);
  }
}

export interface ConvTranspose3dOptions {
  stride?: number | number[];
  padding?: number | number[];
  outputPadding?: number | number[];
  dilation?: number | number[];
  groups?: number;
  bias?: boolean;
}

/** ConvTranspose3d: (B, in, D, H, W) → (B, out, D', H', W'); weight (in, out/groups, kD, kH, kW), bias (out). */
export class ConvTranspose3d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly kernelSize: number[];
  readonly options: Required<Omit<ConvTranspose3dOptions, 'bias'>>;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | number[],
    opts: ConvTranspose3dOptions = {},
  ) {
    super();
    const { kernelSize: kernel, stride, padding, dilation, groups } = convGeometry('ConvTranspose3d', inChannels, outChannels, kernelSize, opts);
    this.kernelSize = kernel;
    this.options = {
      stride,
      padding,
      outputPadding: ntuple(opts.outputPadding ?? 0, 3, 'ConvTranspose3d output padding'),
      dilation,
      groups,
    };
    this.weight = this.registerParameter('weight', empty([inChannels, outChannels / groups, ...this.kernelSize]));
    this.bias = (opts.bias ?? true) ? this.registerParameter('bias', empty([outChannels])) : null;
    defaultLayerInit_(this.weight, this.bias);
  }

  forward(x: Tensor): Tensor {
    checkInput('ConvTranspose3d', x, this.inChannels);
    return convTranspose3d(x, this.weight, this.bias, this.options);
  }
}
