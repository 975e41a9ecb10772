// The arithmetic a network runs in: float32 throughout, or bfloat16 mixed precision (autocast).
import { torch, type Tensor } from '../engine/index.ts';
import type { SegmentationOutput } from './segmentation-model.ts';

/**
 * 'fp32': everything in float32. 'bf16': mixed precision, as PyTorch's autocast: convolutions (other than the thin ones
 * the engine's float32 kernels compute) and matrix products in bfloat16; weights, gradients, optimiser state,
 * normalisations, softmax and losses in float32.
 */
export const PRECISIONS = ['fp32', 'bf16'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** Runs a network's forward pass `fn` in `precision` on `device`. */
export function inPrecision<T>(precision: Precision, device: string, fn: () => T): T {
  return precision === 'bf16' ? torch.autocast('bfloat16', fn, device) : fn();
}

/** Runs a training forward pass `fn` in `precision` on `device`; its outputs come back in float32, for the losses. */
export function trainingForward(precision: Precision, device: string, fn: () => SegmentationOutput[]): SegmentationOutput[] {
  if (precision === 'fp32') return fn();
  const float = (t: Tensor) => t.float();
  return torch.autocast('bfloat16', fn, device).map((output) => ({
    logits: float(output.logits),
    deepSupervision: output.deepSupervision?.map(float),
    separate: output.separate?.map(float),
    bottleneck: output.bottleneck && float(output.bottleneck),
    refined: output.refined && float(output.refined),
  }));
}
