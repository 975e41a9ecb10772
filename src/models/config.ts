// Network sizes (SPEC.md §3): named presets and the validation every configuration passes through.
import { z } from 'zod';

/** Spatial size of level 5 is patch/16; reflect padding of a 3x3x3 conv needs at least 2 voxels there. */
const MIN_PATCH = 32;
/** The encoder halves the patch four times. */
const ENCODER_DOWNSAMPLING = 16;

const positiveInt = z.number().int().positive();

const refinementSchema = z.strictObject({
  /** Switches the semantic-guided refinement network (training only) on or off. */
  enabled: z.boolean(),
  /** U-Net filters per level, finest first; the U-Net halves the patch (filters.length − 1) times. */
  filters: z.array(positiveInt).min(2),
  /** Hidden widths of the class-wise modality re-weighting MLP (1x1x1 convs). */
  reweightHidden: z.array(positiveInt).min(1),
});

const modelSchema = z
  .strictObject({
    /** K: image channels, one encoder each (FLAIR, T1ce, T1, T2 for BraTS). */
    modalities: positiveInt,
    /** C: output classes, background included. */
    classes: z.number().int().min(2),
    /** b: channels of encoder level 1; level l has b·2^(l−1). */
    baseChannels: positiveInt,
    /** E: transformer token width. */
    embedDim: positiveInt,
    /** Hidden width of the transformer feed-forward network. */
    ffnHidden: positiveInt,
    heads: positiveInt,
    /** Dropout of the transformer blocks (attention weights, attention output, feed-forward). */
    dropout: z.number().min(0).lt(1),
    /** Side of the cubic training patch in voxels. */
    patch: positiveInt,
    /** 2: the SMML dual-branch model; 1: the single-branch (mmFormer-style) baseline. */
    branches: z.union([z.literal(1), z.literal(2)]),
    refinement: refinementSchema,
  })
  .superRefine((c, ctx) => {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    if (c.patch % ENCODER_DOWNSAMPLING !== 0) {
      issue(['patch'], `patch ${c.patch} must be divisible by ${ENCODER_DOWNSAMPLING} (four stride-2 encoder levels)`);
    } else if (c.patch < MIN_PATCH) {
      issue(['patch'], `patch ${c.patch} is below ${MIN_PATCH}: level 5 would be 1 voxel wide, too small for reflect padding`);
    }
    if (c.embedDim % c.heads !== 0) issue(['heads'], `embedDim ${c.embedDim} is not divisible by heads ${c.heads}`);
    const unetDownsampling = 2 ** (c.refinement.filters.length - 1);
    if (c.patch % unetDownsampling !== 0) {
      issue(['refinement', 'filters'], `patch ${c.patch} is not divisible by ${unetDownsampling}, as ${c.refinement.filters.length} U-Net levels need`);
    }
  });

export type ModelConfig = z.infer<typeof modelSchema>;

/** Field-by-field replacements for a preset; `refinement` is merged one level deep. */
export type ModelConfigOverrides = Partial<Omit<ModelConfig, 'refinement'>> & { refinement?: Partial<ModelConfig['refinement']> };

const PAPER_REFINEMENT = { enabled: true, filters: [32, 64, 128, 256], reweightHidden: [64, 128, 64] };

/**
 * `paper`: the published sizes (b = 8, E = 512, FFN 4096, 8 heads, 128^3 patches).
 * `cpu-small`: the CPU demo, on the smallest valid patch (32^3; about 2 s per dual-branch step at batch 2
 *   on 2 cores — the full-resolution convolutions set that floor, not the widths).
 * `cpu-medium`: wider, on 48^3 patches, for longer CPU runs.
 * `tiny`: the smallest valid network, for tests.
 */
export const MODEL_PRESETS = {
  paper: {
    modalities: 4,
    classes: 4,
    baseChannels: 8,
    embedDim: 512,
    ffnHidden: 4096,
    heads: 8,
    dropout: 0.1,
    patch: 128,
    branches: 2,
    refinement: PAPER_REFINEMENT,
  },
  'cpu-small': {
    modalities: 4,
    classes: 4,
    baseChannels: 4,
    embedDim: 64,
    ffnHidden: 128,
    heads: 4,
    dropout: 0.1,
    patch: 32,
    branches: 2,
    refinement: { enabled: true, filters: [8, 16, 32, 64], reweightHidden: [64, 128, 64] },
  },
  'cpu-medium': {
    modalities: 4,
    classes: 4,
    baseChannels: 8,
    embedDim: 128,
    ffnHidden: 256,
    heads: 8,
    dropout: 0.1,
    patch: 48,
    branches: 2,
    refinement: { enabled: true, filters: [8, 16, 32, 64], reweightHidden: [64, 128, 64] },
  },
  tiny: {
    modalities: 4,
    classes: 4,
    baseChannels: 2,
    embedDim: 8,
    ffnHidden: 16,
    heads: 2,
    dropout: 0.1,
    patch: 32,
    branches: 2,
    refinement: { enabled: true, filters: [4, 8], reweightHidden: [8] },
  },
} satisfies Record<string, ModelConfig>;

export type ModelPresetName = keyof typeof MODEL_PRESETS;
export const MODEL_PRESET_NAMES = Object.keys(MODEL_PRESETS) as ModelPresetName[];

/** One line listing a failed validation's issues as `path: message`; `rootLabel` stands for an empty path. */
export function describeZodIssues(error: z.ZodError, rootLabel: string): string {
  return error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : rootLabel}: ${issue.message}`).join('; ');
}

/** Validates a complete configuration (e.g. one read from a checkpoint); `source` names it in errors. */
export function parseModelConfig(value: unknown, source = 'model config'): ModelConfig {
  const result = modelSchema.safeParse(value);
  if (!result.success) throw new Error(`${source} is invalid: ${describeZodIssues(result.error, '(config)')}`);
  return result.data;
}

/** `base` with fields replaced by `overrides` (`refinement` merged one level deep), validated. */
export function withOverrides(base: ModelConfig, overrides: ModelConfigOverrides, source = 'model config'): ModelConfig {
  const merged = { ...structuredClone(base), ...overrides, refinement: { ...structuredClone(base.refinement), ...overrides.refinement } };
  return parseModelConfig(merged, source);
}

/** A preset with optional replacements, validated, e.g. `modelConfig('paper', { patch: 64 })`. */
export function modelConfig(preset: ModelPresetName, overrides: ModelConfigOverrides = {}): ModelConfig {
  if (!Object.hasOwn(MODEL_PRESETS, preset)) {
    throw new Error(`unknown model preset '${preset}' (expected one of ${MODEL_PRESET_NAMES.join(', ')})`);
  }
  return withOverrides(MODEL_PRESETS[preset], overrides, `model config (preset '${preset}' with overrides)`);
}

/** A preset name or a configuration object, validated either way. */
export function resolveModelConfig(spec: ModelPresetName | ModelConfig): ModelConfig {
  return typeof spec === 'string' ? modelConfig(spec) : parseModelConfig(spec);
}

/** Channels of encoder level l ∈ 1..5: b·2^(l−1). */
export function levelChannels(config: ModelConfig): number[] {
  return [1, 2, 4, 8, 16].map((m) => m * config.baseChannels);
}

/** P: tokens per axis at level 5 (the transformer sees P^3 tokens per modality). */
export function tokenGrid(config: ModelConfig): number {
  return config.patch / ENCODER_DOWNSAMPLING;
}

/** d_f: channels of the fused bottleneck (the inter-modal output after its 1x1x1 conv), K·16b. */
export function bottleneckChannels(config: ModelConfig): number {
  return config.modalities * 16 * config.baseChannels;
}
