// The trainer on a tiny synthetic data set (4 cases of 32 x 32 x 21, the `tiny` and `unet-tiny` networks, a few steps):
// run files, log contents, resume-equals-uninterrupted, NaN handling and bad checkpoints.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { addCaseArray, readCacheIndex, readCaseManifest } from '../../src/data/cache.ts';
import { createRng } from '../../src/data/random.ts';
import { synthesizeDataset } from '../../src/data/synthetic.ts';
import { torch } from '../../src/engine/index.ts';
import { SUBSETS, subsetName } from '../../src/data/modalities.ts';
import { modalityMask, parseModelConfigOf, UNetModel } from '../../src/models/index.ts';
import { applyOverrides, parseTrainingConfig, type TrainingConfig } from '../../src/training/config.ts';
import { assertSameClasses, loadTrainedModel, readRunConfig, runPaths } from '../../src/training/run-dir.ts';
import { readRunLog, type LogRecord } from '../../src/training/run-log.ts';
import { createTrainer, TrainingDivergedError, type TrainerHooks, type TrainResult } from '../../src/training/trainer.ts';
import { assertSameTensors } from './helpers.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
const dataDir = path.join(root, 'data');
const cacheDir = path.join(root, 'cache');

/** Two epochs of two steps, one training case per batch pair, validation every epoch, PBC from epoch 1. */
function tinyConfig(...assignments: string[]): TrainingConfig {
  const base = {
    model: { preset: 'tiny' },
    data: { root: dataDir, cacheDir, workers: 0, split: { proportions: [2, 1, 1] } },
    training: { epochs: 2, stepsPerEpoch: 2, threads: 1 },
    losses: { warmupEpochs: 1 },
    validation: { every: 1 },
  };
  return parseTrainingConfig(applyOverrides(base, assignments), 'test configuration');
}

/** Stops the run (as Ctrl-C does) before the step at `epoch`, `stepInEpoch`. */
const stopBefore = (epoch: number, stepInEpoch: number): TrainerHooks => ({
  beforeStep(position, trainer) {
    if (position.epoch === epoch && position.stepInEpoch === stepInEpoch) trainer.stop();
  },
});

async function train(runDir: string, options: { config?: TrainingConfig; resume?: boolean; hooks?: TrainerHooks } = {}): Promise<TrainResult> {
  const trainer = await createTrainer({ runDir, config: options.config, resume: options.resume, hooks: options.hooks });
  try {
    return await trainer.run();
  } finally {
    await trainer.close();
  }
}

function copyRun(from: string): string {
  const to = fs.mkdtempSync(path.join(root, 'copy-'));
  fs.cpSync(from, to, { recursive: true });
  return to;
}

const stepRecords = (records: LogRecord[]) => records.filter((r) => r.type === 'step');
const epochRecords = (records: LogRecord[]) => records.filter((r) => r.type === 'epoch');

before(() => {
  synthesizeDataset({ out: dataDir, cases: 4, size: 32, seed: 7 });
});

after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('training a tiny SMML model', () => {
  const uninterrupted = path.join(root, 'uninterrupted');
  let result: TrainResult;

  it('an uninterrupted run writes run.json, the checkpoint, the best model and the log', async () => {
    // One batch-building worker here, none in the resumed run below: the batches must not depend on it.
    result = await train(uninterrupted, { config: tinyConfig('data.workers=1') });
    assert.equal(result.status, 'finished');
    assert.deepEqual(result.position, { epoch: 2, stepInEpoch: 0, step: 4 });
    for (const file of Object.values(runPaths(uninterrupted)).slice(1)) assert.ok(fs.existsSync(file), `${file} exists`);

    const run = readRunConfig(uninterrupted);
    assert.equal(run.config.training.epochs, 2);
    assert.equal(run.config.training.batchSize, 2);
    assert.equal(run.model.classes, 4);
    assert.equal(parseModelConfigOf('smml', run.model).refinement.enabled, false);
    assert.equal(run.data.numClasses, 4);
    assert.deepEqual(run.data.labelConvention, { layout: 'brats2018', values: [0, 1, 2, 4] });
    assert.equal(run.data.cacheDir, cacheDir);
    const { train: trainIds, val, test } = run.data.split;
    assert.deepEqual([trainIds.length, val.length, test.length], [2, 1, 1]);
    assert.deepEqual([...trainIds, ...val, ...test].sort(), ['SMML_Synth_001', 'SMML_Synth_002', 'SMML_Synth_003', 'SMML_Synth_004']);
  });

  it('logs every step and epoch with the poly learning rate, the warm-up switch and differing subsets', () => {
    const records = readRunLog(runPaths(uninterrupted).log);
    const steps = stepRecords(records);
    assert.deepEqual(steps.map((r) => r.step), [1, 2, 3, 4]);
    assert.deepEqual(steps.map((r) => [r.epoch, r.stepInEpoch]), [[0, 1], [0, 2], [1, 1], [1, 2]]);
    // lr = 2e-4 · (1 − epoch/2)^0.9
    assert.deepEqual(steps.map((r) => r.lr), [2e-4, 2e-4, 2e-4 * 0.5 ** 0.9, 2e-4 * 0.5 ** 0.9]);
    const run = readRunConfig(uninterrupted);
    const subsetNames = new Set(SUBSETS.map(subsetName));
    for (const step of steps) {
      const branches = step.branches as Record<string, number>[];
      assert.equal(branches.length, 2);
      for (const branch of branches) {
        assert.ok(Number.isFinite(branch.total) && branch.task > 0 && branch.deepSupervision > 0 && branch.separate > 0);
        // PBC is held back during the single warm-up epoch.
        assert.equal('pbc' in branch, step.epoch === 1, `pbc term at epoch ${step.epoch}`);
        assert.ok(!('refinedTask' in branch), 'no SRN term with the SRN off');
      }
      // L_1 + L_2 − L_fc (both branch totals include L_fc).
      const total = branches[0].total + branches[1].total - (step.fc as number);
      assert.ok(Math.abs((step.loss as number) - total) < 1e-4 * Math.abs(total));
      const [first, second] = step.subsets as string[][];
      assert.equal(first.length, 2);
      first.forEach((name, sample) => {
        assert.ok(subsetNames.has(name) && subsetNames.has(second[sample]));
        assert.notEqual(name, second[sample], 'the two branches see different subsets');
      });
      assert.ok((step.cases as string[]).every((id) => run.data.split.train.includes(id)));
    }
    const epochs = epochRecords(records);
    assert.deepEqual(epochs.map((r) => r.epoch), [0, 1]);
    epochs.forEach((record, e) => {
      const own = steps.filter((s) => s.epoch === e).map((s) => s.loss as number);
      assert.ok(Math.abs((record.loss as number) - (own[0] + own[1]) / 2) < 1e-9);
      const validation = record.validation as { dice: Record<string, number>; mean: number; cases: number };
      assert.equal(validation.cases, 1);
      for (const value of Object.values(validation.dice)) assert.ok(value >= 0 && value <= 1);
      assert.ok(Math.abs(validation.mean - (validation.dice.WT + validation.dice.TC + validation.dice.ET) / 3) < 1e-12);
    });
    const bestScore = Math.max(...epochs.map((r) => (r.validation as { mean: number }).mean));
    assert.equal(result.best?.score, bestScore);
    assert.equal(records.at(-1)?.type, 'finished');
  });

  it('loadTrainedModel returns the best model in evaluation mode with its class convention', () => {
    const trained = loadTrainedModel(uninterrupted);
    try {
      assert.equal(trained.numClasses, 4);
      assert.deepEqual(trained.labelConvention, { layout: 'brats2018', values: [0, 1, 2, 4] });
      assert.equal(trained.metadata.epoch, result.best!.epoch);
      assert.deepEqual(trained.metadata.validation, result.best!.validation);
      assert.equal(trained.model.training, false);
      assert.equal(trained.model.branches.length, 2);
      assert.deepEqual(trained.config.data.split, readRunConfig(uninterrupted).data.split);
    } finally {
      trained.model.dispose();
    }
  });

  it('interrupted mid-epoch and at an epoch boundary, then resumed, reaches exactly the same state', async () => {
    const interrupted = path.join(root, 'interrupted');
    const first = await train(interrupted, { config: tinyConfig(), hooks: stopBefore(0, 0) });
    assert.equal(first.status, 'interrupted');
    assert.deepEqual(first.position, { epoch: 0, stepInEpoch: 1, step: 1 });
    assert.ok(fs.existsSync(runPaths(interrupted).checkpoint));
    assert.ok(!fs.existsSync(runPaths(interrupted).model), 'no model before the first epoch ends');

    const second = await train(interrupted, { resume: true, hooks: stopBefore(0, 1) });
    assert.equal(second.status, 'interrupted');
    assert.deepEqual(second.position, { epoch: 1, stepInEpoch: 0, step: 2 });

    const third = await train(interrupted, { resume: true });
    assert.equal(third.status, 'finished');
    assert.deepEqual(third.position, result.position);
    assertSameTensors(runPaths(uninterrupted).checkpoint, runPaths(interrupted).checkpoint);
    assertSameTensors(runPaths(uninterrupted).model, runPaths(interrupted).model);
    const losses = (dir: string) => stepRecords(readRunLog(runPaths(dir).log)).map((r) => r.loss);
    assert.deepEqual(losses(interrupted), losses(uninterrupted));
    const types = readRunLog(runPaths(interrupted).log).map((r) => r.type);
    assert.equal(types.filter((t) => t === 'interrupted').length, 2);
    assert.equal(types.filter((t) => t === 'start').length, 3);
  });

  it('with training.checkpointSeconds beyond the run, checkpoints only when stopped and at the end, with the same weights', async () => {
    const threeEpochs = ['training.epochs=3', 'validation.every=0'];
    const everyEpoch = path.join(root, 'checkpoint-every-epoch');
    await train(everyEpoch, { config: tinyConfig(...threeEpochs) });
    const rarely = path.join(root, 'checkpoint-rarely');
    const seen: boolean[] = [];
    const hooks: TrainerHooks = {
      beforeStep(position, trainer) {
        if (position.stepInEpoch === 0) seen.push(fs.existsSync(runPaths(rarely).checkpoint));
        if (position.epoch === 2 && position.stepInEpoch === 0) trainer.stop();
      },
    };
    const stopped = await train(rarely, { config: tinyConfig(...threeEpochs, 'training.checkpointSeconds=3600'), hooks });
    assert.deepEqual(seen, [false, false, false], 'no checkpoint at the ends of epochs 1 and 2');
    assert.equal(stopped.status, 'interrupted');
    assert.deepEqual(stopped.position, { epoch: 2, stepInEpoch: 1, step: 5 });
    assert.ok(fs.existsSync(runPaths(rarely).checkpoint), 'a stop writes one');
    assert.equal((await train(rarely, { resume: true })).status, 'finished');
    assertSameTensors(runPaths(everyEpoch).checkpoint, runPaths(rarely).checkpoint);
    assertSameTensors(runPaths(everyEpoch).model, runPaths(rarely).model);
  });

  it('a resumed run refuses a changed configuration but accepts new thread and worker counts', async () => {
    const copy = copyRun(uninterrupted);
    await assert.rejects(createTrainer({ runDir: copy, resume: true, config: tinyConfig('training.lr=1e-3', 'training.epochs=3') }), (error: Error) => {
      assert.match(error.message, /training\.epochs, training\.lr differ/);
      return true;
    });
    const trainer = await createTrainer({ runDir: copy, resume: true, config: tinyConfig('training.threads=2', 'data.workers=0') });
    await trainer.close();
    assert.equal(trainer.runConfig.config.training.threads, 2);
  });

  it('a new run in a folder that holds one, or in one that cannot be created, is refused', async () => {
    await assert.rejects(createTrainer({ runDir: uninterrupted, config: tinyConfig() }), /already holds a training run .*--resume/);
    const file = path.join(root, 'a-file');
    fs.writeFileSync(file, '');
    await assert.rejects(createTrainer({ runDir: path.join(file, 'run'), config: tinyConfig() }), /a-file\/run: cannot create or write the run folder \(ENOTDIR/);
  });

  it('resuming from a corrupt, foreign or mismatched checkpoint fails naming the file', async () => {
    const corrupt = copyRun(uninterrupted);
    const checkpoint = runPaths(corrupt).checkpoint;
    fs.truncateSync(checkpoint, 1000);
    await assert.rejects(createTrainer({ runDir: corrupt, resume: true }), (error: Error) => error.message.startsWith(checkpoint));

    const foreign = copyRun(uninterrupted);
    torch.saveSafetensors(runPaths(foreign).checkpoint, { weight: torch.zeros([2]) }, { format: 'pt' });
    await assert.rejects(createTrainer({ runDir: foreign, resume: true }), /checkpoint\.safetensors: not an smml training checkpoint \(format "pt"/);

    const otherNetwork = copyRun(uninterrupted);
    const runFile = runPaths(otherNetwork).config;
    const stored = JSON.parse(fs.readFileSync(runFile, 'utf8'));
    stored.model.baseChannels = 4;
    fs.writeFileSync(runFile, JSON.stringify(stored));
    await assert.rejects(createTrainer({ runDir: otherNetwork, resume: true }), /checkpoint\.safetensors: written for a different network/);
  });

  it('loadTrainedModel fails clearly on a missing, corrupt or foreign model and on a class mismatch', () => {
    assert.throws(() => loadTrainedModel(path.join(root, 'nowhere')), /run\.json: not found/);

    const corrupt = copyRun(uninterrupted);
    fs.writeFileSync(runPaths(corrupt).model, 'not a safetensors file');
    assert.throws(() => loadTrainedModel(corrupt), (error: Error) => error.message.startsWith(runPaths(corrupt).model));

    const foreign = copyRun(uninterrupted);
    torch.saveSafetensors(runPaths(foreign).model, { weight: torch.zeros([2]) });
    assert.throws(() => loadTrainedModel(foreign), /model\.safetensors: not an smml model file \(no format tag/);

    const fiveClassData = copyRun(uninterrupted);
    const runFile = runPaths(fiveClassData).config;
    const stored = JSON.parse(fs.readFileSync(runFile, 'utf8'));
    stored.data.numClasses = 5;
    fs.writeFileSync(runFile, JSON.stringify(stored));
    assert.throws(() => loadTrainedModel(fiveClassData), /a 4-class model, but .*run\.json describes 5-class data/);

    const trained = loadTrainedModel(uninterrupted);
    trained.model.dispose();
    assert.throws(() => assertSameClasses(trained, 5, 'BraTS2015 folder'), /BraTS2015 folder: 5-class data, but the model was trained for 4 classes/);
    assert.doesNotThrow(() => assertSameClasses(trained, 4, 'BraTS2020 folder'));
  });
});

describe('runs written before model families existed', () => {
  it('load and resume as SMML runs: run.json, the model file and the checkpoint lack `family`', async () => {
    const old = copyRun(path.join(root, 'uninterrupted'));
    const paths = runPaths(old);
    const stored = JSON.parse(fs.readFileSync(paths.config, 'utf8'));
    assert.equal(stored.model.family, 'smml');
    delete stored.model.family;
    delete stored.config.model.family;
    fs.writeFileSync(paths.config, JSON.stringify(stored));
    for (const file of [paths.model, paths.checkpoint]) {
      const { tensors, metadata } = torch.loadSafetensors(file);
      const modelConfig = JSON.parse(metadata.modelConfig);
      delete modelConfig.family;
      torch.saveSafetensors(file, tensors, { ...metadata, modelConfig: JSON.stringify(modelConfig) });
      torch.dispose([...tensors.values()]);
    }
    assert.equal(readRunConfig(old).model.family, 'smml');
    assert.equal(readRunConfig(old).config.model.family, 'smml');
    const trained = loadTrainedModel(old);
    assert.equal(trained.model.config.family, 'smml');
    assert.equal(trained.model.branches.length, 2);
    trained.model.dispose();
    const trainer = await createTrainer({ runDir: old, resume: true });
    await trainer.close();
    assert.deepEqual(trainer.model.config, readRunConfig(old).model);
  });
});

describe('faults during training', () => {
  it('a non-finite loss stops training, names the step and keeps the last good checkpoint', async () => {
    const runDir = path.join(root, 'diverging');
    const config = tinyConfig('training.stepsPerEpoch=1', 'validation.every=0');
    let goodCheckpoint: Buffer | undefined;
    const poison: TrainerHooks = {
      beforeStep(position, trainer) {
        if (position.epoch !== 1) return;
        goodCheckpoint = fs.readFileSync(runPaths(runDir).checkpoint);
        torch.noGrad(() => trainer.model.parameters()[0].fill_(Number.NaN));
      },
    };
    await assert.rejects(train(runDir, { config, hooks: poison }), (error: Error) => {
      assert.ok(error instanceof TrainingDivergedError);
      assert.match(error.message, /the loss is NaN at epoch 2, step 1/);
      assert.ok(error.message.includes(`${runPaths(runDir).checkpoint} (end of epoch 1, step 1 of the run) is kept`));
      return true;
    });
    assert.ok(goodCheckpoint && goodCheckpoint.equals(fs.readFileSync(runPaths(runDir).checkpoint)), 'checkpoint untouched');
    const records = readRunLog(runPaths(runDir).log);
    assert.equal(records.at(-1)?.type, 'diverged');
    assert.equal(stepRecords(records).length, 1);

    // The kept checkpoint is good: resuming (without the fault) finishes the run with finite weights.
    const resumed = await train(runDir, { resume: true });
    assert.equal(resumed.status, 'finished');
    const trained = loadTrainedModel(runDir);
    try {
      for (const parameter of trained.model.parameters()) assert.equal(parameter.isfinite().all().item(), 1);
    } finally {
      trained.model.dispose();
    }
  });

  it('switching the SRN on without semantic priors names the cases that lack them', async () => {
    await assert.rejects(createTrainer({ runDir: path.join(root, 'srn'), config: tinyConfig('losses.srn=true') }), (error: Error) => {
      assert.match(error.message, /needs semantic priors, but 2 training case\(s\) .* have none: SMML_Synth_00\d, SMML_Synth_00\d/);
      return true;
    });
    assert.ok(!fs.existsSync(path.join(root, 'srn', 'run.json')), 'nothing is written for a run that cannot start');
  });
});

describe('the refinement network', () => {
  it('with semantic priors in the cache, trains the SRN terms from the start when there is no warm-up', async () => {
    const priorCache = path.join(root, 'cache-with-priors');
    fs.cpSync(cacheDir, priorCache, { recursive: true });
    const rng = createRng(3);
    for (const id of readCacheIndex(priorCache).cases) {
      const [x, y, z] = readCaseManifest(priorCache, id).shape;
      const priors = Float32Array.from({ length: 16 * x * y * z }, () => rng());
      addCaseArray(priorCache, id, 'priors', { data: priors, shape: [16, x, y, z] });
    }
    const runDir = path.join(root, 'srn-run');
    const config = tinyConfig(`data.cacheDir=${priorCache}`, 'losses.srn=true', 'losses.refinementKl=true', 'training.epochs=1', 'training.stepsPerEpoch=1', 'validation.every=0', 'losses.warmupEpochs=0');
    await train(runDir, { config });
    assert.equal(parseModelConfigOf('smml', readRunConfig(runDir).model).refinement.enabled, true);
    const [step] = stepRecords(readRunLog(runPaths(runDir).log));
    for (const branch of step.branches as Record<string, number>[]) {
      assert.ok(branch.refinedTask > 0, 'Task(σ(Ŷ^ref)) is trained');
      assert.ok(branch.refinementKl >= 0, 'KL(σ(Ŷ^ref) ‖ σ(Ŷ)) is trained');
      assert.ok(branch.pbc >= 0, 'PBC is on without warm-up');
    }
  });
});

describe('the single-branch baseline', () => {
  it('trains one branch with one optimiser and no mutual terms', async () => {
    const runDir = path.join(root, 'baseline');
    const outcome = await train(runDir, { config: tinyConfig('model.branches=1', 'training.epochs=1', 'training.stepsPerEpoch=1', 'validation.every=0') });
    assert.equal(outcome.status, 'finished');
    const [step] = stepRecords(readRunLog(runPaths(runDir).log));
    assert.equal((step.branches as unknown[]).length, 1);
    assert.equal(step.fc, undefined);
    assert.equal((step.subsets as string[][]).length, 1);
    const { tensors, metadata } = torch.loadSafetensors(runPaths(runDir).checkpoint);
    try {
      assert.ok([...tensors.keys()].every((name) => !name.includes('branch2')));
      assert.ok([...tensors.keys()].some((name) => name.startsWith('optimizer.branch1.')));
      assert.equal(JSON.parse(metadata.optimizers).length, 1);
    } finally {
      torch.dispose([...tensors.values()]);
    }
    const trained = loadTrainedModel(runDir);
    assert.equal(trained.model.branches.length, 1);
    assert.equal(trained.metadata.validation, null);
    trained.model.dispose();
  });
});

describe('one separate-decoder modality per sample', () => {
  it('draws the same subsets and the same first-step task loss as decoding every modality', async () => {
    const runs = ['all', 'one'].map((mode) => path.join(root, `separate-${mode}`));
    for (const [i, mode] of ['all', 'one'].entries()) {
      // Without dropout: decoding one modality runs the encoders on fewer samples, which draws fewer dropout masks.
      const config = tinyConfig('training.epochs=1', 'validation.every=0', 'model.dropout=0', `losses.separateModalities="${mode}"`);
      assert.equal((await train(runs[i], { config })).status, 'finished');
    }
    const [all, one] = runs.map((dir) => stepRecords(readRunLog(runPaths(dir).log)));
    assert.deepEqual(one.map((r) => r.subsets), all.map((r) => r.subsets));
    const firstTerms = (records: LogRecord[]) => (records[0].branches as Record<string, number>[])[0];
    // Equal up to float rounding: the encoders see batches of one or two samples (src/models/branch.ts).
    assert.ok(Math.abs(firstTerms(one).task - firstTerms(all).task) < 1e-5 * firstTerms(all).task);
    assert.notEqual(firstTerms(one).separate, firstTerms(all).separate);
  });
});

describe('the plain U-Net', () => {
  const unetConfig = (...assignments: string[]) =>
    tinyConfig('model.preset=unet-tiny', 'training.epochs=1', 'training.stepsPerEpoch=2', 'validation.every=0', ...assignments);
  const uninterrupted = path.join(root, 'unet');

  it('trains one network with one optimiser on the task loss alone, then reloads and predicts the same probabilities', async () => {
    const trainer = await createTrainer({ runDir: uninterrupted, config: unetConfig() });
    try {
      assert.equal((await trainer.run()).status, 'finished');
    } finally {
      await trainer.close();
    }
    const run = readRunConfig(uninterrupted);
    assert.deepEqual(run.model, { family: 'unet', modalities: 4, classes: 4, channels: [4, 8, 16], patch: 32 });
    assert.deepEqual([run.config.model.family, run.config.model.preset], ['unet', 'unet-tiny']);
    for (const step of stepRecords(readRunLog(runPaths(uninterrupted).log))) {
      const branches = step.branches as Record<string, number>[];
      assert.equal(branches.length, 1);
      // PBC and FRC are switched on in the configuration but need two branches; there is nothing auxiliary.
      assert.deepEqual(Object.keys(branches[0]).sort(), ['task', 'total']);
      assert.equal(branches[0].total, branches[0].task);
      assert.equal(step.fc, undefined);
      assert.equal((step.subsets as string[][]).length, 1);
    }
    const { tensors, metadata } = torch.loadSafetensors(runPaths(uninterrupted).checkpoint);
    try {
      assert.equal(JSON.parse(metadata.optimizers).length, 1);
      assert.ok([...tensors.keys()].some((name) => name.startsWith('optimizer.branch1.')));
      assert.ok([...tensors.keys()].every((name) => !name.startsWith('optimizer.branch2.')));
    } finally {
      torch.dispose([...tensors.values()]);
    }

    const trained = loadTrainedModel(uninterrupted);
    try {
      assert.ok(trained.model instanceof UNetModel);
      assert.equal(trained.model.training, false);
      trainer.model.eval();
      torch.manualSeed(9);
      const images = torch.randn([1, 4, 32, 32, 32]);
      const mask = modalityMask([[true, false, true, false]]);
      torch.tidy(() => assert.ok(trained.model.predictProbabilities(images, mask).equal(trainer.model.predictProbabilities(images, mask))));
    } finally {
      trained.model.dispose();
    }
  });

  it('interrupted mid-epoch and resumed, reaches exactly the uninterrupted state', async () => {
    const interrupted = path.join(root, 'unet-interrupted');
    assert.equal((await train(interrupted, { config: unetConfig(), hooks: stopBefore(0, 0) })).status, 'interrupted');
    assert.equal((await train(interrupted, { resume: true })).status, 'finished');
    assertSameTensors(runPaths(uninterrupted).checkpoint, runPaths(interrupted).checkpoint);
  });
});

describe('bf16 mixed precision', () => {
  // Eight base channels: the levels of 32 channels and more run their convolutions in bfloat16 (thinner ones stay
  // on the float32 kernels), the transformer its matrix products.
  const config = (precision: string) => tinyConfig('model.baseChannels=8', 'training.epochs=1', 'training.stepsPerEpoch=1', 'validation.every=0', `training.precision="${precision}"`);
  const bf16Run = path.join(root, 'bf16');

  it('trains with finite losses close to float32, float32 weights and optimiser state, and records its precision', async () => {
    const fp32 = await train(path.join(root, 'fp32-twin'), { config: config('fp32') });
    const bf16 = await train(bf16Run, { config: config('bf16') });
    assert.equal(bf16.status, 'finished');
    assert.equal(readRunConfig(bf16Run).config.training.precision, 'bf16');
    const losses = (run: string) => stepRecords(readRunLog(runPaths(run).log)).map((r) => r.loss as number);
    const [reference, mixed] = [losses(path.join(root, 'fp32-twin')), losses(bf16Run)];
    assert.equal(mixed.length, 1);
    mixed.forEach((loss, i) => {
      assert.ok(Number.isFinite(loss));
      // measured: 3e-5 relative
      assert.ok(Math.abs(loss - reference[i]) < 1e-3 * Math.abs(reference[i]), `step ${i + 1}: bf16 loss ${loss}, fp32 ${reference[i]}`);
    });
    assert.notEqual(mixed[0], reference[0], 'bf16 computes differently from fp32');
    const { tensors } = torch.loadSafetensors(runPaths(bf16Run).checkpoint);
    try {
      // weights, buffers and optimiser moments in float32; step counts and the random state are integers
      for (const [name, tensor] of tensors) assert.ok(['float32', 'int64', 'uint8'].includes(tensor.dtype), `${name} is ${tensor.dtype}`);
      assert.ok([...tensors.values()].filter((t) => t.dtype === 'float32').length > 100);
    } finally {
      torch.dispose([...tensors.values()]);
    }
    assert.ok(fp32.status === 'finished');
  });

  it('resumes in the precision of the run; another one is refused', async () => {
    const copy = copyRun(bf16Run);
    await assert.rejects(createTrainer({ runDir: copy, resume: true, config: config('fp32') }), /training\.precision differ/);
    const trainer = await createTrainer({ runDir: copy, resume: true });
    await trainer.close();
    assert.equal(trainer.runConfig.config.training.precision, 'bf16');
  });
});
