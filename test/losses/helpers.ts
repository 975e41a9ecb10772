// Shared pieces of the loss tests: tensors from plain numbers, and loop-based reference maths.
import { strict as assert } from 'node:assert';
import { torch, type Tensor } from '../../src/engine/index.ts';

export const float64 = (values: number[], shape: number[], requiresGrad = false): Tensor =>
  torch.tensor(values, shape, { dtype: 'float64', requiresGrad });

/** Class indices (B, …spatial) → float64 one-hot (B, C, …spatial). */
export function onehotOf(labels: Tensor, classes: number): Tensor {
  return torch.tidy(() => {
    const hot = torch.oneHot(labels.long(), classes).to('float64'); // (B, …spatial, C)
    const order = [0, hot.ndim - 1, ...Array.from({ length: hot.ndim - 2 }, (_, i) => i + 1)];
    return hot.permute(order).contiguous();
  });
}

export function assertClose(actual: number, expected: number, tolerance = 1e-10, what = 'value'): void {
  assert.ok(Number.isFinite(actual), `${what} is ${actual}`);
  assert.ok(Math.abs(actual - expected) <= tolerance * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs expected ${expected}`);
}

export function assertAllClose(actual: number[], expected: number[], tolerance = 1e-10, what = 'values'): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((value, i) => assertClose(value, expected[i], tolerance, `${what}[${i}]`));
}

/** Softmax of the C values of voxel v in sample b of a flat (B, C, V) array, divided by `temperature` first. */
export function softmaxAt(logits: ArrayLike<number>, classes: number, voxels: number, b: number, v: number, temperature = 1): number[] {
  const z = Array.from({ length: classes }, (_, c) => logits[(b * classes + c) * voxels + v] / temperature);
  const top = Math.max(...z);
  const exps = z.map((x) => Math.exp(x - top));
  const total = exps.reduce((a, e) => a + e, 0);
  return exps.map((e) => e / total);
}

/** KL(p ‖ q) = Σ p (ln p − ln q). */
export const klOf = (p: number[], q: number[]): number => p.reduce((sum, pc, c) => sum + (pc > 0 ? pc * (Math.log(pc) - Math.log(q[c])) : 0), 0);

/** Two-class softmax probability of class 1 for logits (z0, z1). */
export const sigmoidOfGap = (z0: number, z1: number): number => 1 / (1 + Math.exp(z0 - z1));
