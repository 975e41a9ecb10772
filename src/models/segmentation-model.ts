// What every network family (SMML, the plain U-Net) offers the trainer, inference, evaluation, checkpoints and
// run loading, and building a network of either family from its configuration.
import { torch, type Tensor } from '../engine/index.ts';
import {
  modelConfig,
  withOverrides,
  type ModelConfig,
  type ModelConfigOverrides,
  type ModelPresetName,
  type SmmlModelConfig,
  type SmmlModelConfigOverrides,
  type SmmlPresetName,
  type UNetModelConfig,
  type UNetModelConfigOverrides,
  type UNetPresetName,
} from './config.ts';
import { SmmlModel } from './smml-model.ts';
import { UNetModel } from './unet.ts';

/** Extra inputs of a training forward pass. */
export interface TrainingInputs {
  /** (B, C·K, H, W, D) per-class, per-modality prior maps, class-major then modality. */
  priors?: Tensor;
  /** (B, H, W, D) integer class indices; required with `priors`. */
  labels?: Tensor;
  /**
   * SMML: per sample, the one modality (index in 0..K−1) whose encoder maps the separate decoder decodes, a
   * quarter of its cost; absent: every modality. See `losses.separateModalities`.
   */
  separateModalities?: readonly number[];
}

/** What one branch computes in a training forward pass. Full-resolution maps are (B, C, H, W, D). */
export interface SegmentationOutput {
  /** The prediction's logits. */
  logits: Tensor;
  /** SMML only: softmax probabilities of the deep-supervision heads, upsampled to full size. */
  deepSupervision?: Tensor[];
  /** SMML only: the separate decoder's softmax probabilities, one per modality. */
  separate?: Tensor[];
  /** SMML only: the fused bottleneck F, (B, d_f, P, P, P), for the feature relational constraint. */
  bottleneck?: Tensor;
  /** SMML only: the refinement network's logits, when it runs. */
  refined?: Tensor;
}

/**
 * A segmentation network of any family. `Encoding` is what `encode` hands to `fuseProbabilities`: callers
 * treat it as opaque and pass back only what the same model's `encode` returned.
 */
export interface SegmentationModel<Encoding = unknown> extends torch.nn.Module {
  readonly config: ModelConfig;
  /** The parts trained by one optimiser each, in order (SMML: its one or two branches; the U-Net: the whole network). */
  readonly branches: readonly torch.nn.Module[];
  /** Training: branch i sees `images` under `masks[i]` (B, K); one output per branch. */
  forward(images: Tensor /* (B, K, H, W, D) */, masks: readonly Tensor[], inputs?: TrainingInputs): SegmentationOutput[];
  /** Training of branch `index` alone under `mask` (B, K): what `forward` computes for that branch. */
  forwardBranch(index: number, images: Tensor /* (B, K, H, W, D) */, mask: Tensor, inputs?: TrainingInputs): SegmentationOutput;
  /** Inference: class probabilities (B, C, H, W, D) under one modality mask (B, K). */
  predictProbabilities(images: Tensor /* (B, K, H, W, D) */, mask: Tensor /* (B, K) */): Tensor;
  /** The part of inference that no modality subset changes, computed once for many subsets. */
  encode(images: Tensor /* (B, K, H, W, D) */): Encoding;
  /** `predictProbabilities` for one subset from `encode`'s result (equal within float rounding). */
  fuseProbabilities(encoding: Encoding, mask: Tensor /* (B, K) */): Tensor;
}

/** A model from a preset name (with optional overrides) or a full configuration, of the family the configuration names. */
export function createModel(spec: SmmlPresetName | SmmlModelConfig, overrides?: SmmlModelConfigOverrides): SmmlModel;
export function createModel(spec: UNetPresetName | UNetModelConfig, overrides?: UNetModelConfigOverrides): UNetModel;
export function createModel(spec: ModelPresetName | ModelConfig, overrides?: ModelConfigOverrides): SegmentationModel;
export function createModel(spec: ModelPresetName | ModelConfig, overrides: ModelConfigOverrides = {}): SegmentationModel {
  const config = typeof spec === 'string' ? modelConfig(spec, overrides) : withOverrides<ModelConfig>(spec, overrides);
  return config.family === 'unet' ? new UNetModel(config) : new SmmlModel(config);
}

/** A (B, K) boolean modality mask from per-sample presence flags, e.g. [[true, true, false, true]]. */
export function modalityMask(rows: readonly (readonly boolean[])[]): Tensor {
  if (rows.length === 0) throw new Error('modalityMask: no samples');
  const width = rows[0].length;
  if (rows.some((r) => r.length !== width)) throw new Error('modalityMask: every sample needs the same number of modalities');
  if (rows.some((r) => !r.some(Boolean))) throw new Error('modalityMask: every sample needs at least one modality');
  return torch.tensor(rows.flat().map((v) => (v ? 1 : 0)), [rows.length, width], { dtype: 'bool' });
}
