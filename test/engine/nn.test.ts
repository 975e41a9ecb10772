// nn layers: names and layouts as PyTorch, default initialisation, train/eval behaviour and forward
// passes against hand-computed values.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { assertClose, seededTensor } from './helpers.ts';

const { nn } = torch;
const f64 = (data: number[], shape?: number[]) => torch.tensor(data, shape, { dtype: 'float64' });
/** Overwrites a parameter or buffer with `data`. */
const assign = (target: Tensor, data: number[]) => torch.noGrad(() => target.copy_(torch.tensor(data, target.shape, { dtype: target.dtype })));

class Block extends nn.Module {
  readonly body = this.registerModule(
    'body',
    new nn.Sequential(new nn.Conv3d(2, 4, 3, { padding: 1 }), new nn.InstanceNorm3d(4, { affine: true }), new nn.LeakyReLU(0.2)),
  );
  readonly heads = this.registerModule('heads', new nn.ModuleList([new nn.LayerNorm(4), new nn.Linear(4, 3)]));
  readonly scale = this.registerParameter('scale', torch.ones([1]));
  readonly norm = this.registerModule('bn', new nn.BatchNorm3d(4));
}

describe('Module structure', () => {
  test('parameters and buffers of nested modules carry PyTorch names, in registration order', () => {
    const block = new Block();
    assert.deepEqual(
      block.namedParameters().map(([name]) => name),
      [
        'scale',
        'body.0.weight',
        'body.0.bias',
        'body.1.weight',
        'body.1.bias',
        'heads.0.weight',
        'heads.0.bias',
        'heads.1.weight',
        'heads.1.bias',
        'bn.weight',
        'bn.bias',
      ],
    );
    assert.deepEqual(
      block.namedBuffers().map(([name]) => name),
      ['bn.running_mean', 'bn.running_var', 'bn.num_batches_tracked'],
    );
    assert.deepEqual(block.stateDict().get('body.0.weight')!.shape, [4, 2, 3, 3, 3]);
    assert.equal(block.stateDict().get('bn.num_batches_tracked')!.dtype, 'int64');
    assert.equal(block.parameterCount(), 1 + (4 * 2 * 27 + 4) + 8 + 8 + (12 + 3) + 8);
  });

  test('optional parameters and buffers are absent when switched off', () => {
    assert.deepEqual([...new nn.Conv3d(1, 2, 1, { bias: false }).stateDict().keys()], ['weight']);
    assert.deepEqual([...new nn.Linear(3, 2, { bias: false }).stateDict().keys()], ['weight']);
    assert.equal(new nn.InstanceNorm3d(3).stateDict().size, 0);
    assert.deepEqual([...new nn.InstanceNorm3d(3, { trackRunningStats: true }).stateDict().keys()], ['running_mean', 'running_var', 'num_batches_tracked']);
    assert.deepEqual([...new nn.BatchNorm3d(3, { affine: false, trackRunningStats: false }).stateDict().keys()], []);
    assert.deepEqual([...new nn.LayerNorm([2, 3], { elementwiseAffine: false }).stateDict().keys()], []);
    assert.deepEqual([...new nn.MultiheadAttention(4, 2, { bias: false }).stateDict().keys()], ['in_proj_weight', 'out_proj.weight']);
  });

  test('a state dict copies into another instance; strict loading names what does not fit', () => {
    const [source, target] = [new Block(), new Block()];
    target.loadStateDict(source.stateDict());
    for (const [name, value] of source.stateDict()) assert.ok(value.equal(target.stateDict().get(name)!), name);

    const partial = new Map(source.stateDict());
    partial.delete('bn.running_var');
    partial.set('extra.weight', torch.zeros([1]));
    assert.throws(() => target.loadStateDict(partial), /missing: bn\.running_var; unexpected: extra\.weight/);
    const result = target.loadStateDict(partial, { strict: false });
    assert.deepEqual(result, { missing: ['bn.running_var'], unexpected: ['extra.weight'] });

    const misshaped = new Map(source.stateDict());
    misshaped.set('heads.1.weight', torch.zeros([2, 4]));
    assert.throws(() => target.loadStateDict(misshaped), /'heads\.1\.weight' has shape \[2, 4\], the module expects \[3, 4\]/);
  });

  test('Sequential and ModuleList index, count and iterate their children', () => {
    const [a, b] = [new nn.ReLU(), new nn.Linear(2, 2)];
    const seq = new nn.Sequential(a, b);
    assert.equal(seq.length, 2);
    assert.equal(seq.at(1), b);
    assert.equal(seq.at(-1), b);
    assert.deepEqual([...seq], [a, b]);
    assert.throws(() => seq.at(2), /no layer 2 in 2/);
    const list = new nn.ModuleList<torch.nn.Module>().append(a).append(b);
    assert.deepEqual(list.namedChildren().map(([name]) => name), ['0', '1']);
    assert.deepEqual(list.map((_, i) => i), [0, 1]);
    assert.equal(list.at(0), a);
  });

  test('Sequential applies its layers in order', () => {
    const linear = new nn.Linear(2, 2).to({ dtype: 'float64' });
    assign(linear.weight, [1, -1, 2, 0.5]);
    assign(linear.bias!, [0.5, -4]);
    const seq = new nn.Sequential(linear, new nn.LeakyReLU(0.1), new nn.ReLU());
    // x = [3, 1]: W x + b = [2.5, 2.5]; x = [1, 2]: [−0.5, −2] → leaky [−0.05, −0.2] → relu 0
    assertClose(seq.forward(f64([3, 1, 1, 2], [2, 2])), [2.5, 2.5, 0, 0], { atol: 1e-15 });
  });
});

describe('train and eval modes', () => {
  test('Dropout zeroes and rescales in training and is the identity in eval mode', () => {
    torch.manualSeed(3);
    const seq = new nn.Sequential(new nn.Dropout(0.5));
    const x = torch.ones([4000]);
    const trained = seq.forward(x).toArray();
    assert.ok(trained.every((v) => v === 0 || v === 2));
    const zeros = trained.filter((v) => v === 0).length;
    assert.ok(zeros > 1800 && zeros < 2200, `${zeros} of 4000 dropped`);
    seq.eval();
    assert.equal(seq.at(0).training, false);
    assert.ok(seq.forward(x).equal(x));
    assert.throws(() => new nn.Dropout(1.5), /p must lie in \[0, 1\]/);
  });

  test('BatchNorm3d uses and updates batch statistics in training, running ones in eval', () => {
    const bn = new nn.BatchNorm3d(2).to({ dtype: 'float64' });
    assign(bn.weight!, [2, 3]);
    assign(bn.bias!, [0.5, -1]);
    // (B=2, C=2, 1, 1, 2): channel 0 holds 1, 3, 5, 7 (mean 4, variance 5, unbiased 20/3),
    // channel 1 holds 0, 0, 2, 2 (mean 1, variance 1, unbiased 4/3)
    const x = f64([1, 3, 0, 0, 5, 7, 2, 2], [2, 2, 1, 1, 2]);
    const eps = 1e-5;
    const train = bn.forward(x).toArray();
    const c0 = (v: number) => (2 * (v - 4)) / Math.sqrt(5 + eps) + 0.5;
    const c1 = (v: number) => (3 * (v - 1)) / Math.sqrt(1 + eps) - 1;
    assertClose(train, [c0(1), c0(3), c1(0), c1(0), c0(5), c0(7), c1(2), c1(2)], { atol: 1e-12 });
    assertClose(bn.runningMean!, [0.4, 0.1], { atol: 1e-15 });
    assertClose(bn.runningVar!, [0.9 + 0.1 * (20 / 3), 0.9 + 0.1 * (4 / 3)], { atol: 1e-15 });
    assert.equal(bn.numBatchesTracked!.item(), 1);

    bn.eval();
    const [rm, rv] = [bn.runningMean!.toArray(), bn.runningVar!.toArray()];
    const e0 = (v: number) => (2 * (v - rm[0])) / Math.sqrt(rv[0] + eps) + 0.5;
    const e1 = (v: number) => (3 * (v - rm[1])) / Math.sqrt(rv[1] + eps) - 1;
    assertClose(bn.forward(x), [e0(1), e0(3), e1(0), e1(0), e0(5), e0(7), e1(2), e1(2)], { atol: 1e-12 });
    assertClose(bn.runningMean!, [0.4, 0.1], { atol: 1e-15 });
    assert.equal(bn.numBatchesTracked!.item(), 1);
  });

  test('BatchNorm3d with momentum null keeps the plain average of batch statistics', () => {
    const bn = new nn.BatchNorm3d(1, { momentum: null }).to({ dtype: 'float64' });
    bn.forward(f64([1, 3], [1, 1, 1, 1, 2]));
    bn.forward(f64([10, 20], [1, 1, 1, 1, 2]));
    assertClose(bn.runningMean!, [(2 + 15) / 2], { atol: 1e-14 });
    assertClose(bn.runningVar!, [(2 + 50) / 2], { atol: 1e-13 });
    assert.equal(bn.numBatchesTracked!.item(), 2);
  });

  test('BatchNorm3d rejects a single value per channel in training and a wrong channel count', () => {
    const bn = new nn.BatchNorm3d(2);
    assert.throws(() => bn.forward(torch.zeros([1, 2, 1, 1, 1])), /more than one value per channel/);
    assert.throws(() => bn.forward(torch.zeros([1, 3, 2, 2, 2])), /expected input \(B, 2, D, H, W\), got \[1, 3, 2, 2, 2\]/);
  });

  test('InstanceNorm3d normalises each sample and channel; tracked statistics apply in eval mode', () => {
    // channel 0 of sample 0: 1, 2, 3, 4 (mean 2.5, variance 1.25); channel 1: 0, 0, 0, 8 (mean 2, variance 12)
    const x = f64([1, 2, 3, 4, 0, 0, 0, 8], [1, 2, 1, 2, 2]);
    const eps = 1e-5;
    const expected = [...[1, 2, 3, 4].map((v) => (v - 2.5) / Math.sqrt(1.25 + eps)), ...[0, 0, 0, 8].map((v) => (v - 2) / Math.sqrt(12 + eps))];
    const plain = new nn.InstanceNorm3d(2);
    assertClose(plain.forward(x), expected, { atol: 1e-12 });
    const unbatched = plain.forward(x.squeeze(0));
    assert.deepEqual(unbatched.shape, [2, 1, 2, 2]);
    assertClose(unbatched, expected, { atol: 1e-12 });

    const tracking = new nn.InstanceNorm3d(2, { trackRunningStats: true, momentum: 0.5 }).to({ dtype: 'float64' });
    tracking.forward(x);
    // running = 0.5·initial + 0.5·instance statistic (variance unbiased: 5/3 and 16)
    assertClose(tracking.runningMean!, [1.25, 1], { atol: 1e-15 });
    assertClose(tracking.runningVar!, [0.5 + 0.5 * (5 / 3), 0.5 + 0.5 * 16], { atol: 1e-14 });
    tracking.eval();
    const [rm, rv] = [tracking.runningMean!.toArray(), tracking.runningVar!.toArray()];
    assertClose(
      tracking.forward(x),
      [...[1, 2, 3, 4].map((v) => (v - rm[0]) / Math.sqrt(rv[0] + eps)), ...[0, 0, 0, 8].map((v) => (v - rm[1]) / Math.sqrt(rv[1] + eps))],
      { atol: 1e-12 },
    );
  });
});

describe('default initialisation', () => {
  /** Checks values lie within ±bound, reach near it, and have the variance bound²/3 of U(−bound, bound). */
  function assertUniform(t: Tensor, bound: number, name: string): void {
    const values = t.toArray();
    const maxAbs = Math.max(...values.map(Math.abs));
    assert.ok(maxAbs <= bound, `${name}: max |w| ${maxAbs} exceeds ${bound}`);
    assert.ok(maxAbs > 0.9 * bound, `${name}: max |w| ${maxAbs} is far below ${bound}`);
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
    const expected = bound ** 2 / 3;
    assert.ok(Math.abs(variance / expected - 1) < 0.15, `${name}: variance ${variance}, expected ${expected}`);
  }

  test('Conv3d and ConvTranspose3d: U(±1/√fan_in) with fan_in from the weight layout', () => {
    torch.manualSeed(5);
    const conv = new nn.Conv3d(4, 8, 3);
    assertUniform(conv.weight, 1 / Math.sqrt(4 * 27), 'Conv3d weight');
    assert.ok(Math.max(...conv.bias!.toArray().map(Math.abs)) <= 1 / Math.sqrt(4 * 27));
    const grouped = new nn.Conv3d(4, 8, 3, { groups: 2 });
    assert.deepEqual(grouped.weight.shape, [8, 2, 3, 3, 3]);
    assertUniform(grouped.weight, 1 / Math.sqrt(2 * 27), 'grouped Conv3d weight');
    const transposed = new nn.ConvTranspose3d(4, 16, 2);
    assert.deepEqual(transposed.weight.shape, [4, 16, 2, 2, 2]);
    assertUniform(transposed.weight, 1 / Math.sqrt(16 * 8), 'ConvTranspose3d weight');
  });

  test('Linear: U(±1/√in) for weight and bias', () => {
    torch.manualSeed(6);
    const linear = new nn.Linear(50, 40);
    assertUniform(linear.weight, 1 / Math.sqrt(50), 'Linear weight');
    const bias = linear.bias!.toArray();
    assert.ok(Math.max(...bias.map(Math.abs)) <= 1 / Math.sqrt(50));
    assert.ok(new Set(bias).size === 40);
  });

  test('MultiheadAttention: xavier-uniform in_proj_weight, zero biases, Linear out_proj.weight', () => {
    torch.manualSeed(7);
    const mha = new nn.MultiheadAttention(32, 4);
    assertUniform(mha.inProjWeight, Math.sqrt(6 / (32 + 96)), 'in_proj_weight');
    assertUniform(mha.outProj.weight, 1 / Math.sqrt(32), 'out_proj.weight');
    assert.ok(mha.inProjBias!.equal(torch.zeros([96])));
    assert.ok(mha.outProj.bias!.equal(torch.zeros([32])));
  });

  test('normalisation layers start as the identity transform', () => {
    for (const layer of [new nn.LayerNorm(5), new nn.BatchNorm3d(5), new nn.InstanceNorm3d(5, { affine: true })]) {
      assert.ok(layer.weight!.equal(torch.ones([5])));
      assert.ok(layer.bias!.equal(torch.zeros([5])));
    }
    const bn = new nn.BatchNorm3d(3);
    assert.ok(bn.runningMean!.equal(torch.zeros([3])));
    assert.ok(bn.runningVar!.equal(torch.ones([3])));
    assert.equal(bn.numBatchesTracked!.item(), 0);
  });
});

describe('nn.init', () => {
  const std = (t: Tensor) => Math.sqrt(t.var().item());

  test('fans and gains follow PyTorch', () => {
    assert.deepEqual(nn.init.fanInAndFanOut([16, 8, 3, 3, 3]), { fanIn: 216, fanOut: 432 });
    assert.deepEqual(nn.init.fanInAndFanOut([5, 7]), { fanIn: 7, fanOut: 5 });
    assert.throws(() => nn.init.fanInAndFanOut([5]), /at least 2 dimensions/);
    assert.equal(nn.init.calculateGain('relu'), Math.SQRT2);
    assert.equal(nn.init.calculateGain('leaky_relu'), Math.sqrt(2 / (1 + 0.0001)));
    assertClose([nn.init.calculateGain('leaky_relu', 0.2)], [1.3867504905630728], { atol: 0, rtol: 1e-15 });
    assert.equal(nn.init.calculateGain('tanh'), 5 / 3);
    assert.equal(nn.init.calculateGain('linear'), 1);
  });

  test('kaimingNormal_ has std gain/√fan for either fan mode', () => {
    torch.manualSeed(8);
    const w = torch.empty([64, 32, 3, 3, 3]); // fan_in 864, fan_out 1728, 55 296 values
    nn.init.kaimingNormal_(w, { nonlinearity: 'relu' });
    assertClose([std(w)], [Math.SQRT2 / Math.sqrt(864)], { atol: 0, rtol: 0.02 });
    assertClose([w.mean().item()], [0], { atol: 0.002 });
    nn.init.kaimingNormal_(w, { mode: 'fanOut', a: 0.2 });
    assertClose([std(w)], [1.3867504905630728 / Math.sqrt(1728)], { atol: 0, rtol: 0.02 });
  });

  test('kaimingUniform_, xavier and fills', () => {
    torch.manualSeed(9);
    const w = torch.empty([200, 100]);
    nn.init.kaimingUniform_(w, { nonlinearity: 'relu' });
    const bound = Math.sqrt(3) * (Math.SQRT2 / 10);
    assert.ok(w.abs().amax().item() <= bound + 1e-7);
    assertClose([std(w)], [Math.SQRT2 / 10], { atol: 0, rtol: 0.02 });
    nn.init.xavierNormal_(w, 2);
    assertClose([std(w)], [2 * Math.sqrt(2 / 300)], { atol: 0, rtol: 0.02 });
    nn.init.xavierUniform_(w);
    assert.ok(w.abs().amax().item() <= Math.sqrt(6 / 300) + 1e-7);
    nn.init.constant_(w, 0.25);
    assert.ok(w.equal(torch.full([200, 100], 0.25)));
    assert.ok(nn.init.zeros_(w).equal(torch.zeros([200, 100])));
    assert.ok(nn.init.ones_(w).equal(torch.ones([200, 100])));
  });

  test('truncNormal_ keeps every value inside the interval', () => {
    torch.manualSeed(10);
    const w = nn.init.truncNormal_(torch.empty([20000]), { std: 1, low: -1, high: 0.5 });
    assert.ok(w.amin().item() >= -1 && w.amax().item() <= 0.5);
    // mass of N(0, 1) on [−1, 0.5] is 0.5328; its lower part [−1, 0] holds 0.3413 of it
    const belowZero = w.lt(0).sum().item() / 20000;
    assertClose([belowZero], [0.3413 / 0.5328], { atol: 0.015 });
    assert.throws(() => nn.init.truncNormal_(torch.empty([3]), { low: 1, high: 1 }), /interval \[1, 1\] is empty/);
  });
});

describe('layer forward passes', () => {
  test('Linear computes x Wᵀ + b', () => {
    const linear = new nn.Linear(3, 2).to({ dtype: 'float64' });
    assign(linear.weight, [1, 2, 3, -1, 0, 0.5]);
    assign(linear.bias!, [0.25, -0.5]);
    const y = linear.forward(f64([1, 1, 1, 2, -1, 4], [2, 3]));
    assertClose(y, [6.25, -1, 12.25, -0.5], { atol: 1e-15 });
    assert.throws(() => linear.forward(f64([1, 2], [1, 2])), /Linear: expected input \(…, 3\), got \[1, 2\]/);
  });

  test('Conv3d 1x1x1 mixes channels; reflect padding equals padding then a valid convolution', () => {
    const pointwise = new nn.Conv3d(2, 3, 1).to({ dtype: 'float64' });
    assign(pointwise.weight, [1, 2, -1, 0, 0.5, 0.5]);
    assign(pointwise.bias!, [0, 1, -1]);
    // two voxels: (a, b) = (1, 3) and (2, −1) → [a + 2b, −a + 1, 0.5a + 0.5b − 1]
    const y = pointwise.forward(f64([1, 2, 3, -1], [1, 2, 2, 1, 1]));
    assertClose(y, [7, 0, 0, -1, 1, -0.5], { atol: 1e-15 });

    const conv = new nn.Conv3d(2, 4, 3, { padding: [1, 2, 1], dilation: [1, 2, 1], stride: [1, 1, 2], groups: 2, paddingMode: 'reflect' }).to({
      dtype: 'float64',
    });
    const x = seededTensor([2, 2, 4, 5, 6], 21);
    const reference = torch.conv3d(torch.pad(x, [1, 1, 2, 2, 1, 1], 'reflect'), conv.weight, conv.bias, { dilation: [1, 2, 1], stride: [1, 1, 2], groups: 2 });
    const y2 = conv.forward(x);
    assert.deepEqual(y2.shape, [2, 4, 4, 5, 3]);
    assertClose(y2, reference.toArray(), { atol: 1e-12 });
    assert.throws(() => conv.forward(torch.zeros([1, 3, 4, 4, 4])), /Conv3d: expected input \(B, 2, D, H, W\), got \[1, 3, 4, 4, 4\]/);
    assert.throws(() => new nn.Conv3d(3, 4, 3, { groups: 2 }), /divisible by groups \(2\)/);
  });

  test('ConvTranspose3d with kernel 2 and stride 2 paints one weighted block per input voxel', () => {
    const up = new nn.ConvTranspose3d(1, 1, 2, { stride: 2 }).to({ dtype: 'float64' });
    const w = [1, 2, 3, 4, 5, 6, 7, 8];
    assign(up.weight, w);
    assign(up.bias!, [0.5]);
    const y = up.forward(f64([1, 10], [1, 1, 1, 1, 2]));
    assert.deepEqual(y.shape, [1, 1, 2, 2, 4]);
    // output (d, h, x): x < 2 comes from the input 1 with kernel (d, h, x), x ≥ 2 from 10 with (d, h, x − 2)
    const expected: number[] = [];
    for (let d = 0; d < 2; d++) {
      for (let h = 0; h < 2; h++) {
        for (let xo = 0; xo < 4; xo++) expected.push((xo < 2 ? 1 : 10) * w[d * 4 + h * 2 + (xo % 2)] + 0.5);
      }
    }
    assertClose(y, expected, { atol: 1e-15 });
  });

  test('LayerNorm normalises the trailing dimensions', () => {
    const norm = new nn.LayerNorm(4).to({ dtype: 'float64' });
    assign(norm.weight!, [1, 2, 1, 1]);
    assign(norm.bias!, [0, 0, 0, 1]);
    // row [1, 2, 3, 6]: mean 3, variance 3.5
    const s = Math.sqrt(3.5 + 1e-5);
    assertClose(norm.forward(f64([1, 2, 3, 6], [1, 4])), [-2 / s, (2 * -1) / s, 0, 3 / s + 1], { atol: 1e-12 });
    assert.throws(() => norm.forward(f64([1, 2, 3], [1, 3])), /LayerNorm: expected input \(…, 4\), got \[1, 3\]/);
  });

  test('activation modules', () => {
    const x = f64([-1, 0, 2]);
    assert.deepEqual(new nn.ReLU().forward(x).toArray(), [0, 0, 2]);
    assertClose(new nn.LeakyReLU(0.2).forward(x), [-0.2, 0, 2], { atol: 1e-15 });
    assertClose(new nn.LeakyReLU().forward(x), [-0.01, 0, 2], { atol: 1e-15 });
    // GELU(x) = x·Φ(x): Φ(−1) = 0.15865525393145707, Φ(2) = 0.9772498680518208
    assertClose(new nn.GELU().forward(x), [-0.15865525393145707, 0, 2 * 0.9772498680518208], { atol: 1e-12 });
    assertClose(new nn.GELU('tanh').forward(f64([1, -1])), [0.8411919906082768, -0.15880800939172324], { atol: 1e-12 });
  });
});

describe('MultiheadAttention', () => {
  type Matrix = number[][];
  const rows = (t: Tensor, width: number): Matrix => {
    const flat = t.toArray();
    return Array.from({ length: flat.length / width }, (_, i) => flat.slice(i * width, (i + 1) * width));
  };
  const affine = (w: Matrix, b: number[] | null, x: number[]) => w.map((row, j) => row.reduce((s, wi, i) => s + wi * x[i], b ? b[j] : 0));

  /** Plain-number attention for one batch element: inputs (L, E), (S, E); returns output (L, E) and head-averaged weights (L, S). */
  function attentionReference(mha: torch.nn.MultiheadAttention, q: Matrix, k: Matrix, v: Matrix, ignoredKeys: boolean[]) {
    const E = mha.embedDim;
    const H = mha.numHeads;
    const d = E / H;
    const w = rows(mha.inProjWeight, E);
    const b = mha.inProjBias!.toArray();
    const project = (x: Matrix, part: number) => x.map((xi) => affine(w.slice(part * E, (part + 1) * E), b.slice(part * E, (part + 1) * E), xi));
    const [Q, K, V] = [project(q, 0), project(k, 1), project(v, 2)];
    const merged: Matrix = Q.map(() => Array(E).fill(0));
    const averaged: Matrix = Q.map(() => Array(K.length).fill(0));
    for (let h = 0; h < H; h++) {
      const dims = Array.from({ length: d }, (_, i) => h * d + i);
      Q.forEach((qi, l) => {
        const scores = K.map((kj, s) => (ignoredKeys[s] ? -Infinity : dims.reduce((acc, c) => acc + qi[c] * kj[c], 0) / Math.sqrt(d)));
        const top = Math.max(...scores);
        const exps = scores.map((x) => Math.exp(x - top));
        const total = exps.reduce((a, c) => a + c, 0);
        exps.forEach((e, s) => {
          averaged[l][s] += e / total / H;
          for (const c of dims) merged[l][c] += (e / total) * V[s][c];
        });
      });
    }
    const output = merged.map((x) => affine(rows(mha.outProj.weight, E), mha.outProj.bias!.toArray(), x));
    return { output, weights: averaged };
  }

  test('matches a plain computation, in both layouts and with a key padding mask', () => {
    torch.manualSeed(11);
    const [B, L, S, E] = [2, 3, 4, 6];
    for (const batchFirst of [false, true]) {
      const mha = new nn.MultiheadAttention(E, 2, { batchFirst }).to({ dtype: 'float64' });
      // non-zero biases so that every term is exercised
      assign(mha.inProjBias!, seededTensor([3 * E], 31).toArray());
      assign(mha.outProj.bias!, seededTensor([E], 32).toArray());
      const q = seededTensor([B, L, E], 33);
      const k = seededTensor([B, S, E], 34);
      const v = seededTensor([B, S, E], 35);
      const padding = [
        [false, false, true, false],
        [false, true, true, false],
      ];
      const layout = (t: Tensor) => (batchFirst ? t : t.transpose(0, 1));
      const { output, weights } = mha.forward(layout(q), layout(k), layout(v), {
        keyPaddingMask: torch.tensor(padding.flat(), [B, S]),
        needWeights: true,
      });
      assert.deepEqual(output.shape, batchFirst ? [B, L, E] : [L, B, E]);
      assert.deepEqual(weights!.shape, [B, L, S]);
      const batchFirstOutput = batchFirst ? output : output.transpose(0, 1);
      for (let b = 0; b < B; b++) {
        const ref = attentionReference(mha, rows(q.select(0, b), E), rows(k.select(0, b), E), rows(v.select(0, b), E), padding[b]);
        assertClose(batchFirstOutput.select(0, b), ref.output.flat(), { atol: 1e-12, message: `batchFirst ${batchFirst}, sample ${b}` });
        assertClose(weights!.select(0, b), ref.weights.flat(), { atol: 1e-12 });
      }
    }
  });

  test('self-attention of an unbatched sequence, float and bool masks, per-head weights', () => {
    torch.manualSeed(12);
    const mha = new nn.MultiheadAttention(4, 2).to({ dtype: 'float64' });
    const x = seededTensor([3, 4], 41);
    const { output, weights } = mha.forward(x, undefined, undefined, { needWeights: true, averageAttnWeights: false });
    assert.deepEqual(output.shape, [3, 4]);
    assert.deepEqual(weights!.shape, [2, 3, 3]);
    const ref = attentionReference(mha, rows(x, 4), rows(x, 4), rows(x, 4), [false, false, false]);
    assertClose(output, ref.output.flat(), { atol: 1e-12 });
    // a causal bool mask and the equivalent −∞ float mask agree, and block the future
    const causal = torch.tensor([false, true, true, false, false, true, false, false, false], [3, 3]);
    const blocked = mha.forward(x, x, x, { attnMask: causal, needWeights: true });
    const additive = mha.forward(x, x, x, { attnMask: torch.zeros([3, 3], { dtype: 'float64' }).maskedFill(causal, -Infinity) });
    assert.ok(blocked.output.allclose(additive.output, 0, 1e-14));
    assert.deepEqual(blocked.weights!.select(0, 0).toArray().slice(1), [0, 0]);
    assert.equal(additive.weights, null);
  });

  test('checks its configuration and input shapes', () => {
    assert.throws(() => new nn.MultiheadAttention(6, 4), /embedDim \(6\) must be divisible by numHeads \(4\)/);
    const mha = new nn.MultiheadAttention(4, 2);
    assert.throws(() => mha.forward(torch.zeros([3, 2, 5])), /expected \(L, B, E\) or \(L, E\) inputs with E = 4/);
    assert.throws(() => mha.forward(torch.zeros([3, 2, 4]), torch.zeros([5, 3, 4])), /query \[3, 2, 4\], key \[5, 3, 4\]/);
  });
});
