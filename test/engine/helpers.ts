// Shared checks for the engine tests: element-wise closeness and central finite differences.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
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

/** One tensor of every dtype with edge values (signed zero, extremes, subnormals), plus a scalar and an empty one. */
export function oneTensorPerDtype(): Record<string, Tensor> {
  return {
    f64: torch.tensor(new Float64Array([1 / 3, -0, 1e300, -5e-324]), [2, 2]),
    f32: torch.tensor(new Float32Array([0.1, -Infinity, 3.4e38])),
    f16: torch.tensor([0.333251953125, -65504, 6.103515625e-5], [3], { dtype: 'float16' }),
    bf16: torch.tensor([1.5, -3.140625, 1e-30], [3, 1], { dtype: 'bfloat16' }),
    i64: torch.tensor(new BigInt64Array([2n ** 40n + 1n, -7n, -(2n ** 62n)])),
    i32: torch.tensor(new Int32Array([-2147483648, 5])),
    i16: torch.tensor(new Int16Array([-32768, 32767])),
    i8: torch.tensor(new Int8Array([-128, 127])),
    u8: torch.tensor(new Uint8Array([0, 255])),
    flags: torch.tensor([true, false, true]),
    scalar: torch.tensor([42], []),
    empty: torch.zeros([0, 3]),
  };
}

/** Output and gradients of Σ gy ⊙ conv3d(x, w, b) with `options`; float64 inputs run libtorch's own path. */
export function convWithGrads(x: Tensor, w: Tensor, b: Tensor | null, gy: Tensor, options: Parameters<typeof torch.conv3d>[3] = {}) {
  return torch.tidy(() => {
    const [xl, wl] = [x.detach().requiresGrad_(true), w.detach().requiresGrad_(true)];
    const bl = b?.detach().requiresGrad_(true) ?? null;
    const y = torch.conv3d(xl, wl, bl, options);
    y.backward(gy.to(y.dtype));
    return { node: y.gradFnName, y: y.detach().toArray(), gx: xl.grad!.toArray(), gw: wl.grad!.toArray(), gb: bl?.grad!.toArray() ?? null };
  });
}

/** |a − e| ≤ tolerance · (|e| + max |e|): relative to the scale of the expected values. */
export function assertCloseToScale(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, message: string): void {
  const scale = Math.max(...Array.from(expected, Math.abs));
  assertClose(actual, expected, { atol: tolerance * scale, rtol: tolerance, message });
}

/**
 * Runs an ES module `script` in a fresh Node process whose native kernels are capped at instruction set `isa`
 * (SMML_THIN_CONV_ISA is read when the addon loads) and returns what it wrote to stdout, parsed as JSON.
 */
export function runWithInstructionSet<T>(isa: 'avx2' | 'generic', script: string, env: Record<string, string>): T {
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, ...env, SMML_THIN_CONV_ISA: isa },
    encoding: 'utf8',
  });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout) as T;
}
