/**
 * `smml demo`: the whole pipeline on the built-in synthetic data set — synthesise, preprocess, train SMML
 * with a CPU preset, evaluate the 15 modality subsets on held-out cases, and write a report folder.
 * Re-running continues where it stopped: finished steps (data, training) are skipped.
 */
import type { Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { discoverBrats } from '../data/brats.ts';
import { SUBSETS, subsetName, type ModalityMask } from '../data/modalities.ts';
import type { PreviewVolume } from '../data/preview.ts';
import { SYNTHETIC_VERSION, synthesizeDataset, type SyntheticDatasetInfo } from '../data/synthetic.ts';
import { readVolume } from '../data/volume.ts';
import { evaluateDataset } from '../evaluation/evaluate.ts';
import type { Precision } from '../models/index.ts';
import { diceTableMarkdown, writeResults, type EvaluationSummary } from '../evaluation/tables.ts';
import { measurePriors, priorQualityMarkdown } from '../priors/quality.ts';
import { createProgress, formatDuration } from '../progress.ts';
import { overlayFigure } from '../report/overlay-figure.ts';
import { figureMarkdown, REPORT_PAGE, writeReport } from '../report/report.ts';
import { evaluationSection, joinSections, textSection, trainingSection, type ReportSection } from '../report/sections.ts';
import { subsetSlug, VIEWER_DATA_DIR, viewerRecorder } from '../report/viewer-data.ts';
import type { ViewerLabel } from '../report/viewer/manifest.ts';
import { applyOverrides, parseTrainingConfig, readConfigFile, type TrainingConfig, type TrainingConfigInput } from '../training/config.ts';
import type { BestModel } from '../training/checkpoint.ts';
import { loadTrainedModel, readRunConfig, runPaths, type ValidationScores } from '../training/run-dir.ts';
import { readRunLog } from '../training/run-log.ts';
import { createTrainer, type TrainResult } from '../training/trainer.ts';
import { nonNegativeInteger, positiveInteger, positiveNumber, precisionOption } from './arguments.ts';
import { ensurePriors } from './priors-for-training.ts';
import { defaultTrainingProcesses, trainInLocalProcesses } from './launch.ts';
import { runWithSignals } from './train.ts';

export interface DemoOptions {
  out: string;
  cases: number;
  size: number;
  /** Seed of the synthetic data, its split and (without `trainingSeed`) training. */
  seed: number;
  /** Seed of training alone (initial weights, patches, modality masks): another run on the same data; unset: `seed`. */
  trainingSeed?: number;
  /** Unset: the recipe's (configs/demo.json). */
  epochs?: number;
  stepsPerEpoch?: number;
  lr?: number;
  fresh?: boolean;
  /** The network's arithmetic in training and evaluation; unset: the recipe's. */
  precision?: Precision;
  /** Training processes (data-parallel, each with its share of the recipe's batch and of the cores); default 1. */
  nprocPerNode?: number;
}

/** Subsets drawn in the report's overlay figure: all four, then the ones that show each modality's role. */
const OVERLAY_SUBSETS: readonly ModalityMask[] = [
  [true, true, true, true],
  [true, false, false, false],
  [false, true, false, false],
  [false, false, true, true],
];

/**
 * The demo's training recipe: the full method on the `cpu-small` preset with the short-budget choices measured in
 * docs/learning.md. `smml ablate --config configs/demo.json` trains the ablation with the same recipe.
 */
export const DEMO_RECIPE_FILE = fileURLToPath(new URL('../../configs/demo.json', import.meta.url));

/** The data paths and the command line's choices as `field=value` overrides of the recipe; `--epochs` also rescales the KL warm-up and validation. */
export function demoAssignments(options: DemoOptions, dataRoot: string, cacheDir: string): string[] {
  const assignments = [`data.root=${JSON.stringify(dataRoot)}`, `data.cacheDir=${JSON.stringify(cacheDir)}`];
  assignments.push(`data.split.seed=${options.seed}`, `training.seed=${options.trainingSeed ?? options.seed}`);
  if (options.epochs !== undefined) {
    // The paper switches the KL terms on after 10 % of training (epoch 100 of 1000); validation runs five times.
    assignments.push(`training.epochs=${options.epochs}`, `losses.warmupEpochs=${Math.max(1, Math.round(options.epochs / 10))}`);
    assignments.push(`validation.every=${Math.max(1, Math.round(options.epochs / 5))}`);
  }
  if (options.stepsPerEpoch !== undefined) assignments.push(`training.stepsPerEpoch=${options.stepsPerEpoch}`);
  if (options.lr !== undefined) assignments.push(`training.lr=${options.lr}`);
  if (options.precision !== undefined) assignments.push(`training.precision=${JSON.stringify(options.precision)}`);
  return assignments;
}

/** The recipe with `demoAssignments`. */
function demoConfig(options: DemoOptions, dataRoot: string, cacheDir: string): TrainingConfigInput {
  return applyOverrides(readConfigFile(DEMO_RECIPE_FILE), demoAssignments(options, dataRoot, cacheDir)) as TrainingConfigInput;
}

/**
 * Trains with `smml train` in `processes` processes on this machine: one branch each (the recipe's
 * `training.parallel` 'branches'), or each with its share of the recipe's batch ('data'); either way the processes
 * together train on the same samples per step. False when interrupted.
 */
async function trainInProcesses(config: TrainingConfig, processes: number, runDir: string, resume: boolean): Promise<boolean> {
  const { batchSize, parallel } = config.training;
  if (parallel === 'data' && batchSize % processes !== 0) throw new Error(`--nproc-per-node ${processes} does not divide the recipe's batch of ${batchSize}`);
  const perProcess = parallel === 'data' ? batchSize / processes : batchSize;
  return trainInLocalProcesses(processes, runDir, resume ? null : { ...config, training: { ...config.training, batchSize: perProcess } }, 'demo');
}

/** The data set's `dataset.json`, as written by whatever generator version made it (so every field may be missing). */
const readDatasetInfo = (dataRoot: string): Partial<SyntheticDatasetInfo> | null => {
  const info = path.join(dataRoot, 'dataset.json');
  return fs.existsSync(info) ? (JSON.parse(fs.readFileSync(info, 'utf8')) as Partial<SyntheticDatasetInfo>) : null;
};

/** Whether a stored data set was made with the asked seed, size and case count, by any generator version. */
const sameRequest = (stored: Partial<SyntheticDatasetInfo>, options: Pick<DemoOptions, 'seed' | 'size' | 'cases'>): boolean =>
  stored.seed === options.seed && stored.size === options.size && stored.cases?.length === options.cases;

/**
 * A demo folder made by an earlier generator version with the asked seed, size and case count: the same command
 * from an older checkout. Its results do not compare with the new data's, and a rerun must not mix the two, so the
 * whole folder moves aside to `<out>-generator-v<version>` (nothing is deleted) and the demo starts afresh.
 * Returns where it went, or null when there was nothing to move.
 */
export function setAsideOutdatedDemo(out: string, options: Pick<DemoOptions, 'seed' | 'size' | 'cases'>): string | null {
  const stored = readDatasetInfo(path.join(out, 'data'));
  if (!stored || stored.version === SYNTHETIC_VERSION || !sameRequest(stored, options)) return null;
  const base = `${out}-generator-v${stored.version ?? 'unknown'}`;
  let target = base;
  for (let n = 2; fs.existsSync(target); n++) target = `${base}-${n}`;
  fs.renameSync(out, target);
  return target;
}

async function prepareData(options: DemoOptions, dataRoot: string): Promise<void> {
  const stored = readDatasetInfo(dataRoot);
  if (stored) {
    if (stored.version === SYNTHETIC_VERSION && sameRequest(stored, options)) {
      console.log(`data: ${options.cases} synthetic cases already in ${dataRoot}`);
      return;
    }
    throw new Error(`${dataRoot} holds another synthetic data set (or one from another generator version); use --fresh or another --out`);
  }
  console.log(`data: synthesising ${options.cases} BraTS-like cases of ${options.size}^3 voxels`);
  synthesizeDataset({
    out: dataRoot,
    cases: options.cases,
    size: options.size,
    seed: options.seed,
    onProgress: (p) => console.log(`  [${p.done}/${p.total}] ${p.caseId} (${p.grade}) ${p.seconds.toFixed(2)} s`),
  });
}

/** The recipe fields a run in `runDir` was started with, when they differ from `config`'s: the command line asked for another run. */
function recipeDifferences(runDir: string, config: TrainingConfig): string[] {
  const stored = readRunConfig(runDir).config.training;
  const fields = ['seed', 'epochs', 'stepsPerEpoch', 'lr', 'precision'] as const;
  return fields.filter((field) => stored[field] !== config.training[field]).map((field) => `training.${field} ${stored[field]} (asked: ${config.training[field]})`);
}

/** Whether this invocation trained from the start, continued an earlier run, or found its training finished. */
type TrainingOrigin = 'trained' | 'resumed' | 'reused';

async function train(options: DemoOptions, runDir: string, dataRoot: string, cacheDir: string): Promise<TrainingOrigin> {
  const paths = runPaths(runDir);
  const config = parseTrainingConfig(demoConfig(options, dataRoot, cacheDir), 'demo configuration');
  const resume = fs.existsSync(paths.config);
  const differences = resume ? recipeDifferences(runDir, config) : [];
  if (differences.length > 0) throw new Error(`${runDir} holds a run started with ${differences.join(', ')}; use --fresh or another --out`);
  const finished = readRunLog(paths.log).some((r) => r.type === 'finished');
  if (finished) {
    console.log(`training: finished earlier in ${runDir}`);
    return 'reused';
  }
  if (!resume) {
    const providers = await ensurePriors(config);
    console.log(`training: SMML, the full method (two branches, PBC, FRC, refinement network on priors by ${providers.join(', ')}) into ${runDir}`);
  } else {
    console.log(`training: resuming ${runDir}`);
  }
  const processes = options.nprocPerNode ?? defaultTrainingProcesses(config);
  if (processes > 1) {
    if (!(await trainInProcesses(config, processes, runDir, resume))) {
      console.log('training interrupted; run `npm run demo` again to continue');
      process.exit(130);
    }
    return resume ? 'resumed' : 'trained';
  }
  const progress = createProgress();
  const trainer = await createTrainer({ runDir, config: resume ? undefined : config, resume, progress });
  const result = await runWithSignals(trainer, progress);
  if (result.status === 'interrupted') {
    console.log('training interrupted; run `npm run demo` again to continue');
    process.exit(130);
  }
  console.log(`training: ${formatDuration(result.secondsPerStep * result.position.step)} of steps, ${result.secondsPerStep.toFixed(2)} s per step`);
  return resume ? 'resumed' : 'trained';
}

/** The report's time line: the whole demo's only when this invocation trained from the start. */
function wallClockText(minutes: number, origin: TrainingOrigin): string {
  const time = `${minutes.toFixed(1)} minutes`;
  if (origin === 'trained') return `Wall-clock time of the whole demo: ${time}.`;
  const why = origin === 'resumed' ? 'training continued an interrupted run' : 'training had finished in an earlier run and was reused';
  return `Wall-clock time of this run of the demo: ${time} (${why}).`;
}

/** The labelled overlay figure of one case: FLAIR, T1ce, the ground truth and the predictions the viewer data hold. */
function overlaySection(reportDir: string, caseId: string, labels: readonly ViewerLabel[]): ReportSection {
  const caseDir = path.join(reportDir, VIEWER_DATA_DIR, caseId);
  const read = (file: string) => readVolume(path.join(caseDir, file));
  const image = (name: string, file: string): PreviewVolume => {
    const volume = read(file);
    return { name, data: volume.data, shape: volume.shape };
  };
  const label = (name: string, file: string): PreviewVolume => ({ ...image(name, file), kind: 'label' });
  const volumes = [
    image('FLAIR', 'flair.nii.gz'),
    image('T1ce', 't1ce.nii.gz'),
    label('ground truth', 'truth.nii.gz'),
    ...OVERLAY_SUBSETS.map((subset) => label(subsetName(subset), `prediction-${subsetSlug(subset)}.nii.gz`)),
  ];
  const figure = overlayFigure(path.join(reportDir, 'overlays.png'), volumes, labels);
  const caption =
    `Case ${caseId}, the axial slice with the most tumour. Panels: FLAIR and T1ce, then the ground truth and the predictions ` +
    'from the named subsets drawn over FLAIR.';
  return {
    markdown: ['## Segmentations', '', figureMarkdown('overlays', 'segmentations', caption), 'The 3D viewer of index.html shows every test case and subset (`smml view` serves it).', ''].join('\n'),
    figures: [{ name: 'overlays', ...figure }],
  };
}

/** Which weights the report evaluates, and the validation of the selected and of the last weights (the trainer's own record). */
function modelSelectionText(runDir: string): string {
  const finished = readRunLog(runPaths(runDir).log).find((r) => r.type === 'finished') as { best?: BestModel | null; last?: TrainResult['last'] } | undefined;
  const best = finished?.best;
  if (!best) return "No validation ran: the evaluated weights are the last epoch's.";
  const dice = ({ dice: d, mean }: ValidationScores) => `WT ${(100 * d.WT).toFixed(1)}, TC ${(100 * d.TC).toFixed(1)}, ET ${(100 * d.ET).toFixed(1)}, mean ${(100 * mean).toFixed(1)}`;
  const last = finished.last;
  const selected =
    `The evaluated weights are those of epoch ${best.epoch + 1}, selected by validation Dice (${dice(best.validation)}; each region averaged over ` +
    'the 15 subsets and the validation cases that contain it).';
  if (!last) return selected;
  return `${selected} ${last.epoch === best.epoch ? 'They are also the last epoch’s.' : `The last epoch (${last.epoch + 1}) scored ${dice(last.validation)}.`}`;
}

const PART_NAMES = { train: 'training', val: 'validation', test: 'test' } as const;

/**
 * How many high- and low-grade tumours each part of the split holds, so that a reader sees what the held-out cases
 * measure (docs/learning.md, "Representative data").
 */
function gradeMixText(dataRoot: string, split: Record<'train' | 'val' | 'test', readonly string[]>): string {
  const cases = readDatasetInfo(dataRoot)?.cases;
  if (!cases) throw new Error(`${path.join(dataRoot, 'dataset.json')}: missing, or lists no cases`);
  const grades = new Map(cases.map((c) => [c.id, c.grade]));
  const count = (ids: readonly string[], grade: string) => ids.filter((id) => grades.get(id) === grade).length;
  const parts = (['train', 'val', 'test'] as const).map((part) => `${PART_NAMES[part]} ${count(split[part], 'high')} / ${count(split[part], 'low')}`);
  return `Tumour grades (high / low): ${parts.join(', ')}.`;
}

function reportHeader(summary: EvaluationSummary, context: { cases: number; size: number; test: string[]; gradeMix: string; wallClock: string }): string[] {
  const all = summary.subsets[summary.subsets.length - 1];
  const withT1ce = summary.subsets.filter((s) => s.subset[1]);
  const withoutT1ce = summary.subsets.filter((s) => !s.subset[1]);
  const meanEt = (rows: typeof withT1ce) => rows.reduce((sum, s) => sum + s.dice.ET, 0) / rows.length;
  return [
    '# smml demo report',
    '',
    `Synthetic BraTS-like data: ${context.cases} cases of ${context.size}^3 voxels; test cases: ${context.test.join(', ')}.`,
    context.gradeMix,
    context.wallClock,
    `All four modalities: WT ${(100 * all.dice.WT).toFixed(1)} %. Mean ET Dice with T1ce ${(100 * meanEt(withT1ce)).toFixed(1)} %, without T1ce ${(100 * meanEt(withoutT1ce)).toFixed(1)} %.`,
    '',
  ];
}

export async function runDemo(options: DemoOptions): Promise<void> {
  const started = performance.now();
  const out = path.resolve(options.out);
  if (options.fresh) fs.rmSync(out, { recursive: true, force: true });
  const setAside = setAsideOutdatedDemo(out, options);
  if (setAside) console.log(`data: ${out} was made by an earlier version of the synthetic generator; moved it to ${setAside} and starting anew`);
  const dataRoot = path.join(out, 'data');
  const cacheDir = path.join(out, 'cache');
  const runDir = path.join(out, 'run');
  const reportDir = path.join(out, 'report');
  fs.mkdirSync(reportDir, { recursive: true });

  await prepareData(options, dataRoot);
  const origin = await train(options, runDir, dataRoot, cacheDir);

  const trained = loadTrainedModel(runDir);
  const test = trained.config.data.split.test;
  console.log(`evaluation: ${test.length} held-out cases × ${SUBSETS.length} modality subsets`);
  const dataset = discoverBrats(dataRoot);
  const viewer = viewerRecorder(reportDir, dataset, trained.labelConvention, test, SUBSETS);
  const result = await evaluateDataset(trained.model, {
    dataset,
    caseIds: test,
    cacheDir,
    precision: trained.config.config.training.precision,
    onPredictions: viewer.onPredictions,
    onCase: ({ done, total, result: r }) => console.log(`  [${done}/${total}] ${r.id} ${r.seconds.toFixed(1)} s`),
  });
  trained.model.dispose();
  const summary = writeResults(reportDir, result, { model: runDir, data: dataRoot, cases: `test split (${test.length} cases)` });
  const priors = priorQualityMarkdown(await measurePriors({ cacheDir, ids: trained.config.data.split.train }));
  const manifest = viewer.manifest(result);
  const selection = modelSelectionText(runDir);
  const body = joinSections([
    await evaluationSection(result, summary, selection),
    textSection(['## Semantic priors of the refinement network', '', priors]),
    await trainingSection(readRunLog(runPaths(runDir).log)),
    overlaySection(reportDir, test[0], manifest.labels),
  ]);
  const minutes = (performance.now() - started) / 60000;
  const gradeMix = gradeMixText(dataRoot, trained.config.data.split);
  const header = reportHeader(summary, { cases: options.cases, size: options.size, test, gradeMix, wallClock: wallClockText(minutes, origin) });
  const files = await writeReport(reportDir, { title: 'smml demo report', markdown: [...header, body.markdown].join('\n'), figures: body.figures, viewer: manifest });
  console.log(`\n${priors}\n`);
  console.log(`${selection}\n`);
  console.log(`${gradeMix}\n`);
  console.log(diceTableMarkdown(summary));
  console.log('');
  console.log(`report: ${path.join(reportDir, REPORT_PAGE)} and README.md (${files.length} files; \`smml view ${options.out}\` serves it with the 3D viewer); ${minutes.toFixed(1)} minutes in all`);
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('synthesise a data set, train SMML on the CPU, evaluate all 15 modality subsets and write a report')
    .option('--out <dir>', 'folder for data, cache, run and report', 'runs/demo')
    .option('--cases <n>', 'synthetic cases', positiveInteger, 30)
    .option('--size <voxels>', 'synthetic volume edge length', positiveInteger, 64)
    .option('--seed <n>', 'seed of data, split and training', nonNegativeInteger, 1)
    .option('--training-seed <n>', 'seed of training alone (weights, patches, modality masks), to repeat training on the same data and split (default: --seed)', nonNegativeInteger)
    .option('--epochs <n>', 'training epochs (default: configs/demo.json)', positiveInteger)
    .option('--steps-per-epoch <n>', 'training steps per epoch (default: configs/demo.json)', positiveInteger)
    .option('--lr <lr>', 'initial learning rate (default: configs/demo.json; the paper uses 2e-4 over 1000 epochs, the short demo needs a larger one)', positiveNumber)
    .addOption(precisionOption('training and evaluation (default: the recipe\'s, fp32)'))
    .option('--fresh', 'delete the output folder first')
    .option(
      '--nproc-per-node <n>',
      "train in n processes on this machine, each with 1/n of the cores: one branch each with the recipe's training.parallel 'branches', else 1/n of the batch each (default: 2 with 'branches' on 2 or more cores, else 1)",
      positiveInteger,
    )
    .action((options: DemoOptions) => runDemo(options));
}
