// Linear and Dropout layers with PyTorch's parameter names and default initialisation.
import { empty } from '../creation.ts';
import { dropout, linear } from '../functional.ts';
import type { Tensor } from '../tensor.ts';
import { defaultLayerInit_ } from './init.ts';
import { Module } from './module.ts';

/** y = x Wᵀ + b: (…, in) → (…, out); weight (out, in), bias (out). */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', empty([outFeatures, inFeatures]));
    this.bias = (opts.bias ?? true) ? this.registerParameter('bias', empty([outFeatures])) : null;
    defaultLayerInit_(this.weight, this.bias);
  }

  forward(x: Tensor): Tensor {
    if (x.ndim === 0 || x.size(-1) !== this.inFeatures) {
      throw new Error(`Linear: expected input (…, ${this.inFeatures}), got [${x.shape.join(', ')}]`);
    }
    return linear(x, this.weight, this.bias);
  }
}

/** Zeroes each element with probability p and scales the rest by 1/(1−p) in training mode; identity in eval mode. */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p <= 1)) throw new Error(`Dropout: p must lie in [0, 1], got ${p}`);
  }

  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training);
  }
}
