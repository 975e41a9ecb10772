// Network sizes (docs/method.md §3): named presets and the validation every configuration passes through, for both
// families: SMML and the plain U-Net it is compared with (unet.ts).
import { z } from 'zod';

/** Spatial size of level 5 is patch/16; reflect padding of a 3x3x3 conv needs at least 2 voxels there. */
const MIN_PATCH = 32;
/** The encoder halves the patch four times. */
const ENCODER_DOWNSAMPLING = 16;
/** Voxels per axis at the U-Net's lowest level: instance norm over a single voxel would be all zeros. */
const MIN_UNET_BOTTLENECK = 2;

const positiveInt = z.number().int().positive();

const refinementSchema = z.strictObject({
  /** Switches the semantic-guided refinement network (training only) on or off. */
  enabled: z.boolean(),
  /** U-Net filters per level, finest first; the U-Net halves the patch (filters.length − 1) times. */
  filters: z.array(positiveInt).min(2),
  /** Hidden widths of the class-wise modality re-weighting MLP (1x1x1 convs). */
  reweightHidden: z.array(positiveInt).min(1),
});

/**
 * The parts of a branch whose activations are recomputed during backward instead of kept (activation
 * recomputation, see `recomputable` in blocks.ts): same values and gradients, less memory, more time.
 */
export const RECOMPUTE_PARTS = ['encoders', 'transformers', 'fusionDecoder', 'separateDecoder', 'refinement'] as const;
export type RecomputePart = (typeof RECOMPUTE_PARTS)[number];

const smmlModelSchema = z
  .strictObject({
    /** The SMML network (mmFormer-style branches, see branch.ts). */
    family: z.literal('smml'),
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
    /** Parts recomputed during backward (training on the CPU only; inference never keeps activations). */
    recompute: z.array(z.enum(RECOMPUTE_PARTS)).default([]),
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

const unetModelSchema = z
  .strictObject({
    /** A plain 3D U-Net with modality dropout (see unet.ts). */
    family: z.literal('unet'),
    /** K: input channels, one per modality. */
    modalities: positiveInt,
    /** C: output classes, background included. */
    classes: z.number().int().min(2),
    /** Channels per resolution level, finest first; the network halves the patch (channels.length − 1) times. */
    channels: z.array(positiveInt).min(2),
    /** Side of the cubic training patch in voxels. */
    patch: positiveInt,
  })
  .superRefine((c, ctx) => {
    const downsampling = unetDownsampling(c);
    if (c.patch % downsampling !== 0 || c.patch / downsampling < MIN_UNET_BOTTLENECK) {
      ctx.addIssue({
        code: 'custom',
        path: ['patch'],
        message: `patch ${c.patch} must be divisible by ${downsampling} and at least ${MIN_UNET_BOTTLENECK * downsampling}, as ${c.channels.length} U-Net levels need (instance norm needs more than one voxel at the bottom)`,
      });
    }
  });

export const MODEL_FAMILIES = ['smml', 'unet'] as const;
export type ModelFamily = (typeof MODEL_FAMILIES)[number];

/** Configurations written before the U-Net existed have no `family`: they are SMML networks. */
function withDefaultFamily(value: unknown): unknown {
  const isRecord = typeof value === 'object' && value !== null && !Array.isArray(value);
  return isRecord && !Object.hasOwn(value, 'family') ? { ...value, family: 'smml' } : value;
}

const modelSchema = z.preprocess(withDefaultFamily, z.discriminatedUnion('family', [smmlModelSchema, unetModelSchema]));

export type SmmlModelConfig = z.infer<typeof smmlModelSchema>;
export type UNetModelConfig = z.infer<typeof unetModelSchema>;
/** Every network: `family` says which. */
export type ModelConfig = SmmlModelConfig | UNetModelConfig;
/** The configuration of one family. */
export type ModelConfigOf<F extends ModelFamily> = Extract<ModelConfig, { family: F }>;

/** Field-by-field replacements for an SMML preset; `refinement` is merged one level deep. */
export type SmmlModelConfigOverrides = Partial<Omit<SmmlModelConfig, 'family' | 'refinement'>> & { refinement?: Partial<SmmlModelConfig['refinement']> };
/** Field-by-field replacements for a U-Net preset. */
export type UNetModelConfigOverrides = Partial<Omit<UNetModelConfig, 'family'>>;
export type ModelConfigOverrides = SmmlModelConfigOverrides | UNetModelConfigOverrides;
type OverridesOf<C extends ModelConfig> = C extends SmmlModelConfig ? SmmlModelConfigOverrides : UNetModelConfigOverrides;

const PAPER_REFINEMENT = { enabled: true, filters: [32, 64, 128, 256], reweightHidden: [64, 128, 64] };

/**
 * `paper`: the published sizes (b = 8, E = 512, FFN 4096, 8 heads, 128^3 patches), every part recomputed during
 *   backward: a dual-branch step at batch 2 would otherwise need far more memory than a CPU machine has.
 * `cpu-small`: the CPU demo: the paper's widths (b = 8) with a narrower transformer on the smallest valid patch
 *   (32^3; about 1 s per dual-branch training step at batch 2 on 2 cores). b = 4 learnt about 10 Dice points less
 *   in the same number of steps (docs/learning.md).
 * `cpu-medium`: wider, on 48^3 patches, for longer CPU runs.
 * `tiny`: the smallest valid network, for tests.
 */
export const SMML_PRESETS = {
  paper: {
    family: 'smml',
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
    recompute: [...RECOMPUTE_PARTS],
  },
  'cpu-small': {
    family: 'smml',
    modalities: 4,
    classes: 4,
    baseChannels: 8,
    embedDim: 64,
    ffnHidden: 128,
    heads: 4,
    dropout: 0.1,
    patch: 32,
    branches: 2,
    refinement: { enabled: true, filters: [8, 16, 32, 64], reweightHidden: [64, 128, 64] },
    recompute: [],
  },
  'cpu-medium': {
    family: 'smml',
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
    recompute: [],
  },
  tiny: {
    family: 'smml',
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
    recompute: [],
  },
} satisfies Record<string, SmmlModelConfig>;

/**
 * `unet-paper`: nnU-Net's widths for 128^3 BraTS patches (32, doubling per level, capped at 320).
 * `unet-cpu`: four levels on 32^3 patches, the CPU counterpart of `cpu-small`.
 * `unet-tiny`: three narrow levels, for tests (the counterpart of `tiny`).
 */
export const UNET_PRESETS = {
  'unet-paper': { family: 'unet', modalities: 4, classes: 4, channels: [32, 64, 128, 256, 320], patch: 128 },
  'unet-cpu': { family: 'unet', modalities: 4, classes: 4, channels: [16, 32, 64, 128], patch: 32 },
  'unet-tiny': { family: 'unet', modalities: 4, classes: 4, channels: [4, 8, 16], patch: 32 },
} satisfies Record<string, UNetModelConfig>;

export const MODEL_PRESETS = { ...SMML_PRESETS, ...UNET_PRESETS };

export type SmmlPresetName = keyof typeof SMML_PRESETS;
export type UNetPresetName = keyof typeof UNET_PRESETS;
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

/** `parseModelConfig` for a network of one family: a configuration of another family is an error. */
export function parseModelConfigOf<F extends ModelFamily>(family: F, value: unknown, source = 'model config'): ModelConfigOf<F> {
  const config = parseModelConfig(value, source);
  if (config.family !== family) throw new Error(`${source} describes a '${config.family}' network, expected '${family}'`);
  return config as ModelConfigOf<F>;
}

/** `base` with fields replaced by `overrides` (SMML's `refinement` merged one level deep), validated; the family stays. */
export function withOverrides<C extends ModelConfig>(base: C, overrides: OverridesOf<C>, source = 'model config'): C {
  const merged: Record<string, unknown> = { ...(structuredClone(base) as ModelConfig), ...overrides, family: base.family };
  if (base.family === 'smml') {
    merged.refinement = { ...structuredClone(base.refinement), ...(overrides as SmmlModelConfigOverrides).refinement };
  }
  return parseModelConfigOf(base.family, merged, source) as C;
}

/** A preset with optional replacements, validated, e.g. `modelConfig('paper', { patch: 64 })`. */
export function modelConfig(preset: SmmlPresetName, overrides?: SmmlModelConfigOverrides): SmmlModelConfig;
export function modelConfig(preset: UNetPresetName, overrides?: UNetModelConfigOverrides): UNetModelConfig;
export function modelConfig(preset: ModelPresetName, overrides?: ModelConfigOverrides): ModelConfig;
export function modelConfig(preset: ModelPresetName, overrides: ModelConfigOverrides = {}): ModelConfig {
  if (!Object.hasOwn(MODEL_PRESETS, preset)) {
    throw new Error(`unknown model preset '${preset}' (expected one of ${MODEL_PRESET_NAMES.join(', ')})`);
  }
  return withOverrides<ModelConfig>(MODEL_PRESETS[preset], overrides, `model config (preset '${preset}' with overrides)`);
}

/** The family a preset builds. */
export function presetFamily(preset: ModelPresetName): ModelFamily {
  return MODEL_PRESETS[preset].family;
}

/** The preset a family uses when none is named: the CPU sizes. */
export const DEFAULT_PRESETS = { smml: 'cpu-small', unet: 'unet-cpu' } as const satisfies Record<ModelFamily, ModelPresetName>;

/** Channels of encoder level l ∈ 1..5: b·2^(l−1). */
export function levelChannels(config: SmmlModelConfig): number[] {
  return [1, 2, 4, 8, 16].map((m) => m * config.baseChannels);
}

/** P: tokens per axis at level 5 (the transformer sees P^3 tokens per modality). */
export function tokenGrid(config: SmmlModelConfig): number {
  return config.patch / ENCODER_DOWNSAMPLING;
}

/** d_f: channels of the fused bottleneck (the inter-modal output after its 1x1x1 conv), K·16b. */
export function bottleneckChannels(config: SmmlModelConfig): number {
  return config.modalities * 16 * config.baseChannels;
}

/** How many times the U-Net halves its input: 2^(levels − 1). */
export function unetDownsampling(config: Pick<UNetModelConfig, 'channels'>): number {
  return 2 ** (config.channels.length - 1);
}
