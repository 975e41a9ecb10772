import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  MODEL_PRESET_NAMES,
  MODEL_PRESETS,
  SMML_PRESETS,
  branchLayerCosts,
  createModel,
  inferenceFlops,
  modelConfig,
  modelParameterCount,
  parseModelConfig,
  tokenGrid,
  trainingStepFlops,
  type SmmlModelConfig,
  type SmmlPresetName,
} from '../../src/models/index.ts';

const tiny = (): SmmlModelConfig => structuredClone(MODEL_PRESETS.tiny) as SmmlModelConfig;

test('every preset is valid, and the paper preset has the published sizes', () => {
  for (const name of MODEL_PRESET_NAMES) assert.deepEqual(modelConfig(name), MODEL_PRESETS[name]);
  const paper = modelConfig('paper');
  assert.equal(paper.baseChannels, 8);
  assert.equal(paper.embedDim, 512);
  assert.equal(paper.ffnHidden, 4096);
  assert.equal(paper.heads, 8);
  assert.equal(paper.patch, 128);
  assert.deepEqual(paper.refinement.filters, [32, 64, 128, 256]);
  assert.equal(tokenGrid(paper), 8); // 8^3 = 512 tokens per modality
  assert.equal(tokenGrid(modelConfig('paper', { patch: 64 })), 4);
});

test('unknown keys and impossible sizes are errors that name the field', () => {
  assert.throws(() => parseModelConfig({ ...tiny(), depth: 3 }), /depth/);
  assert.throws(() => parseModelConfig({ ...tiny(), refinement: { ...tiny().refinement, extra: 1 } }), /extra/);
  assert.throws(() => modelConfig('tiny', { patch: 40 }), /patch: patch 40 must be divisible by 16/);
  assert.throws(() => modelConfig('tiny', { patch: 16 }), /patch: patch 16 is below 32/);
  assert.throws(() => modelConfig('tiny', { heads: 3 }), /heads: embedDim 8 is not divisible by heads 3/);
  assert.throws(() => modelConfig('tiny', { baseChannels: 0 }), /baseChannels/);
  assert.throws(() => modelConfig('tiny', { classes: 1 }), /classes/);
  assert.throws(() => modelConfig('tiny', { dropout: 1 }), /dropout/);
  assert.throws(() => modelConfig('tiny', { branches: 3 as 1 }), /branches/);
  assert.throws(() => modelConfig('tiny', { refinement: { filters: [2, 4, 8, 16, 32, 64, 128] } }), /refinement\.filters: patch 32 is not divisible by 64, as 7 U-Net levels need/);
  assert.throws(() => parseModelConfig({ ...tiny(), embedDim: undefined }, 'checkpoint x.safetensors'), /checkpoint x\.safetensors is invalid: embedDim/);
  assert.throws(() => modelConfig('huge' as 'tiny'), /unknown model preset 'huge'/);
});

test('recomputation: every part for the paper preset, none for the others and for configurations without the field', () => {
  assert.deepEqual(modelConfig('paper').recompute, ['encoders', 'transformers', 'fusionDecoder', 'separateDecoder', 'refinement']);
  for (const name of ['cpu-small', 'cpu-medium', 'tiny'] as const) assert.deepEqual(modelConfig(name).recompute, []);
  const { recompute: _, ...written } = tiny();
  assert.deepEqual((parseModelConfig(written) as SmmlModelConfig).recompute, []);
  assert.throws(() => parseModelConfig({ ...tiny(), recompute: ['decoder'] }), /recompute\.0/);
});

test('overrides replace fields and merge the refinement settings one level deep', () => {
  const config = modelConfig('paper', { patch: 64, refinement: { enabled: false } });
  assert.equal(config.patch, 64);
  assert.equal(config.refinement.enabled, false);
  assert.deepEqual(config.refinement.filters, [32, 64, 128, 256]);
  assert.equal(MODEL_PRESETS.paper.patch, 128, 'the preset itself is unchanged');
});

test('the analytic parameter count equals the built model for several configurations', () => {
  const variants: SmmlModelConfig[] = [
    tiny(),
    { ...tiny(), branches: 1, classes: 5 },
    { ...tiny(), refinement: { ...tiny().refinement, enabled: false } },
    { ...tiny(), patch: 64, modalities: 2, refinement: { enabled: true, filters: [2, 4, 8], reweightHidden: [4, 6] } },
  ];
  for (const config of variants) {
    const model = createModel(config);
    assert.equal(model.parameterCount(), modelParameterCount(config), JSON.stringify(config));
    model.dispose();
  }
});

test('layer costs follow the closed forms of a convolution and of attention', () => {
  const config = tiny();
  const layers = new Map(branchLayerCosts(config).map((l) => [l.name, l]));
  // stem: 3x3x3 conv 1→b over 32^3 output voxels; 2 FLOPs per multiply–add.
  assert.equal(layers.get('encoder0.stem')!.forwardFlops, 2 * 27 * 2 * 32 ** 3);
  assert.equal(layers.get('encoder0.stem')!.params, 27 * 2 + 2);
  assert.equal(layers.get('encoder0.stem')!.inputNeedsGrad, false);
  // level 5 (2^3 voxels, 32 channels), stride-2 conv from level 4 (16 channels).
  assert.equal(layers.get('encoder0.down5')!.forwardFlops, 2 * 27 * 16 * 32 * 8);
  // inter-modal attention: K·P^3 = 32 tokens of width 8: q·kᵀ and weights·v, 2·32·32·8 FLOPs each.
  assert.equal(layers.get('interModal.block.attention')!.forwardFlops, 2 * 2 * 32 * 32 * 8);
  // refinement U-Net input: C·K priors + C probabilities = 20 channels → 4 filters.
  assert.equal(layers.get('unet.down1a')!.params, 20 * 4 * 27);
  // 2x2x2 transposed conv 8→4 from 16^3 to 32^3: one tap per output voxel and channel pair.
  assert.equal(layers.get('unet.up1')!.forwardFlops, 2 * 8 * 4 * 32 ** 3);
  // separate decoder classifier runs once per modality.
  assert.equal(layers.get('separateDecoder.classifier')!.forwardFlops, 4 * 2 * 2 * 4 * 32 ** 3);

  const sum = (pick: (l: { forwardFlops: number; inputNeedsGrad: boolean; part: string }) => number) =>
    branchLayerCosts(config).reduce((n, l) => n + pick(l), 0);
  assert.equal(trainingStepFlops(config, 3), 2 * 3 * sum((l) => l.forwardFlops * (l.inputNeedsGrad ? 3 : 2)));
  const inference = sum((l) => (['encoder', 'transformer', 'fusion-decoder'].includes(l.part) ? l.forwardFlops : 0));
  assert.equal(inferenceFlops(config, 1), 2 * inference);
});

test('parameter counts per SMML preset (the paper preset is built and counted)', () => {
  for (const name of Object.keys(SMML_PRESETS) as SmmlPresetName[]) {
    const config = modelConfig(name);
    const count = modelParameterCount(config);
    console.log(`${name}: ${count} parameters (${config.branches} branches, ${count / config.branches} each)`);
  }
  const paper = createModel('paper');
  assert.equal(paper.parameterCount(), modelParameterCount(modelConfig('paper')));
  paper.dispose();
});
