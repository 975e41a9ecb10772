// Training configuration, overrides, modality subset draws, the run log and the progress formatting.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { createRng } from '../../src/data/random.ts';
import { MODEL_PRESETS, parseModelConfig, parseModelConfigOf } from '../../src/models/index.ts';
import { SUBSETS } from '../../src/data/modalities.ts';
import { applyOverrides, parseTrainingConfig, resolveModelConfig } from '../../src/training/config.ts';
import { formatDuration } from '../../src/progress.ts';
import { readRunLog, RunLog } from '../../src/training/run-log.ts';
import { drawSubsets } from '../../src/training/trainer.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

describe('training configuration', () => {
  it('fills in the paper defaults (docs/method.md §6) and switches the SRN off', () => {
    const config = parseTrainingConfig({ data: { root: '/data' } });
    assert.deepEqual(config.training, {
      epochs: 1000,
      stepsPerEpoch: null,
      batchSize: 2,
      lr: 2e-4,
      lrPower: 0.9,
      weightDecay: 1e-4,
      betas: [0.9, 0.999],
      eps: 1e-8,
      amsgrad: true,
      seed: 1024,
      threads: null,
      parallel: 'data',
      checkpointSeconds: 0,
      device: 'cpu',
      precision: 'fp32',
    });
    assert.deepEqual(config.losses, {
      task: true,
      aux: true,
      pbc: true,
      frc: true,
      srn: false,
      refinementKl: false,
      warmupEpochs: 100,
      tau: 6,
      scaleByTauSquared: false,
      deepSupervisionWeights: [1, 1, 1, 1],
      separateWeight: 1,
      refinementKlWeight: 1,
      separateModalities: 'all',
      crossEntropyClassWeights: 'one-minus-fraction',
    });
    assert.equal(config.model.preset, 'cpu-small');
    assert.deepEqual(config.data.split, { seed: 1024, proportions: [0.7, 0.1, 0.2], stratify: 'enhancement' });
  });

  it("accepts the precisions 'fp32' and 'bf16' and names the field of another", () => {
    assert.equal(parseTrainingConfig({ data: { root: '/data' }, training: { precision: 'bf16' } }).training.precision, 'bf16');
    assert.throws(() => parseTrainingConfig({ data: { root: '/data' }, training: { precision: 'fp16' } }), /training\.precision/);
  });

  it('applies section.key=value overrides, reading values as JSON where they parse', () => {
    const raw = applyOverrides({ data: { root: '/a' } }, [
      'training.lr=1e-3',
      'training.amsgrad=false',
      'training.betas=[0.5,0.9]',
      'data.root=/b=c',
      'model.refinement.filters=[4,8]',
      'data.split.proportions=brats2020',
    ]);
    assert.deepEqual(raw, {
      data: { root: '/b=c', split: { proportions: 'brats2020' } },
      training: { lr: 1e-3, amsgrad: false, betas: [0.5, 0.9] },
      model: { refinement: { filters: [4, 8] } },
    });
    const config = parseTrainingConfig(raw);
    assert.equal(config.training.lr, 1e-3);
    assert.deepEqual(config.data.split.proportions, 'brats2020');
  });

  it('rejects malformed overrides, unknown fields and out-of-range values naming them', () => {
    assert.throws(() => applyOverrides({}, ['training.lr']), /not of the form section\.key=value/);
    assert.throws(() => applyOverrides({ training: { lr: 1 } }, ['training.lr.x=1']), /'lr' is not a section/);
    assert.throws(() => parseTrainingConfig({ data: { root: '/d' }, training: { epoch: 3 } }, 'cfg.json'), /cfg\.json is invalid: training: Unrecognized key: "epoch"/);
    assert.throws(() => parseTrainingConfig({ data: { root: '/d' }, training: { lr: -1 } }), /training\.lr: /);
    assert.throws(() => parseTrainingConfig({ training: {} }), /data: /);
    assert.throws(() => parseTrainingConfig({ data: { root: '/d' }, training: { device: 'tpu' } }), /training\.device: expected 'cpu', 'cuda' or 'cuda:N'/);
  });

  it('resolves the network: classes from the data, the SRN built exactly when a loss uses it', () => {
    const config = parseTrainingConfig({ data: { root: '/d' }, model: { preset: 'tiny', patch: 64 } });
    const model = parseModelConfigOf('smml', resolveModelConfig(config, 5));
    assert.equal(model.classes, 5);
    assert.equal(model.patch, 64);
    assert.equal(model.refinement.enabled, false);
    const withSrn = parseTrainingConfig({ data: { root: '/d' }, model: { preset: 'tiny' }, losses: { srn: true } });
    assert.equal(parseModelConfigOf('smml', resolveModelConfig(withSrn, 4)).refinement.enabled, true);
    assert.throws(() => resolveModelConfig(parseTrainingConfig({ data: { root: '/d' }, model: { classes: 4 } }), 5), /model\.classes is 4, but the data set has 5 classes/);
    assert.throws(() => resolveModelConfig(parseTrainingConfig({ data: { root: '/d' }, model: { patchSize: 4 } }), 4), /Unrecognized key: "patchSize"/);
  });
});

describe('the network family', () => {
  const parse = (model: Record<string, unknown>, losses: Record<string, unknown> = {}) => parseTrainingConfig({ data: { root: '/d' }, model, losses });

  it('configurations written before families existed are SMML ones', () => {
    assert.deepEqual(parse({ preset: 'tiny', patch: 64 }).model, { family: 'smml', preset: 'tiny', patch: 64 });
    const { family, ...withoutFamily } = MODEL_PRESETS.tiny;
    assert.equal(family, 'smml');
    assert.deepEqual(parseModelConfig(withoutFamily), MODEL_PRESETS.tiny);
  });

  it('resolves a U-Net: classes from the data, replacements of its own fields only', () => {
    const config = parse({ family: 'unet', patch: 64, channels: [8, 16, 32] });
    assert.deepEqual(config.model, { family: 'unet', preset: 'unet-cpu', patch: 64, channels: [8, 16, 32] });
    assert.deepEqual(resolveModelConfig(config, 5), { family: 'unet', modalities: 4, classes: 5, channels: [8, 16, 32], patch: 64 });
    assert.throws(() => resolveModelConfig(parse({ family: 'unet', baseChannels: 4 }), 4), /Unrecognized key: "baseChannels"/);
  });

  it('refuses the SRN terms for the U-Net, naming each switch that is on, and a preset of the other family', () => {
    assert.throws(() => parse({ family: 'unet' }, { refinementKl: true }), /losses\.refinementKl: the U-Net \(model\.family 'unet'\) has no refinement network/);
    assert.throws(() => parse({ preset: 'unet-cpu', family: 'smml' }), /model\.preset: preset 'unet-cpu' is a 'unet' network, but model\.family is 'smml'/);
    assert.doesNotThrow(() => parse({ family: 'unet' }, { pbc: true, frc: true }), 'PBC and FRC are simply off with one branch');
  });
});

describe('modality subsets of a step', () => {
  it('each branch draws uniformly and the two branches never share a subset', () => {
    const rng = createRng(11);
    const pairs = new Map<string, number>();
    const firsts = new Array(SUBSETS.length).fill(0);
    const draws = 21000;
    for (let i = 0; i < draws / 3; i++) {
      const [first, second] = drawSubsets(rng, 3, 2);
      assert.equal(first.length, 3);
      first.forEach((s, sample) => {
        assert.notEqual(s, second[sample]);
        firsts[s]++;
        const key = `${s},${second[sample]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + 1);
      });
    }
    // 15 · 14 ordered pairs, each expected draws/210 = 100 times: chi-square with 209 degrees of freedom
    // has mean 209 and standard deviation ≈ 20; 320 is > 5 standard deviations out.
    assert.equal(pairs.size, 15 * 14);
    const expected = draws / 210;
    const chiSquare = [...pairs.values()].reduce((sum, n) => sum + (n - expected) ** 2 / expected, 0);
    assert.ok(chiSquare < 320, `chi-square ${chiSquare}`);
    for (const count of firsts) assert.ok(Math.abs(count - draws / 15) < 5 * Math.sqrt(draws / 15), `first-branch count ${count}`);
  });

  it('the single-branch baseline draws one subset per sample; the draws follow the seed', () => {
    const drawn = drawSubsets(createRng(5), 4, 1);
    assert.equal(drawn.length, 1);
    assert.equal(drawn[0].length, 4);
    assert.deepEqual(drawSubsets(createRng(5), 4, 1), drawn);
  });
});

describe('the run log', () => {
  it('drops the step and epoch records after a checkpoint and skips a line cut short by a crash', () => {
    const file = path.join(root, 'log.jsonl');
    const log = new RunLog(file);
    log.clear();
    log.append({ type: 'start' });
    for (let step = 1; step <= 5; step++) {
      log.append({ type: 'step', step, epoch: step <= 3 ? 0 : 1 });
      if (step === 3) log.append({ type: 'epoch', epoch: 0 });
    }
    log.append({ type: 'epoch', epoch: 1 });
    fs.appendFileSync(file, '{"type":"step","st');
    assert.equal(readRunLog(file).length, 8);
    log.truncateAfter({ epoch: 1, stepInEpoch: 0, step: 3 });
    assert.deepEqual(readRunLog(file), [
      { type: 'start' },
      { type: 'step', step: 1, epoch: 0 },
      { type: 'step', step: 2, epoch: 0 },
      { type: 'step', step: 3, epoch: 0 },
      { type: 'epoch', epoch: 0 },
    ]);
    fs.writeFileSync(file, '{"type":"start"}\nbroken\n{"type":"step"}\n');
    assert.throws(() => readRunLog(file), /log\.jsonl:2: not a JSON record/);
  });
});

describe('progress formatting', () => {
  it('formats durations', () => {
    assert.equal(formatDuration(12.4), '12s');
    assert.equal(formatDuration(245), '4m05s');
    assert.equal(formatDuration(3720), '1h02m');
    assert.equal(formatDuration(Number.NaN), '?');
  });
});
