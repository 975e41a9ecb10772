/**
 * `smml ablate`: trains the ablation variants (plain U-Net, baseline, dual branch, +PBC, +FRC, +SRN, full) on the
 * same data, seed(s) and budget, evaluates each under the 15 modality subsets, and writes the paper's Table 4
 * layout (mean ± sd over seeds with `--seeds`). Re-running continues: finished runs and evaluations are reused,
 * an interrupted run is resumed.
 */
import type { Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../data/files.ts';
import { ablationCsv, ablationRow, ablationTableMarkdown, type AblationRow, type RegionValues } from '../evaluation/tables.ts';
import type { Precision } from '../models/index.ts';
import { createProgress } from '../progress.ts';
import { ablationChart } from '../report/evaluation-charts.ts';
import { renderCharts, REPORT_PAGE, writeReport } from '../report/report.ts';
import { ABLATION_VARIANTS, DEFAULT_ABLATION, selectVariants, variantConfig, type AblationOptions, type AblationVariant } from '../training/ablation.ts';
import { usesRefinement, type TrainingConfig } from '../training/config.ts';
import { readRunConfig, runPaths } from '../training/run-dir.ts';
import { readRunLog } from '../training/run-log.ts';
import { configChanges, createTrainer } from '../training/trainer.ts';
import { nonNegativeIntegerList, positiveNumber } from './arguments.ts';
import { defaultTrainingProcesses, trainInLocalProcesses } from './launch.ts';
import { evaluateRun, REPORT_DIR } from './evaluate.ts';
import { ensurePriors } from './priors-for-training.ts';
import { addTrainingOptions, bestValidationLine, resolveConfig, runWithSignals, type TrainOptions } from './train.ts';

interface AblateOptions extends TrainOptions {
  variants: string;
  seeds?: number[];
  unetLr?: number;
}

const regionValuesSchema = z.object({ WT: z.number(), TC: z.number(), ET: z.number(), mean: z.number() });
const storedResultsSchema = z.object({ average: z.object({ dice: regionValuesSchema }) });

const isFinished = (runDir: string) => readRunLog(runPaths(runDir).log).some((record) => record.type === 'finished');

/**
 * Trains (or resumes, or skips when finished) one run of a variant; `label` names it; false when interrupted by Ctrl-C.
 * A two-branch variant trains in two processes, one branch each, where `smml train` would (defaultTrainingProcesses).
 * A run already in `runDir` is resumed or reused only if it was started with the same configuration: a table must not
 * mix recipes silently.
 */
async function trainVariant(runDir: string, config: TrainingConfig, variant: AblationVariant, label: string): Promise<boolean> {
  if (fs.existsSync(runPaths(runDir).config)) {
    const changed = configChanges(readRunConfig(runDir).config, config);
    if (changed.length > 0) {
      throw new Error(`${label}: ${runDir} holds a run of another configuration (${changed.join(', ')} differ); use another --out or remove that folder`);
    }
  }
  if (isFinished(runDir)) {
    console.log(`${label}: trained earlier in ${runDir}`);
    return true;
  }
  const resume = fs.existsSync(runPaths(runDir).config);
  const processes = defaultTrainingProcesses(config);
  console.log(`${label}: ${resume ? 'resuming' : 'training'} ${variant.description} in ${runDir}${processes > 1 ? ` (${processes} processes, one branch each)` : ''}`);
  if (processes > 1) return trainInLocalProcesses(processes, runDir, resume ? null : config, label);
  const progress = createProgress({ printEvery: config.log.printEvery });
  const trainer = await createTrainer({ runDir, config: resume ? undefined : config, resume, progress });
  const result = await runWithSignals(trainer, progress);
  if (result.status === 'interrupted') return false;
  console.log(`${label}: ${result.position.step} steps, ${result.secondsPerStep.toFixed(2)} s per step; ${bestValidationLine(result)}`);
  return true;
}

/** Mean Dice over the 15 subsets on the test split, evaluated once per trained model. */
async function evaluateVariant(runDir: string, device: string, precision: Precision): Promise<RegionValues> {
  const outDir = path.join(runDir, 'evaluation');
  const resultsFile = path.join(outDir, 'results.json');
  const modelTime = fs.statSync(runPaths(runDir).model).mtimeMs;
  if (!fs.existsSync(resultsFile) || fs.statSync(resultsFile).mtimeMs < modelTime) {
    await evaluateRun({ model: runDir, split: 'test', out: outDir, weighting: 'uniform', overlap: 0.5, device, precision });
  }
  const parsed = storedResultsSchema.safeParse(JSON.parse(fs.readFileSync(resultsFile, 'utf8')));
  if (!parsed.success) throw new Error(`${resultsFile}: not an evaluation result (${parsed.error.issues[0]?.message})`);
  return parsed.data.average.dice;
}

/** One training run of the ablation: its folder and training seed. */
interface AblationRun {
  dir: string;
  seed: number;
}

/**
 * The runs of a variant: without `seeds`, one in `<out>/<variant>` with the configuration's seed (the layout
 * before seeds existed); with `seeds`, one per seed in `<out>/<variant>/seed-<n>`.
 */
function variantRuns(outDir: string, variant: AblationVariant, config: TrainingConfig, seeds: readonly number[] | undefined): AblationRun[] {
  const dir = path.join(outDir, variant.name);
  return seeds ? seeds.map((seed) => ({ dir: path.join(dir, `seed-${seed}`), seed })) : [{ dir, seed: config.training.seed }];
}

/**
 * Trains and evaluates every variant, once per seed of `seeds` (the configuration's own seed without them);
 * returns null when interrupted (a re-run continues).
 */
export async function runAblation(
  base: TrainingConfig,
  outDir: string,
  variants: readonly AblationVariant[],
  options: AblationOptions & { seeds?: readonly number[] } = {},
): Promise<AblationRow[] | null> {
  const { seeds } = options;
  const rows: AblationRow[] = [];
  const reports: string[] = [];
  for (const variant of variants) {
    const config = variantConfig(base, variant, options);
    if (usesRefinement(config)) console.log(`${variant.name}: semantic priors by ${(await ensurePriors(config)).join(', ')}`);
    const runs = variantRuns(outDir, variant, config, seeds);
    const perSeed: RegionValues[] = [];
    for (const run of runs) {
      const seeded = { ...config, training: { ...config.training, seed: run.seed } };
      const label = seeds ? `${variant.name} (seed ${run.seed})` : variant.name;
      if (!(await trainVariant(run.dir, seeded, variant, label))) return null;
      perSeed.push(await evaluateVariant(run.dir, config.training.device, config.training.precision));
      reports.push(`- [${label}](${path.relative(path.join(outDir, REPORT_DIR), path.join(run.dir, 'evaluation', REPORT_DIR, REPORT_PAGE)).split(path.sep).join('/')})`);
    }
    rows.push(ablationRow(variant.name, variant.description, runs.map((run) => run.seed), perSeed));
  }
  const seedText = seeds && seeds.length > 1 ? `; mean ± sample sd over seeds ${seeds.join(', ')}` : '';
  const document = { format: 'smml-ablation', metric: 'mean Dice over the 15 modality subsets on the test split', rows };
  const heading = `# Ablation (mean Dice %, 15 modality subsets, test split${seedText})`;
  writeFileAtomic(path.join(outDir, 'ablation.md'), `${heading}\n\n${ablationTableMarkdown(rows)}\n`);
  const chart = await renderCharts([ablationChart(rows)]);
  const markdown = [heading, '', ablationTableMarkdown(rows), '', chart.markdown, '## Each run', '', 'Its 15-subset tables, charts and 3D viewer:', '', ...reports, ''].join('\n');
  await writeReport(path.join(outDir, REPORT_DIR), { title: 'smml ablation', markdown, figures: chart.figures });
  writeFileAtomic(path.join(outDir, 'ablation.csv'), ablationCsv(rows));
  writeFileAtomic(path.join(outDir, 'ablation.json'), `${JSON.stringify(document, null, 2)}\n`);
  return rows;
}

export function registerAblateCommand(program: Command): Command {
  const command = program
    .command('ablate')
    .description("train and evaluate the ablation variants and a plain U-Net on the same data, seed(s) and budget (the paper's Table 4)")
    .requiredOption('--out <dir>', 'folder with one run per variant and ablation.{md,csv,json}');
  return addTrainingOptions(command)
    .option('--variants <list>', `comma-separated, from ${ABLATION_VARIANTS.map((v) => v.name).join(', ')}`, DEFAULT_ABLATION.join(','))
    .option('--seeds <list>', 'comma-separated training seeds: each variant trains once per seed in <out>/<variant>/seed-<n>, the table shows mean ± sd', nonNegativeIntegerList)
    .option('--unet-lr <x>', "initial learning rate of the U-Net row (default: the recipe's, which SMML's variants use)", positiveNumber)
    .action(async (options: AblateOptions) => {
      const variants = selectVariants(options.variants.split(',').map((name) => name.trim()).filter(Boolean));
      if (options.seeds && options.seed !== undefined) throw new Error('--seed and --seeds exclude each other: --seeds lists every training seed');
      const base = resolveConfig(options);
      const outDir = path.resolve(options.out);
      const rows = await runAblation(base, outDir, variants, { seeds: options.seeds, unetLr: options.unetLr });
      if (!rows) {
        console.log(`interrupted; run the same command again to continue`);
        process.exitCode = 130;
        return;
      }
      console.log(`\n${ablationTableMarkdown(rows)}\n\nablation.md, ablation.csv, ablation.json and report/ written to ${outDir} (\`smml view ${options.out}\` serves the report)`);
    });
}
