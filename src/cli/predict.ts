/**
 * `smml predict`: segments one case, or every case of a folder, from any non-empty subset of FLAIR, T1ce, T1 and T2
 * with a trained run, writing labels in the data set's convention on the input's grid, and says what Dice the run
 * reached on held-out cases with the same sequences.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import * as path from 'node:path';
import { MODALITIES, subsetName, type Modality, type ModalityMask } from '../data/modalities.ts';
import { REGIONS } from '../data/regions.ts';
import { predictFolder, type FolderCaseResult, type FolderPrediction } from '../inference/folder.ts';
import { predictToFiles, type CasePrediction, type InferenceModel } from '../inference/predict.ts';
import { defaultProcessCount, InferenceProcesses } from '../inference/processes.ts';
import type { SegmentationModel } from '../models/index.ts';
import { caseProgress, windowProgress } from '../progress.ts';
import { loadTrainedModel, readRunQuality, type RunQuality, type TrainedModel } from '../training/run-dir.ts';
import type { Precision } from '../models/index.ts';
import { positiveInteger, precisionOption } from './arguments.ts';

/** A sliding-window overlap: a fraction in [0, 1). */
export function parseOverlap(text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !(value >= 0 && value < 1)) throw new InvalidArgumentError(`expected a fraction in [0, 1), got '${text}'`);
  return value;
}

/**
 * Windows wider than this keep libtorch's threads busy within each convolution, so by default they run in this
 * process: `paper`'s 128³ windows of a 240×240×155 case took 53.1 s in two single-threaded processes against 51.4 s in
 * one with two threads, with more CPU time and a copy of the model per process (bench/README.md).
 */
const WIDEST_PATCH_FOR_PROCESSES = 64;

/** The options `predict` and `evaluate` share: how windows are blended and where the model runs. */
export function addInferenceOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--weighting <kind>', 'how overlapping windows are blended: a plain average, or Gaussian weights that trust window centres more')
        .choices(['uniform', 'gaussian'])
        .default('uniform'),
    )
    .option('--overlap <fraction>', 'fraction of the patch shared by neighbouring windows', parseOverlap, 0.5)
    .option('--batch-size <n>', 'windows per network call (default: 2 of 32³ voxels, 1 for larger patches)', positiveInteger)
    .option('--device <device>', "where the network runs: 'cpu', 'cuda' or 'cuda:N'", 'cpu')
    .addOption(precisionOption('how the network computes').default('fp32'))
    .option(
      '--processes <n>',
      `processes that share the windows of each volume, one libtorch thread each (default on the CPU: one per core, here ${defaultProcessCount()}, for windows up to ${WIDEST_PATCH_FOR_PROCESSES}³, else 1; 1 runs the network in this process)`,
      positiveInteger,
    );
}

/**
 * The inference processes `--processes` asks for, or none where the network runs in this process: with 1, or on a
 * GPU. The default on the CPU is one per core for windows up to WIDEST_PATCH_FOR_PROCESSES, else none. The caller
 * closes them.
 */
export function inferenceProcessesFor(model: SegmentationModel, options: { processes?: number; device: string }): InferenceProcesses | undefined {
  if (options.device !== 'cpu') {
    if ((options.processes ?? 1) > 1) throw new Error(`--processes ${options.processes} splits the windows between CPU processes: it needs --device cpu`);
    return undefined;
  }
  const count = options.processes ?? (model.config.patch > WIDEST_PATCH_FOR_PROCESSES ? 1 : defaultProcessCount());
  return count > 1 ? new InferenceProcesses(model, count) : undefined;
}

/** The run's held-out Dice for one subset, or why there is none: what a user can expect from these sequences. */
export function expectedQualityLine(quality: RunQuality | null, present: ModalityMask, runDir: string): string {
  const name = subsetName(present);
  if (!quality) return `expected quality for ${name}: the run has not been evaluated on held-out cases (smml evaluate --model ${runDir})`;
  const row = quality.subsets.find((entry) => entry.modalities.every((flag, k) => flag === present[k]));
  if (!row) return `expected quality for ${name}: the run's evaluation did not score this subset`;
  const dice = REGIONS.map((region) => `${region} ${(100 * row.dice[region]).toFixed(1)}`).join(', ');
  return `expected quality for ${name}: held-out Dice (%) ${dice} over ${quality.caseCount} cases (${quality.cases})`;
}

/** `a,b,c,d`: the modality of nnU-Net channel files _0000, _0001, … in order. */
export function parseChannelOrder(text: string): Modality[] {
  const names = text.split(',').map((part) => part.trim().toLowerCase());
  const unknown = names.filter((name) => !(MODALITIES as readonly string[]).includes(name));
  if (unknown.length > 0) throw new InvalidArgumentError(`unknown modality ${unknown.join(', ')} (expected ${MODALITIES.join(', ')})`);
  if (new Set(names).size !== names.length) throw new InvalidArgumentError(`a modality is listed twice in '${text}'`);
  return names as Modality[];
}

interface PredictCliOptions {
  model: string;
  flair?: string;
  t1ce?: string;
  t1?: string;
  t2?: string;
  out?: string;
  input?: string;
  output?: string;
  overwrite?: boolean;
  channelOrder?: Modality[];
  reference?: Modality;
  probabilities?: string;
  weighting: 'gaussian' | 'uniform';
  overlap: number;
  batchSize?: number;
  device: string;
  precision: Precision;
  processes?: number;
}

type InferenceSettings = Pick<PredictCliOptions, 'weighting' | 'overlap' | 'batchSize' | 'device' | 'precision' | 'reference'> & { processes?: InferenceProcesses };

/** The run's network and its label values and training voxel size; says once when the run recorded no voxel size. */
function inferenceModelOf(trained: TrainedModel, runDir: string): InferenceModel {
  const { spacing } = trained.config.data;
  if (!spacing) {
    console.error(`${runDir}: run.json records no training voxel size (a run made before it did); inputs are segmented on their own grid, unresampled`);
  }
  return { model: trained.model, labelValues: trained.labelConvention.values, spacing };
}

/** One case from the sequence files named on the command line. */
async function predictOneCase(inference: InferenceModel, options: PredictCliOptions & { out: string }, settings: InferenceSettings): Promise<void> {
  const started = performance.now();
  const files: Partial<Record<Modality, string>> = { flair: options.flair, t1ce: options.t1ce, t1: options.t1, t2: options.t2 };
  if (Object.values(files).every((file) => file === undefined)) {
    throw new Error('no input modality given: pass at least one of --flair, --t1ce, --t1, --t2 (or --input DIR --output DIR for a folder)');
  }
  const progress = windowProgress('predict');
  let prediction: CasePrediction;
  try {
    prediction = await predictToFiles(inference, files, { ...settings, out: options.out, probabilities: options.probabilities, onWindow: progress.onWindow });
  } finally {
    progress.stop();
  }
  const seconds = (performance.now() - started) / 1000;
  const resampled = prediction.resampled.length > 0 ? ` (${prediction.resampled.join(', ')} resampled onto the reference grid)` : '';
  console.log(`segmented from ${subsetName(prediction.present)}${resampled} in ${seconds.toFixed(1)} s: ${path.resolve(options.out)}`);
  if (options.probabilities) console.log(`class probabilities: ${path.resolve(options.probabilities)}`);
  console.log(expectedQualityLine(readRunQuality(options.model), prediction.present, options.model));
}

/** Every case of a folder; the exit status is 1 when any case failed. */
async function predictFolderCommand(inference: InferenceModel, options: PredictCliOptions & { input: string; output: string }, settings: InferenceSettings): Promise<void> {
  const started = performance.now();
  const progress = caseProgress('predict');
  let folder: FolderPrediction;
  try {
    folder = await predictFolder(
      inference,
      {
        ...settings,
        input: options.input,
        output: options.output,
        overwrite: options.overwrite,
        channelOrder: options.channelOrder,
        onCase: (done, total, result) =>
          progress.update({ done, total, id: result.id, status: result.status === 'written' ? `from ${subsetName(result.present!)}` : result.status, seconds: result.seconds }),
      },
    );
  } finally {
    progress.stop();
  }
  const count = (status: FolderCaseResult['status']) => folder.cases.filter((entry) => entry.status === status);
  const [written, skipped, failed] = [count('written'), count('skipped'), count('failed')];
  const minutes = (performance.now() - started) / 60000;
  console.log(
    `${folder.cases.length} cases (${folder.layout} layout) in ${minutes.toFixed(1)} min: ${written.length} segmented, ` +
      `${skipped.length} already done (--overwrite redoes them), ${failed.length} failed; outputs in ${path.resolve(options.output)}`,
  );
  const quality = readRunQuality(options.model);
  const bySubset = new Map<string, { present: ModalityMask; cases: number }>();
  for (const entry of written) {
    const name = subsetName(entry.present!);
    bySubset.set(name, { present: entry.present!, cases: (bySubset.get(name)?.cases ?? 0) + 1 });
  }
  for (const { present, cases } of bySubset.values()) console.log(`${cases} case(s) from ${subsetName(present)}; ${expectedQualityLine(quality, present, options.model)}`);
  for (const entry of failed) console.log(`failed: ${entry.id}: ${entry.reason}`);
  if (failed.length > 0) process.exitCode = 1;
}

export function registerPredictCommand(program: Command): Command {
  const command = program
    .command('predict')
    .description('segment one case, or every case of a folder, from any non-empty subset of the four MRI sequences (missing ones are masked)')
    .requiredOption('--model <run>', 'training run folder (run.json and model.safetensors)')
    .option('--flair <file>', 'FLAIR volume (.nii, .nii.gz, .mha, .mhd)')
    .option('--t1ce <file>', 'contrast-enhanced T1 volume')
    .option('--t1 <file>', 'T1 volume')
    .option('--t2 <file>', 'T2 volume')
    .option('--out <file>', 'label volume to write (.nii or .nii.gz), on the grid of the inputs')
    .option('--probabilities <file>', 'also write a 4D NIfTI (I, J, K, C) of per-class probabilities, volume c = class c')
    .option('--input <dir>', 'folder of cases: BraTS 2018–2021/2023 case folders, BraTS 2015 .mha folders, or nnU-Net <case>_0000.nii.gz … _0003 files')
    .option('--output <dir>', 'with --input: where <case>.nii.gz segmentations are written')
    .option('--overwrite', 'with --input: segment cases again whose output exists (default: skip them)')
    .addOption(
      new Option('--reference <sequence>', 'sequences on different grids are resampled onto the grid of this one (default: the finest)').choices([...MODALITIES]),
    )
    .option('--channel-order <list>', 'with --input: modalities of nnU-Net channels _0000, _0001, … (default flair,t1ce,t1,t2)', parseChannelOrder);
  return addInferenceOptions(command).action(async (options: PredictCliOptions) => {
    const folderMode = options.input !== undefined || options.output !== undefined;
    if (folderMode) {
      if (options.input === undefined || options.output === undefined) throw new Error('--input and --output go together');
      const single = (['flair', 't1ce', 't1', 't2', 'out', 'probabilities'] as const).filter((key) => options[key] !== undefined);
      if (single.length > 0) throw new Error(`--input segments a folder: drop ${single.map((key) => `--${key}`).join(', ')}`);
    } else if (options.out === undefined) {
      throw new Error("required option '--out <file>' not specified (or --input DIR --output DIR for a folder)");
    }
    const trained = loadTrainedModel(options.model, { device: options.device });
    let processes: InferenceProcesses | undefined;
    try {
      processes = inferenceProcessesFor(trained.model, options);
      const settings = { weighting: options.weighting, overlap: options.overlap, batchSize: options.batchSize, device: options.device, precision: options.precision, reference: options.reference, processes };
      const inference = inferenceModelOf(trained, options.model);
      if (folderMode) await predictFolderCommand(inference, { ...options, input: options.input!, output: options.output! }, settings);
      else await predictOneCase(inference, { ...options, out: options.out! }, settings);
    } finally {
      processes?.close();
      trained.model.dispose();
    }
  });
}
