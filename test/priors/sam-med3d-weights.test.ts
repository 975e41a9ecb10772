import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { saveTorchCheckpoint, torch, type Tensor } from '../../src/engine/index.ts';
import { VIT_B_ORI } from '../../src/priors/sam-med3d/config.ts';
import { convertSamMed3dCheckpoint } from '../../src/priors/sam-med3d/convert.ts';
import { loadSamMed3dModel, loadSamMed3dWeights } from '../../src/priors/sam-med3d/weights.ts';
import { seededModel, SMALL } from './sam-med3d-helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'smml-sam-weights-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A checkpoint laid out as the official one: the state dict under model_state_dict, beside training state. */
function writeOfficialLayout(file: string, state: Map<string, Tensor>): void {
  saveTorchCheckpoint(file, new Map<string, unknown>([
    ['epoch', 199],
    ['model_state_dict', state],
    ['optimizer_state_dict', new Map([['param_groups', [{ lr: 8e-5 }]]])],
  ]));
}

function forwardOutputs(model: ReturnType<typeof seededModel>): number[][] {
  torch.manualSeed(21);
  const volume = torch.randn([1, 1, 32, 32, 32]);
  return torch.noGrad(() =>
    torch.tidy(() => {
      const embedding = model.embedImage(volume);
      const { lowResLogits, iou } = model.predictMasks(embedding, { coords: torch.tensor([[[7, 8, 9]]]), labels: torch.tensor([[1]]) }, torch.zeros([1, 1, 16, 16, 16]));
      return [embedding.toArray(), lowResLogits.toArray(), iou.toArray()];
    }),
  );
}

test('a checkpoint in the official layout converts to safetensors and loads back into the same network', () => {
  const original = seededModel(13);
  const checkpoint = join(dir, 'small.pth');
  const weights = join(dir, 'small.safetensors');
  writeOfficialLayout(checkpoint, original.stateDict());
  const result = convertSamMed3dCheckpoint(checkpoint, weights, SMALL);
  assert.deepEqual(result, { tensors: original.stateDict().size, parameters: original.parameterCount() });

  const loaded = loadSamMed3dModel(weights);
  assert.deepEqual(loaded.config, SMALL);
  for (const [name, tensor] of original.stateDict()) assert.ok(loaded.stateDict().get(name)!.equal(tensor), name);
  assert.deepEqual(forwardOutputs(loaded), forwardOutputs(original));

  // Loading into an existing model of the same architecture gives the same tensors.
  const other = seededModel(14);
  loadSamMed3dWeights(other, weights);
  for (const [name, tensor] of original.stateDict()) assert.ok(other.stateDict().get(name)!.equal(tensor), name);
  // …and a model of another architecture is refused.
  const big = seededModel(1, { ...SMALL, decoderHeads: 4 });
  assert.throws(() => loadSamMed3dWeights(big, weights), /small\.safetensors: the weights are for another SAM-Med3D configuration/);
  for (const model of [original, loaded, other, big]) model.dispose();
});

test('unexpected and missing keys are listed, a wrong shape names the key and both shapes', () => {
  const model = seededModel(15);
  const state = new Map(model.stateDict());
  state.set('image_encoder.extra.weight', torch.zeros([2]));
  state.delete('mask_decoder.iou_token.weight');
  state.delete('prompt_encoder.pe_layer.positional_encoding_gaussian_matrix');
  state.set('image_encoder.pos_embed', torch.zeros([1, 5, 4, 4, 24]));
  const checkpoint = join(dir, 'broken.pth');
  writeOfficialLayout(checkpoint, state);
  const target = join(dir, 'broken.safetensors');
  assert.throws(
    () => convertSamMed3dCheckpoint(checkpoint, target, SMALL),
    (error: Error) => {
      assert.match(error.message, /broken\.pth: the tensors do not match the SAM-Med3D architecture/);
      assert.match(error.message, /missing keys \(2\): mask_decoder\.iou_token\.weight, prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix\n/);
      assert.match(error.message, /unexpected keys \(1\): image_encoder\.extra\.weight/);
      assert.match(error.message, /'image_encoder\.pos_embed' has shape \[1, 5, 4, 4, 24\], the architecture expects \[1, 4, 4, 4, 24\]/);
      return true;
    },
  );
  assert.throws(() => loadSamMed3dModel(target), /broken\.safetensors: cannot read/);
  // The small checkpoint does not fit vit_b_ori: every shape that differs is named.
  const good = join(dir, 'good.pth');
  writeOfficialLayout(good, model.stateDict());
  assert.throws(() => convertSamMed3dCheckpoint(good, target, VIT_B_ORI), /'image_encoder\.patch_embed\.proj\.weight' has shape \[24, 1, 8, 8, 8\], the architecture expects \[768, 1, 16, 16, 16\]/);
  model.dispose();
});

test('a file that is not a PyTorch zip checkpoint is an error naming it; so is a checkpoint without tensors', () => {
  const text = join(dir, 'notes.pth');
  writeFileSync(text, 'not a checkpoint at all');
  assert.throws(() => convertSamMed3dCheckpoint(text, join(dir, 'out.safetensors')), /notes\.pth: .*not a zip archive/);
  const empty = join(dir, 'empty.pth');
  saveTorchCheckpoint(empty, new Map([['epoch', 1]]));
  assert.throws(() => convertSamMed3dCheckpoint(empty, join(dir, 'out.safetensors')), /empty\.pth: stateDictOf: no dictionary of tensors/);
});
