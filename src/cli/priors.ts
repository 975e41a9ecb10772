/**
 * `smml priors`: the semantic priors of the refinement network (docs/method.md §4), stored in the preprocessing cache.
 *   make     computes them with a provider (builtin, or sam-med3d with its weights), resumable, then prints their Dice
 *   import   stores priors made elsewhere (the authors' .npy layout, or NIfTI per class and modality)
 *   convert  turns SAM-Med3D's PyTorch checkpoint into safetensors
 * The data, cache and split are found as `smml train` finds them (same defaults, same --config), or taken from a run.
 */
import { Option, type Command } from 'commander';
import * as path from 'node:path';
import { fitBuiltinProvider } from '../priors/builtin.ts';
import { importPriors, PRIOR_IMPORT_FORMATS, type PriorImportFormat } from '../priors/import.ts';
import { makePriors } from '../priors/make.ts';
import type { PriorProvider } from '../priors/provider.ts';
import { measurePriors, priorQualityMarkdown } from '../priors/quality.ts';
import { convertSamMed3dCheckpoint } from '../priors/sam-med3d/convert.ts';
import { createSamMed3dProvider } from '../priors/sam-med3d/provider.ts';
import { PRIOR_STORAGES, type PriorStorage } from '../priors/store.ts';
import { caseProgress, formatDuration } from '../progress.ts';
import { applyOverrides, parseTrainingConfig, readConfigFile } from '../training/config.ts';
import { checkCache, prepareTrainingData } from '../training/data.ts';
import { readRunConfig, type RunData } from '../training/run-dir.ts';
import { deviceName, nonNegativeInteger, positiveInteger } from './arguments.ts';

interface DataOptions {
  data?: string;
  cache?: string;
  config?: string;
  splitOf?: string;
}

/** The cache and split: from a run's run.json, or found and preprocessed as `smml train` does. */
async function resolveData(options: DataOptions): Promise<RunData> {
  if (options.splitOf) {
    if (options.data || options.cache || options.config) throw new Error('--split-of takes the data, cache and split from the run: leave out --data, --cache and --config');
    const { data } = readRunConfig(path.resolve(options.splitOf));
    checkCache(data, [...data.split.train, ...data.split.val, ...data.split.test]);
    return data;
  }
  if (!options.data && !options.config) throw new Error('say where the data is: --data <root>, --config <file> or --split-of <run folder>');
  const assignments: string[] = [];
  if (options.data) assignments.push(`data.root=${JSON.stringify(options.data)}`);
  if (options.cache) assignments.push(`data.cacheDir=${JSON.stringify(options.cache)}`);
  const base = options.config ? readConfigFile(options.config) : {};
  const config = parseTrainingConfig(applyOverrides(base, assignments), options.config ? `${options.config} with the command-line options` : 'the command-line options');
  return prepareTrainingData(config, (p) => {
    if (p.status === 'written') console.error(`preprocessed ${p.id} (${p.done}/${p.total})`);
  });
}

async function printQuality(cacheDir: string, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  console.log(priorQualityMarkdown(await measurePriors({ cacheDir, ids })));
}

const dataOptions = (command: Command) =>
  command
    .option('--data <root>', 'BraTS data folder (preprocessed into the cache first, as smml train does)')
    .option('--cache <dir>', 'folder of the preprocessed cases (default <data>/.smml-cache)')
    .option('--config <file>', 'training configuration whose data section (cache, split) to follow')
    .option('--split-of <run>', 'take the data, cache and split from this training run');

const quantizeOption = () =>
  new Option('--quantize <dtype>', 'storage: float16, or uint8 probabilities (q/255, a quarter of float32)').choices(PRIOR_STORAGES).default('float16');

interface MakeOptions extends DataOptions {
  provider: 'builtin' | 'sam-med3d';
  weights?: string;
  clicks?: number;
  seed?: number;
  device?: string;
  cases: 'train' | 'all';
  quantize: PriorStorage;
}

async function providerOf(options: MakeOptions, data: RunData): Promise<PriorProvider> {
  if (options.provider === 'sam-med3d') {
    if (!options.weights) throw new Error('--provider sam-med3d needs --weights <file.safetensors> (smml priors convert makes one from sam_med3d_turbo.pth)');
    return createSamMed3dProvider({ weights: options.weights, clicks: options.clicks, seed: options.seed, device: options.device });
  }
  const samOnly = (['weights', 'clicks', 'seed', 'device'] as const).filter((key) => options[key] !== undefined);
  if (samOnly.length > 0) throw new Error(`${samOnly.map((key) => `--${key}`).join(', ')}: only for --provider sam-med3d`);
  console.error(`fitting the builtin intensity priors on ${data.split.train.length} training cases`);
  return fitBuiltinProvider({ cacheDir: data.cacheDir, trainIds: data.split.train });
}

function registerMake(priors: Command): void {
  dataOptions(priors.command('make').description('compute the semantic priors of the cases with a provider; finished cases are skipped'))
    .addOption(new Option('--provider <name>', 'builtin: intensity models fitted on the training split (no weights needed); sam-med3d: the paper\'s').choices(['builtin', 'sam-med3d']).default('builtin'))
    .option('--weights <file>', 'SAM-Med3D weights (.safetensors, see smml priors convert)')
    .option('--clicks <n>', 'SAM-Med3D prompt clicks per class', positiveInteger)
    .option('--seed <n>', 'seed of the SAM-Med3D prompt clicks', nonNegativeInteger)
    .option('--device <name>', "SAM-Med3D device: 'cpu', 'cuda' or 'cuda:N'", deviceName)
    .addOption(new Option('--cases <which>', 'which cases: the training split (all the refinement network needs) or every case').choices(['train', 'all']).default('train'))
    .addOption(quantizeOption())
    .action(async (options: MakeOptions) => {
      const started = performance.now();
      const data = await resolveData(options);
      const provider = await providerOf(options, data);
      const ids = options.cases === 'all' ? [...data.split.train, ...data.split.val, ...data.split.test] : data.split.train;
      const progress = caseProgress(`priors (${provider.name})`);
      let result: Awaited<ReturnType<typeof makePriors>>;
      try {
        result = await makePriors({ cacheDir: data.cacheDir, ids, provider, storedAs: options.quantize, onProgress: (p) => progress.update(p) });
      } finally {
        progress.stop();
      }
      console.log(
        `priors by ${provider.name} in ${data.cacheDir}: ${result.written.length} made, ${result.skipped.length} already there ` +
          `(${formatDuration((performance.now() - started) / 1000)})`,
      );
      await printQuality(data.cacheDir, data.split.train);
    });
}

interface ImportOptions extends DataOptions {
  from: string;
  format: PriorImportFormat;
  providerName?: string;
  quantize: PriorStorage;
}

function registerImport(priors: Command): void {
  dataOptions(
    priors
      .command('import')
      .description('store priors made elsewhere: <id>.npy of shape (classes, modalities, X, Y, Z) in the crop frame, or <id>_prior_<class>_<modality>.nii.gz in the original grid'),
  )
    .requiredOption('--from <dir>', 'folder of the prior files (also searched one level down, e.g. <dir>/<id>/)')
    .addOption(new Option('--format <format>', 'npy: the authors\' layout; nifti: one volume per class and modality').choices(PRIOR_IMPORT_FORMATS).makeOptionMandatory())
    .option('--provider-name <name>', 'provider recorded with the priors (default: imported), e.g. sam-med3d')
    .addOption(quantizeOption())
    .action(async (options: ImportOptions) => {
      const data = await resolveData(options);
      const progress = caseProgress('importing priors');
      let written: string[];
      try {
        ({ written } = await importPriors({
          cacheDir: data.cacheDir,
          from: options.from,
          format: options.format,
          storedAs: options.quantize,
          provider: options.providerName,
          onProgress: (p) => progress.update(p),
        }));
      } finally {
        progress.stop();
      }
      console.log(`imported the priors of ${written.length} case(s) into ${data.cacheDir}`);
      const labelled = new Set([...data.split.train, ...data.split.val, ...data.split.test]);
      await printQuality(data.cacheDir, written.filter((id) => labelled.has(id)));
    });
}

function registerConvert(priors: Command): void {
  priors
    .command('convert')
    .description('convert the SAM-Med3D PyTorch checkpoint (e.g. sam_med3d_turbo.pth) to safetensors, checking every key and shape')
    .requiredOption('--from <file>', 'the .pth checkpoint')
    .requiredOption('--to <file>', 'the .safetensors file to write')
    .action((options: { from: string; to: string }) => {
      const { tensors, parameters } = convertSamMed3dCheckpoint(options.from, options.to);
      console.log(`wrote ${options.to}: ${tensors} tensors, ${parameters} parameters`);
    });
}

export function registerPriorsCommand(program: Command): Command {
  const priors = program.command('priors').description('semantic priors for the refinement network: make, import, convert SAM-Med3D weights');
  registerMake(priors);
  registerImport(priors);
  registerConvert(priors);
  return priors;
}
