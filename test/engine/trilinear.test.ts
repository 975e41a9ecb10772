// The direct trilinear resize with aligned corners (float32): values against plain loops and libtorch
// in float64, gradients against libtorch's backward and the adjoint identity, second derivatives,
// layouts, thread counts and routing.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { assertClose, seededTensor } from './helpers.ts';
import { trilinearAlignedLoop, type Shape5, type Triple } from './reference.ts';

const TRILINEAR = /TrilinearFunction/;

/** Output and input gradient of Σ gy ⊙ interpolate(x, size); float64 inputs run libtorch's own path. */
function resizeAndGrad(x: Tensor, size: Triple, gy: Tensor) {
  return torch.tidy(() => {
    const leaf = x.detach().requiresGrad_(true);
    const y = torch.interpolate(leaf, size, 'trilinear', true);
    y.backward(gy.to(y.dtype));
    return { node: y.gradFnName, y: y.detach().toArray(), gx: leaf.grad!.toArray() };
  });
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((sum, v, i) => sum + v * b[i], 0);

describe('trilinear resize against plain loops and libtorch in float64', () => {
  // ×2 as the decoders upsample, ×16 for the deep-supervision heads, uneven and shrinking axes, axes of
  // one voxel in and out
  const cases: { x: Shape5; size: Triple }[] = [
    { x: [2, 3, 4, 5, 6], size: [8, 10, 12] },
    { x: [1, 2, 2, 2, 2], size: [32, 32, 32] },
    { x: [1, 2, 5, 7, 9], size: [3, 4, 17] },
    { x: [3, 1, 3, 3, 3], size: [1, 2, 1] },
    { x: [1, 2, 1, 3, 4], size: [4, 6, 8] },
  ];
  for (const c of cases) {
    test(`x [${c.x.join(', ')}] → [${c.size.join(', ')}]`, () => {
      const x = seededTensor(c.x, 1);
      const gy = seededTensor([c.x[0], c.x[1], ...c.size], 2);
      const reference = resizeAndGrad(x, c.size, gy);
      const direct = resizeAndGrad(x.float(), c.size, gy);
      assert.match(direct.node!, TRILINEAR);
      assert.doesNotMatch(reference.node!, TRILINEAR);
      const xs = x.float().toArray();
      const loop = trilinearAlignedLoop(xs, c.x, c.size);
      assertClose(direct.y, loop, { atol: 1e-6, rtol: 1e-5, message: 'output against the loops' });
      assertClose(direct.y, reference.y, { atol: 1e-6, rtol: 1e-5, message: 'output against libtorch' });
      assertClose(direct.gx, reference.gx, { atol: 1e-5, rtol: 1e-5, message: 'gradient against libtorch' });
      // the gradient is the adjoint of the loops' map: ⟨resize(x), gy⟩ = ⟨x, resizeᵀ(gy)⟩
      const gys = gy.float().toArray();
      assertClose([dot(xs, direct.gx)], [dot(loop, gys)], { atol: 1e-4, rtol: 1e-5, message: 'adjoint identity' });
    });
  }
});

describe('trilinear resize: second derivatives, layouts, threads, routing', () => {
  test('second derivatives match float64', () => {
    // d/dx ‖∂L/∂x‖² with L = Σ w ⊙ resize(x)³: the backward must itself be differentiable
    const run = (dtype: 'float32' | 'float64') =>
      torch.tidy(() => {
        const x = seededTensor([2, 2, 3, 4, 5], 3).to(dtype).requiresGrad_(true);
        const w = seededTensor([2, 2, 6, 8, 10], 4).to(dtype);
        const y = torch.interpolate(x, [6, 8, 10], 'trilinear', true);
        const [gx] = torch.grad([y.pow(3).mul(w).sum()], [x], { createGraph: true });
        gx!.square().sum().backward();
        return { node: y.gradFnName, gx: x.grad!.toArray() };
      });
    const direct = run('float32');
    const reference = run('float64');
    assert.match(direct.node!, TRILINEAR);
    const scale = Math.max(...reference.gx.map(Math.abs));
    assertClose(direct.gx, reference.gx, { atol: 1e-5 * scale, rtol: 1e-5 });
  });

  test('non-contiguous inputs give the results of their contiguous copies', () => {
    const x = seededTensor([2, 3, 4, 5, 6], 5).float();
    const gy = seededTensor([2, 3, 8, 10, 12], 6);
    const expected = resizeAndGrad(x, [8, 10, 12], gy);
    for (const layout of [x.contiguous('channelsLast'), x.transpose(2, 4).contiguous().transpose(2, 4)]) {
      assert.equal(layout.isContiguous(), false);
      const got = resizeAndGrad(layout, [8, 10, 12], gy);
      assert.match(got.node!, TRILINEAR);
      assert.deepEqual(got.y, expected.y);
      assert.deepEqual(got.gx, expected.gx);
    }
  });

  test('1 and 2 threads give identical outputs and gradients', () => {
    const x = seededTensor([2, 4, 16, 16, 16], 7).float();
    const gy = seededTensor([2, 4, 32, 32, 32], 8);
    const original = torch.getNumThreads();
    try {
      torch.setNumThreads(1);
      const one = resizeAndGrad(x, [32, 32, 32], gy);
      torch.setNumThreads(2);
      const two = resizeAndGrad(x, [32, 32, 32], gy);
      assert.match(two.node!, TRILINEAR);
      assert.deepEqual(two.y, one.y);
      assert.deepEqual(two.gx, one.gx);
    } finally {
      torch.setNumThreads(original);
    }
  });

  test('only float32 trilinear resizes of 5-D tensors with aligned corners take the route', () => {
    const nodeOf = (x: Tensor, size: number[], mode: 'trilinear' | 'bilinear' | 'nearest', align?: boolean) =>
      torch.tidy(() => torch.interpolate(x.requiresGrad_(true), size, mode, align).gradFnName);
    assert.match(nodeOf(torch.zeros([1, 2, 3, 3, 3]), [6, 6, 6], 'trilinear', true)!, TRILINEAR);
    for (const [name, node] of [
      ['float64', nodeOf(torch.zeros([1, 2, 3, 3, 3], { dtype: 'float64' }), [6, 6, 6], 'trilinear', true)],
      ['corners not aligned', nodeOf(torch.zeros([1, 2, 3, 3, 3]), [6, 6, 6], 'trilinear', false)],
      ['nearest', nodeOf(torch.zeros([1, 2, 3, 3, 3]), [6, 6, 6], 'nearest')],
      ['bilinear', nodeOf(torch.zeros([1, 2, 3, 3]), [6, 6], 'bilinear', true)],
    ] as const) {
      assert.doesNotMatch(node ?? '', TRILINEAR, name);
    }
  });
});
