// Analytic size and cost of a configuration: parameter counts and the floating-point operations of
// its convolutions and matrix products, found by walking the configuration (not a built model).
import { levelChannels, tokenGrid, type SmmlModelConfig } from './config.ts';

/** Which forward passes compute a layer. */
export type CostPart = 'encoder' | 'transformer' | 'fusion-decoder' | 'deep-supervision' | 'separate-decoder' | 'refinement';

/** Parts that inference runs; training runs all. */
const INFERENCE_PARTS: readonly CostPart[] = ['encoder', 'transformer', 'fusion-decoder'];

export interface LayerCost {
  part: CostPart;
  name: string;
  /** Trainable scalars. */
  params: number;
  /** Multiply–adds ×2 of one sample's forward pass (convolutions and matrix products only). */
  forwardFlops: number;
  /** False when nothing before the layer needs a gradient, so its backward pass skips the input gradient. */
  inputNeedsGrad: boolean;
}

const cube = (n: number) => n * n * n;

function conv(
  part: CostPart,
  name: string,
  inC: number,
  outC: number,
  kernel: number,
  outVoxels: number,
  opts: { bias?: boolean; inputNeedsGrad?: boolean } = {},
): LayerCost {
  const taps = inC * outC * cube(kernel);
  return {
    part,
    name,
    params: taps + ((opts.bias ?? true) ? outC : 0),
    forwardFlops: 2 * taps * outVoxels,
    inputNeedsGrad: opts.inputNeedsGrad ?? true,
  };
}

/** One pre-LN transformer block over `tokens` tokens of width `dim`. */
function transformerBlock(name: string, tokens: number, dim: number, ffnHidden: number): LayerCost[] {
  const layer = (suffix: string, params: number, forwardFlops: number): LayerCost => ({
    part: 'transformer',
    name: `${name}.${suffix}`,
    params,
    forwardFlops,
    inputNeedsGrad: true,
  });
  return [
    layer('norms', 4 * dim, 0),
    layer('qkv', 3 * dim * dim, 2 * tokens * dim * 3 * dim),
    // q·kᵀ and weights·v: N×N scores of width E summed over the heads, twice.
    layer('attention', 0, 2 * 2 * tokens * tokens * dim),
    layer('proj', dim * dim + dim, 2 * tokens * dim * dim),
    layer('ffn', 2 * dim * ffnHidden + ffnHidden + dim, 2 * 2 * tokens * dim * ffnHidden),
  ];
}

/** The layers of a decoder's way up (shared by the fusion and separate decoders). */
function upSteps(part: CostPart, prefix: string, channels: number[], voxels: number[]): LayerCost[] {
  return channels.slice(0, -1).flatMap((c, l) => [
    conv(part, `${prefix}.up${l + 1}.reduce`, channels[l + 1], c, 3, voxels[l]),
    conv(part, `${prefix}.up${l + 1}.merge`, 2 * c, c, 3, voxels[l]),
    conv(part, `${prefix}.up${l + 1}.project`, c, c, 1, voxels[l]),
  ]);
}

/** Every layer of one branch, with its parameters and per-sample forward FLOPs. */
export function branchLayerCosts(config: SmmlModelConfig): LayerCost[] {
  const { modalities: K, classes: C, embedDim: E, ffnHidden, patch } = config;
  const channels = levelChannels(config);
  const voxels = channels.map((_, l) => cube(patch / 2 ** l));
  const top = channels.length - 1;
  const tokens = cube(tokenGrid(config));
  const layers: LayerCost[] = [];

  for (let k = 0; k < K; k++) {
    const name = `encoder${k}`;
    layers.push(conv('encoder', `${name}.stem`, 1, channels[0], 3, voxels[0], { inputNeedsGrad: false }));
    channels.forEach((c, l) => {
      if (l > 0) layers.push(conv('encoder', `${name}.down${l + 1}`, channels[l - 1], c, 3, voxels[l]));
      layers.push(conv('encoder', `${name}.pair${l + 1}.first`, c, c, 3, voxels[l]));
      layers.push(conv('encoder', `${name}.pair${l + 1}.second`, c, c, 3, voxels[l]));
    });
    layers.push(conv('transformer', `intraModal${k}.embed`, channels[top], E, 1, voxels[top]));
    layers.push({ part: 'transformer', name: `intraModal${k}.position`, params: tokens * E, forwardFlops: 0, inputNeedsGrad: true });
    layers.push(...transformerBlock(`intraModal${k}.block`, tokens, E, ffnHidden));
  }
  layers.push(...transformerBlock('interModal.block', K * tokens, E, ffnHidden));
  layers.push(conv('transformer', 'interModal.project', K * E, K * channels[top], 1, voxels[top]));

  channels.forEach((c, l) => {
    layers.push(conv('fusion-decoder', `fusion${l + 1}.reduce`, K * c, c, 1, voxels[l]));
    layers.push(conv('fusion-decoder', `fusion${l + 1}.mix`, c, c, 3, voxels[l]));
    layers.push(conv('fusion-decoder', `fusion${l + 1}.project`, c, c, 1, voxels[l]));
  });
  layers.push(...upSteps('fusion-decoder', 'fusionDecoder', channels, voxels));
  for (let l = top; l >= 1; l--) layers.push(conv('deep-supervision', `head${l + 1}`, channels[l], C, 1, voxels[l]));
  layers.push(conv('fusion-decoder', 'fusionDecoder.classifier', channels[0], C, 1, voxels[0]));

  // The separate decoder runs once per modality: its FLOPs count K times, its parameters once.
  const separate = [...upSteps('separate-decoder', 'separateDecoder', channels, voxels), conv('separate-decoder', 'separateDecoder.classifier', channels[0], C, 1, voxels[0])];
  layers.push(...separate.map((s) => ({ ...s, forwardFlops: K * s.forwardFlops })));

  if (config.refinement.enabled) layers.push(...refinementLayerCosts(config));
  return layers;
}

function refinementLayerCosts(config: SmmlModelConfig): LayerCost[] {
  const { modalities: K, classes: C, patch } = config;
  const { filters, reweightHidden } = config.refinement;
  const widths = [K + 1, ...reweightHidden, K];
  const layers = widths.slice(1).map((w, i) => conv('refinement', `reweighting.layer${i + 1}`, widths[i], w, 1, C));
  const voxels = filters.map((_, l) => cube(patch / 2 ** l));
  const block = (name: string, inC: number, outC: number, vox: number): LayerCost[] => [
    conv('refinement', name, inC, outC, 3, vox, { bias: false }),
    { part: 'refinement', name: `${name}.norm`, params: 2 * outC, forwardFlops: 0, inputNeedsGrad: true },
  ];
  filters.forEach((f, l) => {
    layers.push(...block(`unet.down${l + 1}a`, l === 0 ? C * K + C : filters[l - 1], f, voxels[l]));
    layers.push(...block(`unet.down${l + 1}b`, f, f, voxels[l]));
  });
  filters.slice(0, -1).forEach((f, l) => {
    // A 2x2x2 stride-2 transposed conv touches each output voxel with exactly one tap per input channel.
    layers.push(conv('refinement', `unet.up${l + 1}`, filters[l + 1], f, 2, voxels[l + 1]));
    layers.push(...block(`unet.merge${l + 1}a`, 2 * f, f, voxels[l]));
    layers.push(...block(`unet.merge${l + 1}b`, f, f, voxels[l]));
  });
  layers.push(conv('refinement', 'unet.classifier', filters[0], C, 1, voxels[0]));
  return layers;
}

/** Trainable scalars of the whole model (all branches), as `SmmlModel.parameterCount()` reports. */
export function modelParameterCount(config: SmmlModelConfig): number {
  return config.branches * branchLayerCosts(config).reduce((n, l) => n + l.params, 0);
}

/**
 * FLOPs of one training step (forward and backward of every branch) at batch `batch`: backward is
 * twice the forward (input and weight gradients), or once where the input needs no gradient.
 */
export function trainingStepFlops(config: SmmlModelConfig, batch: number): number {
  const perSample = branchLayerCosts(config).reduce((n, l) => n + l.forwardFlops * (l.inputNeedsGrad ? 3 : 2), 0);
  return config.branches * batch * perSample;
}

/** FLOPs of one inference forward pass (all branches, all modalities encoded) at batch `batch`. */
export function inferenceFlops(config: SmmlModelConfig, batch: number): number {
  const perSample = branchLayerCosts(config)
    .filter((l) => INFERENCE_PARTS.includes(l.part))
    .reduce((n, l) => n + l.forwardFlops, 0);
  return config.branches * batch * perSample;
}
