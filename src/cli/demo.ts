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
import { freeLocalPort } from '../engine/index.ts';
import { writeFileAtomic } from '../data/files.ts';
import { MODALITIES, SUBSETS, subsetName, type ModalityMask } from '../data/modalities.ts';
import { writeSlicePreview, type PreviewVolume } from '../data/preview.ts';
import { SYNTHETIC_VERSION, synthesizeDataset } from '../data/synthetic.ts';
import { readVolume } from '../data/volume.ts';
import { evaluateDataset } from '../evaluation/evaluate.ts';
import { movingAverage, writeLineChart } from '../evaluation/plot.ts';
import { diceTableMarkdown, hausdorffTableMarkdown, writeResults, type EvaluationSummary } from '../evaluation/tables.ts';
import { predictCase } from '../inference/predict.ts';
import { measurePriors, priorQualityMarkdown } from '../priors/quality.ts';
import { createProgress, formatDuration } from '../progress.ts';
import { applyOverrides, parseTrainingConfig, readConfigFile, type TrainingConfigInput } from '../training/config.ts';
import type { BestModel } from '../training/checkpoint.ts';
import { loadTrainedModel, runPaths, type ValidationScores } from '../training/run-dir.ts';
import { readRunLog } from '../training/run-log.ts';
import { createTrainer, type TrainResult } from '../training/trainer.ts';
import { nonNegativeInteger, positiveInteger, positiveNumber } from './arguments.ts';
import { ensurePriors } from './priors-for-training.ts';
import { launchWorkers } from './launch.ts';
import { runWithSignals } from './train.ts';

export interface DemoOptions {
  out: string;
  cases: number;
  size: number;
  seed: number;
  /** Unset: the recipe's (configs/demo.json). */
  epochs?: number;
  stepsPerEpoch?: number;
  lr?: number;
  fresh?: boolean;
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
function demoAssignments(options: DemoOptions, dataRoot: string, cacheDir: string): string[] {
  const assignments = [`data.root=${JSON.stringify(dataRoot)}`, `data.cacheDir=${JSON.stringify(cacheDir)}`];
  assignments.push(`data.split.seed=${options.seed}`, `training.seed=${options.seed}`);
  if (options.epochs !== undefined) {
    // The paper switches the KL terms on after 10 % of training (epoch 100 of 1000); validation runs five times.
    assignments.push(`training.epochs=${options.epochs}`, `losses.warmupEpochs=${Math.max(1, Math.round(options.epochs / 10))}`);
    assignments.push(`validation.every=${Math.max(1, Math.round(options.epochs / 5))}`);
  }
  if (options.stepsPerEpoch !== undefined) assignments.push(`training.stepsPerEpoch=${options.stepsPerEpoch}`);
  if (options.lr !== undefined) assignments.push(`training.lr=${options.lr}`);
  return assignments;
}

/** The recipe with `demoAssignments`. */
function demoConfig(options: DemoOptions, dataRoot: string, cacheDir: string): TrainingConfigInput {
  return applyOverrides(readConfigFile(DEMO_RECIPE_FILE), demoAssignments(options, dataRoot, cacheDir)) as TrainingConfigInput;
}

/**
 * Trains with `smml train --nproc-per-node` in `processes` processes on this machine, each with its share of the
 * recipe's batch (the processes together train on the same samples per step). Returns the launcher's status.
 */
async function trainInProcesses(options: DemoOptions, processes: number, runDir: string, dataRoot: string, cacheDir: string, resume: boolean): Promise<number> {
  const { batchSize } = parseTrainingConfig(demoConfig(options, dataRoot, cacheDir), 'demo configuration').training;
  if (batchSize % processes !== 0) throw new Error(`--nproc-per-node ${processes} does not divide the recipe's batch of ${batchSize}`);
  const recipe = ['--config', DEMO_RECIPE_FILE, ...[...demoAssignments(options, dataRoot, cacheDir), `training.batchSize=${batchSize / processes}`].flatMap((a) => ['--set', a])];
  return launchWorkers({
    processesPerNode: processes,
    nodes: 1,
    nodeRank: 0,
    masterAddr: '127.0.0.1',
    masterPort: await freeLocalPort(),
    args: ['train', '--out', runDir, ...(resume ? ['--resume'] : recipe)],
  });
}

async function prepareData(options: DemoOptions, dataRoot: string): Promise<void> {
  const info = path.join(dataRoot, 'dataset.json');
  if (fs.existsSync(info)) {
    const stored = JSON.parse(fs.readFileSync(info, 'utf8')) as { version?: number; seed?: number; size?: number; cases?: unknown[] };
    const same = stored.version === SYNTHETIC_VERSION && stored.seed === options.seed && stored.size === options.size;
    if (same && stored.cases?.length === options.cases) {
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

async function train(options: DemoOptions, runDir: string, dataRoot: string, cacheDir: string): Promise<void> {
  const paths = runPaths(runDir);
  const finished = readRunLog(paths.log).some((r) => r.type === 'finished');
  if (finished) {
    console.log(`training: finished earlier in ${runDir}`);
    return;
  }
  const resume = fs.existsSync(paths.config);
  const config = parseTrainingConfig(demoConfig(options, dataRoot, cacheDir), 'demo configuration');
  if (!resume) {
    const providers = await ensurePriors(config);
    console.log(`training: SMML, the full method (two branches, PBC, FRC, refinement network on priors by ${providers.join(', ')}) into ${runDir}`);
  } else {
    console.log(`training: resuming ${runDir}`);
  }
  const processes = options.nprocPerNode ?? 1;
  if (processes > 1) {
    const status = await trainInProcesses(options, processes, runDir, dataRoot, cacheDir, resume);
    if (status === 130) {
      console.log('training interrupted; run `npm run demo` again to continue');
      process.exit(130);
    }
    if (status !== 0) throw new Error(`training in ${processes} processes failed (status ${status}); the messages above say why`);
    return;
  }
  const progress = createProgress();
  const trainer = await createTrainer({ runDir, config: resume ? undefined : config, resume, progress });
  const result = await runWithSignals(trainer, progress);
  if (result.status === 'interrupted') {
    console.log('training interrupted; run `npm run demo` again to continue');
    process.exit(130);
  }
  console.log(`training: ${formatDuration(result.secondsPerStep * result.position.step)} of steps, ${result.secondsPerStep.toFixed(2)} s per step`);
}

function writeCurves(runDir: string, reportDir: string): string[] {
  const records = readRunLog(runPaths(runDir).log);
  const steps = records.filter((r) => r.type === 'step');
  const losses = steps.map((r) => Number(r.loss));
  const x = steps.map((r) => Number(r.step));
  const smoothed = movingAverage(losses, Math.max(1, Math.round(steps.length / 40)));
  writeLineChart(path.join(reportDir, 'loss.png'), [
    { color: [170, 190, 230], points: x.map((s, i) => [s, losses[i]] as const) },
    { color: [20, 60, 160], points: x.map((s, i) => [s, smoothed[i]] as const) },
  ]);
  const validations = records.filter((r) => r.type === 'epoch' && r.validation) as unknown as { epoch: number; validation: { dice: Record<string, number> } }[];
  const regionColours: Record<string, [number, number, number]> = { WT: [40, 150, 60], TC: [200, 40, 40], ET: [230, 170, 0] };
  writeLineChart(
    path.join(reportDir, 'validation.png'),
    Object.entries(regionColours).map(([region, color]) => ({ color, points: validations.map((v) => [v.epoch + 1, v.validation.dice[region]] as const) })),
  );
  return ['loss.png', 'validation.png'];
}

function writeOverlay(runDir: string, dataRoot: string, caseId: string, reportDir: string): string {
  const dataset = discoverBrats(dataRoot);
  const entry = dataset.cases.find((c) => c.id === caseId);
  if (!entry?.label) throw new Error(`demo: test case ${caseId} not found in ${dataRoot}`);
  const trained = loadTrainedModel(runDir);
  const inference = { model: trained.model, labelValues: trained.labelConvention.values };
  const flair = readVolume(entry.modalities.flair);
  const t1ce = readVolume(entry.modalities.t1ce);
  const truth = readVolume(entry.label);
  const volumes: PreviewVolume[] = [
    { name: 'FLAIR', data: flair.data, shape: flair.shape },
    { name: 'T1ce', data: t1ce.data, shape: t1ce.shape },
    { name: 'ground truth', data: truth.data, shape: truth.shape, kind: 'label' },
  ];
  for (const subset of OVERLAY_SUBSETS) {
    const files = Object.fromEntries(MODALITIES.filter((_, i) => subset[i]).map((m) => [m, entry.modalities[m]]));
    const prediction = predictCase(inference, files);
    volumes.push({ name: subsetName(subset), data: prediction.labels, shape: prediction.shape, kind: 'label' });
  }
  trained.model.dispose();
  const file = 'overlays.png';
  writeSlicePreview(path.join(reportDir, file), volumes);
  return file;
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

function reportMarkdown(
  summary: EvaluationSummary,
  context: { cases: number; size: number; test: string[]; minutes: number; overlayCase: string; priors: string; selection: string },
): string {
  const all = summary.subsets[summary.subsets.length - 1];
  const withT1ce = summary.subsets.filter((s) => s.subset[1]);
  const withoutT1ce = summary.subsets.filter((s) => !s.subset[1]);
  const meanEt = (rows: typeof withT1ce) => rows.reduce((sum, s) => sum + s.dice.ET, 0) / rows.length;
  return [
    '# smml demo report',
    '',
    `Synthetic BraTS-like data: ${context.cases} cases of ${context.size}^3 voxels; test cases: ${context.test.join(', ')}.`,
    `Wall-clock time of the whole demo: ${context.minutes.toFixed(1)} minutes.`,
    '',
    '## Dice (%) per modality subset',
    '',
    context.selection,
    '',
    diceTableMarkdown(summary),
    '',
    `All four modalities: WT ${(100 * all.dice.WT).toFixed(1)} %. Mean ET Dice with T1ce ${(100 * meanEt(withT1ce)).toFixed(1)} %, without T1ce ${(100 * meanEt(withoutT1ce)).toFixed(1)} %.`,
    '',
    '## 95 % Hausdorff distance (mm) per modality subset',
    '',
    hausdorffTableMarkdown(summary),
    '',
    '## Semantic priors of the refinement network',
    '',
    context.priors,
    '',
    '## Training',
    '',
    '![loss](loss.png)',
    '',
    'Training loss (L1 + L2 − Lfc) per step: light blue raw, dark blue moving average.',
    '',
    '![validation](validation.png)',
    '',
    'Validation Dice (per region, mean over the 15 subsets and the validation cases that contain the region): green WT, red TC, yellow ET.',
    '',
    '## Segmentations',
    '',
    '![overlays](overlays.png)',
    '',
    `Case ${context.overlayCase}, one axial slice. Panels: FLAIR, T1ce, ground truth, then predictions from ${OVERLAY_SUBSETS.map(subsetName).join('; ')}. Red NCR/NET, green oedema, yellow enhancing tumour.`,
    '',
  ].join('\n');
}

export async function runDemo(options: DemoOptions): Promise<void> {
  const started = performance.now();
  const out = path.resolve(options.out);
  if (options.fresh) fs.rmSync(out, { recursive: true, force: true });
  const dataRoot = path.join(out, 'data');
  const cacheDir = path.join(out, 'cache');
  const runDir = path.join(out, 'run');
  const reportDir = path.join(out, 'report');
  fs.mkdirSync(reportDir, { recursive: true });

  await prepareData(options, dataRoot);
  await train(options, runDir, dataRoot, cacheDir);

  const trained = loadTrainedModel(runDir);
  const test = trained.config.data.split.test;
  console.log(`evaluation: ${test.length} held-out cases × ${SUBSETS.length} modality subsets`);
  const dataset = discoverBrats(dataRoot);
  const result = await evaluateDataset(trained.model, {
    dataset,
    caseIds: test,
    cacheDir,
    onCase: ({ done, total, result: r }) => console.log(`  [${done}/${total}] ${r.id} ${r.seconds.toFixed(1)} s`),
  });
  trained.model.dispose();
  const summary = writeResults(reportDir, result, { model: runDir, data: dataRoot, cases: `test split (${test.length} cases)` });
  const priors = priorQualityMarkdown(await measurePriors({ cacheDir, ids: trained.config.data.split.train }));
  const figures = writeCurves(runDir, reportDir);
  const overlay = writeOverlay(runDir, dataRoot, test[0], reportDir);
  const selection = modelSelectionText(runDir);
  const minutes = (performance.now() - started) / 60000;
  writeFileAtomic(path.join(reportDir, 'README.md'), reportMarkdown(summary, { cases: options.cases, size: options.size, test, minutes, overlayCase: test[0], priors, selection }));
  console.log(`\n${priors}\n`);
  console.log(`${selection}\n`);
  console.log(diceTableMarkdown(summary));
  console.log('');
  console.log(`report: ${path.join(reportDir, 'README.md')} (tables, ${[...figures, overlay].join(', ')}); ${minutes.toFixed(1)} minutes in all`);
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('synthesise a data set, train SMML on the CPU, evaluate all 15 modality subsets and write a report')
    .option('--out <dir>', 'folder for data, cache, run and report', 'runs/demo')
    .option('--cases <n>', 'synthetic cases', positiveInteger, 30)
    .option('--size <voxels>', 'synthetic volume edge length', positiveInteger, 64)
    .option('--seed <n>', 'seed of data, split and training', nonNegativeInteger, 1)
    .option('--epochs <n>', 'training epochs (default: configs/demo.json)', positiveInteger)
    .option('--steps-per-epoch <n>', 'training steps per epoch (default: configs/demo.json)', positiveInteger)
    .option('--lr <lr>', 'initial learning rate (default: configs/demo.json; the paper uses 2e-4 over 1000 epochs, the short demo needs a larger one)', positiveNumber)
    .option('--fresh', 'delete the output folder first')
    .option('--nproc-per-node <n>', 'train in n processes on this machine, each with 1/n of the batch and of the cores (default 1: in this process)', positiveInteger)
    .action((options: DemoOptions) => runDemo(options));
}
