// Optimisers, schedules and gradient clipping against hand-computed updates.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { assertClose } from './helpers.ts';

const { optim } = torch;
const f64 = (data: number[]) => torch.tensor(data, undefined, { dtype: 'float64' });
const param = (data: number[]) => f64(data).requiresGrad_(true);
const setGrad = (p: Tensor, data: number[]) => {
  p.grad = f64(data);
};

/** Plain-number Adam for one parameter vector, following the update rule in the Adam paper with L2 decay and AMSGrad. */
function adamReference(
  p0: number[],
  grads: number[][],
  h: { lr: number; beta1: number; beta2: number; eps: number; wd: number; amsgrad: boolean },
): number[] {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const vMax = p.map(() => 0);
  grads.forEach((g, stepIndex) => {
    const t = stepIndex + 1;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i] + h.wd * p[i];
      m[i] = h.beta1 * m[i] + (1 - h.beta1) * gi;
      v[i] = h.beta2 * v[i] + (1 - h.beta2) * gi * gi;
      vMax[i] = Math.max(vMax[i], v[i]);
      const mHat = m[i] / (1 - h.beta1 ** t);
      const vHat = (h.amsgrad ? vMax[i] : v[i]) / (1 - h.beta2 ** t);
      p[i] -= (h.lr * mHat) / (Math.sqrt(vHat) + h.eps);
    }
  });
  return p;
}

describe('Adam', () => {
  test('first step moves each parameter by lr against the sign of its decayed gradient', () => {
    const p = param([0.5, -1.5, 2, 0]);
    const adam = new optim.Adam({ params: [p], lr: 0.1, weightDecay: 0.5, eps: 1e-12 });
    // decayed gradient g + 0.5·p = [0.25 + 0.25, 1 − 0.75, −0.5 + 1, −0.2 + 0] = [0.5, 0.25, 0.5, −0.2]
    setGrad(p, [0.25, 1, -0.5, -0.2]);
    adam.step();
    // m̂ = g, v̂ = g², so the step is lr·g/|g| up to eps (the decay flips the third direction)
    assertClose(p.detach(), [0.4, -1.6, 1.9, 0.1], { atol: 1e-10 });
  });

  test('three steps with weight decay match the closed form', () => {
    const h = { lr: 0.01, beta1: 0.8, beta2: 0.95, eps: 1e-8, wd: 0.1, amsgrad: false };
    const grads = [
      [0.3, -0.2, 1.5],
      [-0.1, 0.4, 1.0],
      [0.05, 0.05, -2.0],
    ];
    const p = param([1, -2, 0.25]);
    const adam = new optim.Adam({ params: [p], lr: h.lr, betas: [h.beta1, h.beta2], eps: h.eps, weightDecay: h.wd });
    for (const g of grads) {
      setGrad(p, g);
      adam.step();
    }
    assertClose(p.detach(), adamReference([1, -2, 0.25], grads, h), { atol: 1e-14, rtol: 1e-12 });
    assert.equal(adam.stateDict().meta.steps[0], 3);
  });

  test('amsgrad divides by the largest second moment seen', () => {
    const h = { lr: 0.05, beta1: 0.9, beta2: 0.5, eps: 1e-8, wd: 0.01, amsgrad: true };
    // a large gradient followed by small ones: v decays but v̂ keeps its maximum
    const grads = [
      [4, -3],
      [0.1, 0.2],
    ];
    const expected = adamReference([0.2, 0.7], grads, h);
    const withoutMax = adamReference([0.2, 0.7], grads, { ...h, amsgrad: false });
    assert.ok(Math.abs(expected[0] - withoutMax[0]) > 1e-4, 'the case must distinguish amsgrad from Adam');
    const p = param([0.2, 0.7]);
    const adam = new optim.Adam({ params: [p], lr: h.lr, betas: [h.beta1, h.beta2], weightDecay: h.wd, amsgrad: true });
    for (const g of grads) {
      setGrad(p, g);
      adam.step();
    }
    assertClose(p.detach(), expected, { atol: 1e-14, rtol: 1e-12 });
    assert.deepEqual([...adam.stateDict().tensors.keys()], ['0.exp_avg', '0.exp_avg_sq', '0.max_exp_avg_sq']);
  });

  test('float32 parameters larger than one thread\'s share, and a non-contiguous one, follow the closed form', () => {
    // 70,001 elements: the one-pass kernel splits them between threads; the transposed parameter takes the
    // composed-operations path. Every combination of weight decay and amsgrad, three steps each.
    const n = 70001;
    const values = (seed: number) => Array.from({ length: n }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 2);
    const p0 = values(1);
    const grads = [values(2), values(3).map((g) => g * 0.1), values(4).map((g) => g * 0.01)];
    for (const wd of [0, 0.1]) {
      for (const amsgrad of [false, true]) {
        const h = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd, amsgrad };
        const expected = adamReference(p0, grads, h);
        const contiguous = torch.tensor(p0).requiresGrad_(true);
        const transposed = torch.tensor(p0.slice(0, n - 1), [2, (n - 1) / 2]).transpose(0, 1).requiresGrad_(true);
        const adam = new optim.Adam({ params: [contiguous, transposed], lr: h.lr, weightDecay: wd, amsgrad });
        for (const g of grads) {
          contiguous.grad = torch.tensor(g);
          transposed.grad = torch.tensor(g.slice(0, n - 1), [2, (n - 1) / 2]).transpose(0, 1);
          adam.step();
        }
        const label = `weight decay ${wd}, amsgrad ${amsgrad}`;
        assertClose(contiguous.detach(), expected, { atol: 2e-6, rtol: 1e-5, message: `${label}, contiguous` });
        assertClose(transposed.detach().transpose(0, 1).contiguous(), expected.slice(0, n - 1), { atol: 2e-6, rtol: 1e-5, message: `${label}, transposed` });
      }
    }
  });

  test('parameters without a gradient are skipped and keep no state', () => {
    const [a, b] = [param([1, 2]), param([3])];
    const adam = new optim.Adam({ params: [a, b], lr: 0.1 });
    setGrad(a, [1, -1]);
    adam.step();
    assert.deepEqual(b.detach().toArray(), [3]);
    assert.deepEqual(Object.keys(adam.stateDict().meta.steps), ['0']);
  });

  test('rejects out-of-range hyperparameters and a parameter listed twice', () => {
    const p = param([1]);
    assert.throws(() => new optim.Adam({ params: [p], betas: [1, 0.999] }), /Adam: betas \[1, 0.999\] must lie in \[0, 1\)/);
    assert.throws(() => new optim.Adam({ params: [p], lr: -1 }), /Adam: lr -1 is negative/);
    assert.throws(() => new optim.Adam({ params: [{ params: [p] }, { params: [p] }] }), /a parameter appears more than once in the parameter groups/);
    assert.throws(() => new optim.Adam({ params: [] }), /no parameters/);
  });
});

describe('SGD', () => {
  test('two momentum steps with dampening and weight decay, by hand', () => {
    const p = param([1, -2]);
    const sgd = new optim.SGD({ params: [p], lr: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 0.01 });
    setGrad(p, [0.5, 1]);
    sgd.step();
    // d = g + 0.01·p = [0.51, 0.98]; the buffer starts as d; p = p − 0.1·d
    const p1 = [1 - 0.1 * 0.51, -2 - 0.1 * 0.98];
    assertClose(p.detach(), p1, { atol: 1e-15 });
    setGrad(p, [-0.25, 0.5]);
    sgd.step();
    // d = g + 0.01·p1; buffer = 0.9·buffer + 0.9·d; p = p1 − 0.1·buffer
    const d2 = [-0.25 + 0.01 * p1[0], 0.5 + 0.01 * p1[1]];
    const buffer2 = [0.9 * 0.51 + 0.9 * d2[0], 0.9 * 0.98 + 0.9 * d2[1]];
    assertClose(p.detach(), [p1[0] - 0.1 * buffer2[0], p1[1] - 0.1 * buffer2[1]], { atol: 1e-15 });
  });

  test('Nesterov steps along g + momentum·buffer', () => {
    const p = param([0]);
    const sgd = new optim.SGD({ params: [p], lr: 1, momentum: 0.5, nesterov: true });
    setGrad(p, [2]);
    sgd.step(); // buffer 2, direction 2 + 0.5·2 = 3
    assertClose(p.detach(), [-3], { atol: 0 });
    setGrad(p, [1]);
    sgd.step(); // buffer 0.5·2 + 1 = 2, direction 1 + 0.5·2 = 2
    assertClose(p.detach(), [-5], { atol: 0 });
    assert.throws(() => new optim.SGD({ params: [p], lr: 1, nesterov: true }), /nesterov needs momentum > 0 and dampening 0/);
  });

  test('parameter groups use their own learning rates', () => {
    const [a, b] = [param([1]), param([1])];
    const sgd = new optim.SGD({ params: [{ params: [a] }, { params: [b], lr: 0.5 }], lr: 0.1 });
    setGrad(a, [2]);
    setGrad(b, [2]);
    sgd.step();
    assertClose(a.detach(), [0.8], { atol: 1e-15 });
    assertClose(b.detach(), [0], { atol: 1e-15 });
    assert.deepEqual(
      sgd.paramGroups.map((g) => g.lr),
      [0.1, 0.5],
    );
  });
});

describe('zeroGrad', () => {
  test('removes gradients, or zeroes them in place', () => {
    const p = param([1, 2]);
    const sgd = new optim.SGD({ params: [p], lr: 1 });
    setGrad(p, [3, 4]);
    sgd.zeroGrad(false);
    assert.deepEqual(p.grad!.toArray(), [0, 0]);
    sgd.zeroGrad();
    assert.equal(p.grad, null);
  });
});

describe('optimiser state dict', () => {
  const gradsAt = (step: number) => [
    [Math.sin(step), Math.cos(step), 0.1 * step],
    [[-0.5 * step, 0.25], [1, -1]].flat(),
  ];

  test('a state saved to safetensors and loaded elsewhere gives identical later steps', () => {
    const start = [
      [0.3, -0.1, 2],
      [1, 2, 3, 4],
    ];
    const makeParams = () => [param(start[0]), torch.tensor(start[1], [2, 2], { dtype: 'float64', requiresGrad: true })];
    const original = makeParams();
    const adam = new optim.Adam({ params: original, lr: 0.02, weightDecay: 1e-2, amsgrad: true });
    const runStep = (opt: torch.optim.Adam, params: Tensor[], step: number) => {
      params.forEach((p, i) => (p.grad = torch.tensor(gradsAt(step)[i], p.shape, { dtype: 'float64' })));
      opt.step();
    };
    for (let step = 1; step <= 3; step++) runStep(adam, original, step);

    const saved = adam.stateDict();
    const bytes = torch.serializeSafetensors(saved.tensors, { optimizer: JSON.stringify(saved.meta) });
    const parsed = torch.parseSafetensors(bytes);

    const copies = makeParams();
    torch.noGrad(() => copies.forEach((p, i) => p.copy_(original[i])));
    const resumed = new optim.Adam({ params: copies, lr: 999, amsgrad: true });
    resumed.loadStateDict({ tensors: parsed.tensors, meta: JSON.parse(parsed.metadata.optimizer) });
    assert.equal(resumed.paramGroups[0].lr, 0.02);
    assert.equal(resumed.paramGroups[0].weightDecay, 1e-2);

    for (let step = 4; step <= 5; step++) {
      runStep(adam, original, step);
      runStep(resumed, copies, step);
    }
    original.forEach((p, i) => assert.ok(p.detach().equal(copies[i].detach()), `parameter ${i} differs after resuming`));
    assert.deepEqual(resumed.stateDict().meta.steps, { 0: 5, 1: 5 });
  });

  test('SGD momentum buffers survive a round trip', () => {
    const a = param([1, 1]);
    const sgd = new optim.SGD({ params: [a], lr: 0.1, momentum: 0.9 });
    setGrad(a, [1, 2]);
    sgd.step();
    const b = param(a.detach().toArray());
    const copy = new optim.SGD({ params: [b], lr: 0.1, momentum: 0.9 });
    copy.loadStateDict(sgd.stateDict());
    for (const [p, opt] of [
      [a, sgd],
      [b, copy],
    ] as const) {
      setGrad(p, [0.5, 0.5]);
      opt.step();
    }
    assert.ok(a.detach().equal(b.detach()));
    // with the buffer restored the second step is 0.1·(0.9·[1, 2] + [0.5, 0.5])
    assertClose(b.detach(), [1 - 0.1 - 0.1 * 1.4, 1 - 0.2 - 0.1 * 2.3], { atol: 1e-15 });
  });

  test('loading rejects another kind, a mis-shaped buffer and unknown names', () => {
    const p = param([1, 2]);
    const adam = new optim.Adam({ params: [p] });
    setGrad(p, [1, 1]);
    adam.step();
    const state = adam.stateDict();
    const sgd = new optim.SGD({ params: [param([1, 2])], lr: 1 });
    assert.throws(() => sgd.loadStateDict(state), /SGD.loadStateDict: the state belongs to a Adam optimiser/);
    const other = new optim.Adam({ params: [param([1, 2, 3])] });
    assert.throws(() => other.loadStateDict(state), /'0.exp_avg' has shape \[2\], its parameter \[3\]/);
    const renamed = new Map([['0.momentum', f64([0, 0])]]);
    assert.throws(() => adam.loadStateDict({ tensors: renamed, meta: state.meta }), /unexpected state tensor '0.momentum'/);
    const twoGroups = new optim.Adam({ params: [{ params: [param([1, 2])] }, { params: [param([1])] }] });
    assert.throws(() => twoGroups.loadStateDict(state), /the state has 1 parameter groups, this optimiser 2/);
  });
});

describe('poly learning rate', () => {
  test('lr0·(1 − epoch/maxEpochs)^power', () => {
    assert.equal(optim.polyLearningRate(2e-4, 0, 1000), 2e-4);
    assertClose([optim.polyLearningRate(2e-4, 500, 1000)], [2e-4 * 0.5358867312681466], { atol: 0, rtol: 1e-14 });
    assertClose([optim.polyLearningRate(1, 1, 4, 2)], [0.5625], { atol: 0, rtol: 1e-15 });
    assert.equal(optim.polyLearningRate(0.1, 10, 10), 0);
    assert.throws(() => optim.polyLearningRate(0.1, 11, 10), /epoch 11 is outside \[0, 10\]/);
    assert.throws(() => optim.polyLearningRate(0.1, 0, 0), /maxEpochs must be positive/);
  });

  test('the scheduler sets every group and remembers the initial rates', () => {
    const sgd = new optim.SGD({ params: [{ params: [param([1])] }, { params: [param([1])], lr: 0.1 }], lr: 1 });
    const schedule = new optim.PolyLRScheduler(sgd, 4, 2);
    assert.deepEqual(schedule.lastLr, [1, 0.1]);
    schedule.step();
    assertClose(schedule.lastLr, [0.5625, 0.05625], { atol: 0, rtol: 1e-15 });
    schedule.setEpoch(2);
    assertClose(schedule.lastLr, [0.25, 0.025], { atol: 0, rtol: 1e-15 });
    assert.equal(schedule.epoch, 2);
    assert.deepEqual(
      sgd.stateDict().meta.groups.map((g) => g.initialLr),
      [1, 0.1],
    );
    // a fresh optimiser resumed from that state continues the same schedule
    const resumed = new optim.SGD({ params: [{ params: [param([1])] }, { params: [param([1])] }], lr: 7 });
    resumed.loadStateDict(sgd.stateDict());
    const resumedSchedule = new optim.PolyLRScheduler(resumed, 4, 2);
    resumedSchedule.setEpoch(3);
    assertClose(resumedSchedule.lastLr, [0.0625, 0.00625], { atol: 0, rtol: 1e-15 });
  });
});

describe('clipGradNorm', () => {
  const withGrads = () => {
    const [a, b] = [param([0, 0]), param([0])];
    setGrad(a, [3, 4]);
    setGrad(b, [-12]);
    return [a, b];
  };

  test('returns the total norm and scales by maxNorm/(total + 1e-6) when that is below 1', () => {
    const params = withGrads();
    assert.equal(optim.clipGradNorm(params, 6.5), 13);
    const factor = 6.5 / (13 + 1e-6);
    assertClose(params[0].grad!, [3 * factor, 4 * factor], { atol: 1e-15 });
    assertClose(params[1].grad!, [-12 * factor], { atol: 1e-15 });
  });

  test('leaves small gradients unchanged', () => {
    const params = withGrads();
    assert.equal(optim.clipGradNorm(params, 20), 13);
    assert.deepEqual(params[0].grad!.toArray(), [3, 4]);
    assert.deepEqual(params[1].grad!.toArray(), [-12]);
  });

  test('other norms and no gradients', () => {
    assert.equal(optim.clipGradNorm(withGrads(), 100, 1), 19);
    const params = withGrads();
    assert.equal(optim.clipGradNorm(params, 6, Infinity), 12);
    assertClose(params[1].grad!, [(-12 * 6) / (12 + 1e-6)], { atol: 1e-15 });
    assert.equal(optim.clipGradNorm([param([1])], 1), 0);
  });
});

describe('memory', () => {
  test('training steps and layer forward passes leave no tensor handles behind', () => {
    torch.manualSeed(2);
    const { nn } = torch;
    const live = () => torch.memoryStats().handles;
    const model = new nn.Sequential(
      new nn.Conv3d(1, 2, 3, { padding: 1, paddingMode: 'reflect' }),
      new nn.InstanceNorm3d(2, { affine: true }),
      new nn.LeakyReLU(0.2),
      new nn.BatchNorm3d(2),
      new nn.Dropout(0.1),
    );
    const attention = new nn.MultiheadAttention(4, 2, { dropout: 0.1 });
    const params = [...model.parameters(), ...attention.parameters()];
    const adam = new optim.Adam({ params, amsgrad: true, weightDecay: 1e-4 });
    const sgd = new optim.SGD({ params, lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.1 });
    const schedule = new optim.PolyLRScheduler(adam, 10);
    const x = torch.randn([2, 1, 4, 4, 4]);
    const tokens = torch.randn([5, 2, 4]);
    // the loss is computed in a scope; the optimiser calls run outside any, so they must clean up themselves
    const trainStep = () => {
      torch.tidy(() => {
        const attended = attention.forward(tokens, tokens, tokens, { needWeights: true }).output;
        model.forward(x).square().mean().add(attended.square().mean()).backward();
      });
      optim.clipGradNorm(params, 1);
      adam.step();
      sgd.step();
      sgd.zeroGrad(false);
      adam.zeroGrad();
      schedule.step();
    };
    trainStep(); // creates the optimiser state
    const settled = live();
    for (let i = 0; i < 4; i++) trainStep();
    assert.equal(live(), settled);
    // outside any scope, a forward pass leaves exactly its result
    const output = model.forward(x);
    const { output: attended } = attention.forward(tokens);
    assert.equal(live(), settled + 2);
    output.dispose();
    attended.dispose();
    assert.equal(live(), settled);
  });
});
