// The SMML trainer (docs/method.md §2, §5, §6): dual-branch masked mutual learning (or the single-branch
// baseline, or the plain U-Net of the `unet` family), Adam per branch on the poly schedule, validation
// Dice to keep the best model, atomic checkpoints every epoch and on request, and exact resumption.
//
// Reproducibility: a step's batch (cases, crop, augmentation) is a function of (seed, epoch, step) through
// the loader, its modality subsets a function of the same through `deriveSeed`, and dropout draws from
// libtorch's generator, whose state the checkpoint carries. Resuming from a checkpoint therefore takes the
// same steps as the uninterrupted run (bit-exact on the CPU).
//
// Data-parallel training (data-parallel.ts): each process trains a replica on its share of every step, the
// gradients are averaged after backward, and only rank 0 writes the run folder. The step's samples and modality
// subsets are those of one process with the whole step's batch, and the Dice terms' batch-wide sums are completed
// over the ranks, so the world size changes nothing but speed, except where samples meet within a process: FRC's
// class prototypes, the refinement network's batch normalisation, and dropout masks (every rank draws alike).
import * as fs from 'node:fs';
import { createBatchLoader, deriveSeed, type Batch, type BatchLoader } from '../data/loader.ts';
import { ALL_MODALITIES, SUBSETS, subsetName } from '../data/modalities.ts';
import { REGIONS, type Region } from '../data/regions.ts';
import { createRng, randInt, type Rng } from '../data/random.ts';
import { torch, type Tensor } from '../engine/index.ts';
import { evaluateCase, loadCachedEvaluationCase, type EvaluationCase } from '../evaluation/evaluate.ts';
import { regionsPresent } from '../evaluation/metrics.ts';
import { selectionDice, type CaseResult, type EvaluationResult } from '../evaluation/tables.ts';
import { branchObjectives, ownBranchObjective, type BranchPredictions, type Objective, type ObjectiveConfig } from '../losses/index.ts';
import { createModel, modalityMask, trainingForward, type SegmentationModel, type SegmentationOutput } from '../models/index.ts';
import { PRIORS_ARRAY } from '../priors/provider.ts';
import { silentProgress, type ProgressReporter } from '../progress.ts';
import { loadCheckpoint, parametersAreFinite, saveCheckpoint, type BestModel, type TrainingPosition } from './checkpoint.ts';
import { resolveModelConfig, usesRefinement, type TrainingConfig } from './config.ts';
import { checkCache, checkPriors, prepareTrainingData } from './data.ts';
import { deviceOfProcess, singleProcess, threadsPerProcess, type Replicas } from './data-parallel.ts';
import {
  encodeModelMetadata,
  MODEL_FORMAT,
  readRunConfig,
  RUN_FORMAT,
  RUN_FORMAT_VERSION,
  runPaths,
  writeRunConfig,
  type RunConfig,
  type RunPaths,
  type ValidationScores,
} from './run-dir.ts';
import { RunLog } from './run-log.ts';

/** Configuration fields that do not change what is computed, so a resumed run may set them anew. */
const RUNTIME_FIELDS = ['training.threads', 'training.parallel', 'training.checkpointSeconds', 'data.workers', 'log.printEvery'] as const;

/** Seed stream tag of the modality subsets (the loader's streams use other argument counts). */
const SUBSET_STREAM = 0x5eb5e7;
/** Seed stream tag of the random state (dropout) of a process that trains one branch other than the first. */
const BRANCH_RANDOM_STREAM = 0xb7a2c4;

/** Training stopped because the loss (or the weights) stopped being finite. */
export class TrainingDivergedError extends Error {
  override name = 'TrainingDivergedError';
}

export interface TrainerHooks {
  /** Called before every step with the position of that step (tests use it to interrupt a run or to inject a fault). */
  beforeStep?(position: TrainingPosition, trainer: Trainer): void;
}

export interface CreateTrainerOptions {
  runDir: string;
  /** A new run's configuration. With `resume` it may be omitted; if given, only runtime fields (threads, workers, printEvery) may differ from run.json. */
  config?: TrainingConfig;
  /** Continue the run in `runDir` from its checkpoint (from the start if it has none yet). */
  resume?: boolean;
  progress?: ProgressReporter;
  hooks?: TrainerHooks;
  /** The processes training this run together (default: this one alone); only rank 0 writes and reports. */
  replicas?: Replicas;
}

export interface TrainResult {
  status: 'finished' | 'interrupted';
  /** Where training stands (what the last checkpoint holds). */
  position: TrainingPosition;
  best: BestModel | null;
  /** The validation of the last epoch this session trained (the weights training ended with), if it validated. */
  last: { epoch: number; validation: ValidationScores } | null;
  /** Mean wall time of the steps of this session (NaN if none ran). */
  secondsPerStep: number;
  paths: RunPaths;
}

/** Numbers of one branch's objective: its total and every active term. */
export type TermValues = Record<string, number>;

interface StepValues {
  loss: number;
  branches: TermValues[];
  fc?: number;
}

/** The modality subsets (indices into SUBSETS) of one step: [branch][sample]; the branches' subsets differ per sample. */
export function drawSubsets(rng: Rng, batchSize: number, branches: number): number[][] {
  const drawn = Array.from({ length: branches }, () => [] as number[]);
  for (let sample = 0; sample < batchSize; sample++) {
    const first = randInt(rng, 0, SUBSETS.length);
    drawn[0].push(first);
    if (branches === 2) {
      // Uniform over the 14 other subsets.
      const other = randInt(rng, 0, SUBSETS.length - 1);
      drawn[1].push(other >= first ? other + 1 : other);
    }
  }
  return drawn;
}

/** What the objective reads from one branch's outputs. */
export function predictionsOf(output: SegmentationOutput): BranchPredictions {
  return {
    logits: output.logits,
    deepSupervisionProbs: output.deepSupervision ?? [],
    separateProbs: output.separate ?? [],
    refinedLogits: output.refined,
    bottleneck: output.bottleneck,
  };
}

/** One branch's total and every active term, as numbers. */
function termValuesOf(branch: Objective['branch1']): TermValues {
  const values: TermValues = { total: branch.total.item() };
  for (const [name, term] of Object.entries(branch.terms)) if (term) values[name] = term.item();
  return values;
}

function valuesOf(objective: Objective): StepValues {
  return {
    loss: objective.total.item(),
    branches: [termValuesOf(objective.branch1), ...(objective.branch2 ? [termValuesOf(objective.branch2)] : [])],
    fc: objective.fc?.item(),
  };
}

/** "end of epoch 3, step 120 of the run" or "epoch 4, step 7 (step 127 of the run)" (epochs counted from 1). */
function describePosition(position: TrainingPosition): string {
  const { epoch, stepInEpoch, step } = position;
  return stepInEpoch === 0 ? `end of epoch ${epoch}, step ${step} of the run` : `epoch ${epoch + 1}, step ${stepInEpoch} (step ${step} of the run)`;
}

const isEqualJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Top-level `section.key` paths whose values differ between two configurations. */
function changedFields(a: TrainingConfig, b: TrainingConfig): string[] {
  const fields: string[] = [];
  for (const section of Object.keys(a) as (keyof TrainingConfig)[]) {
    const left = a[section] as Record<string, unknown>;
    const right = b[section] as Record<string, unknown>;
    for (const key of new Set([...Object.keys(left), ...Object.keys(right)])) {
      if (!isEqualJson(left[key], right[key])) fields.push(`${section}.${key}`);
    }
  }
  return fields;
}

/** The `section.key` fields other than runtime ones (threads, processes, …) whose values differ: what a resumed or reused run may not change. */
export function configChanges(stored: TrainingConfig, requested: TrainingConfig): string[] {
  return changedFields(stored, requested).filter((field) => !(RUNTIME_FIELDS as readonly string[]).includes(field));
}

/** The stored configuration with the runtime fields of `requested`; any other difference is an error. */
function resumedConfig(stored: TrainingConfig, requested: TrainingConfig | undefined, file: string): TrainingConfig {
  if (!requested) return stored;
  const changed = configChanges(stored, requested);
  if (changed.length > 0) {
    throw new Error(`cannot resume with a different configuration (${changed.join(', ')} differ from ${file}); only ${RUNTIME_FIELDS.join(', ')} may change`);
  }
  const merged = structuredClone(stored);
  for (const field of RUNTIME_FIELDS) {
    const [section, key] = field.split('.') as [keyof TrainingConfig, string];
    (merged[section] as Record<string, unknown>)[key] = (requested[section] as Record<string, unknown>)[key];
  }
  return merged;
}

export class Trainer {
  readonly paths: RunPaths;
  readonly model: SegmentationModel;
  readonly optimizers: torch.optim.Adam[];
  readonly stepsPerEpoch: number;
  private position: TrainingPosition;
  private best: BestModel | null;
  private last: TrainResult['last'] = null;
  private stopRequested = false;
  private readonly objectiveConfig: ObjectiveConfig;
  /** `losses.separateModalities` is 'one' and the network has a separate decoder: each step draws one modality per sample. */
  private readonly separateDecodesOneModality: boolean;
  /** Rank 0's; the other ranks write nothing. */
  private readonly log: RunLog | null;
  /**
   * Branch-parallel training (`training.parallel` 'branches'): the branch this process trains; null when this
   * process trains every branch (alone or data-parallel).
   */
  private readonly ownBranch: number | null;
  /** The step at which the branches' weights and optimiser states were last gathered from their processes. */
  private gatheredAtStep = -1;
  /** When the last checkpoint was written (performance.now()), for `training.checkpointSeconds`. */
  private checkpointedAt = performance.now();
  private checkpointedStep = -1;
  private validationCases: EvaluationCase[] | undefined;

  constructor(
    readonly runConfig: RunConfig,
    runDir: string,
    private readonly loader: BatchLoader,
    private readonly progress: ProgressReporter,
    private readonly hooks: TrainerHooks,
    private readonly replicas: Replicas,
    resume: boolean,
  ) {
    const { config } = runConfig;
    this.paths = runPaths(runDir);
    this.stepsPerEpoch = config.training.stepsPerEpoch ?? loader.batchesPerEpoch;
    const { warmupEpochs, tau, scaleByTauSquared, deepSupervisionWeights, separateWeight, separateModalities, crossEntropyClassWeights, refinementKlWeight, ...switches } =
      config.losses;
    this.separateDecodesOneModality = separateModalities === 'one' && runConfig.model.family === 'smml';
    // With one decoded modality per sample, its loss stands for the sum over the K modalities.
    const separateScale = this.separateDecodesOneModality ? runConfig.model.modalities : 1;
    this.objectiveConfig = {
      warmupEpochs,
      tau,
      scaleByTauSquared,
      deepSupervisionWeights,
      separateWeight: separateWeight * separateScale,
      refinementKlWeight,
      crossEntropyClassWeights,
      switches,
      // Only data-parallel processes hold a share of the batch; a process training one branch holds all of it.
      batchSum: config.training.parallel === 'data' ? (sums) => replicas.batchSum(sums) : undefined,
    };
    // Model initialisation draws from libtorch's generator: seeding first makes it a function of the seed.
    // The configuration's family picks the network; each of its branches gets its own optimiser.
    torch.manualSeed(config.training.seed);
    this.model = createModel(runConfig.model);
    if (this.device !== 'cpu') this.model.to({ device: this.device });
    this.model.train();
    const { lr, betas, eps, weightDecay, amsgrad } = config.training;
    this.optimizers = this.model.branches.map((branch) => new torch.optim.Adam({ params: branch.parameters(), lr, betas, eps, weightDecay, amsgrad }));
    this.position = { epoch: 0, stepInEpoch: 0, step: 0 };
    this.best = null;
    this.log = replicas.isMain ? new RunLog(this.paths.log) : null;
    this.ownBranch = config.training.parallel === 'branches' && replicas.placement.worldSize > 1 ? replicas.placement.rank : null;
    // Only the first branch's process (or the only process) may keep the state that seeding left.
    let ownRandomState = !this.ownBranch;
    if (resume && fs.existsSync(this.paths.checkpoint)) {
      const restored = loadCheckpoint(this.paths.checkpoint, this.model, this.optimizers, this.ownBranch ?? 0);
      this.position = restored.position;
      this.best = restored.best;
      ownRandomState = restored.ownRandomState;
      this.log?.truncateAfter(this.position);
    } else {
      this.log?.clear();
    }
    // The other branches' processes draw their dropout from streams of their own, not from a copy of the first's.
    if (!ownRandomState) torch.manualSeed(deriveSeed(config.training.seed, BRANCH_RANDOM_STREAM, this.ownBranch!, this.position.step));
    replicas.broadcastFrom([...this.model.stateDict().values()], 0);
  }

  /** Asks the run to stop after the current step; it saves a checkpoint and `run` resolves 'interrupted'. */
  stop(): void {
    this.stopRequested = true;
  }

  private get config(): TrainingConfig {
    return this.runConfig.config;
  }

  private get device(): string {
    return deviceOfProcess(this.config.training.device, this.replicas.placement);
  }

  private setLearningRate(epoch: number): number {
    const { lr, epochs, lrPower } = this.config.training;
    const rate = torch.optim.polyLearningRate(lr, epoch, epochs, lrPower);
    for (const optimizer of this.optimizers) for (const group of optimizer.paramGroups) group.lr = rate;
    return rate;
  }

  /** The batches of `epoch` from step `skip` on; an epoch may span several passes over the cases. */
  private async *batches(epoch: number, skip: number): AsyncGenerator<Batch> {
    const perPass = this.loader.batchesPerEpoch;
    const passes = Math.ceil(this.stepsPerEpoch / perPass);
    for (let pass = Math.floor(skip / perPass); pass < passes; pass++) {
      let index = pass * perPass;
      for await (const batch of this.loader.epoch(epoch * passes + pass)) {
        if (index >= this.stepsPerEpoch) break;
        if (index++ < skip) continue;
        yield batch;
      }
    }
  }

  /**
   * One optimisation step; returns the loss values (the whole step's: means over data-parallel ranks, every
   * branch's with branch-parallel ones), or finite: false (weights untouched) when the loss is not finite.
   * `subsets` are those of the whole step, all ranks' samples.
   */
  private step(batch: Batch, epoch: number, stepInEpoch: number): { values: StepValues; finite: boolean; subsets: number[][] } {
    const { classes, modalities, patch } = this.model.config;
    const branches = this.model.branches.length;
    const batchSize = batch.ids.length;
    // Processes that split the batch: the data-parallel ranks (each branch-parallel process has all of it).
    const [shard, shards] = this.ownBranch === null ? [this.replicas.placement.rank, this.replicas.placement.worldSize] : [0, 1];
    const spatial = [patch, patch, patch];
    if (batch.channels.images !== modalities) throw new Error(`the cache holds ${batch.channels.images} image channels, the network expects ${modalities}`);
    // Drawn for the whole step (every rank's samples) and cut to this rank's, as the loader cuts the batch.
    const rng = createRng(deriveSeed(this.config.training.seed, SUBSET_STREAM, epoch, stepInEpoch));
    const subsets = drawSubsets(rng, batchSize * shards, branches);
    // Drawn after the subsets, which therefore do not depend on this switch.
    const separateAll = this.separateDecodesOneModality ? Array.from({ length: batchSize * shards }, () => randInt(rng, 0, modalities)) : undefined;
    const mine = <T,>(values: T[]) => values.slice(shard * batchSize, (shard + 1) * batchSize);
    const separateModalities = separateAll && mine(separateAll);
    return torch.tidy(() => {
      const device = this.device;
      const images = torch.tensor(batch.images, [batchSize, modalities, ...spatial], { device });
      const labels = torch.tensor(batch.labels, [batchSize, ...spatial]).to({ dtype: 'int64', device });
      const onehot = torch.oneHot(labels, classes).permute(0, 4, 1, 2, 3).to('float32').contiguous();
      const masks = subsets.map((rows) => modalityMask(mine(rows).map((s) => SUBSETS[s])).to(device));
      const priorData = batch.extras[PRIORS_ARRAY];
      const priors = priorData ? { priors: torch.tensor(priorData, [batchSize, classes * modalities, ...spatial], { device }), labels } : {};
      const inputs = { ...priors, separateModalities };
      // The forward pass in the run's precision; the losses and the backward pass in float32.
      const forward = (fn: () => SegmentationOutput[]) => trainingForward(this.config.training.precision, device, fn);
      const own = this.ownBranch;
      const { total, values } =
        own === null
          ? this.jointObjective(forward(() => this.model.forward(images, masks, inputs)), onehot, labels, epoch)
          : this.ownBranchObjective(own, forward(() => [this.model.forwardBranch(own, images, masks[own], inputs)])[0], onehot, labels, epoch);
      if (!Number.isFinite(values.loss)) return { values, finite: false, subsets };
      const stepped = this.ownBranch === null ? this.optimizers : [this.optimizers[this.ownBranch]];
      for (const optimizer of stepped) optimizer.zeroGrad();
      total.backward();
      if (this.ownBranch === null) this.replicas.averageGradients(this.model.parameters());
      for (const optimizer of stepped) optimizer.step();
      for (const optimizer of stepped) optimizer.zeroGrad();
      return { values, finite: true, subsets };
    });
  }

  /** Every branch's objective from this process's outputs; the values are means over data-parallel ranks. */
  private jointObjective(outputs: SegmentationOutput[], onehot: Tensor, labels: Tensor, epoch: number): { total: Tensor; values: StepValues } {
    const objective = branchObjectives(
      { branch1: predictionsOf(outputs[0]), branch2: outputs[1] && predictionsOf(outputs[1]), onehot, labels, epoch },
      this.objectiveConfig,
    );
    return { total: objective.total, values: this.meanOverRanks(valuesOf(objective)) };
  }

  /**
   * Branch-parallel: the objective of the branch this process trains, with the other branch's logits and
   * bottleneck received from its process; the values of every branch are exchanged so all processes agree.
   */
  private ownBranchObjective(own: number, output: SegmentationOutput, onehot: Tensor, labels: Tensor, epoch: number): { total: Tensor; values: StepValues } {
    const peerOf = (tensor: Tensor | undefined) => tensor && this.replicas.gather(tensor)[1 - own];
    const peer = { logits: peerOf(output.logits)!, bottleneck: peerOf(output.bottleneck) };
    const objective = ownBranchObjective({ own: predictionsOf(output), peer, index: own as 0 | 1, onehot, labels, epoch }, this.objectiveConfig);
    // Every process computes the same terms in the same order, so the names of this one's stand for all.
    const mine = termValuesOf(objective);
    const names = Object.keys(mine);
    const branches = this.replicas
      .gather(torch.tensor(Object.values(mine), [names.length], { dtype: 'float64', device: this.device }))
      .map((row): TermValues => Object.fromEntries(row.toArray().map((value, i) => [names[i], value])));
    const fc = objective.fc?.item();
    // L_1 + L_2 − L_fc: each branch's total holds the shared L_fc once.
    const loss = branches.reduce((sum, branch) => sum + branch.total, 0) - (fc ?? 0);
    return { total: objective.total, values: { loss, branches, fc } };
  }

  /** The step's values averaged over the ranks: every rank then agrees on them, finiteness included. */
  private meanOverRanks(values: StepValues): StepValues {
    const numbers = [values.loss, ...values.branches.flatMap((branch) => Object.values(branch)), ...(values.fc === undefined ? [] : [values.fc])];
    const means = this.replicas.meanOf(numbers);
    let next = 1;
    const branches = values.branches.map((branch) => Object.fromEntries(Object.keys(branch).map((name) => [name, means[next++]])));
    return { loss: means[0], branches, fc: values.fc === undefined ? undefined : means[next] };
  }

  private loadValidationCases(): EvaluationCase[] {
    if (!this.validationCases) {
      const { maxCases } = this.config.validation;
      const ids = this.runConfig.data.split.val.slice(0, maxCases ?? undefined);
      this.validationCases = ids.map((id) => loadCachedEvaluationCase(this.runConfig.data.cacheDir, id));
    }
    return this.validationCases;
  }

  /**
   * Dice of WT, TC and ET on the validation cases, scored as the test evaluation scores them (sliding window,
   * post-processing), under every modality subset unless `validation.subsets` is 'full'; see `selectionDice`.
   * Collective: every process holds the whole model at a validation (its weights were gathered for the checkpoint
   * that goes with it), so each scores every worldSize-th case and the Dice values are exchanged; all processes
   * return the same scores.
   */
  validate(): ValidationScores {
    const cases = this.loadValidationCases();
    const subsets = this.config.validation.subsets === 'all' ? SUBSETS : [ALL_MODALITIES];
    const { classes } = this.model.config;
    const { rank, worldSize } = this.replicas.placement;
    const mine = cases.map((_, c) => c).filter((c) => c % worldSize === rank);
    this.model.eval();
    let scored: CaseResult[];
    try {
      const options = { subsets, overlap: this.config.validation.overlap, device: this.device, precision: this.config.training.precision, hausdorff: false };
      scored = mine.map((c) => evaluateCase(this.model, cases[c], options));
    } finally {
      this.model.train();
    }
    // (case, subset, region) Dice, each process filling its own cases; the owner's row is taken.
    const table = new Float64Array(cases.length * subsets.length * REGIONS.length);
    scored.forEach((result, i) =>
      result.scores.forEach((score, s) => REGIONS.forEach((region, r) => (table[(mine[i] * subsets.length + s) * REGIONS.length + r] = score.dice[region]))),
    );
    const tables = torch.tidy(() =>
      this.replicas.gather(torch.tensor(table, [table.length], { dtype: 'float64', device: this.device })).map((gathered) => gathered.toArray()),
    );
    const result: EvaluationResult = {
      subsets,
      cases: cases.map((entry, c) => ({
        id: entry.id,
        seconds: 0,
        scores: subsets.map((_, s) => {
          const at = (r: number) => tables[c % worldSize][(c * subsets.length + s) * REGIONS.length + r];
          const dice = Object.fromEntries(REGIONS.map((region, r) => [region, at(r)])) as Record<Region, number>;
          return { dice, hausdorff95: Object.fromEntries(REGIONS.map((region) => [region, NaN])) as Record<Region, number> };
        }),
      })),
    };
    const { mean, ...dice } = selectionDice(result, cases.map((entry) => regionsPresent(entry.label, classes)));
    return { dice, mean, cases: cases.length, subsets: subsets.length };
  }

  private requireFiniteWeights(what: string): void {
    if (parametersAreFinite(this.model)) return;
    throw new TrainingDivergedError(
      `training stopped: the weights are no longer finite at ${what}; ${this.keptCheckpointText()} Lower training.lr, then resume with --resume.`,
    );
  }

  private keptCheckpointText(): string {
    return fs.existsSync(this.paths.checkpoint)
      ? `the last good checkpoint ${this.paths.checkpoint} (${describePosition(this.position)}) is kept.`
      : 'no checkpoint had been written yet.';
  }

  /**
   * Branch-parallel: brings every process's copy of every branch (weights, buffers, optimiser state) up to date
   * from the process that trains it, so that rank 0 validates and saves the whole model. Once per step.
   */
  private gatherBranches(): void {
    if (this.ownBranch === null || this.gatheredAtStep === this.position.step) return;
    this.model.branches.forEach((branch, b) => {
      this.replicas.broadcastFrom([...branch.stateDict().values()], b);
      const optimizer = this.optimizers[b];
      const own = b === this.ownBranch ? optimizer.stateDict() : null;
      const bytes = this.replicas.broadcastBytes(own && torch.serializeSafetensors(own.tensors, { meta: JSON.stringify(own.meta) }), b);
      if (own) return;
      const { tensors, metadata } = torch.parseSafetensors(bytes, `branch ${b + 1}'s optimiser state from rank ${b}`);
      try {
        optimizer.loadStateDict({ tensors, meta: JSON.parse(metadata.meta) });
      } finally {
        torch.dispose([...tensors.values()]);
      }
    });
    this.gatheredAtStep = this.position.step;
  }

  private saveCheckpointAt(position: TrainingPosition): void {
    this.position = position;
    if (this.checkpointedStep === position.step) return;
    this.gatherBranches();
    this.requireFiniteWeights(`epoch ${position.epoch + 1}, step ${position.step}`);
    // Branch-parallel processes draw their dropout from their own random states; the checkpoint keeps each.
    torch.tidy(() => {
      const randomStates = this.ownBranch === null ? undefined : this.replicas.gather(torch.getRngState());
      if (this.replicas.isMain) saveCheckpoint(this.paths.checkpoint, this.model, this.optimizers, { position, best: this.best }, randomStates);
    });
    this.checkpointedAt = performance.now();
    this.checkpointedStep = position.step;
  }

  private saveModel(epoch: number, validation: ValidationScores | null): void {
    if (!this.replicas.isMain) return;
    const { data } = this.runConfig;
    torch.saveModule(
      this.paths.model,
      this.model,
      encodeModelMetadata({
        format: MODEL_FORMAT,
        formatVersion: RUN_FORMAT_VERSION,
        modelConfig: this.model.config,
        numClasses: data.numClasses,
        labelConvention: data.labelConvention,
        epoch,
        validation,
      }),
    );
  }

  /** Validation, best model, checkpoint and the epoch record at the end of `epoch`. */
  private finishEpoch(epoch: number, lr: number, steps: StepValues[], started: number): void {
    const { every } = this.config.validation;
    const { epochs } = this.config.training;
    const last = epoch + 1 === epochs;
    const validationEpoch = every > 0 && this.runConfig.data.split.val.length > 0 && ((epoch + 1) % every === 0 || last);
    // A checkpoint (and the weights of every branch gathered for it) at most every `checkpointSeconds`: writing the
    // model with its optimiser state costs about a second at demo scale. Validations and the last epoch always have
    // one; the processes decide together, since gathering is collective.
    const overdue = (performance.now() - this.checkpointedAt) / 1000 >= this.config.training.checkpointSeconds;
    const checkpointDue = this.replicas.anyRank(validationEpoch || last || overdue);
    if (checkpointDue) this.gatherBranches();
    this.requireFiniteWeights(`the end of epoch ${epoch + 1}`);
    const validation = validationEpoch ? this.validate() : null;
    if (validation) this.last = { epoch, validation };
    let improved = false;
    if (validation && (!this.best || validation.mean > this.best.score)) {
      this.best = { epoch, score: validation.mean, validation };
      improved = true;
    }
    // Until a first validation exists the latest weights stand in for the best ones.
    if (improved || (!this.best && checkpointDue)) this.saveModel(epoch, validation);
    const position = { epoch: epoch + 1, stepInEpoch: 0, step: this.position.step };
    if (checkpointDue) this.saveCheckpointAt(position);
    else this.position = position;
    const mean = (pick: (values: StepValues) => number | undefined) => {
      const picked = steps.map(pick).filter((v): v is number => v !== undefined);
      return picked.length > 0 ? picked.reduce((a, b) => a + b, 0) / picked.length : undefined;
    };
    const record = {
      type: 'epoch' as const,
      epoch,
      steps: steps.length,
      lr,
      loss: mean((v) => v.loss),
      branchLosses: this.model.branches.map((_, b) => mean((v) => v.branches[b]?.total)),
      fc: mean((v) => v.fc),
      seconds: (performance.now() - started) / 1000,
      validation,
      best: this.best ? { epoch: this.best.epoch, score: this.best.score } : null,
    };
    this.log?.append(record);
    const validationText = validation
      ? ` | val Dice WT ${validation.dice.WT.toFixed(3)} TC ${validation.dice.TC.toFixed(3)} ET ${validation.dice.ET.toFixed(3)}${improved ? ' (best)' : ''}`
      : '';
    this.progress.note(`epoch ${epoch + 1}/${epochs} loss ${record.loss?.toFixed(4)} in ${record.seconds.toFixed(1)} s${validationText}`);
  }

  /** Trains until the last epoch or until `stop()`; throws TrainingDivergedError on a non-finite loss. */
  async run(): Promise<TrainResult> {
    const { epochs } = this.config.training;
    const stepSeconds: number[] = [];
    const result = (status: TrainResult['status']): TrainResult => ({
      status,
      position: { ...this.position },
      best: this.best,
      last: this.last,
      secondsPerStep: stepSeconds.length > 0 ? stepSeconds.reduce((a, b) => a + b, 0) / stepSeconds.length : NaN,
      paths: this.paths,
    });
    const start = { ...this.position };
    this.log?.append({ type: 'start', time: new Date().toISOString(), position: start, threads: torch.getNumThreads(), device: this.device, processes: this.replicas.placement.worldSize });
    this.progress.start({ epochs, stepsPerEpoch: this.stepsPerEpoch, epoch: start.epoch, stepInEpoch: start.stepInEpoch });
    try {
      for (let epoch = start.epoch; epoch < epochs; epoch++) {
        const lr = this.setLearningRate(epoch);
        const epochStarted = performance.now();
        const steps: StepValues[] = [];
        let stepInEpoch = epoch === start.epoch ? start.stepInEpoch : 0;
        for await (const batch of this.batches(epoch, stepInEpoch)) {
          const position = { epoch, stepInEpoch, step: this.position.step };
          this.hooks.beforeStep?.(position, this);
          const stepStarted = performance.now();
          const { values, finite, subsets } = this.step(batch, epoch, stepInEpoch);
          const seconds = (performance.now() - stepStarted) / 1000;
          if (!finite) {
            this.log?.append({ type: 'diverged', time: new Date().toISOString(), ...position, ...values });
            throw new TrainingDivergedError(
              `training stopped: the loss is ${values.loss} at epoch ${epoch + 1}, step ${stepInEpoch + 1} ` +
                `(terms ${JSON.stringify(values.branches)}); the weights were not updated and ${this.keptCheckpointText()} ` +
                'Lower training.lr or check the data, then resume with --resume.',
            );
          }
          stepSeconds.push(seconds);
          steps.push(values);
          stepInEpoch++;
          this.position = { ...this.position, step: this.position.step + 1 };
          this.log?.append({
            type: 'step',
            epoch,
            stepInEpoch,
            step: this.position.step,
            lr,
            ...values,
            cases: batch.stepIds,
            subsets: subsets.map((rows) => rows.map((s) => subsetName(SUBSETS[s]))),
            seconds,
          });
          this.progress.step({ epoch, stepInEpoch, loss: values.loss, branchLosses: values.branches.map((b) => b.total), lr });
          // Batches built on this thread arrive through promise callbacks alone; a turn of the event loop lets
          // signal handlers (Ctrl-C) and the progress display run between steps.
          await new Promise((resolve) => setImmediate(resolve));
          // A signal reaches the ranks at different moments; they stop together at the first step any saw it.
          this.stopRequested = this.replicas.anyRank(this.stopRequested);
          if (this.stopRequested && stepInEpoch < this.stepsPerEpoch) {
            this.saveCheckpointAt({ epoch, stepInEpoch, step: this.position.step });
            this.log?.append({ type: 'interrupted', time: new Date().toISOString(), position: this.position });
            return result('interrupted');
          }
        }
        this.finishEpoch(epoch, lr, steps, epochStarted);
        this.stopRequested = this.replicas.anyRank(this.stopRequested);
        if (this.stopRequested && epoch + 1 < epochs) {
          this.saveCheckpointAt(this.position);
          this.log?.append({ type: 'interrupted', time: new Date().toISOString(), position: this.position });
          return result('interrupted');
        }
      }
      this.log?.append({ type: 'finished', time: new Date().toISOString(), position: this.position, best: this.best, last: this.last });
      return result('finished');
    } finally {
      this.progress.stop();
    }
  }

  /** Stops the loader's worker threads. */
  async close(): Promise<void> {
    await this.loader.close();
  }
}

/** Creates the run folder up front, so that an unwritable output fails before any preprocessing. */
function createRunFolder(runDir: string): void {
  try {
    fs.mkdirSync(runDir, { recursive: true });
    fs.accessSync(runDir, fs.constants.W_OK);
  } catch (error) {
    throw new Error(`${runDir}: cannot create or write the run folder (${(error as Error).message})`);
  }
}

/**
 * Prepares a run: a new one (data discovered, preprocessed and split, run.json written) or, with `resume`,
 * the one in `runDir` restored from its checkpoint.
 */
export async function createTrainer(options: CreateTrainerOptions): Promise<Trainer> {
  const paths = runPaths(options.runDir);
  const replicas = options.replicas ?? singleProcess;
  const progress = replicas.isMain ? (options.progress ?? silentProgress) : silentProgress;
  let run: RunConfig;
  if (options.resume || !replicas.isMain) {
    // A new run is made by rank 0 alone (data, run.json); the other ranks read it once it is written.
    if (!options.resume) replicas.barrier();
    const stored = readRunConfig(options.runDir);
    run = { ...stored, config: resumedConfig(stored.config, options.config, paths.config) };
  } else {
    if (!options.config) throw new Error('createTrainer: a configuration is needed for a new run');
    if (fs.existsSync(paths.config)) {
      throw new Error(`${options.runDir} already holds a training run (${paths.config}); pass --resume to continue it or choose another folder`);
    }
    const config = options.config;
    createRunFolder(options.runDir);
    const data = await prepareTrainingData(config, (p) => {
      if (p.status === 'written') progress.note(`preprocessed ${p.id} (${p.done}/${p.total})`);
    });
    run = {
      format: RUN_FORMAT,
      formatVersion: RUN_FORMAT_VERSION,
      createdAt: new Date().toISOString(),
      config,
      model: resolveModelConfig(config, data.numClasses),
      data,
    };
  }
  const { config, data, model } = run;
  if (config.training.device !== 'cpu') torch.checkDevice(config.training.device);
  checkCache(data, [...data.split.train, ...data.split.val]);
  if (usesRefinement(config)) checkPriors(data.cacheDir, data.split.train, model.classes * model.modalities);
  if (!options.resume && replicas.isMain) {
    writeRunConfig(options.runDir, run);
    replicas.barrier();
  }
  torch.setNumThreads(config.training.threads ?? threadsPerProcess(replicas.placement));
  const { rank, worldSize } = replicas.placement;
  const branchParallel = config.training.parallel === 'branches' && worldSize > 1;
  const branches = model.family === 'smml' ? model.branches : 1;
  if (branchParallel && worldSize !== branches) {
    throw new Error(`training.parallel 'branches' trains one branch per process: this ${branches}-branch network needs ${branches} processes, not ${worldSize}`);
  }
  const loader = createBatchLoader({
    cacheDir: data.cacheDir,
    ids: data.split.train,
    batchSize: config.training.batchSize,
    patchSize: [model.patch, model.patch, model.patch],
    seed: config.training.seed,
    augment: config.data.augment,
    foregroundProbability: config.data.foregroundProbability,
    workers: config.data.workers,
    // Every step sees a full batch (when there are enough cases; always with several processes, whose
    // gradients are averaged with equal weights); the cases left over differ per epoch.
    dropLast: worldSize > 1 || data.split.train.length >= config.training.batchSize,
    // Branch-parallel processes all train on the whole batch.
    shard: branchParallel ? { rank: 0, count: 1 } : { rank, count: worldSize },
    extraArrays: usesRefinement(config) ? [PRIORS_ARRAY] : [],
  });
  try {
    return new Trainer(run, options.runDir, loader, progress, options.hooks ?? {}, replicas, options.resume ?? false);
  } catch (error) {
    await loader.close();
    throw error;
  }
}
