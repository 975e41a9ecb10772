// A training run's folder: what is in it, and loading a trained model back from it.
//
//   run.json                 the resolved configuration, the network and the data (written at the start)
//   checkpoint.safetensors   the last training state: weights, optimiser states, position, random state
//   model.safetensors        the best weights (by validation Dice; the last epoch's without validation)
//   log.jsonl                one JSON record per step and per epoch
//   quality.json             held-out Dice per modality subset (written by `smml evaluate`)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../data/files.ts';
import { torch, type Device } from '../engine/index.ts';
import { createModel, describeZodIssues, parseModelConfig, type ModelConfig, type SegmentationModel } from '../models/index.ts';
import { parseTrainingConfig, type TrainingConfig } from './config.ts';

export const RUN_FORMAT = 'smml-run';
export const MODEL_FORMAT = 'smml-model';
export const CHECKPOINT_FORMAT = 'smml-checkpoint';
export const RUN_FORMAT_VERSION = 1;

export interface RunPaths {
  dir: string;
  config: string;
  checkpoint: string;
  model: string;
  log: string;
}

export function runPaths(runDir: string): RunPaths {
  return {
    dir: runDir,
    config: path.join(runDir, 'run.json'),
    checkpoint: path.join(runDir, 'checkpoint.safetensors'),
    model: path.join(runDir, 'model.safetensors'),
    log: path.join(runDir, 'log.jsonl'),
  };
}

const layoutSchema = z.enum(['brats2018', 'brats2023', 'brats2015']);

/** How class indices map to the label values of the data set's files (class c is written as values[c]). */
const labelConventionSchema = z.strictObject({
  layout: layoutSchema,
  values: z.array(z.number().int().min(0)).min(2),
});
export type LabelConvention = z.infer<typeof labelConventionSchema>;

const runDataSchema = z.strictObject({
  /** The BraTS folder the cases came from (absolute). */
  root: z.string(),
  layout: layoutSchema,
  numClasses: z.number().int().min(2),
  labelConvention: labelConventionSchema,
  /** The preprocessed cases (absolute). */
  cacheDir: z.string(),
  split: z.strictObject({ train: z.array(z.string()), val: z.array(z.string()), test: z.array(z.string()) }),
  /** Median voxel size (mm) of the training cases along i, j, k; inference resamples inputs to it. Absent in runs made before it was recorded. */
  spacing: z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]).optional(),
});
export type RunData = z.infer<typeof runDataSchema>;

const runFileSchema = z.strictObject({
  format: z.literal(RUN_FORMAT),
  formatVersion: z.literal(RUN_FORMAT_VERSION),
  createdAt: z.string(),
  config: z.unknown(),
  model: z.unknown(),
  data: runDataSchema,
});

/** Contents of run.json. */
export interface RunConfig {
  format: typeof RUN_FORMAT;
  formatVersion: typeof RUN_FORMAT_VERSION;
  /** ISO time the run was started. */
  createdAt: string;
  /** The training configuration with every default filled in. */
  config: TrainingConfig;
  /** The network, fully resolved. */
  model: ModelConfig;
  data: RunData;
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${source}: not valid JSON (${(error as Error).message})`);
  }
}

export function writeRunConfig(runDir: string, run: RunConfig): void {
  writeFileAtomic(runPaths(runDir).config, `${JSON.stringify(run, null, 2)}\n`);
}

/** Reads and validates run.json; errors name the file. */
export function readRunConfig(runDir: string): RunConfig {
  const file = runPaths(runDir).config;
  if (!fs.existsSync(file)) throw new Error(`${file}: not found — ${runDir} is not an smml training run`);
  const raw = parseJson(fs.readFileSync(file, 'utf8'), file);
  if (typeof raw === 'object' && raw !== null && (raw as { format?: unknown }).format !== RUN_FORMAT) {
    throw new Error(`${file}: not an smml run file (format is ${JSON.stringify((raw as { format?: unknown }).format)}, expected "${RUN_FORMAT}")`);
  }
  const parsed = runFileSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`${file}: invalid run file: ${describeZodIssues(parsed.error, '(root)')}`);
  return {
    ...parsed.data,
    config: parseTrainingConfig(parsed.data.config, `${file} (config)`),
    model: parseModelConfig(parsed.data.model, `${file} (model)`),
  } as RunConfig;
}

const regionDiceSchema = z.strictObject({ WT: z.number(), TC: z.number(), ET: z.number() });

const qualitySchema = z.strictObject({
  format: z.literal('smml-quality'),
  createdAt: z.string(),
  /** The data folder the cases came from. */
  data: z.string(),
  /** How the held-out cases were chosen, e.g. "the run's test split (57 cases)". */
  cases: z.string(),
  caseCount: z.number().int().positive(),
  /** Mean Dice over the cases per evaluated subset; `modalities` are presence flags in MODALITIES order. */
  subsets: z.array(z.strictObject({ name: z.string(), modalities: z.array(z.boolean()).length(4), dice: regionDiceSchema })),
});
/** quality.json: what a run reaches on held-out cases, per modality subset. */
export type RunQuality = z.infer<typeof qualitySchema>;

/** quality.json of a run: written by evaluation, not by training, so not among `runPaths`. */
export const qualityFile = (runDir: string) => path.join(runDir, 'quality.json');

export function writeRunQuality(runDir: string, quality: RunQuality): void {
  writeFileAtomic(qualityFile(runDir), `${JSON.stringify(quality, null, 1)}\n`);
}

/** quality.json of a run, or null when the run has not been evaluated on held-out cases; errors name the file. */
export function readRunQuality(runDir: string): RunQuality | null {
  const file = qualityFile(runDir);
  if (!fs.existsSync(file)) return null;
  const parsed = qualitySchema.safeParse(parseJson(fs.readFileSync(file, 'utf8'), file));
  if (!parsed.success) throw new Error(`${file}: invalid quality file: ${describeZodIssues(parsed.error, '(root)')}`);
  return parsed.data;
}

/** Validation scores: Dice per region (see `selectionDice`) and their mean. */
export interface ValidationScores {
  dice: { WT: number; TC: number; ET: number };
  mean: number;
  cases: number;
  /** Modality subsets scored (15, or 1 for all four alone); absent in runs made before subsets were scored. */
  subsets?: number;
}

/** What model.safetensors says about itself (stored as JSON strings in `__metadata__`). */
export interface ModelFileMetadata {
  format: typeof MODEL_FORMAT;
  formatVersion: number;
  modelConfig: ModelConfig;
  numClasses: number;
  labelConvention: LabelConvention;
  /** The epoch (counted from 0) whose weights these are. */
  epoch: number;
  validation: ValidationScores | null;
}

export function encodeModelMetadata(metadata: ModelFileMetadata): Record<string, string> {
  return {
    format: metadata.format,
    formatVersion: String(metadata.formatVersion),
    modelConfig: JSON.stringify(metadata.modelConfig),
    numClasses: String(metadata.numClasses),
    labelConvention: JSON.stringify(metadata.labelConvention),
    epoch: String(metadata.epoch),
    validation: JSON.stringify(metadata.validation),
  };
}

const validationSchema = z.strictObject({
  dice: z.strictObject({ WT: z.number(), TC: z.number(), ET: z.number() }),
  mean: z.number(),
  cases: z.number().int().min(0),
  subsets: z.number().int().positive().optional(),
});

export function decodeModelMetadata(metadata: Record<string, string>, file: string): ModelFileMetadata {
  if (metadata.format !== MODEL_FORMAT) {
    const found = metadata.format === undefined ? 'no format tag' : `format "${metadata.format}"`;
    throw new Error(`${file}: not an smml model file (${found}, expected "${MODEL_FORMAT}")`);
  }
  const version = Number(metadata.formatVersion);
  if (version !== RUN_FORMAT_VERSION) throw new Error(`${file}: model format version ${metadata.formatVersion} is not supported (expected ${RUN_FORMAT_VERSION})`);
  const field = (name: string): unknown => {
    if (metadata[name] === undefined) throw new Error(`${file}: model metadata lacks '${name}'`);
    return parseJson(metadata[name], `${file} (metadata '${name}')`);
  };
  const modelConfig = parseModelConfig(field('modelConfig'), `${file} (modelConfig)`);
  const numClasses = field('numClasses');
  const convention = labelConventionSchema.safeParse(field('labelConvention'));
  if (!convention.success) throw new Error(`${file}: invalid labelConvention: ${describeZodIssues(convention.error, '(root)')}`);
  const validation = validationSchema.nullable().safeParse(field('validation'));
  if (!validation.success) throw new Error(`${file}: invalid validation scores: ${describeZodIssues(validation.error, '(root)')}`);
  const epoch = field('epoch');
  if (!Number.isInteger(epoch) || (epoch as number) < 0) throw new Error(`${file}: invalid epoch ${metadata.epoch}`);
  if (numClasses !== modelConfig.classes || convention.data.values.length !== modelConfig.classes) {
    throw new Error(
      `${file}: inconsistent class counts (numClasses ${metadata.numClasses}, model ${modelConfig.classes} classes, ` +
        `label convention of ${convention.data.values.length} values)`,
    );
  }
  return {
    format: MODEL_FORMAT,
    formatVersion: version,
    modelConfig,
    numClasses: modelConfig.classes,
    labelConvention: convention.data,
    epoch: epoch as number,
    validation: validation.data,
  };
}

export interface TrainedModel {
  /** In evaluation mode, on the requested device; of the family its metadata names. */
  model: SegmentationModel;
  /** run.json. */
  config: RunConfig;
  numClasses: number;
  labelConvention: LabelConvention;
  /** The epoch the weights come from and their validation scores. */
  metadata: ModelFileMetadata;
}

/**
 * Loads model.safetensors of a run. Errors name the file: a missing or corrupt file, a file that is not an
 * smml model, weights that do not fit the stored network, or a network that disagrees with run.json.
 */
export function loadTrainedModel(runDir: string, options: { device?: Device } = {}): TrainedModel {
  const paths = runPaths(runDir);
  const config = readRunConfig(runDir);
  if (!fs.existsSync(paths.model)) {
    throw new Error(`${paths.model}: not found — the run in ${runDir} has not finished an epoch yet (resume it with --resume)`);
  }
  const { tensors, metadata: rawMetadata } = torch.loadSafetensors(paths.model);
  try {
    const metadata = decodeModelMetadata(rawMetadata, paths.model);
    if (JSON.stringify(metadata.modelConfig) !== JSON.stringify(config.model)) {
      throw new Error(`${paths.model}: its network configuration differs from the one in ${paths.config}`);
    }
    if (metadata.numClasses !== config.data.numClasses) {
      throw new Error(`${paths.model}: a ${metadata.numClasses}-class model, but ${paths.config} describes ${config.data.numClasses}-class data`);
    }
    const model = createModel(metadata.modelConfig);
    try {
      model.loadStateDict(tensors);
    } catch (error) {
      model.dispose();
      throw new Error(`${paths.model}: the weights do not fit the stored network (${(error as Error).message})`);
    }
    if (options.device && options.device !== 'cpu') {
      torch.checkDevice(options.device);
      model.to({ device: options.device });
    }
    model.eval();
    return { model, config, numClasses: metadata.numClasses, labelConvention: metadata.labelConvention, metadata };
  } finally {
    for (const tensor of tensors.values()) tensor.dispose();
  }
}

/**
 * Throws a clear error when data of `dataClasses` classes is given to a model trained for another count
 * (e.g. a BraTS 2015 5-class model on BraTS 2020 4-class data); `dataSource` names the data.
 */
export function assertSameClasses(trained: Pick<TrainedModel, 'numClasses'> & { config: Pick<RunConfig, 'data'> }, dataClasses: number, dataSource: string): void {
  if (trained.numClasses !== dataClasses) {
    throw new Error(
      `${dataSource}: ${dataClasses}-class data, but the model was trained for ${trained.numClasses} classes ` +
        `(${trained.config.data.labelConvention.layout} labels ${trained.config.data.labelConvention.values.join(', ')})`,
    );
  }
}
