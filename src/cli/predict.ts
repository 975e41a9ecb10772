/**
 * `smml predict`: segments one case from any non-empty subset of FLAIR, T1ce, T1 and T2 with a
 * trained run, writing labels in the data set's convention on the input's grid.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import * as path from 'node:path';
import { subsetName, type Modality } from '../data/modalities.ts';
import { predictToFiles, type CasePrediction } from '../inference/predict.ts';
import { windowProgress } from '../progress.ts';
import { loadTrainedModel } from '../training/run-dir.ts';

/** A sliding-window overlap: a fraction in [0, 1). */
export function parseOverlap(text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !(value >= 0 && value < 1)) throw new InvalidArgumentError(`expected a fraction in [0, 1), got '${text}'`);
  return value;
}

/** The options `predict` and `evaluate` share: how windows are blended and where the model runs. */
export function addInferenceOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--weighting <kind>', 'how overlapping windows are blended: a plain average, or Gaussian weights that trust window centres more')
        .choices(['uniform', 'gaussian'])
        .default('uniform'),
    )
    .option('--overlap <fraction>', 'fraction of the patch shared by neighbouring windows', parseOverlap, 0.5)
    .option('--device <device>', "where the network runs: 'cpu', 'cuda' or 'cuda:N'", 'cpu');
}

interface PredictCliOptions {
  model: string;
  flair?: string;
  t1ce?: string;
  t1?: string;
  t2?: string;
  out: string;
  probabilities?: string;
  weighting: 'gaussian' | 'uniform';
  overlap: number;
  device: string;
}

export function registerPredictCommand(program: Command): Command {
  const command = program
    .command('predict')
    .description('segment one case from any non-empty subset of its four MRI sequences (missing ones are masked)')
    .requiredOption('--model <run>', 'training run folder (run.json and model.safetensors)')
    .option('--flair <file>', 'FLAIR volume (.nii, .nii.gz, .mha, .mhd)')
    .option('--t1ce <file>', 'contrast-enhanced T1 volume')
    .option('--t1 <file>', 'T1 volume')
    .option('--t2 <file>', 'T2 volume')
    .requiredOption('--out <file>', 'label volume to write (.nii or .nii.gz), on the grid of the inputs')
    .option('--probabilities <file>', 'also write a 4D NIfTI (I, J, K, C) of per-class probabilities, volume c = class c');
  return addInferenceOptions(command).action((options: PredictCliOptions) => {
    const started = performance.now();
    const files: Partial<Record<Modality, string>> = { flair: options.flair, t1ce: options.t1ce, t1: options.t1, t2: options.t2 };
    if (Object.values(files).every((file) => file === undefined)) {
      throw new Error('no input modality given: pass at least one of --flair, --t1ce, --t1, --t2');
    }
    const trained = loadTrainedModel(options.model, { device: options.device });
    const progress = windowProgress('predict');
    let prediction: CasePrediction;
    try {
      prediction = predictToFiles({ model: trained.model, labelValues: trained.labelConvention.values }, files, {
        out: options.out,
        probabilities: options.probabilities,
        weighting: options.weighting,
        overlap: options.overlap,
        device: options.device,
        onWindow: progress.onWindow,
      });
    } finally {
      progress.stop();
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(`segmented from ${subsetName(prediction.present)} in ${seconds.toFixed(1)} s: ${path.resolve(options.out)}`);
    if (options.probabilities) console.log(`class probabilities: ${path.resolve(options.probabilities)}`);
  });
}
