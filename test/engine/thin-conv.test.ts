// The direct kernels for thin 3x3x3 convolutions (float32, stride 1, padding 1, zero or reflect
// padding, few channels): values and gradients against libtorch in float64 and against plain loops,
// second derivatives, layouts, thread counts and every instruction-set path.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { assertClose, assertCloseToScale, convWithGrads, runWithInstructionSet, seededTensor } from './helpers.ts';
import { conv3dLoop, reflectPad3d, type Shape5, type Triple } from './reference.ts';

type Mode = 'zeros' | 'reflect';
const THIN = /ThinConvolution/;

const convAndGrads = (x: Tensor, w: Tensor, b: Tensor | null, mode: Mode, gy: Tensor) => convWithGrads(x, w, b, gy, { padding: 1, paddingMode: mode });
const assertRelativelyClose = (actual: ArrayLike<number>, expected: ArrayLike<number>, message: string) =>
  assertCloseToScale(actual, expected, 1e-4, message);

describe('thin convolutions against libtorch in float64', () => {
  const cases: { x: Shape5; out: number; bias: boolean; modes: Mode[] }[] = [
    { x: [1, 3, 5, 7, 9], out: 5, bias: true, modes: ['zeros', 'reflect'] },
    { x: [3, 4, 2, 2, 2], out: 2, bias: true, modes: ['zeros', 'reflect'] },
    // a 1-voxel axis, legal with zero padding only
    { x: [2, 2, 1, 3, 17], out: 3, bias: false, modes: ['zeros'] },
    // W past a whole number of vectors; 16 channels (16 and 16 are routed with reflect padding)
    { x: [1, 16, 3, 4, 33], out: 8, bias: true, modes: ['zeros', 'reflect'] },
    { x: [1, 16, 2, 3, 33], out: 16, bias: true, modes: ['reflect'] },
    // rows of one AVX-512 vector, computed two at a time: an odd row count leaves one, zero padding
    // leaves the border rows single and the reflect-padded input gradient the rows it folds onto
    { x: [2, 16, 3, 5, 16], out: 8, bias: true, modes: ['zeros', 'reflect'] },
    { x: [1, 16, 2, 7, 16], out: 16, bias: false, modes: ['reflect'] },
    { x: [2, 3, 2, 6, 12], out: 5, bias: true, modes: ['zeros', 'reflect'] },
    // more than 16 input channels on a 32×32 plane
    { x: [1, 20, 2, 32, 32], out: 8, bias: true, modes: ['zeros', 'reflect'] },
    // output channels split into uneven register blocks
    { x: [2, 7, 4, 6, 20], out: 13, bias: true, modes: ['zeros', 'reflect'] },
    { x: [1, 1, 3, 3, 3], out: 1, bias: false, modes: ['zeros', 'reflect'] },
  ];
  for (const c of cases)
    for (const mode of c.modes) {
      test(`x [${c.x.join(', ')}] → ${c.out} channels, ${mode} padding${c.bias ? ', bias' : ''}`, () => {
        const x = seededTensor(c.x, 1);
        const w = seededTensor([c.out, c.x[1], 3, 3, 3], 2);
        const b = c.bias ? seededTensor([c.out], 3) : null;
        const gy = seededTensor([c.x[0], c.out, ...c.x.slice(2)], 4);
        const reference = convAndGrads(x, w, b, mode, gy);
        const thin = convAndGrads(x.float(), w.float(), b?.float() ?? null, mode, gy);
        assert.match(thin.node!, THIN);
        assert.doesNotMatch(reference.node!, THIN);
        assertRelativelyClose(thin.y, reference.y, 'output');
        assertRelativelyClose(thin.gx, reference.gx, 'input gradient');
        assertRelativelyClose(thin.gw, reference.gw, 'weight gradient');
        if (b) assertRelativelyClose(thin.gb!, reference.gb!, 'bias gradient');
      });
    }
});

describe('thin convolutions against plain loops', () => {
  // conv(x, w) in float64 by loops, over the explicitly padded input for reflect padding
  const loopConv = (x: ArrayLike<number>, xShape: Shape5, w: ArrayLike<number>, wShape: Shape5, mode: Mode) => {
    const [b, c, d, h, wd] = xShape;
    const opts = { stride: [1, 1, 1] as Triple, dilation: [1, 1, 1] as Triple, groups: 1 };
    if (mode === 'zeros') return conv3dLoop(x, xShape, w, wShape, null, { ...opts, padding: [1, 1, 1] }).data;
    return conv3dLoop(reflectPad3d(x, xShape, [1, 1, 1]).data, [b, c, d + 2, h + 2, wd + 2], w, wShape, null, { ...opts, padding: [0, 0, 0] }).data;
  };

  for (const mode of ['zeros', 'reflect'] as const) {
    test(`${mode} padding: the float32 gradients equal central finite differences of the float64 loops`, () => {
      const xShape: Shape5 = [1, 2, 3, 2, 4];
      const wShape: Shape5 = [2, 2, 3, 3, 3];
      const x = seededTensor(xShape, 5);
      const w = seededTensor(wShape, 6);
      const gy = seededTensor([1, 2, 3, 2, 4], 7);
      const thin = convAndGrads(x.float(), w.float(), null, mode, gy);
      assert.match(thin.node!, THIN);
      const [xs, ws, gys] = [x.toArray(), w.toArray(), gy.toArray()];
      // Σ gy ⊙ conv(x, w), shifted one input element at a time
      const objective = (xv: number[], wv: number[]) => loopConv(xv, xShape, wv, wShape, mode).reduce((sum, v, i) => sum + v * gys[i], 0);
      const eps = 1e-6;
      const numeric = (values: number[], f: (v: number[]) => number) =>
        values.map((_, i) => {
          const up = values.slice();
          const down = values.slice();
          up[i] += eps;
          down[i] -= eps;
          return (f(up) - f(down)) / (2 * eps);
        });
      assertClose(thin.y, loopConv(xs, xShape, ws, wShape, mode), { atol: 1e-5, rtol: 1e-5, message: 'output' });
      assertClose(thin.gx, numeric(xs, (v) => objective(v, ws)), { atol: 1e-5, rtol: 1e-5, message: 'input gradient' });
      assertClose(thin.gw, numeric(ws, (v) => objective(xs, v)), { atol: 1e-5, rtol: 1e-5, message: 'weight gradient' });
    });
  }
});

describe('thin convolutions: second derivatives, layouts, threads, instruction sets, routing', () => {
  for (const mode of ['zeros', 'reflect'] as const) {
    test(`${mode} padding: second derivatives through both gradients match float64`, () => {
      // ‖∂L/∂x‖² + ‖∂L/∂w‖² differentiated again: every adjoint of the three kernels takes part
      const run = (dtype: 'float32' | 'float64') =>
        torch.tidy(() => {
          const x = seededTensor([2, 3, 4, 3, 5], 8).to(dtype).requiresGrad_(true);
          const w = seededTensor([4, 3, 3, 3, 3], 9).to(dtype).requiresGrad_(true);
          const b = seededTensor([4], 10).to(dtype).requiresGrad_(true);
          const y = torch.conv3d(x, w, b, { padding: 1, paddingMode: mode });
          const [gx, gw] = torch.grad([y.square().sum()], [x, w], { createGraph: true });
          gx!.square().sum().add(gw!.square().sum()).backward();
          return { node: y.gradFnName, x: x.grad!.toArray(), w: w.grad!.toArray(), b: b.grad!.toArray() };
        });
      const thin = run('float32');
      const reference = run('float64');
      assert.match(thin.node!, THIN);
      assertRelativelyClose(thin.x, reference.x, 'x');
      assertRelativelyClose(thin.w, reference.w, 'w');
      assertRelativelyClose(thin.b, reference.b, 'b');
    });
  }

  test('non-contiguous inputs give the results of their contiguous copies', () => {
    const x = seededTensor([2, 3, 4, 5, 6], 11).float();
    const w = seededTensor([2, 3, 3, 3, 3], 12).float();
    const gy = seededTensor([2, 2, 4, 5, 6], 13);
    const expected = convAndGrads(x, w, null, 'reflect', gy);
    const transposed = x.transpose(2, 4).contiguous().transpose(2, 4);
    for (const layout of [x.contiguous('channelsLast'), transposed]) {
      assert.equal(layout.isContiguous(), false);
      const got = convAndGrads(layout, w, null, 'reflect', gy);
      assert.match(got.node!, THIN);
      assert.deepEqual(got.y, expected.y);
      assert.deepEqual(got.gx, expected.gx);
      assert.deepEqual(got.gw, expected.gw);
    }
  });

  test('1 and 2 threads give identical outputs and gradients', () => {
    // large enough for both threads to take part in every kernel
    const x = seededTensor([2, 8, 16, 16, 16], 14).float();
    const w = seededTensor([8, 8, 3, 3, 3], 15).float();
    const gy = seededTensor([2, 8, 16, 16, 16], 16);
    const original = torch.getNumThreads();
    try {
      torch.setNumThreads(1);
      const one = convAndGrads(x, w, null, 'reflect', gy);
      torch.setNumThreads(2);
      const two = convAndGrads(x, w, null, 'reflect', gy);
      assert.match(two.node!, THIN);
      assert.deepEqual(two.y, one.y);
      assert.deepEqual(two.gx, one.gx);
      assert.deepEqual(two.gw, one.gw);
    } finally {
      torch.setNumThreads(original);
    }
  });

  // SMML_THIN_CONV_ISA selects a narrower instruction set when the process starts; a CPU without AVX2 runs
  // the portable path for both. Rows of 19 take two vectors of either width; rows of 7 one AVX2 vector,
  // computed two rows at a time, and two portable ones.
  for (const shape of [[2, 5, 3, 4, 19], [2, 5, 3, 5, 7]] as Shape5[]) {
    test(`the AVX2 and portable paths agree with libtorch in float64, x [${shape.join(', ')}]`, () => {
      const outShape = [shape[0], 3, ...shape.slice(2)];
      const engine = new URL('../../src/engine/index.ts', import.meta.url).href;
      const child = `
        const { torch } = await import(${JSON.stringify(engine)});
        const results = {};
        for (const mode of ['zeros', 'reflect']) {
          const x = torch.tensor(JSON.parse(process.env.X), ${JSON.stringify(shape)}).requiresGrad_(true);
          const w = torch.tensor(JSON.parse(process.env.W), [3, 5, 3, 3, 3]).requiresGrad_(true);
          const y = torch.conv3d(x, w, null, { padding: 1, paddingMode: mode });
          y.backward(torch.tensor(JSON.parse(process.env.GY), ${JSON.stringify(outShape)}));
          results[mode] = { node: y.gradFnName, y: y.toArray(), gx: x.grad.toArray(), gw: w.grad.toArray() };
        }
        process.stdout.write(JSON.stringify(results));`;
      const x = seededTensor(shape, 17);
      const w = seededTensor([3, 5, 3, 3, 3], 18);
      const gy = seededTensor(outShape, 19);
      const env = { X: JSON.stringify(x.float().toArray()), W: JSON.stringify(w.float().toArray()), GY: JSON.stringify(gy.toArray()) };
      for (const isa of ['avx2', 'generic'] as const) {
        const results = runWithInstructionSet<Record<Mode, { node: string; y: number[]; gx: number[]; gw: number[] }>>(isa, child, env);
        for (const mode of ['zeros', 'reflect'] as const) {
          const got = results[mode];
          const reference = convAndGrads(x, w, null, mode, gy);
          assert.match(got.node, THIN);
          assertRelativelyClose(got.y, reference.y, `${isa} ${mode} output`);
          assertRelativelyClose(got.gx, reference.gx, `${isa} ${mode} input gradient`);
          assertRelativelyClose(got.gw, reference.gw, `${isa} ${mode} weight gradient`);
        }
      }
    });
  }

  test('32 input channels on rows of 16 take the route when no gradient is needed', () => {
    // No gradient, no node to name the route: autocast shows it, keeping the direct kernels' float32 where
    // oneDNN's convolution would run in bfloat16.
    const x = seededTensor([2, 32, 3, 4, 16], 20);
    const w = seededTensor([16, 32, 3, 3, 3], 21);
    const options = { padding: 1, paddingMode: 'reflect' } as const;
    const inference = torch.noGrad(() => torch.autocast('bfloat16', () => torch.conv3d(x.float(), w.float(), null, options)));
    assert.equal(inference.dtype, 'float32');
    assertRelativelyClose(inference.toArray(), torch.conv3d(x, w, null, options).toArray(), 'output');
    const training = torch.autocast('bfloat16', () => torch.conv3d(x.float().requiresGrad_(true), w.float(), null, options));
    assert.equal(training.dtype, 'bfloat16');
    assert.doesNotMatch(training.gradFnName!, THIN);
  });

  test('only float32 3x3x3 convolutions at stride 1 with padding 1 and few channels take the route', () => {
    const nodeOf = (x: Tensor, w: Tensor, opts: Parameters<typeof torch.conv3d>[3]) =>
      torch.tidy(() => torch.conv3d(x.requiresGrad_(true), w, null, opts).gradFnName);
    const x = (channels: number, dtype: 'float32' | 'float64' = 'float32') => torch.zeros([1, channels, 4, 4, 4], { dtype });
    const w = (out: number, channels: number, k = 3, dtype: 'float32' | 'float64' = 'float32') => torch.zeros([out, channels, k, k, k], { dtype });
    assert.match(nodeOf(x(16), w(8, 16), { padding: 1 })!, THIN);
    assert.match(nodeOf(x(2), w(3, 2), { padding: 1, paddingMode: 'reflect' })!, THIN);
    // 16 channels in and out: only where the padded copy is saved or the planes are large
    assert.match(nodeOf(x(16), w(16, 16), { padding: 1, paddingMode: 'reflect' })!, THIN);
    assert.match(nodeOf(torch.zeros([1, 16, 2, 32, 32]), w(16, 16), { padding: 1 })!, THIN);
    // up to 32 input channels on planes of 32×32 or more
    assert.match(nodeOf(torch.zeros([1, 32, 2, 32, 32]), w(16, 32), { padding: 1, paddingMode: 'reflect' })!, THIN);
    for (const [name, node] of [
      ['16 channels in and out, zero padding, a small plane', nodeOf(x(16), w(16, 16), { padding: 1 })],
      ['17 input channels, a small plane', nodeOf(x(17), w(4, 17), { padding: 1, paddingMode: 'reflect' })],
      ['33 input channels', nodeOf(torch.zeros([1, 33, 2, 32, 32]), w(4, 33), { padding: 1 })],
      ['17 output channels, 32 input channels', nodeOf(torch.zeros([1, 32, 2, 32, 32]), w(17, 32), { padding: 1 })],
      ['17 output channels', nodeOf(x(4), w(17, 4), { padding: 1 })],
      ['float64', nodeOf(x(4, 'float64'), w(4, 4, 3, 'float64'), { padding: 1 })],
      ['stride 2', nodeOf(x(4), w(4, 4), { padding: 1, stride: 2 })],
      ['padding 0', nodeOf(x(4), w(4, 4), {})],
      ['dilation 2', nodeOf(x(4), w(4, 4), { padding: 1, dilation: 2 })],
      ['groups', nodeOf(x(4), w(4, 2), { padding: 1, groups: 2 })],
      ['1x1x1 kernel', nodeOf(x(4), w(4, 4, 1), {})],
      ['replicate padding', nodeOf(x(4), w(4, 4), { padding: 1, paddingMode: 'replicate' })],
    ] as const) {
      assert.doesNotMatch(node ?? '', THIN, name);
    }
  });

  test('zero padding takes a 1-voxel axis; reflect padding there fails as libtorch does', () => {
    const x = seededTensor([1, 2, 1, 3, 3], 20).float();
    const w = seededTensor([2, 2, 3, 3, 3], 21).float();
    assert.deepEqual(torch.conv3d(x, w, null, { padding: 1 }).shape, [1, 2, 1, 3, 3]);
    assert.throws(() => torch.conv3d(x, w, null, { padding: 1, paddingMode: 'reflect' }), /^Error: convolution: .*[Pp]adding size should be less than/);
  });
});
