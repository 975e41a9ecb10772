import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import {
  branchObjectives,
  DEFAULT_OBJECTIVE_CONFIG,
  featureRelationalLoss,
  pixelBidirectionalLoss,
  refinementConsistencyLoss,
  taskLoss,
  type BranchPredictions,
  type ObjectiveConfig,
} from '../../src/losses/index.ts';
import { assertAllClose, assertClose, onehotOf } from './helpers.ts';

const [BATCH, IN_CHANNELS, CLASSES, FEATURES] = [2, 3, 3, 4];
const SPATIAL = [4, 4, 2];

/** The parameters of one stand-in branch: 1×1×1 linear maps of a fixed input. */
interface BranchParameters {
  logits: Tensor; // (C, Cin)
  aux: Tensor; // (C, Cin)
  refined: Tensor; // (C, Cin)
  features: Tensor; // (d, Cin)
}

const newParameters = (): BranchParameters => ({
  logits: torch.randn([CLASSES, IN_CHANNELS], { dtype: 'float64' }).requiresGrad_(),
  aux: torch.randn([CLASSES, IN_CHANNELS], { dtype: 'float64' }).requiresGrad_(),
  refined: torch.randn([CLASSES, IN_CHANNELS], { dtype: 'float64' }).requiresGrad_(),
  features: torch.randn([FEATURES, IN_CHANNELS], { dtype: 'float64' }).requiresGrad_(),
});
const parameterList = (p: BranchParameters) => [p.logits, p.aux, p.refined, p.features];

const pointwise = (weight: Tensor, x: Tensor) => torch.einsum('oc,bcxyz->boxyz', weight, x);

function predict(p: BranchParameters, input: Tensor): Required<BranchPredictions> {
  const logits = pointwise(p.logits, input);
  const auxLogits = pointwise(p.aux, input);
  return {
    logits,
    // Four heads, as SMML's fusion decoder has (levels 5, 4, 3, 2).
    deepSupervisionProbs: [1, 2, 0.5, -1].map((scale) => auxLogits.mul(scale).softmax(1)),
    separateProbs: [auxLogits.add(logits).softmax(1)],
    refinedLogits: pointwise(p.refined, input).add(logits),
    bottleneck: pointwise(p.features, torch.avgPool3d(input, 2)),
  };
}

function setup(seed: number) {
  torch.manualSeed(seed);
  const input = torch.randn([BATCH, IN_CHANNELS, ...SPATIAL], { dtype: 'float64' });
  const labels = torch.randint(0, CLASSES, [BATCH, ...SPATIAL]);
  return { input, labels, onehot: onehotOf(labels, CLASSES), params1: newParameters(), params2: newParameters() };
}

const sumOf = (values: Tensor[]) => values.reduce((a, v) => a + v.item(), 0);

test('every term equals its loss function, and the totals combine as L_1 + L_2 − L_fc', () => {
  const { input, labels, onehot, params1, params2 } = setup(1);
  const [b1, b2] = [predict(params1, input), predict(params2, input)];
  const result = branchObjectives({ branch1: b1, branch2: b2, onehot, labels, epoch: 100 });
  const pbc = pixelBidirectionalLoss(b1.logits, b2.logits, onehot, { tau: 6, scaleByTauSquared: false });
  const fc = featureRelationalLoss(b1.bottleneck, b2.bottleneck, b1.logits, b2.logits, labels).item();
  const expectedTerms = (b: Required<BranchPredictions>, pbcTerm: Tensor) => ({
    task: taskLoss(b.logits.softmax(1), onehot).item(),
    deepSupervision: sumOf(b.deepSupervisionProbs.map((p) => taskLoss(p, onehot))),
    separate: sumOf(b.separateProbs.map((p) => taskLoss(p, onehot))),
    refinedTask: taskLoss(b.refinedLogits.softmax(1), onehot).item(),
    pbc: pbcTerm.item(),
    refinementKl: refinementConsistencyLoss(b.logits, b.refinedLogits).item(),
  });
  const checks = [
    [result.branch1, expectedTerms(b1, pbc.branch1)],
    [result.branch2!, expectedTerms(b2, pbc.branch2)],
  ] as const;
  let ownSum = 0;
  for (const [branch, expected] of checks) {
    assert.deepEqual(Object.keys(branch.terms).sort(), Object.keys(expected).sort());
    for (const [name, value] of Object.entries(expected)) {
      assertClose(branch.terms[name as keyof typeof expected]!.item(), value, 1e-12, name);
    }
    const own = Object.values(expected).reduce((a, v) => a + v, 0);
    assertClose(branch.total.item(), own + fc, 1e-12, 'L_i');
    ownSum += own;
  }
  assert.ok(fc > 0);
  assertClose(result.fc!.item(), fc, 1e-12, 'fc');
  assertClose(result.total.item(), ownSum + fc, 1e-12, 'total');
});

test('one backward of the total gives each branch exactly the gradient of its own L_i', () => {
  const { input, labels, onehot, params1, params2 } = setup(2);
  const objective = () => branchObjectives({ branch1: predict(params1, input), branch2: predict(params2, input), onehot, labels, epoch: 150 });
  objective().total.backward();
  const combined = [...parameterList(params1), ...parameterList(params2)].map((p) => p.grad!.toArray());
  const separate = objective();
  const own1 = torch.grad([separate.branch1.total], parameterList(params1), { retainGraph: true });
  const own2 = torch.grad([separate.branch2!.total], parameterList(params2));
  [...own1, ...own2].forEach((g, i) => {
    assert.ok(g!.abs().sum().item() > 0, `parameter ${i} has a gradient`);
    assertAllClose(combined[i], g!.toArray(), 1e-12, `parameter ${i}`);
  });
});

test('the two KL terms start at the end of the warm-up', () => {
  const { input, labels, onehot, params1, params2 } = setup(3);
  const [b1, b2] = [predict(params1, input), predict(params2, input)];
  const keys = (epoch: number) => Object.keys(branchObjectives({ branch1: b1, branch2: b2, onehot, labels, epoch }).branch2!.terms).sort();
  const always = ['deepSupervision', 'refinedTask', 'separate', 'task'];
  assert.deepEqual(keys(99), always);
  assert.deepEqual(keys(100), [...always, 'pbc', 'refinementKl'].sort());
  const config: ObjectiveConfig = { ...DEFAULT_OBJECTIVE_CONFIG, warmupEpochs: 0 };
  assert.ok('pbc' in branchObjectives({ branch1: b1, branch2: b2, onehot, labels, epoch: 0 }, config).branch1.terms);
});

test('each switch removes its term; PBC temperature settings are passed on', () => {
  const { input, labels, onehot, params1, params2 } = setup(4);
  const [b1, b2] = [predict(params1, input), predict(params2, input)];
  const run = (changes: Partial<ObjectiveConfig['switches']>, extra: Partial<ObjectiveConfig> = {}) =>
    branchObjectives(
      { branch1: b1, branch2: b2, onehot, labels, epoch: 200 },
      { ...DEFAULT_OBJECTIVE_CONFIG, ...extra, switches: { ...DEFAULT_OBJECTIVE_CONFIG.switches, ...changes } },
    );
  const removed: [Partial<ObjectiveConfig['switches']>, string[]][] = [
    [{ task: false }, ['task']],
    [{ aux: false }, ['deepSupervision', 'separate']],
    [{ srn: false }, ['refinedTask']],
    [{ pbc: false }, ['pbc']],
    [{ refinementKl: false }, ['refinementKl']],
  ];
  const all = Object.keys(run({}).branch1.terms);
  for (const [changes, gone] of removed) {
    assert.deepEqual(Object.keys(run(changes).branch1.terms).sort(), all.filter((k) => !gone.includes(k)).sort(), JSON.stringify(changes));
  }
  const withoutFc = run({ frc: false });
  assert.equal(withoutFc.fc, undefined);
  assertClose(withoutFc.total.item(), withoutFc.branch1.total.item() + withoutFc.branch2!.total.item(), 1e-12, 'total without fc');
  const plainPbc = pixelBidirectionalLoss(b1.logits, b2.logits, onehot, { tau: 2, scaleByTauSquared: false }).branch1.item();
  assertClose(run({}, { tau: 2, scaleByTauSquared: false }).branch1.terms.pbc!.item(), plainPbc, 1e-12, 'pbc with tau 2');
  // Auxiliary weights: head h counts weights[h] times, each separate prediction separateWeight times; weight 0 drops a head.
  const weights = [0, 0.125, 0.25, 0.5];
  const weighted = run({}, { deepSupervisionWeights: weights, separateWeight: 0.25 }).branch1.terms;
  const heads = b1.deepSupervisionProbs.map((p) => taskLoss(p, onehot).item());
  assertClose(weighted.deepSupervision!.item(), heads.reduce((sum, h, i) => sum + weights[i] * h, 0), 1e-12, 'weighted deep supervision');
  assertClose(weighted.separate!.item(), 0.25 * sumOf(b1.separateProbs.map((p) => taskLoss(p, onehot))), 1e-12, 'weighted separate decoder');
  // The refinement KL counts refinementKlWeight times; weight 0 drops it.
  const refinementKl = run({}).branch1.terms.refinementKl!.item();
  assertClose(run({}, { refinementKlWeight: 0.25 }).branch1.terms.refinementKl!.item(), 0.25 * refinementKl, 1e-12, 'weighted refinement KL');
  assert.equal(run({}, { refinementKlWeight: 0 }).branch1.terms.refinementKl, undefined);
  // Without class weights every task term (main head, heads, separate decoders, refinement) is the plain-CE task loss.
  const plain = run({}, { crossEntropyClassWeights: 'none' }).branch1.terms;
  const plainTask = (p: Tensor) => taskLoss(p, onehot, undefined, 'none').item();
  assertClose(plain.task!.item(), plainTask(b1.logits.softmax(1)), 1e-12, 'plain task');
  assertClose(plain.deepSupervision!.item(), b1.deepSupervisionProbs.reduce((sum, p) => sum + plainTask(p), 0), 1e-12, 'plain deep supervision');
  assertClose(plain.separate!.item(), b1.separateProbs.reduce((sum, p) => sum + plainTask(p), 0), 1e-12, 'plain separate decoder');
  assertClose(plain.refinedTask!.item(), plainTask(b1.refinedLogits.softmax(1)), 1e-12, 'plain refined task');
  assert.notEqual(plain.task!.item(), run({}).branch1.terms.task!.item());
  assert.throws(() => run({}, { deepSupervisionWeights: [1, 1] }), /2 deep-supervision weights for 4 heads \(branch1\)/);
});

test('single-branch mode counts only branch 1 own terms and needs no bottleneck', () => {
  const { input, labels, onehot, params1 } = setup(5);
  const { bottleneck: _unused, ...branch1 } = predict(params1, input);
  const result = branchObjectives({ branch1, onehot, labels, epoch: 500 });
  assert.equal(result.branch2, undefined);
  assert.equal(result.fc, undefined);
  assert.deepEqual(Object.keys(result.branch1.terms).sort(), ['deepSupervision', 'refinedTask', 'refinementKl', 'separate', 'task']);
  const expected = sumOf(Object.values(result.branch1.terms) as Tensor[]);
  assertClose(result.total.item(), expected, 1e-12, 'total');
  assertClose(result.branch1.total.item(), expected, 1e-12, 'L_1');
});

test('a switched-on term without its input is a clear error', () => {
  const { input, labels, onehot, params1, params2 } = setup(6);
  const { refinedLogits: _refined, ...withoutRefined } = predict(params1, input);
  assert.throws(() => branchObjectives({ branch1: withoutRefined, onehot, labels, epoch: 0 }), /branch1\.refinedLogits/);
  const { bottleneck: _bottleneck, ...withoutBottleneck } = predict(params2, input);
  assert.throws(
    () => branchObjectives({ branch1: predict(params1, input), branch2: withoutBottleneck, onehot, labels, epoch: 0 }),
    /branch2\.bottleneck/,
  );
});
