import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { createModel, modalityMask, modelConfig, SmmlModel, type SmmlModelConfigOverrides } from '../../src/models/index.ts';

const K = 4;
const PATCH = 32;

/** The tiny preset (patch 32, b = 2, E = 8) with optional replacements, seeded for reproducible weights. */
function tinyModel(overrides: SmmlModelConfigOverrides = {}): SmmlModel {
  torch.manualSeed(7);
  return new SmmlModel(modelConfig('tiny', overrides));
}

function inputs(batch: number, classes = 4, seed = 11) {
  torch.manualSeed(seed);
  return {
    images: torch.randn([batch, K, PATCH, PATCH, PATCH]),
    labels: torch.randint(0, classes, [batch, PATCH, PATCH, PATCH]),
    priors: torch.rand([batch, classes * K, PATCH, PATCH, PATCH]),
  };
}

const maxAbsDiff = (a: Tensor, b: Tensor) => torch.tidy(() => a.sub(b).abs().max().item());
/** images with modality k of every sample replaced by fresh noise. */
const replaceModality = (images: Tensor, k: number) =>
  torch.tidy(() => torch.cat([images.narrow(1, 0, k), torch.randn([images.size(0), 1, PATCH, PATCH, PATCH]).mul(3), images.narrow(1, k + 1, K - k - 1)], 1));

test('training outputs have the documented shapes for batch 1 and 2, dual and single branch', () => {
  for (const [batch, branches, classes] of [
    [1, 2, 4],
    [2, 1, 5],
  ] as const) {
    const model = tinyModel({ branches, classes });
    const { images, labels, priors } = inputs(batch, classes);
    const masks = Array.from({ length: branches }, (_, i) => modalityMask(Array.from({ length: batch }, (_, b) => [true, (b + i) % 2 === 0, false, true])));
    torch.tidy(() => {
      const outputs = model.forward(images, masks, { priors, labels });
      assert.equal(outputs.length, branches);
      const full = [batch, classes, PATCH, PATCH, PATCH];
      for (const out of outputs) {
        assert.deepEqual(out.logits.shape, full);
        assert.equal(out.deepSupervision.length, 4);
        for (const p of out.deepSupervision) {
          assert.deepEqual(p.shape, full);
          // softmax, then trilinear upsampling: still a distribution over the classes
          assert.ok(maxAbsDiff(p.sum(1), torch.ones([batch, PATCH, PATCH, PATCH])) < 1e-5);
        }
        assert.equal(out.separate.length, K);
        for (const p of out.separate) assert.deepEqual(p.shape, full);
        // d_f = K·16b = 4·32, P = 32/16 = 2
        assert.deepEqual(out.bottleneck.shape, [batch, 128, 2, 2, 2]);
        assert.deepEqual(out.refined!.shape, full);
      }
    });
    model.dispose();
  }
});

test('the separate decoder on one chosen modality per sample equals that modality of the all-modality pass', () => {
  const model = tinyModel({ refinement: { enabled: false } }).eval();
  const { images } = inputs(2);
  const masks = [modalityMask([[true, false, true, true], [false, true, false, false]]), modalityMask([[true, true, true, true], [true, false, false, true]])];
  torch.tidy(() => {
    const every = model.forward(images, masks);
    const chosen = model.forward(images, masks, { separateModalities: [2, 0] });
    for (const [b, output] of chosen.entries()) {
      assert.equal(output.separate!.length, 1);
      for (const [sample, k] of [[0, 2], [1, 0]]) {
        const expected = every[b].separate![k].narrow(0, sample, 1);
        assert.ok(maxAbsDiff(output.separate![0].narrow(0, sample, 1), expected) < 1e-5, `branch ${b}, sample ${sample}`);
      }
      // Equal up to float rounding: the encoders now run on the samples that need them, a batch of one or two.
      assert.ok(maxAbsDiff(output.logits, every[b].logits) < 1e-4, 'the fused prediction does not change');
    }
    assert.throws(() => model.forward(images, masks, { separateModalities: [4, 0] }), /one separate-decoder modality in 0\.\.3 per sample \(2\)/);
    assert.throws(() => model.forward(images, masks, { separateModalities: [1] }), /per sample \(2\)/);
  });
});

test('encoders run only where a sample has the modality or decodes it alone, with the gradients of computing them all', () => {
  // float64: batches of one and of two take different kernels, and in float32 this gradient's own rounding error
  // (about 1e-4 of the largest, measured against float64) would hide a real difference
  const model = tinyModel({ branches: 1, refinement: { enabled: false } }).eval().to({ dtype: 'float64' });
  const images = inputs(2).images.double();
  const mask = modalityMask([[false, true, false, false], [false, true, false, true]]);
  const [encoders] = model.branches.map((branch) => branch.encoders);
  const gradients = (separateModalities?: number[]) => {
    model.zeroGrad();
    torch.tidy(() => {
      const [out] = model.forward(images, [mask], { separateModalities });
      const separate = separateModalities ? out.separate[0] : out.separate[1];
      out.logits.sum().add(separate.square().sum()).add(out.bottleneck.sum()).backward();
    });
    return encoders.map((encoder) => encoder.parameters().map((p) => p.grad));
  };
  const every = gradients(undefined).map((grads) => grads.map((g) => g!.clone()));
  // Sample 0 has T1 alone and decodes T1 alone; sample 1 has T1 and T2: FLAIR and T1ce are needed by no sample.
  const skipping = gradients([1, 1]);
  for (const k of [0, 2]) assert.ok(skipping[k].every((g) => !g || g.abs().sum().item() === 0), `encoder ${k} did not run`);
  for (const k of [1, 3]) {
    const largest = Math.max(...every[k].map((g) => g.abs().max().item()));
    assert.ok(largest > 0);
    skipping[k].forEach((g, i) => assert.ok(maxAbsDiff(g!, every[k][i]) <= 1e-10 * largest, `encoder ${k}, parameter ${i}`));
  }
  model.dispose();
});

test('the refined logits need the SRN switched on and the priors given; labels are then required', () => {
  const { images, labels, priors } = inputs(1);
  const mask = modalityMask([[true, true, true, true]]);
  const withoutSrn = tinyModel({ branches: 1, refinement: { enabled: false } });
  torch.tidy(() => {
    assert.equal(withoutSrn.forward(images, [mask], { priors, labels })[0].refined, undefined);
    assert.equal(withoutSrn.branches[0].refinement, null);
  });
  const model = tinyModel({ branches: 1 });
  torch.tidy(() => {
    assert.equal(model.forward(images, [mask], { labels })[0].refined, undefined);
    assert.throws(() => model.forward(images, [mask], { priors }), /needs the labels/);
    assert.throws(() => model.forward(images, [mask], { priors: priors.narrow(1, 0, 4), labels }), /expected priors \(1, 16, 32, 32, 32\)/);
  });
});

test('bad inputs are errors that give the expected shapes', () => {
  const model = tinyModel();
  const { images } = inputs(1);
  const mask = modalityMask([[true, false, false, false]]);
  torch.tidy(() => {
    assert.throws(() => model.forward(images, [mask]), /expected 2 modality masks/);
    assert.throws(() => model.predictProbabilities(images.narrow(2, 0, 16), mask), /expected images \(B, 4, 32, 32, 32\)/);
    assert.throws(() => model.predictProbabilities(images, modalityMask([[true, true, true]])), /expected a modality mask \(1, 4\)/);
  });
  assert.throws(() => modalityMask([[false, false, false, false]]), /at least one modality/);
});

test('masking is real: a masked-out modality cannot change the fused prediction, a present one does', () => {
  const model = tinyModel().eval();
  const { images } = inputs(2);
  // sample 0 lacks T1ce (k = 1); sample 1 lacks FLAIR and T1 (k = 0, 2)
  const mask = modalityMask([
    [true, false, true, true],
    [false, true, false, true],
  ]);
  torch.noGrad(() =>
    torch.tidy(() => {
      const reference = model.predictProbabilities(images, mask);
      const sample = (t: Tensor, b: number) => t.narrow(0, b, 1);
      const changedT1ce = model.predictProbabilities(replaceModality(images, 1), mask);
      assert.ok(maxAbsDiff(sample(changedT1ce, 0), sample(reference, 0)) <= 1e-6, 'absent T1ce leaked into sample 0');
      assert.ok(maxAbsDiff(sample(changedT1ce, 1), sample(reference, 1)) > 1e-4, 'present T1ce had no effect on sample 1');
      const changedFlair = model.predictProbabilities(replaceModality(images, 0), mask);
      assert.ok(maxAbsDiff(sample(changedFlair, 1), sample(reference, 1)) <= 1e-6, 'absent FLAIR leaked into sample 1');
      assert.ok(maxAbsDiff(sample(changedFlair, 0), sample(reference, 0)) > 1e-4, 'present FLAIR had no effect on sample 0');
    }),
  );
});

test('in training the fused outputs get no gradient from a masked-out image, the separate decoder does', () => {
  const model = tinyModel({ branches: 1, refinement: { enabled: false } });
  const { images } = inputs(1);
  const mask = modalityMask([[true, true, false, true]]);
  torch.tidy(() => {
    const x = images.clone().requiresGrad_(true);
    const out = model.forward(x, [mask])[0];
    const fused = out.logits.square().mean().add(out.bottleneck.square().mean());
    const supervised = out.deepSupervision.reduce((s, p) => s.add(p.square().mean()), fused);
    const [gradFused] = torch.grad([supervised], [x], { retainGraph: true });
    const absent = gradFused!.narrow(1, 2, 1).abs().max().item();
    const present = gradFused!.narrow(1, 0, 1).abs().max().item();
    assert.equal(absent, 0);
    assert.ok(present > 0);
    const [gradSeparate] = torch.grad([out.separate[2].square().mean()], [x]);
    assert.ok(gradSeparate!.narrow(1, 2, 1).abs().max().item() > 0, 'the separate decoder sees every modality unmasked');
    assert.equal(gradSeparate!.narrow(1, 0, 1).abs().max().item(), 0, 'separate prediction k depends on modality k only');
  });
});

test('a batch sharing one subset fuses only its modalities: the logits and gradients of masking in a mixed batch', () => {
  // float64, so that the float32 rounding of batches of different sizes cannot hide a real difference
  const model = tinyModel({ branches: 1, refinement: { enabled: false } }).eval().to({ dtype: 'float64' });
  const images = inputs(3).images.double();
  const shared = [false, true, true, false];
  // the first two samples share a subset; a third with another subset sends the batch through the masking path
  const mixed = modalityMask([shared, shared, [true, true, false, true]]);
  const firstTwo = (t: Tensor) => t.narrow(0, 0, 2);
  const run = (x: Tensor, mask: Tensor) => {
    const out = model.forward(x, [mask])[0];
    const logits = firstTwo(out.logits);
    const loss = firstTwo(out.deepSupervision[3]).square().sum().add(logits.square().mean());
    model.zeroGrad();
    const parameters = model.parameters();
    const grads = torch.grad([loss], [x, ...parameters]);
    return { logits, imageGrad: firstTwo(grads[0]!), parameterGrads: grads.slice(1) };
  };
  torch.tidy(() => {
    const alone = run(firstTwo(images).clone().requiresGrad_(true), modalityMask([shared, shared]));
    const masked = run(images.clone().requiresGrad_(true), mixed);
    assert.ok(maxAbsDiff(alone.logits, masked.logits) <= 1e-10 * masked.logits.abs().max().item(), 'logits');
    assert.ok(maxAbsDiff(alone.imageGrad, masked.imageGrad) <= 1e-10 * masked.imageGrad.abs().max().item(), 'image gradient');
    assert.equal(alone.imageGrad.narrow(1, 0, 1).abs().max().item(), 0, 'no gradient reaches an absent modality');
    const largest = Math.max(...masked.parameterGrads.map((g) => (g ? g.abs().max().item() : 0)));
    alone.parameterGrads.forEach((g, i) => {
      const other = masked.parameterGrads[i];
      if (!g || !other) return assert.equal(g, other, `parameter ${i}: gradient on one side only`);
      assert.ok(maxAbsDiff(g, other) <= 1e-10 * largest, `parameter ${i}`);
    });
  });
});

test('encoding once and fusing per subset equals the full inference pass, and the training logits', () => {
  const model = tinyModel().eval();
  const { images } = inputs(1);
  const subsets = [
    [true, false, false, false],
    [false, true, true, false],
    [true, true, true, true],
  ];
  torch.noGrad(() =>
    torch.tidy(() => {
      const encodings = model.encode(images);
      for (const subset of subsets) {
        const mask = modalityMask([subset]);
        const direct = model.predictProbabilities(images, mask);
        assert.ok(maxAbsDiff(model.fuseProbabilities(encodings, mask), direct) <= 1e-6, subset.join());
        const training = model.forward(images, [mask, mask]);
        const averaged = torch.stack(training.map((o) => o.logits.softmax(1))).mean(0);
        assert.ok(maxAbsDiff(averaged, direct) <= 1e-6, subset.join());
      }
    }),
  );
});

test('prediction averages the branches’ softmax; inference runs no SRN, separate decoder, deep supervision or absent encoder', () => {
  const model = tinyModel().eval();
  const { images } = inputs(1);
  const mask = modalityMask([[false, true, false, true]]);
  const forbid = (name: string) => () => {
    throw new Error(`${name} ran during inference`);
  };
  for (const branch of model.branches) {
    branch.separateDecoder.forward = forbid('the separate decoder');
    branch.refinement!.forward = forbid('the refinement network');
    for (const head of branch.fusionDecoder.heads) head.forward = forbid('a deep-supervision head');
    branch.encoders[0].forward = forbid('the absent FLAIR encoder');
    branch.encoders[2].forward = forbid('the absent T1 encoder');
  }
  torch.noGrad(() =>
    torch.tidy(() => {
      const probabilities = model.predictProbabilities(images, mask);
      const [p1, p2] = model.branches.map((b) => b.predict(images, mask).softmax(1));
      assert.ok(maxAbsDiff(probabilities, p1.add(p2).div(2)) <= 1e-6);
      assert.ok(maxAbsDiff(p1, p2) > 1e-4, 'the two branches are initialised independently');
      assert.ok(maxAbsDiff(probabilities.sum(1), torch.ones([1, PATCH, PATCH, PATCH])) < 1e-5);
    }),
  );
});

test('the SRN ignores the priors of missing modalities and sees the initial prediction only through a detached softmax', () => {
  const model = tinyModel({ branches: 1 }).eval();
  const { images, labels, priors } = inputs(1);
  const mask = modalityMask([[true, false, true, true]]);
  const branch = model.branches[0];
  torch.tidy(() => {
    const out = model.forward(images, [mask], { priors, labels })[0];
    // replace the T1ce priors (channels c·K + 1) of every class with noise
    const perClass = priors.reshape(1, 4, K, PATCH, PATCH, PATCH);
    const noisy = torch.cat([perClass.narrow(2, 0, 1), torch.rand([1, 4, 1, PATCH, PATCH, PATCH]), perClass.narrow(2, 2, 2)], 2).reshape(priors.shape);
    const again = model.forward(images, [mask], { priors: noisy, labels })[0];
    assert.ok(maxAbsDiff(out.refined!, again.refined!) <= 1e-6);
    // FLAIR is present: its class-0 prior (channel 0) matters
    const changedPresent = torch.cat([torch.rand([1, 1, PATCH, PATCH, PATCH]), priors.narrow(1, 1, 15)], 1);
    assert.ok(maxAbsDiff(out.refined!, model.forward(images, [mask], { priors: changedPresent, labels })[0].refined!) > 1e-5);

    const decoderParams = branch.fusionDecoder.parameters();
    const srnParams = branch.refinement!.parameters();
    const grads = torch.grad([out.refined!.square().mean()], [...decoderParams, ...srnParams]);
    assert.ok(grads.slice(0, decoderParams.length).every((g) => g === null || g.abs().max().item() === 0));
    assert.ok(grads.slice(decoderParams.length).some((g) => g !== null && g.abs().max().item() > 0));
  });
});

test('createModel accepts a preset name with overrides or a full configuration', () => {
  const fromPreset = createModel('tiny', { branches: 1, classes: 3 });
  assert.equal(fromPreset.branches.length, 1);
  assert.equal(fromPreset.config.classes, 3);
  const fromConfig = createModel(fromPreset.config);
  assert.equal(fromConfig.parameterCount(), fromPreset.parameterCount());
  assert.throws(() => createModel({ ...fromPreset.config, patch: 24 }), /patch 24 must be divisible by 16/);
  // every parameter lives in exactly one branch: the two branches share nothing
  const dual = createModel('tiny');
  const [a, b] = dual.branches.map((br) => new Set(br.parameters()));
  assert.ok([...a].every((p) => !b.has(p)));
  assert.equal(dual.parameterCount(), 2 * dual.branches[0].parameterCount());
});

test('conv weights are kaiming normal (std √(2/fan_in)), biases within PyTorch’s default bound, position embeddings zero', () => {
  const branch = tinyModel({ branches: 1 }).branches[0];
  const conv = branch.encoders[0].pairs[4].first.conv; // 32 → 32, 3x3x3: fan_in = 864, 27,648 weights
  const fanIn = 32 * 27;
  const values = Array.from(conv.weight.toTypedArray() as Float32Array);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  // standard error of a sample std over n normal values is std/√(2n) ≈ 0.4 %
  assert.ok(Math.abs(std / Math.sqrt(2 / fanIn) - 1) < 0.03, `std ${std}`);
  assert.ok(Math.abs(mean) < 0.003, `mean ${mean}`);
  assert.ok(conv.bias!.abs().max().item() <= 1 / Math.sqrt(fanIn));
  assert.equal(branch.intraModal[1].position.abs().max().item(), 0);
  assert.deepEqual(branch.intraModal[1].position.shape, [1, 8, 8]); // P^3 = 2^3 tokens of width E = 8
});

test('recomputing every part gives the outputs and parameter gradients of the plain step', () => {
  const { images, labels, priors } = inputs(2);
  const masks = [modalityMask([[true, false, true, true], [false, true, false, false]]), modalityMask([[true, true, true, true], [false, false, true, false]])];
  // dropout is on (train mode), so equal gradients also need the recomputed dropout masks to be the drawn ones
  const step = (recompute: SmmlModelConfigOverrides['recompute']) =>
    torch.tidy(() => {
      const model = tinyModel({ recompute });
      torch.manualSeed(5);
      const outputs = model.forward(images, masks, { priors, labels });
      const flat = outputs.flatMap((o) => [o.logits, ...o.deepSupervision, ...o.separate, o.bottleneck, o.refined!]);
      // fixed random weights per output, so that every element reaches the gradient
      flat.reduce((loss, t, i) => loss.add(t.mul(torch.tensor([i + 1])).sin().sum()), torch.zeros([])).backward();
      const result = { outputs: flat.map((t) => t.detach()), grads: model.namedParameters().map(([name, p]) => [name, p.grad!] as const) };
      return result;
    });
  const plain = step([]);
  const recomputed = step(['encoders', 'transformers', 'fusionDecoder', 'separateDecoder', 'refinement']);
  for (const [i, out] of recomputed.outputs.entries()) assert.ok(maxAbsDiff(out, plain.outputs[i]) < 1e-5, `output ${i}`);
  assert.equal(recomputed.grads.length, plain.grads.length);
  const largest = (t: Tensor) => torch.tidy(() => t.abs().max().item());
  // A conv bias in front of an instance norm has a true gradient of zero: what it gets is rounding noise, so
  // the tolerance has a floor relative to the network's largest gradient.
  const floor = 1e-6 * Math.max(...plain.grads.map(([, g]) => largest(g)));
  for (const [i, [name, grad]] of recomputed.grads.entries()) {
    const expected = plain.grads[i][1];
    assert.ok(largest(grad) > 0, `${name} has a gradient`);
    const difference = maxAbsDiff(grad, expected);
    assert.ok(difference <= 1e-5 * largest(expected) + floor, `${name}: differs by ${difference}, largest gradient ${largest(expected)}`);
  }
});
