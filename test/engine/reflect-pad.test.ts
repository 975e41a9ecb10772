// Reflect padding of 5-D tensors by whole rows (native reflect_pad.cc): values against an index-by-index
// reference, the gradient as the reference's adjoint, second derivatives by finite differences, and the
// same bits at any thread count.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { assertClose, checkGradients, seededTensor } from './helpers.ts';

type Pads = [number, number, number, number, number, number]; // W before/after, H, D, as torch.pad takes them

const ROUTE = /ReflectPad/;
const reflect = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);

/** For every element of the padded tensor (row-major), the flat index of the input element it copies. */
function sourceIndices(shape: number[], pads: Pads): { padded: number[]; source: number[] } {
  const [B, C, D, H, W] = shape;
  const padded = [B, C, D + pads[4] + pads[5], H + pads[2] + pads[3], W + pads[0] + pads[1]];
  const source: number[] = [];
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let d = 0; d < padded[2]; d++)
        for (let h = 0; h < padded[3]; h++)
          for (let w = 0; w < padded[4]; w++) {
            const [sd, sh, sw] = [reflect(d - pads[4], D), reflect(h - pads[2], H), reflect(w - pads[0], W)];
            source.push((((b * C + c) * D + sd) * H + sh) * W + sw);
          }
  return { padded, source };
}

const CASES: { shape: number[]; pads: Pads }[] = [
  { shape: [2, 3, 4, 5, 6], pads: [1, 1, 1, 1, 1, 1] },
  // uneven and zero pads, each up to its axis's size − 1
  { shape: [1, 2, 3, 4, 7], pads: [6, 2, 0, 3, 2, 1] },
  { shape: [3, 1, 2, 2, 2], pads: [1, 0, 0, 1, 1, 1] },
];

describe('reflect padding of 5-D tensors', () => {
  for (const { shape, pads } of CASES) {
    test(`[${shape.join(', ')}] padded [${pads.join(', ')}]: values and gradient against the index map`, () => {
      const { padded, source } = sourceIndices(shape, pads);
      const x = seededTensor(shape, 1).requiresGrad_(true);
      const y = torch.pad(x, pads, 'reflect');
      assert.match(y.gradFnName!, ROUTE);
      assert.deepEqual(y.shape, padded);
      const input = x.toArray();
      assert.deepEqual(y.toArray(), source.map((s) => input[s]));
      // the gradient adds every padded element's incoming gradient onto the element it copies
      const g = seededTensor(padded, 2);
      y.backward(g);
      const expected = new Array<number>(input.length).fill(0);
      g.toArray().forEach((value, i) => (expected[source[i]] += value));
      assertClose(x.grad!, expected, { atol: 1e-14, rtol: 0 });
    });
  }

  test('float32 and bfloat16 are copied exactly', () => {
    const { shape, pads } = CASES[1];
    const { source } = sourceIndices(shape, pads);
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const x = seededTensor(shape, 3).to(dtype);
      const y = torch.pad(x, pads, 'reflect');
      assert.equal(y.dtype, dtype);
      const input = x.toArray();
      assert.deepEqual(y.toArray(), source.map((s) => input[s]), dtype);
    }
  });

  test('first derivatives match finite differences; the gradient map differentiates back to the padding', () => {
    const shape = [1, 2, 2, 3, 4];
    const pads: Pads = [2, 1, 1, 0, 0, 1];
    checkGradients((x) => torch.pad(x, pads, 'reflect').square(), [seededTensor(shape, 4)]);
    // gx = fold(g) is linear in g, so the gradient of Σ fold(g)·v in g is pad(v)
    const { padded, source } = sourceIndices(shape, pads);
    const x = seededTensor(shape, 5).requiresGrad_(true);
    const g = seededTensor(padded, 6).requiresGrad_(true);
    const [gx] = torch.grad([torch.pad(x, pads, 'reflect').mul(g).sum()], [x], { createGraph: true });
    const v = seededTensor(shape, 7);
    const [gg] = torch.grad([gx!.mul(v).sum()], [g]);
    const values = v.toArray();
    assert.deepEqual(gg!.toArray(), source.map((s) => values[s]));
  });

  test('the same bits on one thread and on two', () => {
    const shape = [2, 8, 20, 24, 24];
    const pads: Pads = [1, 1, 1, 1, 1, 1];
    const x = torch.randn(shape);
    const g = torch.randn([2, 8, 22, 26, 26]);
    const run = (threads: number): Tensor[] => {
      const before = torch.getNumThreads();
      torch.setNumThreads(threads);
      try {
        const leaf = x.detach().requiresGrad_(true);
        const y = torch.pad(leaf, pads, 'reflect');
        y.backward(g);
        return [y.detach(), leaf.grad!];
      } finally {
        torch.setNumThreads(before);
      }
    };
    const [one, two] = [run(1), run(2)];
    assert.ok(one[0].equal(two[0]), 'values');
    assert.ok(one[1].equal(two[1]), 'gradients');
  });
});
