// The ablation: variant switches, and `runAblation` training, evaluating and tabulating tiny variants, once and
// over several seeds.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAblation } from '../../src/cli/ablate.ts';
import { synthesizeDataset } from '../../src/data/synthetic.ts';
import { ABLATION_VARIANTS, DEFAULT_ABLATION, selectVariants, variantConfig } from '../../src/training/ablation.ts';
import { parseTrainingConfig, usesRefinement } from '../../src/training/config.ts';
import { runPaths } from '../../src/training/run-dir.ts';
import { readRunLog } from '../../src/training/run-log.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-ablation-'));
const dataDir = path.join(root, 'data');

const base = parseTrainingConfig(
  {
    model: { preset: 'tiny' },
    data: { root: dataDir, cacheDir: path.join(root, 'cache'), workers: 0, split: { proportions: [2, 1, 1] } },
    training: { epochs: 1, stepsPerEpoch: 1, threads: 1, seed: 5 },
    losses: { warmupEpochs: 0 },
    validation: { every: 0 },
  },
  'test configuration',
);

before(() => synthesizeDataset({ out: dataDir, cases: 4, size: 24, seed: 3 }));
after(() => fs.rmSync(root, { recursive: true, force: true }));

describe('ablation variants', () => {
  it('switch exactly the terms of the paper table and share everything else', () => {
    const switches = Object.fromEntries(
      ABLATION_VARIANTS.map((variant) => {
        const config = variantConfig(base, variant);
        return [variant.name, [config.model.family, config.model.branches, config.losses.pbc, config.losses.frc, usesRefinement(config)]];
      }),
    );
    assert.deepEqual(switches, {
      unet: ['unet', undefined, false, false, false],
      baseline: ['smml', 1, false, false, false],
      'baseline+srn': ['smml', 1, false, false, true],
      dual: ['smml', 2, false, false, false],
      'dual+pbc': ['smml', 2, true, false, false],
      'dual+frc': ['smml', 2, false, true, false],
      'dual+srn': ['smml', 2, false, false, true],
      full: ['smml', 2, true, true, true],
    });
    const full = variantConfig(base, ABLATION_VARIANTS.at(-1)!);
    assert.deepEqual([full.training, full.data, full.losses.task, full.losses.aux], [base.training, base.data, base.losses.task, base.losses.aux]);
    assert.equal(base.losses.pbc, true, 'the base configuration is not modified');
  });

  it('builds the U-Net of the base preset scale on the base patch, and needs an SMML base', () => {
    const [unet] = selectVariants(['unet']);
    assert.deepEqual(variantConfig(base, unet).model, { family: 'unet', preset: 'unet-tiny', patch: 32 });
    const paper = { ...base, model: { family: 'smml' as const, preset: 'paper' as const, patch: 64, baseChannels: 4, classes: 4 } };
    assert.deepEqual(variantConfig(paper, unet).model, { family: 'unet', preset: 'unet-paper', patch: 64, classes: 4 });
    assert.equal(variantConfig(base, unet, { unetLr: 0.25 }).training.lr, 0.25, "the U-Net's own learning rate");
    assert.equal(variantConfig(base, selectVariants(['full'])[0], { unetLr: 0.25 }).training.lr, base.training.lr, "SMML's variants keep the recipe's");
    const unetBase = { ...base, model: { family: 'unet' as const, preset: 'unet-cpu' as const } };
    assert.throws(() => variantConfig(unetBase, unet), /the base network must be an SMML preset, not 'unet-cpu'/);
  });

  it('selects by name in table order and rejects unknown names', () => {
    assert.deepEqual(selectVariants(['full', 'baseline']).map((v) => v.name), ['baseline', 'full']);
    assert.deepEqual(selectVariants(DEFAULT_ABLATION).map((v) => v.name), ['unet', 'baseline', 'dual', 'dual+pbc', 'dual+frc', 'dual+srn', 'full']);
    assert.throws(() => selectVariants(['dual', 'dual+xyz']), /unknown ablation variant\(s\) 'dual\+xyz'; known: unet, baseline, baseline\+srn/);
  });
});

describe('runAblation', () => {
  it('trains, evaluates and tabulates each variant, and reuses finished work when run again', async () => {
    const out = path.join(root, 'ablation');
    const variants = selectVariants(['baseline', 'dual']);
    const rows = await runAblation(base, out, variants);
    assert.ok(rows);
    assert.deepEqual(rows.map((row) => row.variant), ['baseline', 'dual']);
    for (const row of rows) {
      const stored = JSON.parse(fs.readFileSync(path.join(out, row.variant, 'evaluation', 'results.json'), 'utf8'));
      assert.deepEqual(row.dice, stored.average.dice);
      assert.equal(stored.subsets.length, 15);
    }
    const baselineRun = JSON.parse(fs.readFileSync(runPaths(path.join(out, 'baseline')).config, 'utf8'));
    assert.equal(baselineRun.model.branches, 1);
    const table = fs.readFileSync(path.join(out, 'ablation.md'), 'utf8').split('\n');
    assert.match(table[2], /^\| Variant +\| Trains +\| +WT \| +TC \| +ET \| +Mean \|$/);
    assert.match(table[4], new RegExp(`^\\| baseline +\\| one branch \\(mmFormer-style\\) +\\| +${(100 * rows[0].dice.WT).toFixed(2)} \\|`));
    const csv = fs.readFileSync(path.join(out, 'ablation.csv'), 'utf8').trim().split('\n');
    assert.deepEqual(csv[0].split(',').slice(0, 7), ['variant', 'description', 'seeds', 'dice_wt', 'dice_tc', 'dice_et', 'dice_mean']);
    assert.equal(csv.length, 3);
    assert.deepEqual(rows.map((row) => [row.seeds, row.sd]), [[[5], null], [[5], null]], 'the configuration seed, one run each');
    // The report: the table and its chart, linking each variant's own report (which its evaluation wrote).
    const report = fs.readFileSync(path.join(out, 'report', 'README.md'), 'utf8');
    assert.ok(report.includes('](ablation.png)'));
    for (const variant of ['baseline', 'dual']) {
      const link = `../${variant}/evaluation/report/index.html`;
      assert.ok(report.includes(`- [${variant}](${link})`), variant);
      assert.ok(fs.existsSync(path.join(out, 'report', link)), link);
    }
    assert.match(fs.readFileSync(path.join(out, 'report', 'index.html'), 'utf8'), /<figure id="ablation"[^>]*><svg/);

    const logLength = readRunLog(runPaths(path.join(out, 'dual')).log).length;
    const resultsTime = fs.statSync(path.join(out, 'dual', 'evaluation', 'results.json')).mtimeMs;
    const again = await runAblation(base, out, variants);
    assert.deepEqual(again, rows);
    assert.equal(readRunLog(runPaths(path.join(out, 'dual')).log).length, logLength, 'a finished run is not trained again');
    assert.equal(fs.statSync(path.join(out, 'dual', 'evaluation', 'results.json')).mtimeMs, resultsTime, 'nor evaluated again');
  });
});

describe('runAblation of branch-parallel recipes', () => {
  it('trains a two-branch variant in two processes, one branch each, where the machine has two cores', async () => {
    const out = path.join(root, 'ablation-branches');
    const recipe = { ...base, training: { ...base.training, parallel: 'branches' as const } };
    const rows = await runAblation(recipe, out, selectVariants(['baseline', 'dual']));
    assert.ok(rows);
    const processesOf = (variant: string) => readRunLog(runPaths(path.join(out, variant)).log).find((record) => record.type === 'start')?.processes;
    assert.equal(processesOf('baseline'), 1, 'one branch trains in one process');
    assert.equal(processesOf('dual'), os.availableParallelism() >= 2 ? 2 : 1);
    assert.equal(JSON.parse(fs.readFileSync(runPaths(path.join(out, 'dual')).config, 'utf8')).config.training.seed, 5, 'the variant configuration reached the processes');
    assert.equal(rows[1].seeds[0], 5);
  });
});

describe('runAblation over seeds', () => {
  it('trains each variant once per seed in <variant>/seed-<n>, tabulates mean ± sd, and continues when run again', async () => {
    const out = path.join(root, 'ablation-seeds');
    const variants = selectVariants(['unet', 'baseline']);
    const rows = await runAblation(base, out, variants, { seeds: [1, 2], unetLr: 0.02 });
    assert.ok(rows);
    assert.deepEqual(rows.map((row) => [row.variant, row.seeds]), [['unet', [1, 2]], ['baseline', [1, 2]]]);
    for (const row of rows) {
      row.seeds.forEach((seed, i) => {
        const runDir = path.join(out, row.variant, `seed-${seed}`);
        assert.equal(JSON.parse(fs.readFileSync(runPaths(runDir).config, 'utf8')).config.training.seed, seed);
        assert.deepEqual(row.perSeed[i], JSON.parse(fs.readFileSync(path.join(runDir, 'evaluation', 'results.json'), 'utf8')).average.dice);
      });
      const [a, b] = row.perSeed.map((values) => values.WT);
      assert.ok(Math.abs(row.dice.WT - (a + b) / 2) < 1e-12);
      // Sample sd of two values: |a − b| / √2.
      assert.ok(Math.abs(row.sd!.WT - Math.abs(a - b) / Math.SQRT2) < 1e-12);
    }
    const trainingOf = (variant: string) => JSON.parse(fs.readFileSync(runPaths(path.join(out, variant, 'seed-1')).config, 'utf8'));
    assert.equal(trainingOf('unet').model.family, 'unet');
    assert.deepEqual([trainingOf('unet').config.training.lr, trainingOf('baseline').config.training.lr], [0.02, base.training.lr]);
    const table = fs.readFileSync(path.join(out, 'ablation.md'), 'utf8');
    assert.match(table, /mean ± sample sd over seeds 1, 2/);
    assert.ok(table.includes(`${(100 * rows[0].dice.ET).toFixed(2)} ± ${(100 * rows[0].sd!.ET).toFixed(2)}`));
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'ablation.json'), 'utf8')).rows, rows);

    const logLength = readRunLog(runPaths(path.join(out, 'unet', 'seed-2')).log).length;
    assert.deepEqual(await runAblation(base, out, variants, { seeds: [1, 2], unetLr: 0.02 }), rows);
    assert.equal(readRunLog(runPaths(path.join(out, 'unet', 'seed-2')).log).length, logLength, 'a finished run is not trained again');
    // A finished run of another recipe is not passed off as this one's.
    await assert.rejects(
      runAblation(base, out, variants, { seeds: [1, 2], unetLr: 0.01 }),
      new RegExp(`unet \\(seed 1\\): ${path.join(out, 'unet', 'seed-1').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} holds a run of another configuration \\(training\\.lr differ\\)`),
    );
  });
});
