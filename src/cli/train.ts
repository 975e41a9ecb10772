/**
 * `smml train`: trains SMML (or the single-branch baseline, or with `--model unet` the plain U-Net it is compared
 * with) into a run folder; `--resume` continues it.
 * Configuration: defaults < `--config` file < explicit flags < `--set section.key=value` (later wins).
 */
import { Option, type Command } from 'commander';
import { collect, nonNegativeInteger, positiveInteger, positiveNumber, precisionOption } from './arguments.ts';
import * as path from 'node:path';
import { MODEL_FAMILIES, MODEL_PRESET_NAMES, type ModelConfig, type Precision } from '../models/index.ts';
import { createProgress, formatDuration, silentProgress, type ProgressReporter } from '../progress.ts';
import { applyOverrides, parseTrainingConfig, readConfigFile, usesRefinement, type TrainingConfig } from '../training/config.ts';
import { readRunConfig, type ValidationScores } from '../training/run-dir.ts';
import { createTrainer, TrainingDivergedError, type Trainer, type TrainResult } from '../training/trainer.ts';
import { deviceOfProcess, joinReplicas, placementFromEnvironment, singleProcess, type Replicas } from '../training/data-parallel.ts';
import { launchWorkers } from './launch.ts';


export interface TrainOptions {
  out: string;
  data?: string;
  config?: string;
  model?: string;
  preset?: string;
  epochs?: number;
  stepsPerEpoch?: number;
  batchSize?: number;
  lr?: number;
  seed?: number;
  threads?: number;
  parallel?: 'data' | 'branches';
  workers?: number;
  device?: string;
  precision?: Precision;
  cache?: string;
  validateEvery?: number;
  warmupEpochs?: number;
  baseline?: boolean;
  srn?: boolean;
  set: string[];
  resume?: boolean;
  nprocPerNode?: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
  distTimeout?: number;
}

/** Seconds the training processes wait for each other (joining, each gradient exchange) before failing; rank 0 validating alone must fit in it. */
const DEFAULT_DIST_TIMEOUT = 1800;

/** Each explicit flag is shorthand for one configuration field. */
const FLAG_FIELDS: Partial<Record<keyof TrainOptions, string>> = {
  data: 'data.root',
  model: 'model.family',
  preset: 'model.preset',
  epochs: 'training.epochs',
  stepsPerEpoch: 'training.stepsPerEpoch',
  batchSize: 'training.batchSize',
  lr: 'training.lr',
  seed: 'training.seed',
  threads: 'training.threads',
  parallel: 'training.parallel',
  workers: 'data.workers',
  device: 'training.device',
  precision: 'training.precision',
  cache: 'data.cacheDir',
  validateEvery: 'validation.every',
  warmupEpochs: 'losses.warmupEpochs',
};

/** The flags as `field=value` assignments, ahead of the user's own `--set` ones. */
function flagAssignments(options: TrainOptions): string[] {
  const assignments: string[] = [];
  for (const [flag, field] of Object.entries(FLAG_FIELDS)) {
    const value = options[flag as keyof TrainOptions];
    if (value !== undefined) assignments.push(`${field}=${JSON.stringify(value)}`);
  }
  if (options.baseline) {
    if (options.model === 'unet') throw new Error('--baseline is the single-branch SMML variant; the U-Net (--model unet) has one branch already');
    assignments.push('model.branches=1');
  }
  if (options.srn) assignments.push('losses.srn=true', 'losses.refinementKl=true');
  return [...assignments, ...options.set];
}

export function resolveConfig(options: TrainOptions): TrainingConfig {
  const assignments = flagAssignments(options);
  if (options.resume) {
    if (options.config) throw new Error('--config cannot be combined with --resume: a resumed run keeps the configuration in its run.json');
    const stored = readRunConfig(options.out).config;
    return parseTrainingConfig(applyOverrides(stored as unknown as Record<string, unknown>, assignments), 'the resumed configuration');
  }
  const base = options.config ? readConfigFile(options.config) : {};
  const source = options.config ? `${options.config} with the command-line options` : 'the command-line configuration';
  return parseTrainingConfig(applyOverrides(base, assignments), source);
}

/** The options shared by `smml train` and `smml ablate`: the data, network, schedule and `--set`. */
export function addTrainingOptions(command: Command): Command {
  return command
    .option('--data <root>', 'BraTS data folder (2015, 2018–2021 or 2023 layout, searched recursively)')
    .option('--config <file>', 'JSON configuration file (sections model, data, training, losses, validation, log)')
    .option('--preset <name>', `network preset: ${MODEL_PRESET_NAMES.join(', ')} (default: cpu-small, or unet-cpu with --model unet)`)
    .option('--epochs <n>', 'epochs (the poly schedule runs over them)', positiveInteger)
    .option('--steps-per-epoch <n>', 'iterations per epoch, independent of the number of cases', positiveInteger)
    .option('--batch-size <n>', 'samples per step', positiveInteger)
    .option('--lr <x>', 'initial learning rate', positiveNumber)
    .option('--seed <n>', 'seed of initialisation, batches, augmentation and modality subsets', nonNegativeInteger)
    .option('--threads <n>', 'libtorch threads (default: every core)', positiveInteger)
    .option('--workers <n>', 'batch-building worker threads (0: on the main thread)', nonNegativeInteger)
    .option('--device <name>', "'cpu', 'cuda' or 'cuda:N'")
    .addOption(precisionOption('the forward pass (default fp32; a resumed run keeps its own)'))
    .option('--cache <dir>', 'folder for the preprocessed cases (default <data>/.smml-cache)')
    .option('--validate-every <n>', 'validation Dice every n epochs (0: never)', nonNegativeInteger)
    .option('--warmup-epochs <n>', 'epochs before the KL terms (PBC, refinement KL) switch on', nonNegativeInteger)
    .option('--set <field=value>', 'set any configuration field, e.g. --set training.lr=1e-3 (repeatable)', collect, []);
}

/**
 * Runs a trainer to its end with Ctrl-C / SIGTERM handling: the first signal finishes the current step and
 * saves a checkpoint (status 'interrupted'), a second one quits at once (the checkpoint on disk is complete).
 * Closes the trainer.
 */
export async function runWithSignals(trainer: Trainer, progress: ProgressReporter): Promise<TrainResult> {
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) process.exit(signal === 'SIGINT' ? 130 : 143);
    progress.note(`${signal}: finishing the current step and saving a checkpoint (press Ctrl-C again to quit at once)`);
    trainer.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await trainer.run();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await trainer.close();
  }
}

const diceText = (validation: ValidationScores) =>
  `${validation.mean.toFixed(4)} (WT ${validation.dice.WT.toFixed(3)}, TC ${validation.dice.TC.toFixed(3)}, ET ${validation.dice.ET.toFixed(3)})`;

/** One line on the validation of the selected (best) and of the last weights of a finished run. */
export function bestValidationLine(result: TrainResult): string {
  if (!result.best) return 'no validation: the model is the last epoch';
  const selected = `selected weights: validation Dice ${diceText(result.best.validation)} at epoch ${result.best.epoch + 1}`;
  const last = result.last && result.last.epoch !== result.best.epoch ? `; last weights (epoch ${result.last.epoch + 1}): ${diceText(result.last.validation)}` : '';
  return selected + last;
}

/** What a run trains, in words. */
function networkDescription(model: ModelConfig): string {
  if (model.family === 'unet') return 'a plain 3D U-Net with modality dropout';
  return model.branches === 2 ? 'SMML (dual branch)' : 'the single-branch baseline';
}

export function registerTrainCommand(program: Command): Command {
  const command = program
    .command('train')
    .description('train SMML (or the single-branch baseline, or a plain U-Net) on a BraTS folder; Ctrl-C saves a checkpoint, --resume continues')
    .requiredOption('--out <dir>', 'run folder: run.json, checkpoint.safetensors, model.safetensors, log.jsonl')
    .addOption(
      new Option('--model <family>', 'network family: SMML, or a plain 3D U-Net with modality dropout (the standard approach, to compare with)').choices(
        MODEL_FAMILIES,
      ),
    );
  return addTrainingOptions(command)
    .option('--baseline', 'the single-branch baseline instead of the dual-branch model')
    .option('--srn', 'also train the semantic-guided refinement network (needs semantic priors in the cache)')
    .option('--resume', 'continue the run in --out from its last checkpoint (only --threads/--workers/--parallel may change; any number of processes)')
    .option('--nproc-per-node <n>', 'start n training processes on this machine (one per GPU with --device cuda); see --parallel', positiveInteger)
    .addOption(
      new Option('--parallel <how>', "with several processes: 'data' (each its share of every batch) or 'branches' (each one branch of the dual-branch network on the whole batch; 2 processes)").choices(['data', 'branches']),
    )
    .option('--nnodes <n>', 'machines training together, each started with the same command and its own --node-rank (default 1)', positiveInteger)
    .option('--node-rank <r>', "this machine's index among them (default 0)", nonNegativeInteger)
    .option('--master-addr <host>', 'address of the machine of node rank 0, reachable from all (default 127.0.0.1)')
    .option('--master-port <port>', 'free TCP port on it for the rendezvous (default 29500)', positiveInteger)
    .option('--dist-timeout <seconds>', `with several processes: bound on joining and on every gradient exchange (default ${DEFAULT_DIST_TIMEOUT})`, positiveNumber)
    .action(async (options: TrainOptions) => {
      const config = resolveConfig(options);
      if (options.nprocPerNode !== undefined) {
        process.exitCode = await launchFromOptions(options);
        return;
      }
      const launcherOnly = ['nnodes', 'nodeRank', 'masterAddr', 'masterPort'] as const;
      if (launcherOnly.some((key) => options[key] !== undefined)) throw new Error('--nnodes, --node-rank, --master-addr and --master-port go with --nproc-per-node');
      const placement = placementFromEnvironment();
      const replicas = placement ? joinReplicas(placement, deviceOfProcess(config.training.device, placement), options.distTimeout ?? DEFAULT_DIST_TIMEOUT) : singleProcess;
      try {
        await train(options, config, replicas);
      } finally {
        replicas.close();
      }
    });
}

async function launchFromOptions(options: TrainOptions): Promise<number> {
  if (placementFromEnvironment()) throw new Error('--nproc-per-node starts training processes, but this process already is one (WORLD_SIZE is set)');
  return launchWorkers({
    processesPerNode: options.nprocPerNode!,
    nodes: options.nnodes ?? 1,
    nodeRank: options.nodeRank ?? 0,
    masterAddr: options.masterAddr ?? '127.0.0.1',
    masterPort: options.masterPort ?? 29500,
    args: process.argv.slice(2),
  });
}

/** Trains (or resumes) the run of `options` as one of `replicas`; only rank 0 reports. */
async function train(options: TrainOptions, config: TrainingConfig, replicas: Replicas): Promise<void> {
  const progress = replicas.isMain ? createProgress({ printEvery: config.log.printEvery }) : silentProgress;
  const runDir = path.resolve(options.out);
  const trainer = await createTrainer({ runDir, config, resume: options.resume, progress, replicas });
  const { model } = trainer.runConfig;
  const processes = replicas.placement.worldSize > 1 ? ` with ${replicas.placement.worldSize} processes × batch ${config.training.batchSize}` : '';
  progress.note(
    `${options.resume ? 'resuming' : 'training'} ${networkDescription(model)}${processes} in ${runDir}: ` +
      `${trainer.runConfig.data.split.train.length} training / ${trainer.runConfig.data.split.val.length} validation cases, ` +
      `${config.training.epochs} epochs × ${trainer.stepsPerEpoch} steps, patch ${model.patch}, ${trainer.model.parameterCount()} parameters`,
  );
  if (model.family === 'smml' && !usesRefinement(config)) {
    progress.note('the semantic-guided refinement network (SRN) is off: no semantic priors are used (--srn switches it on)');
  }
  if (trainer.model.branches.length === 1 && (config.losses.pbc || config.losses.frc)) {
    progress.note('one branch: the mutual-learning terms (PBC, FRC) need two and are off');
  }
  try {
    const result = await runWithSignals(trainer, progress);
    const perStep = Number.isNaN(result.secondsPerStep) ? '' : `, ${result.secondsPerStep.toFixed(2)} s per step`;
    if (result.status === 'interrupted') {
      process.exitCode = 130;
      if (!replicas.isMain) return;
      console.log(`stopped at epoch ${result.position.epoch + 1}, step ${result.position.stepInEpoch}; checkpoint saved to ${result.paths.checkpoint}`);
      console.log(`continue with: smml train --out ${options.out} --resume`);
      return;
    }
    if (!replicas.isMain) return;
    console.log(`finished ${result.position.step} steps${perStep}; ${bestValidationLine(result)}`);
    console.log(`model: ${result.paths.model} (elapsed ${formatDuration(process.uptime())})`);
  } catch (error) {
    if (!(error instanceof TrainingDivergedError)) throw error;
    if (replicas.isMain) console.error(error.message);
    process.exitCode = 1;
  }
}
