// Autograd gradients against central finite differences in float64, and the autograd API.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { assertClose, checkGradients, seededTensor } from './helpers.ts';

const f64 = (data: number[], shape?: number[]) => torch.tensor(data, shape, { dtype: 'float64' });

describe('gradients match central finite differences (float64)', () => {
  test('conv3d: stride, padding, dilation, groups, bias', () => {
    const x = seededTensor([2, 4, 3, 4, 3], 1);
    const w = seededTensor([2, 2, 2, 3, 2], 2);
    const b = seededTensor([2], 3);
    checkGradients((x, w, b) => torch.conv3d(x, w, b, { stride: [1, 2, 1], padding: [1, 1, 0], dilation: [1, 1, 2], groups: 2 }), [x, w, b]);
  });

  test('conv3d with reflect padding', () => {
    checkGradients((x, w) => torch.conv3d(x, w, null, { padding: 1, paddingMode: 'reflect' }), [seededTensor([1, 2, 3, 3, 3], 4), seededTensor([1, 2, 3, 3, 3], 5)]);
  });

  test('convTranspose3d: stride, padding, output padding, groups', () => {
    const x = seededTensor([1, 4, 2, 2, 3], 6);
    const w = seededTensor([4, 1, 2, 3, 2], 7);
    const b = seededTensor([2], 8);
    checkGradients((x, w, b) => torch.convTranspose3d(x, w, b, { stride: [2, 1, 2], padding: [0, 1, 1], outputPadding: [1, 0, 1], groups: 2 }), [x, w, b]);
  });

  test('instanceNorm with affine parameters', () => {
    const x = seededTensor([2, 2, 2, 2, 3], 9, { low: -2, high: 3 });
    checkGradients((x, w, b) => torch.instanceNorm(x, { weight: w, bias: b }), [x, seededTensor([2], 10), seededTensor([2], 11)]);
  });

  test('batchNorm in training mode', () => {
    const x = seededTensor([3, 2, 2, 2], 12, { low: -2, high: 3 });
    checkGradients((x, w, b) => torch.batchNorm(x, { weight: w, bias: b, training: true }), [x, seededTensor([2], 13), seededTensor([2], 14)]);
  });

  test('layerNorm over the last two dimensions', () => {
    checkGradients((x, w, b) => torch.layerNorm(x, [2, 3], w, b), [seededTensor([2, 2, 3], 15), seededTensor([2, 3], 16), seededTensor([2, 3], 17)]);
  });

  test('interpolate trilinear (align_corners true and false) and nearest', () => {
    const x = seededTensor([1, 2, 2, 3, 2], 18);
    checkGradients((x) => torch.interpolate(x, [3, 4, 3], 'trilinear', true), [x]);
    checkGradients((x) => torch.interpolate(x, [4, 2, 5], 'trilinear', false), [x]);
    checkGradients((x) => torch.interpolate(x, [4, 6, 4], 'nearest'), [x]);
  });

  test('scaledDotProductAttention through q, k and v, with a mask', () => {
    const q = seededTensor([2, 3, 4], 19);
    const k = seededTensor([2, 4, 4], 20);
    const v = seededTensor([2, 4, 2], 21);
    const mask = f64([0, 0, -Infinity, 0, 0, 0, 0, -Infinity, 0, 0, 0, 0], [3, 4]);
    checkGradients((q, k, v) => torch.scaledDotProductAttention(q, k, v, { mask }), [q, k, v]);
  });

  test('softmax, logSoftmax, logsumexp', () => {
    const x = seededTensor([3, 4], 22, { low: -3, high: 3 });
    checkGradients((x) => x.softmax(1), [x]);
    checkGradients((x) => x.logSoftmax(0), [x]);
    checkGradients((x) => x.logsumexp(1), [x]);
  });

  test('crossEntropy (indices with weights and smoothing; probabilities) and klDiv', () => {
    const logits = seededTensor([3, 4, 2], 23, { low: -2, high: 2 });
    const target = torch.tensor([[0, 3], [2, 2], [1, 0]], undefined, { dtype: 'int64' });
    const weight = f64([1, 2, 0.5, 1]);
    checkGradients((z) => torch.crossEntropy(z, target, { weight, labelSmoothing: 0.1 }), [logits]);
    const probs = seededTensor([3, 4, 2], 24, { low: 0.1, high: 1 }).softmax(1);
    checkGradients((z, p) => torch.crossEntropy(z, p), [logits, probs]);
    const logq = seededTensor([2, 3], 25).logSoftmax(1);
    const p = seededTensor([2, 3], 26).softmax(1);
    checkGradients((logq, p) => torch.klDiv(logq, p, { reduction: 'sum' }), [logq, p]);
    checkGradients((logq, logp) => torch.klDiv(logq, logp, { logTarget: true }), [logq, p.log()]);
  });

  test('element-wise maths, reductions and pooling', () => {
    const x = seededTensor([2, 3], 27, { low: 0.5, high: 2 });
    const y = seededTensor([2, 3], 28, { low: 0.5, high: 2 });
    checkGradients((x, y) => x.mul(y).div(x.add(y)).pow(1.5).sub(y.log()), [x, y]);
    checkGradients((x) => x.var(1, { correction: 1 }).add(x.norm(2, 0).sum()), [x]);
    checkGradients((x) => torch.gelu(x.sub(1)).add(torch.leakyRelu(x.sub(1.2), 0.1)).mul(x.sigmoid()), [x]);
    const vol = seededTensor([1, 1, 2, 4, 4], 29);
    checkGradients((v) => torch.avgPool3d(v, [1, 2, 2]).add(torch.maxPool3d(v, [2, 2, 2], { stride: 1 }).mean()), [vol]);
  });
});

describe('the float32 convolution routes (oneDNN, or the direct kernels for thin 3x3x3 and 1x1x1 convolutions)', () => {
  // Float32 gradients of those routes against the float64 gradients of libtorch's reference path,
  // which the finite-difference test above validates.
  function gradsOf(x: Tensor, w: Tensor, b: Tensor | null, opts: Parameters<typeof torch.conv3d>[3], withRespectTo: ('x' | 'w' | 'b')[]) {
    return torch.tidy(() => {
      const leaves = { x: x.detach(), w: w.detach(), b: b?.detach() ?? null };
      for (const name of withRespectTo) leaves[name]!.requiresGrad_(true);
      const y = torch.conv3d(leaves.x, leaves.w, leaves.b, opts);
      const weights = seededTensor(y.shape, 99).to(y.dtype);
      y.mul(weights).sum().backward();
      return {
        // the bias is added outside the route, so the node is read from a bias-free call
        node: torch.conv3d(leaves.x, leaves.w, null, opts).gradFnName,
        y: y.detach(),
        x: leaves.x.grad,
        w: leaves.w.grad,
        b: leaves.b?.grad ?? null,
      };
    });
  }

  const cases: { name: string; x: number[]; w: number[]; opts: Parameters<typeof torch.conv3d>[3]; bias: boolean }[] = [
    { name: '3x3x3, padding 1', x: [1, 2, 5, 4, 6], w: [3, 2, 3, 3, 3], opts: { padding: 1 }, bias: true },
    { name: 'stride 2, dilation', x: [1, 3, 6, 5, 5], w: [2, 3, 2, 3, 2], opts: { stride: 2, padding: [1, 0, 1], dilation: [1, 2, 1] }, bias: false },
    { name: 'groups', x: [1, 4, 4, 3, 5], w: [6, 2, 3, 1, 3], opts: { padding: [1, 0, 1], groups: 2 }, bias: true },
    { name: 'reflect padding', x: [1, 2, 4, 4, 4], w: [2, 2, 3, 3, 3], opts: { padding: 1, paddingMode: 'reflect' }, bias: true },
    // batch 2 with few channels at stride 1: both gradients computed as forward convolutions
    { name: 'batch 2, few channels, stride 1', x: [2, 3, 5, 4, 6], w: [4, 3, 3, 3, 3], opts: { padding: 1 }, bias: true },
    { name: 'batch 2, 1x1x1 kernel', x: [2, 8, 3, 4, 5], w: [4, 8, 1, 1, 1], opts: {}, bias: true },
    { name: 'batch 2, padding 0', x: [2, 2, 5, 5, 5], w: [3, 2, 3, 3, 3], opts: {}, bias: false },
  ];
  for (const c of cases) {
    test(`${c.name}: output and gradients agree with float64`, () => {
      const x = seededTensor(c.x, 41);
      const w = seededTensor(c.w, 42);
      const b = c.bias ? seededTensor([c.w[0]], 43) : null;
      const wrt: ('x' | 'w' | 'b')[] = c.bias ? ['x', 'w', 'b'] : ['x', 'w'];
      const reference = gradsOf(x, w, b, c.opts, wrt);
      const route = gradsOf(x.float(), w.float(), b?.float() ?? null, c.opts, wrt);
      assert.match(route.node!, /OneDnnConvolution|ThinConvolution|Conv1x1/);
      assert.doesNotMatch(reference.node!, /OneDnnConvolution|ThinConvolution|Conv1x1/);
      assert.equal(route.x!.dtype, 'float32');
      assertClose(route.y, reference.y.toArray(), { atol: 1e-4, message: 'output' });
      assertClose(route.x!, reference.x!.toArray(), { atol: 1e-4, message: 'input gradient' });
      assertClose(route.w!, reference.w!.toArray(), { atol: 1e-4, message: 'weight gradient' });
      if (c.bias) assertClose(route.b!, reference.b!.toArray(), { atol: 1e-4, message: 'bias gradient' });
    });
  }

  test('channels-last and strided inputs', () => {
    const x = seededTensor([1, 2, 3, 4, 5], 50);
    const w = seededTensor([2, 2, 3, 3, 3], 51);
    const reference = gradsOf(x, w, null, { padding: 1 }, ['x', 'w']);
    for (const layout of [x.float().contiguous('channelsLast'), x.float().transpose(2, 4).contiguous().transpose(2, 4)]) {
      assert.equal(layout.isContiguous(), false);
      const route = gradsOf(layout, w.float(), null, { padding: 1 }, ['x', 'w']);
      assert.match(route.node!, /OneDnnConvolution|ThinConvolution|Conv1x1/);
      assertClose(route.y, reference.y.toArray(), { atol: 1e-4 });
      assertClose(route.x!, reference.x!.toArray(), { atol: 1e-4 });
      assertClose(route.w!, reference.w!.toArray(), { atol: 1e-4 });
    }
  });

  test('only the weight, or only the input, requiring gradients', () => {
    const x = seededTensor([1, 2, 3, 3, 3], 44);
    const w = seededTensor([2, 2, 3, 3, 3], 45);
    const reference = gradsOf(x, w, null, { padding: 1 }, ['x', 'w']);
    const weightOnly = gradsOf(x.float(), w.float(), null, { padding: 1 }, ['w']);
    assert.equal(weightOnly.x, null);
    assertClose(weightOnly.w!, reference.w!.toArray(), { atol: 1e-4 });
    const inputOnly = gradsOf(x.float(), w.float(), null, { padding: 1 }, ['x']);
    assert.equal(inputOnly.w, null);
    assertClose(inputOnly.x!, reference.x!.toArray(), { atol: 1e-4 });
  });

  test('the route agrees with libtorch’s own selection when oneDNN is switched off', () => {
    const x = seededTensor([1, 2, 4, 4, 4], 46).float();
    const w = seededTensor([3, 2, 3, 3, 3], 47).float();
    const route = gradsOf(x, w, null, { padding: 1, stride: [1, 2, 1] }, ['x', 'w']);
    torch.setMkldnnEnabled(false);
    try {
      const plain = gradsOf(x, w, null, { padding: 1, stride: [1, 2, 1] }, ['x', 'w']);
      assertClose(route.y, plain.y.toArray(), { atol: 1e-5 });
      assertClose(route.x!, plain.x!.toArray(), { atol: 1e-5 });
      assertClose(route.w!, plain.w!.toArray(), { atol: 1e-5 });
    } finally {
      torch.setMkldnnEnabled(true);
    }
  });

  test('second-order gradients through the route match float64', () => {
    // d/dx of ‖∂L/∂w‖² needs the backward itself to be differentiable
    const run = (dtype: 'float32' | 'float64') =>
      torch.tidy(() => {
        const x = seededTensor([1, 1, 3, 3, 3], 48).to(dtype).requiresGrad_(true);
        const w = seededTensor([1, 1, 2, 2, 2], 49).to(dtype).requiresGrad_(true);
        const y = torch.conv3d(x, w);
        const [gw] = torch.grad([y.square().sum()], [w], { createGraph: true });
        gw!.square().sum().backward();
        return x.grad!.to('float64');
      });
    assertClose(run('float32'), run('float64').toArray(), { atol: 1e-4 });
  });
});

describe('the autograd API', () => {
  test('backward of a non-scalar needs a gradient argument, which weights the outputs', () => {
    const x = f64([1, 2, 3]).requiresGrad_();
    const y = x.square();
    assert.throws(() => y.backward(), /backward: grad can be implicitly created only for scalar outputs/);
    y.backward(f64([1, 0.5, -1]));
    assert.deepEqual(x.grad!.toArray(), [2, 2, -6]);
  });

  test('gradients accumulate; retainGraph allows a second backward; setting grad to null clears', () => {
    const x = f64([1, 2]).requiresGrad_();
    const loss = x.mul(x).sum();
    loss.backward(undefined, { retainGraph: true });
    loss.backward();
    assert.deepEqual(x.grad!.toArray(), [4, 8]);
    assert.throws(() => loss.backward(), /backward.*(freed|second time)/s);
    x.grad = null;
    assert.equal(x.grad, null);
    x.sum().backward();
    assert.deepEqual(x.grad!.toArray(), [1, 1]);
  });

  test('requiresGrad, isLeaf, retainGrad', () => {
    const x = f64([1, 2]);
    assert.equal(x.requiresGrad, false);
    x.requiresGrad = true;
    const h = x.mul(3).retainGrad();
    assert.equal(x.isLeaf, true);
    assert.equal(h.isLeaf, false);
    assert.equal(h.requiresGrad, true);
    h.sum().backward();
    assert.deepEqual(h.grad!.toArray(), [1, 1]);
    assert.deepEqual(x.grad!.toArray(), [3, 3]);
    assert.equal(torch.tensor([1], undefined, { requiresGrad: true }).requiresGrad, true);
    assert.equal(torch.zeros([1], { requiresGrad: true }).requiresGrad, true);
  });

  test('torch.grad returns gradients without touching .grad, null for unused inputs', () => {
    const a = f64([2]).requiresGrad_();
    const b = f64([5]).requiresGrad_();
    const unused = f64([1]).requiresGrad_();
    const y = a.mul(b).add(a.square());
    const [ga, gb, gu] = torch.grad([y], [a, b, unused], { gradOutputs: [f64([2])], retainGraph: true });
    assert.deepEqual(ga!.toArray(), [2 * (5 + 4)]);
    assert.deepEqual(gb!.toArray(), [4]);
    assert.equal(gu, null);
    assert.equal(a.grad, null);
    // second derivative with createGraph: d²(a³)/da² = 6a
    const c = f64([1.5]).requiresGrad_();
    const [dc] = torch.grad([c.pow(3).sum()], [c], { createGraph: true });
    const [ddc] = torch.grad([dc!.sum()], [c]);
    assert.deepEqual(ddc!.toArray(), [9]);
  });

  test('noGrad records nothing, restores the mode (also after a throw), and enableGrad overrides it', () => {
    const x = f64([1]).requiresGrad_();
    const y = torch.noGrad(() => x.mul(2));
    assert.equal(y.requiresGrad, false);
    assert.equal(torch.isGradEnabled(), true);
    assert.throws(() => torch.noGrad(() => {
      throw new Error('inside');
    }), /inside/);
    assert.equal(torch.isGradEnabled(), true);
    torch.noGrad(() => {
      assert.equal(torch.isGradEnabled(), false);
      assert.equal(torch.enableGrad(() => x.mul(2)).requiresGrad, true);
      assert.equal(torch.isGradEnabled(), false);
    });
  });

  test('detach stops the gradient but shares the values', () => {
    const x = f64([3]).requiresGrad_();
    const d = x.detach();
    assert.equal(d.requiresGrad, false);
    x.mul(d).backward(); // d/dx (x · stop(x)) = stop(x) = 3, not 2x = 6
    assert.deepEqual(x.grad!.toArray(), [3]);
    torch.noGrad(() => x.add_(1));
    assert.deepEqual(d.toArray(), [4]);
  });

  test('in-place updates on leaves run outside the graph', () => {
    const w = f64([1, 2]).requiresGrad_();
    w.mul_(2).add_(f64([1, 1]), 0.5);
    assert.deepEqual(w.toArray(), [2.5, 4.5]);
    assert.equal(w.isLeaf, true);
    w.square().sum().backward();
    assert.deepEqual(w.grad!.toArray(), [5, 9]);
  });
});
