// Training checkpoints: one safetensors file holding the weights of every branch, each branch's optimiser
// state and libtorch's random state, with the position in the schedule as JSON metadata. Written
// atomically, so an interrupted write leaves the previous checkpoint in place.
import * as fs from 'node:fs';
import { torch, type Tensor } from '../engine/index.ts';
import { parseModelConfig, type SegmentationModel } from '../models/index.ts';
import { CHECKPOINT_FORMAT, RUN_FORMAT_VERSION, type ValidationScores } from './run-dir.ts';

type Adam = torch.optim.Adam;
type OptimizerMeta = torch.optim.OptimizerMeta;

const OPTIMIZER_PREFIX = 'optimizer.';
const RNG_KEY = 'rng.torch';

/**
 * Where training stands. A step's batch, augmentation and modality subsets are functions of the seed and its
 * position, so the position (with libtorch's random state) is all a resume needs.
 */
export interface TrainingPosition {
  /** The epoch in progress, counted from 0 (the next one to run when `stepInEpoch` is 0). */
  epoch: number;
  /** Steps of `epoch` already taken. */
  stepInEpoch: number;
  /** Steps taken since the start of the run. */
  step: number;
}

export interface BestModel {
  epoch: number;
  /** Mean validation Dice over WT, TC, ET. */
  score: number;
  validation: ValidationScores;
}

export interface CheckpointContents {
  position: TrainingPosition;
  /** The best validated model so far; null before the first validation or without validation. */
  best: BestModel | null;
}

/** The key of the random state of the process that trains branch `branch` (0-based) when each branch has its own. */
const randomStateKey = (branch: number) => (branch === 0 ? RNG_KEY : `${RNG_KEY}.branch${branch + 1}`);

/**
 * `optimizers[i]` updates branch i + 1. `randomStates[i]` is the libtorch random state of the process that trains
 * branch i + 1 when the branches train in separate processes; one process keeps one state for all.
 */
export function saveCheckpoint(
  file: string,
  model: SegmentationModel,
  optimizers: readonly Adam[],
  contents: CheckpointContents,
  randomStates: readonly Tensor[] = [torch.getRngState()],
): void {
  torch.tidy(() => {
    const tensors = new Map<string, Tensor>(model.stateDict());
    const metas: OptimizerMeta[] = optimizers.map((optimizer, i) => {
      const state = optimizer.stateDict();
      for (const [name, tensor] of state.tensors) tensors.set(`${OPTIMIZER_PREFIX}branch${i + 1}.${name}`, tensor);
      return state.meta;
    });
    randomStates.forEach((state, branch) => tensors.set(randomStateKey(branch), state));
    torch.saveSafetensors(file, tensors, {
      format: CHECKPOINT_FORMAT,
      formatVersion: String(RUN_FORMAT_VERSION),
      modelConfig: JSON.stringify(model.config),
      position: JSON.stringify(contents.position),
      best: JSON.stringify(contents.best),
      optimizers: JSON.stringify(metas),
      savedAt: new Date().toISOString(),
    });
  });
}

function isPosition(value: unknown): value is TrainingPosition {
  const v = value as TrainingPosition;
  return typeof value === 'object' && value !== null && [v.epoch, v.stepInEpoch, v.step].every((n) => Number.isInteger(n) && n >= 0);
}

/**
 * Restores a checkpoint into `model` and `optimizers` (same network, one optimiser per branch) and sets
 * libtorch's random state: that of the process training `ownBranch` when the checkpoint holds one per branch.
 * `ownRandomState` is false when the process of branch `ownBranch` > 0 found only the first process's state.
 * Errors name the file: missing, corrupt, not an smml checkpoint, written for another network.
 */
export function loadCheckpoint(
  file: string,
  model: SegmentationModel,
  optimizers: readonly Adam[],
  ownBranch = 0,
): CheckpointContents & { ownRandomState: boolean } {
  if (!fs.existsSync(file)) throw new Error(`${file}: no checkpoint to resume from (the run has not saved one yet)`);
  const { tensors, metadata } = torch.loadSafetensors(file);
  try {
    if (metadata.format !== CHECKPOINT_FORMAT) {
      const found = metadata.format === undefined ? 'no format tag' : `format "${metadata.format}"`;
      throw new Error(`not an smml training checkpoint (${found}, expected "${CHECKPOINT_FORMAT}")`);
    }
    if (metadata.formatVersion !== String(RUN_FORMAT_VERSION)) {
      throw new Error(`checkpoint format version ${metadata.formatVersion} is not supported (expected ${RUN_FORMAT_VERSION})`);
    }
    const json = (name: string): unknown => {
      if (metadata[name] === undefined) throw new Error(`the metadata lacks '${name}'`);
      try {
        return JSON.parse(metadata[name]);
      } catch {
        throw new Error(`the metadata '${name}' is not valid JSON`);
      }
    };
    // Parsed first: checkpoints written before the U-Net existed carry no `family`.
    if (JSON.stringify(parseModelConfig(json('modelConfig'), "the metadata 'modelConfig'")) !== JSON.stringify(model.config)) {
      throw new Error(`written for a different network (${metadata.modelConfig}) than this run's (${JSON.stringify(model.config)})`);
    }
    const position = json('position');
    if (!isPosition(position)) throw new Error(`invalid position ${metadata.position}`);
    const metas = json('optimizers') as OptimizerMeta[];
    if (!Array.isArray(metas) || metas.length !== optimizers.length) {
      throw new Error(`holds ${Array.isArray(metas) ? metas.length : 'no'} optimiser states, this run has ${optimizers.length} branches`);
    }
    const rng = tensors.get(RNG_KEY);
    if (!rng) throw new Error(`the random state '${RNG_KEY}' is missing`);
    const weights = new Map([...tensors].filter(([name]) => !name.startsWith(RNG_KEY) && !name.startsWith(OPTIMIZER_PREFIX)));
    model.loadStateDict(weights);
    optimizers.forEach((optimizer, i) => {
      const prefix = `${OPTIMIZER_PREFIX}branch${i + 1}.`;
      const own = new Map([...tensors].filter(([name]) => name.startsWith(prefix)).map(([name, t]) => [name.slice(prefix.length), t]));
      optimizer.loadStateDict({ tensors: own, meta: metas[i] });
    });
    const own = tensors.get(randomStateKey(ownBranch));
    torch.setRngState(own ?? rng);
    return { position, best: json('best') as BestModel | null, ownRandomState: own !== undefined };
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`, { cause: error });
  } finally {
    for (const tensor of tensors.values()) tensor.dispose();
  }
}

/** True when every parameter of `model` is finite (checked before weights are saved). */
export function parametersAreFinite(model: SegmentationModel): boolean {
  return torch.noGrad(() => torch.tidy(() => model.parameters().every((p) => p.isfinite().all().item() === 1)));
}
