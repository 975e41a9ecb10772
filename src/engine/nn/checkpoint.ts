// Activation recomputation of part of a module's forward (the engine's `checkpoint`).
import { checkpoint as checkpointBlock } from '../functional.ts';
import type { Tensor } from '../tensor.ts';
import type { Module } from './module.ts';

/**
 * `block(...inputs)` with its intermediates recomputed during backward instead of kept; `block` may read
 * `module`'s parameters (all of them are declared to the recomputation) and tensors that need no gradient.
 */
export function checkpoint<T extends Tensor | Tensor[]>(module: Module, block: (...inputs: Tensor[]) => T, inputs: Tensor[]): T {
  return checkpointBlock(block, inputs, module.parameters());
}
