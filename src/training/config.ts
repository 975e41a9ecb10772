// The training configuration (docs/method.md §5–6): a zod schema with the paper's defaults, reading from a JSON
// file, and `path=value` overrides from the command line.
import * as fs from 'node:fs';
import { z } from 'zod';
import { SPLIT_PRESETS, type BratsLayout } from '../data/brats.ts';
import { CROSS_ENTROPY_CLASS_WEIGHTS } from '../losses/index.ts';
import {
  DEFAULT_PRESETS,
  describeZodIssues,
  MODEL_FAMILIES,
  MODEL_PRESET_NAMES,
  modelConfig,
  PRECISIONS,
  presetFamily,
  type ModelConfig,
  type ModelFamily,
  type ModelPresetName,
  type SmmlModelConfigOverrides,
  type UNetModelConfigOverrides,
} from '../models/index.ts';

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().min(0);
const SPLIT_PRESET_NAMES = Object.keys(SPLIT_PRESETS) as (keyof typeof SPLIT_PRESETS)[];
const LAYOUTS = ['brats2018', 'brats2023', 'brats2015'] as const satisfies readonly BratsLayout[];

/** The model section once resolved: a family, one of its presets, and replacements of that preset's fields. */
type ModelSection = { family: ModelFamily; preset: ModelPresetName } & Record<string, unknown>;

/**
 * The network: a family (`smml`, `unet`) and a preset plus field replacements (any field of that family's
 * configuration, e.g. `patch`, `branches: 1` for SMML's single-branch baseline). Naming only a preset implies its
 * family; naming only a family takes that family's CPU preset (`cpu-small`, `unet-cpu`); neither is SMML on
 * `cpu-small`. `classes` defaults to the data set's; SMML's `refinement.enabled` follows the SRN loss switches.
 */
const modelSectionSchema = z
  .object({ family: z.enum(MODEL_FAMILIES).optional(), preset: z.enum(MODEL_PRESET_NAMES).optional() })
  .catchall(z.unknown())
  .transform(({ family: requested, preset: named, ...overrides }, ctx): ModelSection => {
    const family = requested ?? (named ? presetFamily(named) : 'smml');
    const preset = named ?? DEFAULT_PRESETS[family];
    if (presetFamily(preset) !== family) {
      ctx.addIssue({ code: 'custom', path: ['preset'], message: `preset '${preset}' is a '${presetFamily(preset)}' network, but model.family is '${family}'` });
      return z.NEVER;
    }
    return { family, preset, ...overrides };
  });

const splitSchema = z.strictObject({
  /** Seed of the train/val/test shuffle (ids are sorted first, so only the set of ids matters). */
  seed: nonNegativeInt.default(1024),
  /** A paper preset (brats2015/2018/2020 counts) or [train, val, test] counts or fractions. */
  proportions: z.union([z.enum(SPLIT_PRESET_NAMES), z.tuple([z.number().min(0), z.number().min(0), z.number().min(0)])]).default([0.7, 0.1, 0.2]),
  /**
   * 'enhancement': split the cases whose tumour core mostly enhances and those with little enhancement (most low-grade
   * gliomas) each in the proportions, so that every part holds both kinds; 'none': one shuffle of all cases.
   */
  stratify: z.enum(['enhancement', 'none']).default('enhancement'),
  /** Split files (one id per line) replace the seeded split; without val/test files those parts are empty. */
  trainFile: z.string().min(1).optional(),
  valFile: z.string().min(1).optional(),
  testFile: z.string().min(1).optional(),
});

const dataSchema = z.strictObject({
  /** A BraTS folder in any supported layout (searched recursively). */
  root: z.string().min(1),
  /** Only look for this layout (otherwise detected). */
  layout: z.enum(LAYOUTS).optional(),
  /** Where preprocessed cases are kept; default `<root>/.smml-cache`. */
  cacheDir: z.string().min(1).optional(),
  imageDtype: z.enum(['float32', 'float16']).default('float32'),
  split: splitSchema.prefault({}),
  /** Batch-building worker threads (0: build batches on the main thread). */
  workers: nonNegativeInt.default(1),
  /** The paper's augmentation (rotation, intensity, flips) on top of the random crop. */
  augment: z.boolean().default(true),
  /** Chance that a training patch is centred on a tumour voxel (nnU-Net's oversampling); 0: the paper's plain random crop. */
  foregroundProbability: z.number().min(0).max(1).default(0),
});

const optimisationSchema = z.strictObject({
  epochs: positiveInt.default(1000),
  /** Iterations per epoch independent of the data set size; null: one pass over the training cases. */
  stepsPerEpoch: positiveInt.nullable().default(null),
  batchSize: positiveInt.default(2),
  /** lr0 of the poly policy lr = lr0·(1 − epoch/epochs)^lrPower. */
  lr: z.number().positive().default(2e-4),
  lrPower: z.number().positive().default(0.9),
  weightDecay: z.number().min(0).default(1e-4),
  betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
  eps: z.number().min(0).default(1e-8),
  amsgrad: z.boolean().default(true),
  seed: nonNegativeInt.default(1024),
  /** libtorch threads; null: the cores of the machine shared among its training processes. */
  threads: positiveInt.nullable().default(null),
  /**
   * How several training processes share the work: 'data', each its share of every batch (any network); 'branches',
   * one branch of a dual-branch network each, on the whole batch (exactly as many processes as branches).
   */
  parallel: z.enum(['data', 'branches']).default('data'),
  /**
   * Seconds between checkpoints, written at epoch ends (0: every epoch). The last epoch and a stop (Ctrl-C) always
   * write one; a killed run resumes from the last one written.
   */
  checkpointSeconds: z.number().min(0).default(0),
  /** 'cpu', 'cuda' or 'cuda:N'. Bit-exact resume is guaranteed on the CPU. */
  device: z.string().regex(/^(cpu|cuda(:\d+)?)$/, "expected 'cpu', 'cuda' or 'cuda:N'").default('cpu'),
  /**
   * The forward pass's arithmetic: 'fp32', or 'bf16' mixed precision (convolutions and matrix products in bfloat16;
   * weights, optimiser state, normalisations, softmax and losses in float32). Part of what a run computes: a resumed
   * run keeps its own.
   */
  precision: z.enum(PRECISIONS).default('fp32'),
});

/** One switch per term of docs/method.md §5 (see src/losses/objective.ts). */
const lossesSchema = z.strictObject({
  task: z.boolean().default(true),
  aux: z.boolean().default(true),
  pbc: z.boolean().default(true),
  frc: z.boolean().default(true),
  /** Task loss of the refinement network; needs semantic priors in the cache. */
  srn: z.boolean().default(false),
  /** KL(σ(Ŷ^ref) ‖ σ(Ŷ)) after warm-up; needs semantic priors in the cache. */
  refinementKl: z.boolean().default(false),
  /** The two KL terms (PBC, refinement KL) count from this epoch on (counted from 0). */
  warmupEpochs: nonNegativeInt.default(100),
  tau: z.number().positive().default(6),
  scaleByTauSquared: z.boolean().default(false),
  /** Weights of the deep-supervision heads' task losses, coarsest head first (levels 5, 4, 3, 2); the paper's code uses 1 each. */
  deepSupervisionWeights: z.array(z.number().min(0)).length(4).default([1, 1, 1, 1]),
  /** Weight of each separate-decoder task loss; the paper's code uses 1. */
  separateWeight: z.number().min(0).default(1),
  /** Weight of the refinement KL (after warm-up); the paper's: 1. See docs/learning.md (E29). */
  refinementKlWeight: z.number().min(0).default(1),
  /**
   * 'all': the separate decoder decodes every modality of every sample (the paper's code). 'one': one modality per
   * sample, drawn uniformly, whose task loss counts K times (an unbiased estimate of the sum at a quarter of the cost).
   */
  separateModalities: z.enum(['all', 'one']).default('all'),
  /**
   * Class weights of every task loss's cross-entropy: 'one-minus-fraction' (the paper's: w_c = 1 − the class's share of
   * the sample's voxels) or 'none' (plain cross-entropy). See docs/learning.md (E26).
   */
  crossEntropyClassWeights: z.enum(CROSS_ENTROPY_CLASS_WEIGHTS).default('one-minus-fraction'),
});

const validationSchema = z.strictObject({
  /** Validate after every N-th epoch (and after the last); 0: never, and model.safetensors is the last epoch's. */
  every: nonNegativeInt.default(10),
  /** Use at most this many validation cases (the first ones of the split); null: all. */
  maxCases: positiveInt.nullable().default(null),
  /** Sliding-window overlap. */
  overlap: z.number().min(0).lt(1).default(0.5),
  /** 'all': score the 15 modality subsets (what the model is for); 'full': all four sequences only (faster). */
  subsets: z.enum(['all', 'full']).default('all'),
});

const logSchema = z.strictObject({
  /** Without a terminal, print a progress line every N steps (epoch summaries are always printed). */
  printEvery: positiveInt.default(10),
});

export const trainingConfigSchema = z
  .strictObject({
    model: modelSectionSchema.prefault({}),
    data: dataSchema,
    training: optimisationSchema.prefault({}),
    losses: lossesSchema.prefault({}),
    validation: validationSchema.prefault({}),
    log: logSchema.prefault({}),
  })
  .superRefine((config, ctx) => {
    // PBC and FRC need two branches and are off for any one-branch network; the SRN terms would need a network the U-Net lacks.
    if (config.model.family !== 'unet') return;
    for (const term of ['srn', 'refinementKl'] as const) {
      if (config.losses[term]) {
        ctx.addIssue({
          code: 'custom',
          path: ['losses', term],
          message: `the U-Net (model.family 'unet') has no refinement network; switch losses.${term} off (the SRN is part of SMML)`,
        });
      }
    }
  });

/** A configuration as written in a JSON file (defaults not yet applied). */
export type TrainingConfigInput = z.input<typeof trainingConfigSchema>;
/** A validated configuration with every default filled in. */
export type TrainingConfig = z.output<typeof trainingConfigSchema>;

/** Validates a configuration object and fills in the defaults; `source` names it in errors. */
export function parseTrainingConfig(value: unknown, source = 'training configuration'): TrainingConfig {
  const result = trainingConfigSchema.safeParse(value);
  if (!result.success) throw new Error(`${source} is invalid: ${describeZodIssues(result.error, '(root)')}`);
  return result.data;
}

/** Reads a JSON configuration file (not yet validated: overrides may still complete it). */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`${file}: cannot read the configuration file (${(error as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: not valid JSON (${(error as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${file}: the configuration must be a JSON object`);
  return value as Record<string, unknown>;
}

/** `"1e-3"` → 1e-3, `"true"` → true, `"[1,2]"` → [1, 2]; text that is not JSON stays a string. */
function parseOverrideValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Applies `section.key=value` assignments (e.g. `training.lr=1e-3`, `model.patch=64`) to a copy of `raw`.
 * Values are read as JSON when they parse, otherwise as strings; intermediate objects are created.
 */
export function applyOverrides(raw: Record<string, unknown>, assignments: readonly string[]): Record<string, unknown> {
  const result = structuredClone(raw);
  for (const assignment of assignments) {
    const match = /^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)=(.*)$/s.exec(assignment);
    if (!match) throw new Error(`override '${assignment}' is not of the form section.key=value (e.g. training.lr=1e-3)`);
    const keys = match[1].split('.');
    let target: Record<string, unknown> = result;
    for (const key of keys.slice(0, -1)) {
      const next = target[key];
      if (next === undefined) target[key] = {};
      else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
        throw new Error(`override '${assignment}': '${key}' is not a section`);
      }
      target = target[key] as Record<string, unknown>;
    }
    target[keys.at(-1)!] = parseOverrideValue(match[2]);
  }
  return result;
}

/** Whether the configuration trains the semantic-guided refinement network (and so needs priors). */
export function usesRefinement(config: TrainingConfig): boolean {
  return config.losses.srn || config.losses.refinementKl;
}

/**
 * The network for a data set of `numClasses` classes: the preset with the section's replacements,
 * `classes` from the data (an explicit different value is an error) and, for SMML, the SRN built exactly
 * when a loss uses it.
 */
export function resolveModelConfig(config: TrainingConfig, numClasses: number): ModelConfig {
  const { family, preset, ...overrides } = config.model;
  if (overrides.classes !== undefined && overrides.classes !== numClasses) {
    throw new Error(`model.classes is ${overrides.classes}, but the data set has ${numClasses} classes`);
  }
  if (family === 'unet') return modelConfig(preset, { ...(overrides as UNetModelConfigOverrides), classes: numClasses });
  const requested = overrides as SmmlModelConfigOverrides;
  const refinement = usesRefinement(config);
  if (requested.refinement?.enabled !== undefined && requested.refinement.enabled !== refinement) {
    throw new Error(
      `model.refinement.enabled is ${requested.refinement.enabled}, but the losses ${refinement ? 'use' : 'do not use'} the refinement network ` +
        '(it is built exactly when losses.srn or losses.refinementKl is on)',
    );
  }
  return modelConfig(preset, { ...requested, classes: numClasses, refinement: { ...requested.refinement, enabled: refinement } });
}
