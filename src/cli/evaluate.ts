/**
 * `smml evaluate`: scores a trained run on labelled cases under all 15 modality subsets and writes
 * the paper's Table 1 layout (Dice) and an HD95 table as Markdown, CSV and JSON, plus per-case scores.
 */
import type { Command } from 'commander';
import * as path from 'node:path';
import { discoverBrats, readSplit } from '../data/brats.ts';
import { SUBSETS } from '../data/modalities.ts';
import { REGIONS } from '../data/regions.ts';
import { evaluateDataset } from '../evaluation/evaluate.ts';
import { diceTableMarkdown, RESULT_FILES, writeResults, type CaseResult, type EvaluationResult, type EvaluationSummary } from '../evaluation/tables.ts';
import { checkWritableFile } from '../inference/output.ts';
import { windowProgress } from '../progress.ts';
import { evaluationSection, joinSections, trainingSection } from '../report/sections.ts';
import { writeReport } from '../report/report.ts';
import { viewerRecorder } from '../report/viewer-data.ts';
import { loadTrainedModel, runPaths, type RunData } from '../training/run-dir.ts';
import { readRunLog } from '../training/run-log.ts';
import { nonNegativeInteger } from './arguments.ts';
import { addInferenceOptions } from './predict.ts';

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

export interface EvaluateCliOptions {
  model: string;
  data?: string;
  split: string;
  cache?: string;
  out?: string;
  weighting: 'gaussian' | 'uniform';
  overlap: number;
  device: string;
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
  const { ids, description } = resolveSplit(options.split, runData);
  const dataset = discoverBrats(root);
  const reportDir = path.join(outDir, REPORT_DIR);
  const viewer = viewerRecorder(reportDir, dataset, trained.labelConvention, ids.slice(0, options.viewerCases ?? 5), SUBSETS);
  console.error(`evaluating ${ids.length} cases under ${SUBSETS.length} modality subsets`);
  let progress = windowProgress('');
  let result: EvaluationResult;
  try {
    result = await evaluateDataset(trained.model, {
      dataset,
      caseIds: ids,
      cacheDir,
      weighting: options.weighting,
      overlap: options.overlap,
      device: options.device,
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
    trained.model.dispose();
  }
  const context = {
    model: path.resolve(options.model),
    data: root,
    cases: description,
    settings: { weighting: options.weighting, overlap: options.overlap, device: options.device },
  };
  const summary = writeResults(outDir, result, context);
  const body = joinSections([await evaluationSection(result, summary), await trainingSection(readRunLog(runPaths(options.model).log))]);
  const header = ['# Evaluation over the 15 modality subsets', '', `- model: \`${context.model}\``, `- data: \`${root}\``, `- cases: ${description}`, ''];
  await writeReport(reportDir, { title: `smml evaluation of ${path.basename(context.model)}`, markdown: [...header, body.markdown].join('\n'), figures: body.figures, viewer: viewer.manifest(result) });
  return summary;
}

export function registerEvaluateCommand(program: Command): Command {
  const command = program
    .command('evaluate')
    .description('score a trained run under all 15 modality subsets (Dice and HD95 of WT, TC, ET), as in the paper\'s Table 1')
    .requiredOption('--model <run>', 'training run folder (run.json and model.safetensors)')
    .option('--data <root>', 'BraTS data folder (default: the one the run was trained on)')
    .option('--split <name|file>', "'train', 'val' or 'test' of the run's split, or a file with one case id per line", 'test')
    .option('--cache <dir>', "preprocessing cache of the data (default: the run's, when --data is the run's data)")
    .option('--out <dir>', 'results folder (default: <run>/evaluation)')
    .option('--viewer-cases <n>', "cases the report's 3D viewer shows, the first of the split (their sequences and 15 predictions are written beside the report)", nonNegativeInteger, 5);
  return addInferenceOptions(command).action(async (options: EvaluateCliOptions) => {
    const started = performance.now();
    const summary = await evaluateRun(options);
    console.log(diceTableMarkdown(summary));
    const minutes = (performance.now() - started) / 60000;
    const outDir = path.resolve(options.out ?? path.join(options.model, 'evaluation'));
    console.log(`\n${RESULT_FILES.join(', ')} written to ${outDir}, the report to ${path.join(outDir, REPORT_DIR)} (\`smml view ${options.model}\` serves it) (${minutes.toFixed(1)} min)`);
  });
}
