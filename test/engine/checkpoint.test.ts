// Activation recomputation: gradients through a recomputed block equal the closed form and those of the plain
// forward (parameters included, dropout replayed), errors inside the block surface as JavaScript errors, and a
// block that reads a tensor requiring grad without declaring it is refused.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { assertClose, seededTensor } from './helpers.ts';

/** A small network with everything a recomputed model block holds: convolutions, the fused norm, dropout, a residual. */
class SmallNet extends torch.nn.Module {
  readonly first = this.registerModule('first', new torch.nn.Conv3d(2, 3, 3, { padding: 1 }));
  readonly second = this.registerModule('second', new torch.nn.Conv3d(3, 3, 3, { padding: 1, paddingMode: 'reflect' }));
  readonly drop = this.registerModule('drop', new torch.nn.Dropout(0.3));
  readonly head = this.registerModule('head', new torch.nn.Conv3d(3, 2, 1));

  /** The middle part: what `forward` recomputes when asked to. */
  block(x: Tensor): Tensor {
    return torch.tidy(() => {
      const h = this.first.forward(x);
      return h.add(this.drop.forward(this.second.forward(torch.instanceNormLeakyRelu(h, 0.2))));
    });
  }

  forward(x: Tensor, recompute: boolean): Tensor {
    return torch.tidy(() => {
      const middle = recompute ? torch.nn.checkpoint(this, (input) => this.block(input), [x]) : this.block(x);
      return this.head.forward(middle);
    });
  }
}

/** Output, input gradient and every parameter gradient of one forward + backward from `seed`; the generator draw after it. */
function runSmallNet(net: SmallNet, x: Tensor, recompute: boolean, seed: number) {
  return torch.tidy(() => {
    net.zeroGrad();
    const input = x.detach().requiresGrad_();
    torch.manualSeed(seed);
    const out = net.forward(input, recompute);
    out.square().sum().backward();
    return {
      out: out.toArray(),
      inputGrad: input.grad!.toArray(),
      parameterGrads: net.namedParameters().map(([name, p]) => [name, p.grad!.toArray()] as const),
      nextDraw: torch.rand([4]).toArray(),
    };
  });
}

describe('checkpoint', () => {
  test('gradients of a recomputed block equal the closed form', () => {
    // f(x, w) = Σ sin(x·w): ∂f/∂x = w·cos(x·w), ∂f/∂w = Σ_rows x·cos(x·w)
    const x = seededTensor([3, 4], 1, { requiresGrad: true });
    const w = seededTensor([4], 2, { requiresGrad: true });
    let calls = 0;
    const y = torch.checkpoint(
      (input) => {
        calls++;
        return input.mul(w).sin();
      },
      [x],
      [w],
    );
    assert.equal(calls, 1);
    assert.match(y.gradFnName!, /CheckpointFunction/);
    y.sum().backward();
    assert.equal(calls, 2, 'backward runs the block once more');
    const xs = x.toArray();
    const ws = w.toArray();
    const gx = xs.map((v, i) => ws[i % 4] * Math.cos(v * ws[i % 4]));
    const gw = ws.map((wk, k) => [0, 1, 2].reduce((sum, r) => sum + xs[r * 4 + k] * Math.cos(xs[r * 4 + k] * wk), 0));
    assertClose(x.grad!, gx, { atol: 1e-12, message: 'input gradient' });
    assertClose(w.grad!, gw, { atol: 1e-12, message: 'parameter gradient' });
  });

  test('a small network gives the same output, gradients and generator position with and without recomputation', () => {
    torch.manualSeed(7);
    const net = new SmallNet();
    const x = torch.randn([2, 2, 4, 5, 6]);
    const plain = runSmallNet(net, x, false, 11);
    const recomputed = runSmallNet(net, x, true, 11);
    assert.deepEqual(recomputed.out, plain.out, 'the forward is the same computation');
    assertClose(recomputed.inputGrad, plain.inputGrad, { atol: 1e-6, message: 'input gradient' });
    for (const [i, [name, grad]] of recomputed.parameterGrads.entries()) {
      assert.ok(grad.some((v) => v !== 0), `${name} has a gradient`);
      assertClose(grad, plain.parameterGrads[i][1], { atol: 1e-5, rtol: 1e-5, message: name });
    }
    assert.deepEqual(recomputed.nextDraw, plain.nextDraw, 'the replayed dropout does not move the generator');
    // a different dropout mask changes the gradients: the replay above is what made them agree
    const otherMask = runSmallNet(net, x, false, 12);
    assert.ok(otherMask.parameterGrads[2][1].some((v, i) => Math.abs(v - plain.parameterGrads[2][1][i]) > 1e-3));
  });

  test('parameters get their gradients when no input requires grad (an encoder stem on the images)', () => {
    const w = seededTensor([3], 3, { requiresGrad: true });
    const x = seededTensor([2, 3], 4);
    // f(w) = Σ (x·w)²: ∂f/∂w_k = 2 w_k Σ_rows x_k²
    torch.checkpoint((input) => input.mul(w), [x], [w]).square().sum().backward();
    const xs = x.toArray();
    const ws = w.toArray();
    assertClose(w.grad!, ws.map((wk, k) => 2 * wk * (xs[k] ** 2 + xs[3 + k] ** 2)), { atol: 1e-12 });
  });

  test('batch norm inside a recomputed block counts its batch once', () => {
    const run = (recompute: boolean) =>
      torch.tidy(() => {
        torch.manualSeed(3);
        const norm = new torch.nn.BatchNorm3d(2);
        const x = torch.randn([2, 2, 3, 3, 3]).mul(2).add(1);
        const y = recompute ? torch.nn.checkpoint(norm, (input) => norm.forward(input), [x]) : norm.forward(x);
        y.mul(x).sum().backward();
        // running mean after one batch: 0.9·0 + 0.1·(batch mean)
        const batchMean = x.transpose(0, 1).reshape(2, -1).mean(1).mul(0.1).toArray();
        return { mean: norm.runningMean!.toArray(), batchMean, count: norm.numBatchesTracked!.item(), weightGrad: norm.weight!.grad!.toArray() };
      });
    const plain = run(false);
    const recomputed = run(true);
    assertClose(recomputed.mean, plain.batchMean, { atol: 1e-6 });
    assert.equal(recomputed.count, 1);
    assertClose(recomputed.weightGrad, plain.weightGrad, { atol: 1e-5 });
  });

  test('torch.grad through a recomputed block returns the gradients without accumulating them', () => {
    const x = seededTensor([5], 5, { requiresGrad: true });
    const w = seededTensor([5], 6, { requiresGrad: true });
    const [gx, gw] = torch.grad([torch.checkpoint((input) => input.mul(w).sum(), [x], [w])], [x, w]);
    assertClose(gx!, w.toArray(), { atol: 0 });
    assertClose(gw!, x.toArray(), { atol: 0 });
    assert.equal(w.grad, null);
  });

  test('several outputs, one of them unused by the loss', () => {
    const x = seededTensor([4], 7, { requiresGrad: true });
    const [a, b] = torch.checkpoint((input) => [input.mul(3), input.exp()], [x], []);
    a.sum().backward();
    assertClose(x.grad!, [3, 3, 3, 3], { atol: 0 });
    assert.ok(b.requiresGrad);
  });

  test('without gradient recording the block just runs', () => {
    const x = seededTensor([4], 8, { requiresGrad: true });
    const y = torch.noGrad(() => torch.checkpoint((input) => input.mul(2), [x], []));
    assert.equal(y.requiresGrad, false);
    assertClose(y, x.toArray().map((v) => 2 * v), { atol: 0 });
  });

  test('an error thrown by the block during recomputation surfaces from backward', () => {
    const x = seededTensor([4], 9, { requiresGrad: true });
    let calls = 0;
    const y = torch.checkpoint(
      (input) => {
        if (++calls === 2) throw new Error('block failed while recomputing');
        return input.square();
      },
      [x],
      [],
    );
    assert.throws(() => y.sum().backward(), /block failed while recomputing/);
    assert.throws(() => torch.checkpoint(() => torch.tensor([1]).reshape(2), [x], []), /checkpoint: reshape/);
    assert.throws(() => torch.checkpoint(() => 'not a tensor' as unknown as Tensor, [x], []), /checkpoint: a recomputed block must return an array of tensors/);
  });

  test('a block that reads an undeclared tensor requiring grad is refused at backward', () => {
    const x = seededTensor([4], 10, { requiresGrad: true });
    const hidden = seededTensor([4], 11, { requiresGrad: true });
    const undeclaredLeaf = torch.checkpoint((input) => input.mul(hidden), [x], []);
    assert.throws(() => undeclaredLeaf.sum().backward(), /neither one of its inputs nor one of its parameters/);
    const outside = hidden.exp();
    const undeclaredResult = torch.checkpoint((input) => input.mul(outside), [x], []);
    assert.throws(() => undeclaredResult.sum().backward(), /computed outside it .*ExpBackward0/);
  });

  test('second derivatives through a recomputed block are refused', () => {
    const x = seededTensor([3], 12, { requiresGrad: true });
    const y = torch.checkpoint((input) => input.pow(3).sum(), [x], []);
    assert.throws(() => torch.grad([y], [x], { createGraph: true }), /differentiated twice/);
  });
});
