// instanceNormLeakyRelu: the fused float32 kernel against the unfused operations in float64 and
// against a hand computation, first and second derivatives, and the fallback for other tensors.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { assertClose, runWithInstructionSet, seededTensor } from './helpers.ts';

const SLOPE = 0.2;

/** Output and input gradient of Σ gy ⊙ f(x). */
function valueAndGrad(f: (x: Tensor) => Tensor, x: Tensor, gy: Tensor) {
  return torch.tidy(() => {
    const leaf = x.detach().requiresGrad_(true);
    const y = f(leaf);
    y.backward(gy.to(y.dtype));
    return { node: y.gradFnName, y: y.detach().toArray(), gx: leaf.grad!.toArray() };
  });
}

const unfused = (x: Tensor) => torch.leakyRelu(torch.instanceNorm(x), SLOPE);
const fused = (x: Tensor) => torch.instanceNormLeakyRelu(x, SLOPE);

describe('instanceNormLeakyRelu', () => {
  test('a hand-computed instance: (x − mean) / √(var + eps), negatives scaled by the slope', () => {
    // one instance [1, 2, 3, 6]: mean 3, biased variance (4 + 1 + 0 + 9) / 4 = 3.5
    const y = torch.instanceNormLeakyRelu(torch.tensor([1, 2, 3, 6], [1, 1, 4]), SLOPE).toArray();
    const rstd = 1 / Math.sqrt(3.5 + 1e-5);
    assertClose(y, [-2 * rstd * SLOPE, -1 * rstd * SLOPE, 0, 3 * rstd], { atol: 1e-6 });
  });

  // odd instance sizes leave a tail after the 4- and 8-float vectors
  for (const shape of [[2, 3, 5, 7, 9], [1, 4, 32, 32, 32], [3, 2, 1, 1, 3], [2, 2, 11]]) {
    test(`float32 output and gradient match the unfused operations in float64, x [${shape.join(', ')}]`, () => {
      const x = seededTensor(shape, 1, { low: -2, high: 3 });
      const gy = seededTensor(shape, 2);
      const reference = valueAndGrad(unfused, x, gy);
      const got = valueAndGrad(fused, x.float(), gy);
      assert.match(got.node!, /InstanceNormLeakyRelu/);
      assertClose(got.y, reference.y, { atol: 1e-5, rtol: 1e-4, message: 'output' });
      assertClose(got.gx, reference.gx, { atol: 1e-4, rtol: 1e-4, message: 'gradient' });
    });
  }

  test('second derivatives match the unfused operations', () => {
    // d/dx Σ (∂L/∂x)² with L = Σ w ⊙ f(x)³: the backward must itself be differentiable
    const run = (f: (x: Tensor) => Tensor, dtype: 'float32' | 'float64') =>
      torch.tidy(() => {
        const x = seededTensor([2, 3, 4, 3, 5], 3, { low: -2, high: 2 }).to(dtype).requiresGrad_(true);
        const w = seededTensor([2, 3, 4, 3, 5], 4).to(dtype);
        const [gx] = torch.grad([f(x).pow(3).mul(w).sum()], [x], { createGraph: true });
        gx!.square().sum().backward();
        return x.grad!.toArray();
      });
    const reference = run(unfused, 'float64');
    const scale = Math.max(...reference.map(Math.abs));
    assertClose(run(fused, 'float32'), reference, { atol: 1e-4 * scale, rtol: 1e-4 });
  });

  test('1 and 2 threads give identical results', () => {
    const x = seededTensor([2, 4, 16, 16, 16], 5).float();
    const gy = seededTensor([2, 4, 16, 16, 16], 6);
    const original = torch.getNumThreads();
    try {
      torch.setNumThreads(1);
      const one = valueAndGrad(fused, x, gy);
      torch.setNumThreads(2);
      const two = valueAndGrad(fused, x, gy);
      assert.deepEqual(two.y, one.y);
      assert.deepEqual(two.gx, one.gx);
    } finally {
      torch.setNumThreads(original);
    }
  });

  test('the AVX2 and portable paths match the unfused operations in float64', () => {
    // SMML_THIN_CONV_ISA caps the instruction set when the process starts; an instance of 37 positions
    // leaves a tail after whole 8- and 16-float vectors
    const shape = [2, 3, 37];
    const engine = new URL('../../src/engine/index.ts', import.meta.url).href;
    const child = `
      const { torch } = await import(${JSON.stringify(engine)});
      const x = torch.tensor(JSON.parse(process.env.X), ${JSON.stringify(shape)}).requiresGrad_(true);
      const y = torch.instanceNormLeakyRelu(x, ${SLOPE});
      y.backward(torch.tensor(JSON.parse(process.env.GY), ${JSON.stringify(shape)}));
      process.stdout.write(JSON.stringify({ node: y.gradFnName, y: y.toArray(), gx: x.grad.toArray() }));`;
    const x = seededTensor(shape, 9, { low: -2, high: 3 });
    const gy = seededTensor(shape, 10);
    const reference = valueAndGrad(unfused, x, gy);
    const env = { X: JSON.stringify(x.float().toArray()), GY: JSON.stringify(gy.float().toArray()) };
    for (const isa of ['avx2', 'generic'] as const) {
      const got = runWithInstructionSet<{ node: string; y: number[]; gx: number[] }>(isa, child, env);
      assert.match(got.node, /InstanceNormLeakyRelu/);
      assertClose(got.y, reference.y, { atol: 1e-5, rtol: 1e-4, message: `${isa} output` });
      assertClose(got.gx, reference.gx, { atol: 1e-4, rtol: 1e-4, message: `${isa} gradient` });
    }
  });

  test('other dtypes and non-contiguous inputs', () => {
    const x = seededTensor([2, 3, 4, 5, 6], 7);
    const gy = seededTensor([2, 3, 4, 5, 6], 8);
    // float64 runs the unfused operations
    const double = valueAndGrad(fused, x, gy);
    assert.doesNotMatch(double.node!, /InstanceNormLeakyRelu/);
    assert.deepEqual(double.y, valueAndGrad(unfused, x, gy).y);
    const contiguous = valueAndGrad(fused, x.float(), gy);
    const strided = valueAndGrad(fused, x.float().contiguous('channelsLast'), gy);
    assert.deepEqual(strided.y, contiguous.y);
    assert.deepEqual(strided.gx, contiguous.gx);
  });
});
