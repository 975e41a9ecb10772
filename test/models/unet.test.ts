// The plain 3D U-Net: shapes, modality dropout as zeroed input channels, the parameter count by hand, and the
// shared model interface (one branch, encode/fuse, configuration checks).
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { createModel, modalityMask, modelConfig, parseModelConfig, UNET_PRESETS, type UNetModel, type UNetModelConfigOverrides } from '../../src/models/index.ts';

const K = 4;
const PATCH = 32;

torch.setNumThreads(1);

/** `unet-tiny` (channels 4, 8, 16) with optional replacements, seeded for reproducible weights, in evaluation mode. */
function tinyUNet(overrides: UNetModelConfigOverrides = {}): UNetModel {
  torch.manualSeed(5);
  return createModel('unet-tiny', overrides).eval();
}

const maxAbsDiff = (a: Tensor, b: Tensor) => torch.tidy(() => a.sub(b).abs().max().item());

test('the U-Net maps (B, K, H, W, D) images to (B, C, H, W, D) logits, one output for its one branch', () => {
  const model = tinyUNet({ classes: 3 });
  torch.manualSeed(1);
  const images = torch.randn([2, K, PATCH, 16, 24]);
  const mask = modalityMask([
    [true, true, true, true],
    [false, true, false, true],
  ]);
  torch.tidy(() => {
    const outputs = model.forward(images, [mask]);
    assert.equal(outputs.length, 1);
    assert.deepEqual(outputs[0].logits.shape, [2, 3, PATCH, 16, 24]);
    assert.deepEqual(Object.keys(outputs[0]), ['logits'], 'no deep supervision, separate decoder, bottleneck or refinement');
    const probabilities = model.predictProbabilities(images, mask);
    assert.ok(maxAbsDiff(probabilities, outputs[0].logits.softmax(1)) < 1e-6);
    assert.ok(maxAbsDiff(probabilities.sum(1), torch.ones([2, PATCH, 16, 24])) < 1e-5);
  });
  assert.deepEqual(model.branches, [model]);
  model.dispose();
});

test('a missing modality is an input channel of zeros, per sample, and what it held cannot matter', () => {
  const model = tinyUNet();
  torch.manualSeed(2);
  const images = torch.randn([2, K, PATCH, PATCH, PATCH]);
  torch.tidy(() => {
    const full = modalityMask([
      [true, true, true, true],
      [true, true, true, true],
    ]);
    // Sample 0 lacks T1ce (channel 1), sample 1 has everything.
    const mask = modalityMask([
      [true, false, true, true],
      [true, true, true, true],
    ]);
    const channelOneZeroed = torch.cat([images.narrow(1, 0, 1), images.narrow(1, 1, 1).mul(torch.tensor([0, 1], [2, 1, 1, 1, 1])), images.narrow(1, 2, 2)], 1);
    const masked = model.forward(images, [mask])[0].logits;
    assert.ok(maxAbsDiff(masked, model.forward(channelOneZeroed, [full])[0].logits) < 1e-6);
    const otherT1ce = torch.cat([images.narrow(1, 0, 1), torch.randn([2, 1, PATCH, PATCH, PATCH]).mul(3), images.narrow(1, 2, 2)], 1);
    const changed = model.forward(otherT1ce, [mask])[0].logits;
    assert.ok(maxAbsDiff(masked.narrow(0, 0, 1), changed.narrow(0, 0, 1)) < 1e-6, 'the absent channel is not seen');
    assert.ok(maxAbsDiff(masked.narrow(0, 1, 1), changed.narrow(0, 1, 1)) > 1e-3, 'a present channel is');
  });
  model.dispose();
});

test('the parameter count follows the layers: a hand count for channels 2, 4 with 4 modalities and 3 classes', () => {
  const model = createModel('unet-tiny', { channels: [2, 4], classes: 3 });
  const conv3 = (inC: number, outC: number) => inC * outC * 27; // 3x3x3, no bias
  const norm = (c: number) => 2 * c; // affine instance norm: scale and shift
  const stage = (inC: number, outC: number) => conv3(inC, outC) + norm(outC) + conv3(outC, outC) + norm(outC);
  const expected =
    stage(4, 2) + // level 0: 216 + 4 + 108 + 4
    stage(2, 4) + // level 1, stride 2: 216 + 8 + 432 + 8
    (4 * 2 * 8 + 2) + // 2x2x2 transposed conv 4 → 2 with bias
    stage(2 * 2, 2) + // decoder level 0 on [upsampled, skip]: 216 + 4 + 108 + 4
    (2 * 3 + 3); // 1x1x1 classifier 2 → 3 with bias
  assert.equal(expected, 1403);
  assert.equal(model.parameterCount(), expected);
  model.dispose();
});

test('encode once and fuse per subset equals predicting each subset', () => {
  const model = tinyUNet();
  torch.manualSeed(3);
  const images = torch.randn([1, K, PATCH, PATCH, PATCH]);
  torch.tidy(() => {
    const encoding = model.encode(images);
    for (const subset of [[true, false, false, false], [false, true, true, false], [true, true, true, true]]) {
      const mask = modalityMask([subset]);
      assert.ok(maxAbsDiff(model.fuseProbabilities(encoding, mask), model.predictProbabilities(images, mask)) < 1e-6, subset.join());
    }
  });
  model.dispose();
});

test('wrong masks, priors and sizes are refused naming what was expected', () => {
  const model = tinyUNet();
  const images = torch.zeros([1, K, PATCH, PATCH, PATCH]);
  const mask = modalityMask([[true, true, true, true]]);
  assert.throws(() => model.forward(images, [mask, mask]), /expected 1 modality mask \(the U-Net has one branch\), got 2/);
  assert.throws(() => model.forward(images, [mask], { priors: images }), /no refinement network/);
  assert.throws(() => model.predictProbabilities(torch.zeros([1, K, 30, PATCH, PATCH]), mask), /sides divisible by 4, got \[1, 4, 30, 32, 32\]/);
  assert.throws(() => model.predictProbabilities(images, modalityMask([[true, true]])), /expected a modality mask \(1, 4\), got \[1, 2\]/);
  model.dispose();
});

test('U-Net configurations: presets valid, the patch checked against the depth, no SMML fields', () => {
  assert.deepEqual(modelConfig('unet-paper').channels, [32, 64, 128, 256, 320]);
  assert.deepEqual([UNET_PRESETS['unet-cpu'].channels, UNET_PRESETS['unet-cpu'].patch], [[16, 32, 64, 128], 32]);
  assert.throws(() => modelConfig('unet-cpu', { patch: 36 }), /patch: patch 36 must be divisible by 8 and at least 16, as 4 U-Net levels need/);
  assert.throws(() => modelConfig('unet-paper', { patch: 16 }), /patch 16 must be divisible by 16 and at least 32/);
  assert.throws(() => parseModelConfig({ ...UNET_PRESETS['unet-cpu'], branches: 1 }), /Unrecognized key: "branches"/);
  assert.throws(() => parseModelConfig({ ...UNET_PRESETS['unet-cpu'], family: 'vnet' }), /family: Invalid discriminator value/);
});
