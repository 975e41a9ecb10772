// Neural-network functions against plain-loop references and hand-computed values.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { assertClose, seededTensor } from './helpers.ts';
import { conv3dLoop, convTranspose3dLoop, erfSeries, reflectPad3d, trilinearAlignedLoop, type Shape5, type Triple } from './reference.ts';

const f64 = (data: number[], shape?: number[]) => torch.tensor(data, shape, { dtype: 'float64' });

describe('conv3d', () => {
  const cases: { name: string; inShape: Shape5; wShape: Shape5; stride: Triple; padding: Triple; dilation: Triple; groups: number; bias: boolean }[] = [
    { name: 'plain 3x3x3', inShape: [2, 2, 4, 5, 3], wShape: [3, 2, 3, 3, 3], stride: [1, 1, 1], padding: [1, 1, 1], dilation: [1, 1, 1], groups: 1, bias: true },
    { name: 'stride and uneven padding', inShape: [1, 2, 5, 4, 6], wShape: [2, 2, 3, 2, 3], stride: [2, 1, 3], padding: [1, 0, 2], dilation: [1, 1, 1], groups: 1, bias: false },
    { name: 'dilation', inShape: [1, 1, 6, 5, 5], wShape: [2, 1, 2, 3, 2], stride: [1, 2, 1], padding: [0, 2, 1], dilation: [2, 2, 3], groups: 1, bias: true },
    { name: 'groups', inShape: [2, 4, 3, 4, 3], wShape: [6, 2, 1, 3, 2], stride: [1, 1, 1], padding: [0, 1, 1], dilation: [1, 1, 1], groups: 2, bias: true },
    { name: 'depthwise', inShape: [1, 3, 3, 3, 3], wShape: [3, 1, 3, 3, 3], stride: [1, 1, 1], padding: [1, 1, 1], dilation: [1, 1, 1], groups: 3, bias: false },
  ];
  for (const c of cases) {
    for (const dtype of ['float64', 'float32'] as const) {
      test(`${c.name} (${dtype}${dtype === 'float32' && c.inShape[0] === 1 ? ', batch-1 oneDNN route' : ''}) matches the loop`, () => {
        const x = seededTensor(c.inShape, 11).to(dtype);
        const w = seededTensor(c.wShape, 12).to(dtype);
        const b = c.bias ? seededTensor([c.wShape[0]], 13).to(dtype) : null;
        const y = torch.conv3d(x, w, b, { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups });
        const ref = conv3dLoop(x.toArray(), c.inShape, w.toArray(), c.wShape, b?.toArray() ?? null, c);
        assert.deepEqual(y.shape, ref.shape);
        assertClose(y, ref.data, dtype === 'float64' ? { atol: 1e-12 } : { atol: 1e-5, rtol: 1e-5 });
      });
    }
  }

  test('reflect padding mirrors the input before a valid convolution', () => {
    const inShape: Shape5 = [1, 2, 3, 4, 3];
    const wShape: Shape5 = [2, 2, 3, 3, 3];
    const x = seededTensor(inShape, 21);
    const w = seededTensor(wShape, 22);
    const b = seededTensor([2], 23);
    const padding: Triple = [1, 2, 1];
    const y = torch.conv3d(x, w, b, { padding, paddingMode: 'reflect' });
    const padded = reflectPad3d(x.toArray(), inShape, padding);
    const ref = conv3dLoop(padded.data, padded.shape, w.toArray(), wShape, b.toArray(), { stride: [1, 1, 1], padding: [0, 0, 0], dilation: [1, 1, 1], groups: 1 });
    assert.deepEqual(y.shape, [1, 2, 3, 6, 3]);
    assertClose(y, ref.data, { atol: 1e-12 });
    // the float32 batch-1 route with reflect padding and a stride
    const y32 = torch.conv3d(x.float(), w.float(), b.float(), { padding, paddingMode: 'reflect', stride: 2 });
    const ref2 = conv3dLoop(padded.data, padded.shape, w.toArray(), wShape, b.toArray(), { stride: [2, 2, 2], padding: [0, 0, 0], dilation: [1, 1, 1], groups: 1 });
    assertClose(y32, ref2.data, { atol: 1e-5 });
  });

  test('conv2d on a hand example', () => {
    const x = f64([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 3, 3]);
    const w = f64([1, 0, 0, -1], [1, 1, 2, 2]);
    assert.deepEqual(torch.conv2d(x, w).toArray(), [-4, -4, -4, -4]);
  });
});

describe('convTranspose3d', () => {
  const cases: { name: string; inShape: Shape5; wShape: Shape5; stride: Triple; padding: Triple; outputPadding: Triple; dilation: Triple; groups: number }[] = [
    { name: 'stride 2 upsampling', inShape: [2, 2, 2, 3, 2], wShape: [2, 3, 2, 2, 2], stride: [2, 2, 2], padding: [0, 0, 0], outputPadding: [0, 0, 0], dilation: [1, 1, 1], groups: 1 },
    { name: 'padding, output padding, dilation', inShape: [1, 2, 3, 2, 3], wShape: [2, 2, 3, 2, 3], stride: [2, 3, 2], padding: [1, 0, 1], outputPadding: [1, 2, 0], dilation: [1, 2, 1], groups: 1 },
    { name: 'groups', inShape: [1, 4, 2, 2, 3], wShape: [4, 1, 2, 3, 1], stride: [1, 2, 1], padding: [0, 1, 0], outputPadding: [0, 0, 0], dilation: [1, 1, 1], groups: 2 },
  ];
  for (const c of cases) {
    test(`${c.name} matches the scatter loop`, () => {
      const x = seededTensor(c.inShape, 31);
      const w = seededTensor(c.wShape, 32);
      const b = seededTensor([c.wShape[1] * c.groups], 33);
      const y = torch.convTranspose3d(x, w, b, c);
      const ref = convTranspose3dLoop(x.toArray(), c.inShape, w.toArray(), c.wShape, b.toArray(), c);
      assert.deepEqual(y.shape, ref.shape);
      assertClose(y, ref.data, { atol: 1e-12 });
      const y32 = torch.convTranspose3d(x.float(), w.float(), b.float(), c);
      assertClose(y32, ref.data, { atol: 1e-5 });
    });
  }
});

describe('normalisation', () => {
  // Per-group statistics by hand: mean and biased variance over `size` consecutive values.
  function normaliseGroups(values: number[], size: number, eps: number): number[] {
    const out: number[] = [];
    for (let start = 0; start < values.length; start += size) {
      const group = values.slice(start, start + size);
      const mean = group.reduce((a, b) => a + b, 0) / size;
      const variance = group.reduce((a, b) => a + (b - mean) ** 2, 0) / size;
      out.push(...group.map((v) => (v - mean) / Math.sqrt(variance + eps)));
    }
    return out;
  }

  test('instanceNorm normalises each (sample, channel) and applies the affine per channel', () => {
    const x = seededTensor([2, 3, 2, 2, 3], 41, { low: -2, high: 5 });
    const weight = f64([1, 2, -1]);
    const bias = f64([0, 0.5, 1]);
    const normalised = normaliseGroups(x.toArray(), 12, 1e-5);
    assertClose(torch.instanceNorm(x), normalised, { atol: 1e-12 });
    const affine = normalised.map((v, i) => v * [1, 2, -1][Math.floor(i / 12) % 3] + [0, 0.5, 1][Math.floor(i / 12) % 3]);
    assertClose(torch.instanceNorm(x, { weight, bias }), affine, { atol: 1e-12 });
    assertClose(torch.instanceNorm(x, { eps: 0.5 }), normaliseGroups(x.toArray(), 12, 0.5), { atol: 1e-12 });
  });

  test('instanceNorm with running statistics updates them in training and uses them in eval', () => {
    const x = f64([1, 3, 5, 7, 0, 0, 2, 2], [2, 1, 2, 2, 1]); // sample means 4 and 1; unbiased variances 20/3 and 4/3
    const runningMean = f64([1]);
    const runningVar = f64([1]);
    torch.instanceNorm(x, { runningMean, runningVar, momentum: 0.5 });
    // the running statistics take the batch average of the per-instance statistics
    assertClose(runningMean, [0.5 * 1 + 0.5 * 2.5], { atol: 1e-12 });
    assertClose(runningVar, [0.5 * 1 + 0.5 * 4], { atol: 1e-12 });
    const evalOut = torch.instanceNorm(x, { runningMean, runningVar, useInputStats: false, eps: 0 });
    assertClose(evalOut, x.toArray().map((v) => (v - 1.75) / Math.sqrt(2.5)), { atol: 1e-12 });
  });

  test('batchNorm in training uses batch statistics and moves the running ones by momentum', () => {
    // channel 0 values {1, 2, 3, 6}: mean 3, biased var 3.5, unbiased 14/3; channel 1 values {0, 0, 4, 4}: mean 2, var 4, unbiased 16/3
    const x = f64([1, 2, 0, 0, 3, 6, 4, 4], [2, 2, 2]);
    const runningMean = f64([0, 1]);
    const runningVar = f64([1, 1]);
    const weight = f64([2, 1]);
    const bias = f64([0, -1]);
    const y = torch.batchNorm(x, { weight, bias, runningMean, runningVar, training: true, momentum: 0.1, eps: 0 });
    const c0 = (v: number) => (2 * (v - 3)) / Math.sqrt(3.5);
    const c1 = (v: number) => (v - 2) / 2 - 1;
    assertClose(y, [c0(1), c0(2), c1(0), c1(0), c0(3), c0(6), c1(4), c1(4)], { atol: 1e-12 });
    assertClose(runningMean, [0.9 * 0 + 0.1 * 3, 0.9 * 1 + 0.1 * 2], { atol: 1e-12 });
    assertClose(runningVar, [0.9 + 0.1 * (14 / 3), 0.9 + 0.1 * (16 / 3)], { atol: 1e-12 });
    const before = runningMean.toArray();
    const evalOut = torch.batchNorm(x, { runningMean, runningVar, training: false, eps: 1e-5 });
    assert.deepEqual(runningMean.toArray(), before);
    const rm = runningMean.toArray();
    const rv = runningVar.toArray();
    const expected = x.toArray().map((v, i) => {
      const c = Math.floor(i / 2) % 2;
      return (v - rm[c]) / Math.sqrt(rv[c] + 1e-5);
    });
    assertClose(evalOut, expected, { atol: 1e-12 });
  });

  test('layerNorm normalises over the trailing dimensions with an elementwise affine', () => {
    const x = seededTensor([2, 3, 4], 51, { low: -3, high: 3 });
    const weight = seededTensor([3, 4], 52);
    const bias = seededTensor([3, 4], 53);
    const normalised = normaliseGroups(x.toArray(), 12, 1e-5);
    const w = weight.toArray();
    const b = bias.toArray();
    assertClose(torch.layerNorm(x, [3, 4], weight, bias), normalised.map((v, i) => v * w[i % 12] + b[i % 12]), { atol: 1e-12 });
    assertClose(torch.layerNorm(x, [4]), normaliseGroups(x.toArray(), 4, 1e-5), { atol: 1e-12 });
  });

  test('groupNorm normalises groups of channels', () => {
    const x = seededTensor([2, 4, 3], 54);
    assertClose(torch.groupNorm(x, 2), normaliseGroups(x.toArray(), 6, 1e-5), { atol: 1e-12 });
  });
});

describe('activations', () => {
  test('softmax and logSoftmax along a dimension', () => {
    const x = f64([1, 2, 3, 0, 0, Math.log(2)], [2, 3]);
    const e = [1, 2, 3].map(Math.exp);
    const z = e.reduce((a, b) => a + b, 0);
    assertClose(torch.softmax(x, 1), [...e.map((v) => v / z), 0.25, 0.25, 0.5], { atol: 1e-15 });
    assertClose(torch.logSoftmax(x, -1), [...[1, 2, 3].map((v) => v - Math.log(z)), Math.log(0.25), Math.log(0.25), Math.log(0.5)], { atol: 1e-14 });
    assertClose(x.softmax(0), [1 / (1 + Math.exp(-1)), 1 / (1 + Math.exp(-2)), Math.exp(3) / (Math.exp(3) + 2), 1 / (1 + Math.E), 1 / (1 + Math.exp(2)), 2 / (2 + Math.exp(3))], { atol: 1e-15 });
    // large logits do not overflow
    assertClose(torch.softmax(torch.tensor([1000, 1000]), 0), [0.5, 0.5]);
  });

  test('relu, leakyRelu, sigmoid', () => {
    const x = f64([-2, -0.5, 0, 1.5]);
    assert.deepEqual(torch.relu(x).toArray(), [0, 0, 0, 1.5]);
    assertClose(torch.leakyRelu(x), [-0.02, -0.005, 0, 1.5], { atol: 1e-15 });
    assertClose(torch.leakyRelu(x, 0.2), [-0.4, -0.1, 0, 1.5], { atol: 1e-15 });
    assertClose(torch.sigmoid(x), [-2, -0.5, 0, 1.5].map((v) => 1 / (1 + Math.exp(-v))), { atol: 1e-15 });
  });

  test('gelu: exact x·Φ(x) through erf, and the tanh approximation', () => {
    const points = [-3, -1, -0.5, 0, 0.5, 1, 2, 3];
    const x = f64(points);
    assertClose(torch.gelu(x), points.map((v) => 0.5 * v * (1 + erfSeries(v / Math.SQRT2))), { atol: 1e-13 });
    // Φ(1) = 0.841344746068543 from tables
    assertClose(torch.gelu(f64([1])), [0.841344746068543], { atol: 1e-13 });
    const tanhForm = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    assertClose(torch.gelu(x, 'tanh'), points.map(tanhForm), { atol: 1e-13 });
  });

  test('dropout zeroes a fraction p, scales the rest by 1/(1 − p), and is the identity in eval', () => {
    torch.manualSeed(3);
    const x = torch.ones([20000], { dtype: 'float64' });
    const y = torch.dropout(x, 0.25, true).toArray();
    const zeros = y.filter((v) => v === 0).length;
    assert.ok(y.every((v) => v === 0 || Math.abs(v - 1 / 0.75) < 1e-12));
    assert.ok(Math.abs(zeros / y.length - 0.25) < 0.02, `zero fraction ${zeros / y.length}`);
    const data = seededTensor([5], 61);
    assert.deepEqual(torch.dropout(data, 0.5, false).toArray(), data.toArray());
    assert.deepEqual(torch.dropout(data, 0, true).toArray(), data.toArray());
    assert.ok(torch.dropout(data, 1, true).toArray().every((v) => v === 0));
  });
});

describe('interpolate', () => {
  test('trilinear with align_corners keeps corners and averages at midpoints', () => {
    const corners = [1, 2, 3, 4, 5, 6, 7, 8];
    const x = f64(corners, [1, 1, 2, 2, 2]);
    const y = torch.interpolate(x, [3, 3, 3], 'trilinear', true);
    const at = (d: number, h: number, w: number) => y.toArray()[d * 9 + h * 3 + w];
    assert.equal(at(0, 0, 0), 1);
    assert.equal(at(2, 2, 2), 8);
    assert.equal(at(0, 2, 0), 3);
    assert.equal(at(1, 1, 1), 4.5); // the centre is the mean of the eight corners
    assert.equal(at(0, 0, 1), 1.5);
    assert.equal(at(1, 0, 0), 3);
    assert.equal(at(2, 1, 2), 7);
  });

  test('trilinear with align_corners matches the loop on uneven sizes, up and down', () => {
    const inShape: Shape5 = [1, 2, 2, 3, 4];
    const x = seededTensor(inShape, 71);
    for (const size of [[3, 5, 7], [1, 2, 3], [4, 3, 2]] as Triple[]) {
      assertClose(torch.interpolate(x, size, 'trilinear', true), trilinearAlignedLoop(x.toArray(), inShape, size), { atol: 1e-12, message: `size ${size}` });
    }
  });

  test('trilinear without align_corners samples at (i + 0.5)·n/m − 0.5', () => {
    // 1-D view of the rule: 2 → 4 gives positions −0.25, 0.25, 0.75, 1.25, clamped to [0, 1]
    const x = f64([0, 4], [1, 1, 1, 1, 2]);
    assert.deepEqual(torch.interpolate(x, [1, 1, 4], 'trilinear').toArray(), [0, 1, 3, 4]);
  });

  test('nearest picks input index floor(i · in / out)', () => {
    const up = f64([10, 20, 30], [1, 1, 1, 1, 3]);
    assert.deepEqual(torch.interpolate(up, [1, 1, 5], 'nearest').toArray(), [0, 0, 1, 1, 2].map((i) => [10, 20, 30][i]));
    const down = f64([0, 1, 2, 3, 4], [1, 1, 5, 1, 1]);
    assert.deepEqual(torch.interpolate(down, [3, 1, 1], 'nearest').toArray(), [0, 1, 3]);
    const grid = torch.arange(6, undefined, 1, { dtype: 'float64' }).reshape(1, 1, 1, 2, 3);
    const y = torch.interpolate(grid, [1, 4, 2], 'nearest');
    // rows floor(i·2/4) = 0, 0, 1, 1; columns floor(j·3/2) = 0, 1
    assert.deepEqual(y.toArray(), [0, 1, 0, 1, 3, 4, 3, 4]);
  });
});

describe('gridSample', () => {
  test('samples at normalised coordinates (x along W first): voxel centres, midpoints, zeros outside', () => {
    // (1, 1, D=2, H=1, W=2) holding [[1, 2]], [[3, 4]] along D.
    const x = f64([1, 2, 3, 4], [1, 1, 2, 1, 2]);
    // With alignCorners false, voxel w of W sits at (2w + 1)/W − 1: ±0.5 here; 0 is the midpoint.
    const points = [
      [-0.5, 0, -0.5], // w 0, d 0 → 1
      [0.5, 0, 0.5], // w 1, d 1 → 4
      [0, 0, -0.5], // between w 0 and 1 at d 0 → 1.5
      [0, 0, 0], // centre of all four → 2.5
      [-1, 0, -0.5], // half a voxel outside along w: half of voxel 0, half zero padding → 0.5
      [3, 0, 0], // far outside → 0
    ];
    const grid = f64(points.flat(), [1, 1, 1, points.length, 3]);
    assert.deepEqual(torch.gridSample(x, grid).toArray(), [1, 4, 1.5, 2.5, 0.5, 0]);
    assert.deepEqual(torch.gridSample(x, grid, { mode: 'nearest', padding: 'border' }).toArray().slice(0, 2), [1, 4]);
    assert.throws(() => torch.gridSample(x, grid, { mode: 'cubic' as 'bicubic' }), /unknown grid-sample mode 'cubic'/);
  });
});

describe('pooling', () => {
  const cube = () => torch.arange(8, undefined, 1, { dtype: 'float64' }).reshape(1, 1, 2, 2, 2);

  test('maxPool3d and avgPool3d over a 2³ cube', () => {
    assert.deepEqual(torch.maxPool3d(cube(), 2).toArray(), [7]);
    assert.deepEqual(torch.avgPool3d(cube(), 2).toArray(), [3.5]);
    assert.deepEqual(torch.maxPool3d(cube(), [1, 2, 2]).toArray(), [3, 7]);
    assert.deepEqual(torch.avgPool3d(cube(), [2, 1, 2]).toArray(), [2.5, 4.5]);
  });

  test('stride, padding and count_include_pad', () => {
    const x = torch.arange(1, 5, 1, { dtype: 'float64' }).reshape(1, 1, 1, 1, 4); // 1 2 3 4
    assert.deepEqual(torch.maxPool3d(x, [1, 1, 2], { stride: [1, 1, 1] }).toArray(), [2, 3, 4]);
    assert.deepEqual(torch.maxPool3d(x, [1, 1, 3], { stride: [1, 1, 2], padding: [0, 0, 1] }).toArray(), [2, 4]);
    // windows with one padded zero: [0, 1, 2] and [2, 3, 4] (stride 2)
    assert.deepEqual(torch.avgPool3d(x, [1, 1, 3], { stride: [1, 1, 2], padding: [0, 0, 1] }).toArray(), [1, 3]);
    assert.deepEqual(torch.avgPool3d(x, [1, 1, 3], { stride: [1, 1, 2], padding: [0, 0, 1], countIncludePad: false }).toArray(), [1.5, 3]);
    assert.deepEqual(torch.avgPool3d(x, [1, 1, 3], { stride: [1, 1, 3], ceilMode: true }).toArray(), [2, 4]);
    assert.deepEqual(torch.adaptiveAvgPool3d(cube(), 1).toArray(), [3.5]);
  });
});

describe('indices and losses', () => {
  test('oneHot adds a trailing class dimension (any integer dtype)', () => {
    const h = torch.oneHot(torch.tensor([2, 0, 1], undefined, { dtype: 'int64' }), 3);
    assert.equal(h.dtype, 'int64');
    assert.deepEqual(h.shape, [3, 3]);
    assert.deepEqual(h.toArray(), [0, 0, 1, 1, 0, 0, 0, 1, 0]);
    assert.deepEqual(torch.oneHot(torch.tensor([[1], [0]], undefined, { dtype: 'uint8' }), 2).toArray(), [0, 1, 1, 0]);
    assert.throws(() => torch.oneHot(torch.tensor([3], undefined, { dtype: 'int64' }), 3), /oneHot/);
  });

  // log-softmax of the rows [1, 2, 3] and [1, 1, 1]
  const logits = f64([1, 2, 3, 1, 1, 1], [2, 3]);
  const lse0 = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3));
  const logp = [[1 - lse0, 2 - lse0, 3 - lse0], [-Math.log(3), -Math.log(3), -Math.log(3)]];

  test('crossEntropy with class indices: mean, sum, none, weights, ignore index, label smoothing', () => {
    const target = torch.tensor([2, 0], undefined, { dtype: 'int64' });
    const per = [-logp[0][2], -logp[1][0]];
    assertClose(torch.crossEntropy(logits, target), [(per[0] + per[1]) / 2], { atol: 1e-14 });
    assertClose(torch.crossEntropy(logits, target, { reduction: 'sum' }), [per[0] + per[1]], { atol: 1e-14 });
    assertClose(torch.crossEntropy(logits, target, { reduction: 'none' }), per, { atol: 1e-14 });
    // weighted mean: Σ w_y·loss / Σ w_y
    const weight = f64([3, 1, 0.5]);
    assertClose(torch.crossEntropy(logits, target, { weight }), [(0.5 * per[0] + 3 * per[1]) / 3.5], { atol: 1e-14 });
    assertClose(torch.crossEntropy(logits, torch.tensor([2, -100], undefined, { dtype: 'int64' })), [per[0]], { atol: 1e-14 });
    assertClose(torch.crossEntropy(logits, torch.tensor([2, 1], undefined, { dtype: 'int64' }), { ignoreIndex: 1 }), [per[0]], { atol: 1e-14 });
    // label smoothing ε: (1 − ε)·nll + ε·mean over classes of −log p
    const eps = 0.2;
    const smooth = (row: number[], y: number) => (1 - eps) * -row[y] + eps * -(row[0] + row[1] + row[2]) / 3;
    assertClose(torch.crossEntropy(logits, target, { labelSmoothing: eps }), [(smooth(logp[0], 2) + smooth(logp[1], 0)) / 2], { atol: 1e-14 });
  });

  test('crossEntropy with class probabilities and over spatial positions', () => {
    const probs = f64([0.5, 0.25, 0.25, 0, 1, 0], [2, 3]);
    const per = [-(0.5 * logp[0][0] + 0.25 * logp[0][1] + 0.25 * logp[0][2]), -logp[1][1]];
    assertClose(torch.crossEntropy(logits, probs), [(per[0] + per[1]) / 2], { atol: 1e-14 });
    // (B=1, C=3, 2 positions): position p uses logits[:, p]
    const spatial = logits.transpose(0, 1).unsqueeze(0); // (1, 3, 2)
    const target = torch.tensor([[2, 0]], undefined, { dtype: 'int64' });
    assertClose(torch.crossEntropy(spatial, target, { reduction: 'none' }), [-logp[0][2], -logp[1][0]], { atol: 1e-14 });
    assertClose(torch.nllLoss(torch.logSoftmax(logits, 1), torch.tensor([1, 1], undefined, { dtype: 'int64' })), [-(logp[0][1] + logp[1][1]) / 2], { atol: 1e-14 });
  });

  test('klDiv: Σ target·(log target − input), with mean over elements, sum, none and log targets', () => {
    const input = f64([Math.log(0.5), Math.log(0.5), Math.log(0.9), Math.log(0.1)], [2, 2]);
    const target = f64([0.25, 0.75, 0, 1], [2, 2]);
    const pointwise = [0.25 * Math.log(0.25 / 0.5), 0.75 * Math.log(0.75 / 0.5), 0, Math.log(1 / 0.1)];
    assertClose(torch.klDiv(input, target, { reduction: 'none' }), pointwise, { atol: 1e-14 });
    const total = pointwise.reduce((a, b) => a + b, 0);
    assertClose(torch.klDiv(input, target, { reduction: 'sum' }), [total], { atol: 1e-14 });
    assertClose(torch.klDiv(input, target), [total / 4], { atol: 1e-14 });
    const logTarget = f64([Math.log(0.25), Math.log(0.75), Math.log(0.5), Math.log(0.5)], [2, 2]);
    const withLog = [0.25 * Math.log(0.5), 0.75 * Math.log(1.5), 0.5 * Math.log(0.5 / 0.9), 0.5 * Math.log(5)];
    assertClose(torch.klDiv(input, logTarget, { reduction: 'none', logTarget: true }), withLog, { atol: 1e-14 });
  });

  test('mseLoss and binaryCrossEntropyWithLogits', () => {
    assertClose(torch.mseLoss(f64([1, 2, 3]), f64([1, 0, 0])), [(4 + 9) / 3]);
    const z = f64([0, 2]);
    const t = f64([1, 0]);
    assertClose(torch.binaryCrossEntropyWithLogits(z, t), [(Math.log(2) + Math.log(1 + Math.exp(2))) / 2], { atol: 1e-14 });
  });
});

describe('scaledDotProductAttention', () => {
  // softmax(q kᵀ · scale + mask) v by loops over (batch, query)
  function attentionLoop(q: Tensor, k: Tensor, v: Tensor, scale: number, mask?: number[]): number[] {
    const [B, Lq, d] = q.shape;
    const Lk = k.shape[1];
    const dv = v.shape[2];
    const [qa, ka, va] = [q.toArray(), k.toArray(), v.toArray()];
    const out: number[] = [];
    for (let b = 0; b < B; b++)
      for (let i = 0; i < Lq; i++) {
        const scores = Array.from({ length: Lk }, (_, j) => {
          let s = 0;
          for (let c = 0; c < d; c++) s += qa[(b * Lq + i) * d + c] * ka[(b * Lk + j) * d + c];
          return s * scale + (mask ? mask[i * Lk + j] : 0);
        });
        const top = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - top));
        const z = e.reduce((a, c) => a + c, 0);
        for (let c = 0; c < dv; c++) out.push(e.reduce((acc, w, j) => acc + (w / z) * va[(b * Lk + j) * dv + c], 0));
      }
    return out;
  }

  test('matches the loop with the default 1/√d scale, a custom scale and an additive mask', () => {
    const q = seededTensor([2, 3, 4], 81);
    const k = seededTensor([2, 5, 4], 82);
    const v = seededTensor([2, 5, 2], 83);
    assertClose(torch.scaledDotProductAttention(q, k, v), attentionLoop(q, k, v, 0.5), { atol: 1e-14 });
    assertClose(torch.scaledDotProductAttention(q, k, v, { scale: 2 }), attentionLoop(q, k, v, 2), { atol: 1e-14 });
    const maskValues = Array.from({ length: 15 }, (_, i) => (i % 5 > Math.floor(i / 5) + 1 ? -Infinity : 0));
    const mask = f64(maskValues, [3, 5]);
    assertClose(torch.scaledDotProductAttention(q, k, v, { mask }), attentionLoop(q, k, v, 0.5, maskValues), { atol: 1e-14 });
  });
});
