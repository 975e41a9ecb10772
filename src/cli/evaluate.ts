/**
 * `smml evaluate`: scores a trained run on labelled cases under all 15 modality subsets and writes
 * the paper's Table 1 layout (Dice) and an HD95 table as Markdown, CSV and JSON, plus per-case scores;
 * or scores a folder of existing predictions against labels.
 */
import { Option, type Command } from 'commander';
import * as path from 'node:path';
import { discoverBrats, readSplit, type BratsDataset, type BratsLayout } from '../data/brats.ts';
import { SUBSETS } from '../data/modalities.ts';
import { REGIONS } from '../data/regions.ts';
import { evaluateDataset } from '../evaluation/evaluate.ts';
import { evaluatePredictionFolder, folderSummaryMarkdown, FOLDER_RESULT_FILES, writeFolderResults } from '../evaluation/folder.ts';
import { diceTableMarkdown, RESULT_FILES, writeResults, type CaseResult, type EvaluationResult, type EvaluationSummary } from '../evaluation/tables.ts';
import { checkWritableFile } from '../inference/output.ts';
import type { InferenceProcesses } from '../inference/processes.ts';
import { windowProgress } from '../progress.ts';
import { evaluationSection, joinSections, trainingSection } from '../report/sections.ts';
import { writeReport } from '../report/report.ts';
import { viewerRecorder } from '../report/viewer-data.ts';
import { loadTrainedModel, runPaths, writeRunQuality, type RunData } from '../training/run-dir.ts';
import { readRunLog } from '../training/run-log.ts';
import type { Precision } from '../models/index.ts';
import { nonNegativeInteger } from './arguments.ts';
import { addInferenceOptions, inferenceProcessesFor } from './predict.ts';

const SPLIT_NAMES = ['train', 'val', 'test'] as const;

/** Case ids of a split: a part of the run's recorded split by name, or a split file. */
export function resolveSplit(split: string, data: RunData): { ids: string[]; description: string } {
  const name = SPLIT_NAMES.find((candidate) => candidate === split);
  if (name) {
    const ids = data.split[name];
    if (ids.length === 0) throw new Error(`the run's ${name} split is empty: pass --split FILE with one case id per line`);
    return { ids, description: `the run's ${name} split (${ids.length} cases)` };
  }
  const ids = readSplit(split);
  if (ids.length === 0) throw new Error(`${split}: the split file lists no case`);
  return { ids, description: `${path.resolve(split)} (${ids.length} cases)` };
}

/** Every labelled case of a data folder, for `--data DIR` without `--split`. */
function labelledCases(dataset: BratsDataset): { ids: string[]; description: string } {
  const ids = dataset.cases.filter((entry) => entry.label !== undefined).map((entry) => entry.id);
  if (ids.length === 0) throw new Error(`${dataset.root}: no case has a label file, so there is nothing to score`);
  return { ids, description: `every labelled case in ${path.resolve(dataset.root)} (${ids.length} cases)` };
}

export interface EvaluateCliOptions {
  model: string;
  data?: string;
  /** Default: every labelled case of `data` when it is given, the run's test split otherwise. */
  split?: string;
  cache?: string;
  out?: string;
  weighting: 'gaussian' | 'uniform';
  overlap: number;
  batchSize?: number;
  device: string;
  /** Default 'fp32'. */
  precision?: Precision;
  /** Processes sharing the windows of each case (`--processes`); default one per core on the CPU. */
  processes?: number;
  /** Cases whose volumes and predictions the report's 3D viewer shows (the first ones); default 5. */
  viewerCases?: number;
}

/** Folder of the HTML and Markdown report inside the results folder. */
export const REPORT_DIR = 'report';

const ALL_FOUR = SUBSETS.findIndex((subset) => subset.every(Boolean));

function caseLine(done: number, total: number, result: CaseResult): string {
  const all = result.scores[ALL_FOUR];
  const meanOverSubsets = result.scores.reduce((sum, s) => sum + REGIONS.reduce((acc, r) => acc + s.dice[r], 0) / REGIONS.length, 0) / result.scores.length;
  const dice = REGIONS.map((region) => `${region} ${all.dice[region].toFixed(3)}`).join(' ');
  return `[${done}/${total}] ${result.id} ${result.seconds.toFixed(1)} s  Dice with all four: ${dice}  mean over subsets ${meanOverSubsets.toFixed(3)}`;
}

/**
 * Scores a trained run under all 15 subsets and writes the result files into `options.out`
 * (default `<run>/evaluation`), with a progress bar per case on stderr.
 */
export async function evaluateRun(options: EvaluateCliOptions): Promise<EvaluationSummary> {
  const trained = loadTrainedModel(options.model, { device: options.device });
  const runData = trained.config.data;
  const root = path.resolve(options.data ?? runData.root);
  const cacheDir = options.cache ?? (root === path.resolve(runData.root) ? runData.cacheDir : undefined);
  const outDir = options.out ?? path.join(options.model, 'evaluation');
  checkWritableFile(path.join(outDir, RESULT_FILES[0]), 'results folder');
  const dataset = discoverBrats(root);
  const { ids, description } =
    options.split === undefined && options.data !== undefined ? labelledCases(dataset) : resolveSplit(options.split ?? 'test', runData);
  const reportDir = path.join(outDir, REPORT_DIR);
  const viewer = viewerRecorder(reportDir, dataset, trained.labelConvention, ids.slice(0, options.viewerCases ?? 5), SUBSETS);
  console.error(`evaluating ${ids.length} cases under ${SUBSETS.length} modality subsets`);
  let progress = windowProgress('');
  let result: EvaluationResult;
  let processes: InferenceProcesses | undefined;
  try {
    processes = inferenceProcessesFor(trained.model, options);
    result = await evaluateDataset(trained.model, {
      processes,
      dataset,
      caseIds: ids,
      cacheDir,
      weighting: options.weighting,
      overlap: options.overlap,
      batchSize: options.batchSize,
      device: options.device,
      precision: options.precision,
      onPredictions: viewer.onPredictions,
      onPreprocess: ({ done, total, id, status }) => {
        if (status === 'written') console.error(`preprocessed ${id} (${done}/${total})`);
      },
      onCaseStart: (index, total, id) => {
        progress = windowProgress(`[${index + 1}/${total}] ${id}`);
      },
      onWindow: (done, total) => progress.onWindow(done, total),
      onCase: ({ done, total, result: caseResult }) => {
        progress.stop();
        console.error(caseLine(done, total, caseResult));
      },
    });
  } finally {
    progress.stop();
    processes?.close();
    trained.model.dispose();
  }
  const context = {
    model: path.resolve(options.model),
    data: root,
    cases: description,
    settings: { weighting: options.weighting, overlap: options.overlap, device: options.device, precision: options.precision ?? 'fp32' },
  };
  const summary = writeResults(outDir, result, context);
  // Only held-out scores tell a user what to expect: cases the run trained on would flatter it.
  const training = new Set(root === path.resolve(runData.root) ? runData.split.train : []);
  if (!ids.some((id) => training.has(id))) {
    writeRunQuality(options.model, {
      format: 'smml-quality',
      createdAt: new Date().toISOString(),
      data: root,
      cases: description,
      caseCount: ids.length,
      subsets: summary.subsets.map((row) => ({ name: row.name, modalities: [...row.subset], dice: { WT: row.dice.WT, TC: row.dice.TC, ET: row.dice.ET } })),
    });
  }
  const body = joinSections([await evaluationSection(result, summary), await trainingSection(readRunLog(runPaths(options.model).log))]);
  const header = ['# Evaluation over the 15 modality subsets', '', `- model: \`${context.model}\``, `- data: \`${root}\``, `- cases: ${description}`, ''];
  await writeReport(reportDir, { title: `smml evaluation of ${path.basename(context.model)}`, markdown: [...header, body.markdown].join('\n'), figures: body.figures, viewer: viewer.manifest(result) });
  return summary;
}

interface EvaluateCommandOptions extends Omit<EvaluateCliOptions, 'model'> {
  model?: string;
  predictions?: string;
  labels?: string;
  layout?: BratsLayout;
}

/** `--predictions DIR --labels DIR`: scores existing files; exits with status 1 when a labelled case has no prediction. */
function evaluateFolderCommand(options: EvaluateCommandOptions & { predictions: string; labels: string }): void {
  const outDir = options.out ?? path.join(options.predictions, 'evaluation');
  checkWritableFile(path.join(outDir, FOLDER_RESULT_FILES[0]), 'results folder');
  const evaluation = evaluatePredictionFolder({
    predictions: options.predictions,
    labels: options.labels,
    layout: options.layout,
    onCase: (done, total, id) => console.error(`[${done}/${total}] ${id}`),
  });
  writeFolderResults(outDir, evaluation, { predictions: path.resolve(options.predictions), labels: path.resolve(options.labels) });
  console.log(folderSummaryMarkdown(evaluation));
  console.log(`\n${evaluation.cases.length} cases scored; ${FOLDER_RESULT_FILES.join(', ')} written to ${path.resolve(outDir)}`);
  if (evaluation.missing.length > 0) {
    console.error(`${evaluation.missing.length} labelled case(s) have no prediction in ${options.predictions}: ${evaluation.missing.join(', ')}`);
    process.exitCode = 1;
  }
}

export function registerEvaluateCommand(program: Command): Command {
  const command = program
    .command('evaluate')
    .description(
      "score a trained run under all 15 modality subsets (Dice and HD95 of WT, TC, ET), as in the paper's Table 1; " +
        'or, with --predictions and --labels, score existing segmentations',
    )
    .option('--model <run>', 'training run folder (run.json and model.safetensors)')
    .option('--data <root>', 'BraTS data folder (default: the one the run was trained on)')
    .option('--split <name|file>', "'train', 'val' or 'test' of the run's split, or a file with one case id per line (default: every labelled case of --data, else 'test')")
    .option('--cache <dir>', "preprocessing cache of the data (default: the run's, when --data is the run's data)")
    .option('--predictions <dir>', 'folder of <case>.nii.gz segmentations to score instead of running a model')
    .option('--labels <dir>', 'with --predictions: a BraTS data folder or a folder of <case>.nii.gz label files')
    .addOption(new Option('--layout <layout>', 'with --predictions: label convention of a flat label folder (default brats2018: 0, 1, 2, 4)').choices(['brats2018', 'brats2023', 'brats2015']))
    .option('--out <dir>', 'results folder (default: <run>/evaluation, or <predictions>/evaluation)')
    .option('--viewer-cases <n>', "cases the report's 3D viewer shows, the first of the split (their sequences and 15 predictions are written beside the report)", nonNegativeInteger, 5);
  return addInferenceOptions(command).action(async (options: EvaluateCommandOptions) => {
    const started = performance.now();
    if (options.predictions !== undefined || options.labels !== undefined) {
      if (options.predictions === undefined || options.labels === undefined) throw new Error('--predictions and --labels go together');
      if (options.model !== undefined) throw new Error('--predictions scores existing segmentations: drop --model (or drop --predictions to run the model)');
      evaluateFolderCommand({ ...options, predictions: options.predictions, labels: options.labels });
      return;
    }
    if (options.model === undefined) throw new Error('pass --model RUN to evaluate a run, or --predictions DIR --labels DIR to score existing segmentations');
    const summary = await evaluateRun({ ...options, model: options.model });
    console.log(diceTableMarkdown(summary));
    const minutes = (performance.now() - started) / 60000;
    const outDir = path.resolve(options.out ?? path.join(options.model, 'evaluation'));
    console.log(`\n${RESULT_FILES.join(', ')} written to ${outDir}, the report to ${path.join(outDir, REPORT_DIR)} (\`smml view ${options.model}\` serves it) (${minutes.toFixed(1)} min)`);
  });
}
