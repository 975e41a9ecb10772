// Shared checks for the engine tests: element-wise closeness and central finite differences.
import { strict as assert } from 'node:assert';
import { torch, type Tensor } from '../../src/engine/index.ts';

/** Asserts |actual − expected| ≤ atol + rtol·|expected| element by element (and equal lengths). */
export function assertClose(
  actual: Tensor | ArrayLike<number>,
  expected: ArrayLike<number>,
  opts: { atol?: number; rtol?: number; message?: string } = {},
): void {
  const got = actual instanceof torch.Tensor ? actual.toArray() : Array.from(actual);
  const { atol = 1e-6, rtol = 1e-5, message = '' } = opts;
  assert.equal(got.length, expected.length, `${message} length ${got.length} vs ${expected.length}`);
  for (let i = 0; i < got.length; i++) {
    const e = expected[i];
    const ok = Object.is(got[i], e) || Math.abs(got[i] - e) <= atol + rtol * Math.abs(e);
    assert.ok(ok, `${message} element ${i}: got ${got[i]}, expected ${e} (atol ${atol}, rtol ${rtol})`);
  }
}

/** A float64 tensor of the given shape with reproducible values from a small linear congruential sequence. */
export function seededTensor(shape: number[], seed: number, opts: { low?: number; high?: number; requiresGrad?: boolean } = {}): Tensor {
  const { low = -1, high = 1 } = opts;
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float64Array(n);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = low + ((high - low) * state) / 2 ** 32;
  }
  return torch.tensor(data, shape, { requiresGrad: opts.requiresGrad });
}

/**
 * Compares the autograd gradient of `f` with central finite differences, for every input.
 * `f` maps float64 inputs to a tensor of any shape; it is reduced with fixed random weights so that
 * every output element takes part. Returns the largest absolute deviation seen.
 */
export function checkGradients(
  f: (...inputs: Tensor[]) => Tensor,
  inputs: Tensor[],
  opts: { eps?: number; atol?: number; rtol?: number; message?: string } = {},
): number {
  const { eps = 1e-6, atol = 1e-6, rtol = 1e-5, message = '' } = opts;
  return torch.tidy(() => {
    const leaves = inputs.map((x) => x.detach().to('float64').requiresGrad_(true));
    const probe = f(...leaves);
    const weights = seededTensor(probe.shape, 7919);
    const objective = (...xs: Tensor[]) => torch.noGrad(() => f(...xs).mul(weights).sum().item());
    probe.mul(weights).sum().backward();
    let worst = 0;
    leaves.forEach((leaf, which) => {
      const analytic = leaf.grad!.toArray();
      const base = leaf.detach().toTypedArray() as Float64Array;
      const numeric: number[] = [];
      for (let i = 0; i < base.length; i++) {
        const shifted = (delta: number) => {
          const data = Float64Array.from(base);
          data[i] += delta;
          const xs = leaves.map((l, j) => (j === which ? torch.tensor(data, leaf.shape) : l.detach()));
          return objective(...xs);
        };
        numeric.push((shifted(eps) - shifted(-eps)) / (2 * eps));
      }
      for (let i = 0; i < numeric.length; i++) worst = Math.max(worst, Math.abs(numeric[i] - analytic[i]));
      assertClose(analytic, numeric, { atol, rtol, message: `${message} input ${which}` });
    });
    return worst;
  });
}
