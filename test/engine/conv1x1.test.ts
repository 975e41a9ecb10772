// The direct kernels for 1x1x1 convolutions (float32, stride 1, no padding, up to 64 input and 32
// output channels): values and gradients against libtorch in float64 and against the closed forms
// by plain loops, second derivatives, layouts, thread counts, every instruction-set path, routing.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { assertClose, assertCloseToScale, convWithGrads, runWithInstructionSet, seededTensor } from './helpers.ts';
import type { Shape5 } from './reference.ts';

const CONV1X1 = /Conv1x1/;

const convAndGrads = (x: Tensor, w: Tensor, b: Tensor | null, gy: Tensor) => convWithGrads(x, w, b, gy);
const assertRelativelyClose = (actual: ArrayLike<number>, expected: ArrayLike<number>, message: string) =>
  assertCloseToScale(actual, expected, 1e-5, message);

describe('1x1x1 convolutions against libtorch in float64', () => {
  // voxel counts below, at and past whole vectors and tiles of 512 voxels; channel counts that split
  // into uneven register blocks
  const cases: { x: Shape5; out: number; bias: boolean }[] = [
    { x: [1, 3, 5, 7, 9], out: 5, bias: true },
    { x: [3, 4, 2, 2, 2], out: 2, bias: true },
    { x: [3, 1, 1, 1, 1], out: 1, bias: false },
    { x: [2, 7, 8, 9, 10], out: 13, bias: true },
    { x: [1, 16, 4, 8, 16], out: 16, bias: false },
    { x: [2, 40, 3, 5, 7], out: 32, bias: true },
    { x: [1, 64, 2, 3, 11], out: 3, bias: true },
  ];
  for (const c of cases) {
    test(`x [${c.x.join(', ')}] → ${c.out} channels${c.bias ? ', bias' : ''}`, () => {
      const x = seededTensor(c.x, 1);
      const w = seededTensor([c.out, c.x[1], 1, 1, 1], 2);
      const b = c.bias ? seededTensor([c.out], 3) : null;
      const gy = seededTensor([c.x[0], c.out, ...c.x.slice(2)], 4);
      const reference = convAndGrads(x, w, b, gy);
      const direct = convAndGrads(x.float(), w.float(), b?.float() ?? null, gy);
      assert.match(direct.node!, CONV1X1);
      assert.doesNotMatch(reference.node!, CONV1X1);
      assertRelativelyClose(direct.y, reference.y, 'output');
      assertRelativelyClose(direct.gx, reference.gx, 'input gradient');
      assertRelativelyClose(direct.gw, reference.gw, 'weight gradient');
      if (b) assertRelativelyClose(direct.gb!, reference.gb!, 'bias gradient');
    });
  }
});

test('1x1x1 convolution: output and gradients equal their closed forms computed by loops', () => {
  // y[b,o,n] = bias[o] + Σ_c w[o,c]·x[b,c,n]; gx[b,c,n] = Σ_o w[o,c]·gy[b,o,n]; gw[o,c] = Σ_{b,n} gy[b,o,n]·x[b,c,n]
  const [B, C, O, N] = [2, 3, 4, 37];
  const xShape: Shape5 = [B, C, 1, 1, N];
  const x = seededTensor(xShape, 5);
  const w = seededTensor([O, C, 1, 1, 1], 6);
  const bias = seededTensor([O], 7);
  const gy = seededTensor([B, O, 1, 1, N], 8);
  const direct = convAndGrads(x.float(), w.float(), bias.float(), gy);
  assert.match(direct.node!, CONV1X1);
  const [xs, ws, bs, gys] = [x.float().toArray(), w.float().toArray(), bias.float().toArray(), gy.toArray()];
  const y = new Float64Array(B * O * N);
  const gx = new Float64Array(B * C * N);
  const gw = new Float64Array(O * C);
  const gb = new Float64Array(O);
  for (let b = 0; b < B; b++)
    for (let o = 0; o < O; o++)
      for (let n = 0; n < N; n++) {
        const out = (b * O + o) * N + n;
        y[out] = bs[o];
        gb[o] += gys[out];
        for (let c = 0; c < C; c++) {
          const input = (b * C + c) * N + n;
          y[out] += ws[o * C + c] * xs[input];
          gx[input] += ws[o * C + c] * gys[out];
          gw[o * C + c] += gys[out] * xs[input];
        }
      }
  assertClose(direct.y, y, { atol: 1e-5, message: 'output' });
  assertClose(direct.gx, gx, { atol: 1e-5, message: 'input gradient' });
  assertClose(direct.gw, gw, { atol: 1e-5, message: 'weight gradient' });
  assertClose(direct.gb!, gb, { atol: 1e-5, message: 'bias gradient' });
});

describe('1x1x1 convolutions: second derivatives, layouts, threads, instruction sets, routing', () => {
  test('second derivatives through both gradients match float64', () => {
    // ‖∂L/∂x‖² + ‖∂L/∂w‖² differentiated again: every adjoint of the three kernels takes part
    const run = (dtype: 'float32' | 'float64') =>
      torch.tidy(() => {
        const x = seededTensor([2, 3, 4, 3, 5], 9).to(dtype).requiresGrad_(true);
        const w = seededTensor([5, 3, 1, 1, 1], 10).to(dtype).requiresGrad_(true);
        const b = seededTensor([5], 11).to(dtype).requiresGrad_(true);
        const y = torch.conv3d(x, w, b);
        const [gx, gw] = torch.grad([y.pow(3).sum()], [x, w], { createGraph: true });
        gx!.square().sum().add(gw!.square().sum()).backward();
        return { node: y.gradFnName, x: x.grad!.toArray(), w: w.grad!.toArray(), b: b.grad!.toArray() };
      });
    const direct = run('float32');
    const reference = run('float64');
    assert.match(direct.node!, CONV1X1);
    assertRelativelyClose(direct.x, reference.x, 'x');
    assertRelativelyClose(direct.w, reference.w, 'w');
    assertRelativelyClose(direct.b, reference.b, 'b');
  });

  test('non-contiguous inputs give the results of their contiguous copies', () => {
    const x = seededTensor([2, 3, 4, 5, 6], 12).float();
    const w = seededTensor([2, 3, 1, 1, 1], 13).float();
    const gy = seededTensor([2, 2, 4, 5, 6], 14);
    const expected = convAndGrads(x, w, null, gy);
    const transposed = x.transpose(2, 4).contiguous().transpose(2, 4);
    for (const layout of [x.contiguous('channelsLast'), transposed]) {
      assert.equal(layout.isContiguous(), false);
      const got = convAndGrads(layout, w, null, gy);
      assert.match(got.node!, CONV1X1);
      assert.deepEqual(got.y, expected.y);
      assert.deepEqual(got.gx, expected.gx);
      assert.deepEqual(got.gw, expected.gw);
    }
  });

  test('1 and 2 threads give identical outputs and gradients', () => {
    // large enough for both threads to take part in every kernel; a voxel count past whole tiles
    const x = seededTensor([2, 8, 16, 32, 33], 15).float();
    const w = seededTensor([6, 8, 1, 1, 1], 16).float();
    const gy = seededTensor([2, 6, 16, 32, 33], 17);
    const original = torch.getNumThreads();
    try {
      torch.setNumThreads(1);
      const one = convAndGrads(x, w, null, gy);
      torch.setNumThreads(2);
      const two = convAndGrads(x, w, null, gy);
      assert.match(two.node!, CONV1X1);
      assert.deepEqual(two.y, one.y);
      assert.deepEqual(two.gx, one.gx);
      assert.deepEqual(two.gw, one.gw);
    } finally {
      torch.setNumThreads(original);
    }
  });

  test('the AVX2 and portable paths agree with libtorch in float64', () => {
    // SMML_THIN_CONV_ISA selects a narrower instruction set when the process starts; a CPU without
    // AVX2 runs the portable path for both.
    const shape: Shape5 = [2, 5, 3, 4, 19];
    const engine = new URL('../../src/engine/index.ts', import.meta.url).href;
    const child = `
      const { torch } = await import(${JSON.stringify(engine)});
      const x = torch.tensor(JSON.parse(process.env.X), ${JSON.stringify(shape)}).requiresGrad_(true);
      const w = torch.tensor(JSON.parse(process.env.W), [7, 5, 1, 1, 1]).requiresGrad_(true);
      const y = torch.conv3d(x, w, null);
      y.backward(torch.tensor(JSON.parse(process.env.GY), [2, 7, 3, 4, 19]));
      process.stdout.write(JSON.stringify({ node: y.gradFnName, y: y.toArray(), gx: x.grad.toArray(), gw: w.grad.toArray() }));`;
    const x = seededTensor(shape, 18);
    const w = seededTensor([7, 5, 1, 1, 1], 19);
    const gy = seededTensor([2, 7, 3, 4, 19], 20);
    const env = { X: JSON.stringify(x.float().toArray()), W: JSON.stringify(w.float().toArray()), GY: JSON.stringify(gy.toArray()) };
    const reference = convAndGrads(x, w, null, gy);
    for (const isa of ['avx2', 'generic'] as const) {
      const got = runWithInstructionSet<{ node: string; y: number[]; gx: number[]; gw: number[] }>(isa, child, env);
      assert.match(got.node, CONV1X1);
      assertRelativelyClose(got.y, reference.y, `${isa} output`);
      assertRelativelyClose(got.gx, reference.gx, `${isa} input gradient`);
      assertRelativelyClose(got.gw, reference.gw, `${isa} weight gradient`);
    }
  });

  test('only float32 1x1x1 convolutions at stride 1 without padding and with few channels take the route', () => {
    const nodeOf = (x: Tensor, w: Tensor, opts: Parameters<typeof torch.conv3d>[3] = {}) =>
      torch.tidy(() => torch.conv3d(x.requiresGrad_(true), w, null, opts).gradFnName);
    const x = (channels: number, dtype: 'float32' | 'float64' = 'float32') => torch.zeros([1, channels, 4, 4, 4], { dtype });
    const w = (out: number, channels: number, k = 1, dtype: 'float32' | 'float64' = 'float32') => torch.zeros([out, channels, k, k, k], { dtype });
    assert.match(nodeOf(x(4), w(4, 4))!, CONV1X1);
    assert.match(nodeOf(x(64), w(32, 64))!, CONV1X1);
    // a 1x1x1 kernel reads the same voxels at any dilation
    assert.match(nodeOf(x(4), w(8, 4), { dilation: 2 })!, CONV1X1);
    for (const [name, node] of [
      ['65 input channels', nodeOf(x(65), w(4, 65))],
      ['33 output channels', nodeOf(x(4), w(33, 4))],
      ['float64', nodeOf(x(4, 'float64'), w(4, 4, 1, 'float64'))],
      ['stride 2', nodeOf(x(4), w(4, 4), { stride: 2 })],
      ['padding 1', nodeOf(x(4), w(4, 4), { padding: 1 })],
      ['groups', nodeOf(x(4), w(4, 2), { groups: 2 })],
      ['3x3x3 kernel', nodeOf(x(4), w(4, 4, 3), { padding: 1 })],
      ['2D', torch.tidy(() => torch.conv2d(torch.zeros([1, 4, 4, 4]).requiresGrad_(true), torch.zeros([4, 4, 1, 1])).gradFnName)],
    ] as const) {
      assert.doesNotMatch(node ?? '', CONV1X1, name);
    }
  });
});

describe('wide 1x1x1 convolutions on few voxels, as one matrix product', () => {
  /** The closed forms in float64 by einsum: y = W·x + b, gx = Wᵀ·gy, gW = Σ gy·xᵀ, gb = Σ gy. */
  const closedForms = (x: Tensor, w: Tensor, b: Tensor | null, gy: Tensor) =>
    torch.tidy(() => {
      const [batch, cin] = x.shape;
      const cout = w.size(0);
      const [x3, w2, gy3] = [x.reshape([batch, cin, -1]).double(), w.reshape([cout, cin]).double(), gy.reshape([batch, cout, -1]).double()];
      let y = torch.einsum('ts,bsn->btn', w2, x3);
      if (b) y = y.add(b.double().reshape([1, cout, 1]));
      return {
        y: y.toArray(),
        gx: torch.einsum('ts,btn->bsn', w2, gy3).toArray(),
        gw: torch.einsum('btn,bsn->ts', gy3, x3).toArray(),
        gb: gy3.sum([0, 2]).toArray(),
      };
    });
  const cases: { x: Shape5; out: number; bias: boolean }[] = [
    { x: [2, 256, 2, 2, 2], out: 40, bias: true },
    { x: [1, 128, 2, 2, 2], out: 70, bias: false },
    { x: [3, 96, 1, 2, 3], out: 33, bias: true },
    { x: [2, 1024, 2, 2, 4], out: 24, bias: true },
  ];
  for (const dtype of ['float32', 'float64'] as const) {
    for (const c of cases) {
      test(`${dtype} x [${c.x.join(', ')}] → ${c.out} channels${c.bias ? ', bias' : ''}`, () => {
        const x = seededTensor(c.x, 1).to(dtype);
        const w = seededTensor([c.out, c.x[1], 1, 1, 1], 2).to(dtype);
        const b = c.bias ? seededTensor([c.out], 3).to(dtype) : null;
        const gy = seededTensor([c.x[0], c.out, ...c.x.slice(2)], 4).to(dtype);
        const got = convAndGrads(x, w, b, gy);
        const expected = closedForms(x, w, b, gy);
        assert.match(got.node!, /ViewBackward/);
        const tolerance = dtype === 'float32' ? 1e-5 : 1e-12;
        assertCloseToScale(got.y, expected.y, tolerance, 'output');
        assertCloseToScale(got.gx, expected.gx, tolerance, 'input gradient');
        assertCloseToScale(got.gw, expected.gw, tolerance, 'weight gradient');
        if (b) assertCloseToScale(got.gb!, expected.gb, tolerance, 'bias gradient');
      });
    }
  }

  test('from 16 voxels per sample for every 256 input channels on, libtorch keeps the convolution', () => {
    const nodeOf = (shape: Shape5, out: number) =>
      torch.tidy(() => torch.conv3d(torch.zeros(shape).requiresGrad_(true), torch.zeros([out, shape[1], 1, 1, 1]), null).gradFnName ?? '');
    assert.match(nodeOf([2, 128, 2, 2, 2], 512), /ViewBackward/);
    assert.match(nodeOf([2, 2048, 4, 4, 4], 512), /ViewBackward/);
    assert.doesNotMatch(nodeOf([2, 512, 4, 4, 4], 128), /ViewBackward/);
    assert.doesNotMatch(nodeOf([2, 127, 2, 2, 2], 512), /ViewBackward/);
    assert.doesNotMatch(nodeOf([2, 2048, 8, 8, 8], 512), /ViewBackward/);
  });
});
