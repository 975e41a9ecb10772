// `smml demo` end to end on a tiny synthetic set: data, built-in priors, full-method training, the 15-subset
// evaluation and the report folder; a second run reuses the finished training.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { DEMO_RECIPE_FILE, demoAssignments, runDemo, setAsideOutdatedDemo } from '../../src/cli/demo.ts';
import { readCaseManifest } from '../../src/data/cache.ts';
import { SYNTHETIC_VERSION } from '../../src/data/synthetic.ts';
import { PRIORS_ARRAY } from '../../src/priors/provider.ts';
import { storedPriorRecord } from '../../src/priors/store.ts';
import { readRunLog } from '../../src/training/run-log.ts';

const out = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-demo-'));
after(() => fs.rmSync(out, { recursive: true, force: true }));

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47];

describe('demoAssignments', () => {
  it('seeds data, split and training with --seed, and training alone with --training-seed', () => {
    const seeds = (options: { seed: number; trainingSeed?: number }) =>
      demoAssignments({ out, cases: 5, size: 24, ...options }, 'data', 'cache').filter((a) => a.includes('seed='));
    assert.deepEqual(seeds({ seed: 3 }), ['data.split.seed=3', 'training.seed=3']);
    assert.deepEqual(seeds({ seed: 3, trainingSeed: 7 }), ['data.split.seed=3', 'training.seed=7']);
  });
});

describe('setAsideOutdatedDemo', () => {
  /** A demo folder whose data set says it was made by generator `version` with seed 3, 5 cases of 24³. */
  const oldDemo = (dir: string, version: number, cases = 5) => {
    fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'run'));
    fs.writeFileSync(path.join(dir, 'run', 'log.jsonl'), 'kept\n');
    fs.writeFileSync(path.join(dir, 'data', 'dataset.json'), JSON.stringify({ version, seed: 3, size: 24, cases: Array(cases).fill({}) }));
  };
  const asked = { seed: 3, size: 24, cases: 5 };

  it('moves a folder of an earlier generator version aside whole, numbering the name when it is taken', () => {
    const root = fs.mkdtempSync(path.join(out, 'aside-'));
    const demo = path.join(root, 'demo');
    oldDemo(demo, SYNTHETIC_VERSION - 1);
    assert.equal(setAsideOutdatedDemo(demo, asked), `${demo}-generator-v${SYNTHETIC_VERSION - 1}`);
    assert.ok(!fs.existsSync(demo));
    assert.equal(fs.readFileSync(path.join(`${demo}-generator-v${SYNTHETIC_VERSION - 1}`, 'run', 'log.jsonl'), 'utf8'), 'kept\n');
    oldDemo(demo, SYNTHETIC_VERSION - 1);
    assert.equal(setAsideOutdatedDemo(demo, asked), `${demo}-generator-v${SYNTHETIC_VERSION - 1}-2`);
  });

  it('leaves the current version, another data set and an empty folder where they are', () => {
    const root = fs.mkdtempSync(path.join(out, 'keep-'));
    const current = path.join(root, 'current');
    oldDemo(current, SYNTHETIC_VERSION);
    const otherCases = path.join(root, 'other');
    oldDemo(otherCases, SYNTHETIC_VERSION - 1, 7);
    for (const dir of [current, otherCases, path.join(root, 'missing')]) assert.equal(setAsideOutdatedDemo(dir, asked), null, dir);
    assert.ok(fs.existsSync(path.join(current, 'data', 'dataset.json')) && fs.existsSync(path.join(otherCases, 'data', 'dataset.json')));
  });
});

describe('runDemo', () => {
  it('synthesises, makes priors, trains the full method, evaluates 15 subsets and writes the report', async () => {
    const options = { out, cases: 5, size: 24, seed: 3, epochs: 1, stepsPerEpoch: 1, lr: 1e-3 };
    await runDemo(options);
    const run = JSON.parse(fs.readFileSync(path.join(out, 'run', 'run.json'), 'utf8'));
    assert.deepEqual([run.config.losses.srn, run.config.losses.refinementKl, run.model.branches, run.model.refinement.enabled], [true, true, 2, true]);
    // The recipe comes from configs/demo.json; the command line's epochs, steps and lr replace its own.
    const recipe = JSON.parse(fs.readFileSync(DEMO_RECIPE_FILE, 'utf8'));
    assert.deepEqual(run.config.losses.deepSupervisionWeights, recipe.losses.deepSupervisionWeights);
    assert.equal(run.config.losses.separateModalities, recipe.losses.separateModalities);
    assert.deepEqual([run.config.training.epochs, run.config.training.stepsPerEpoch, run.config.training.lr, run.config.training.seed], [1, 1, 1e-3, 3]);
    for (const id of run.data.split.train) {
      const manifest = readCaseManifest(path.join(out, 'cache'), id);
      assert.deepEqual(manifest.arrays[PRIORS_ARRAY].shape, [16, ...manifest.shape]);
      assert.equal(storedPriorRecord(manifest)?.provider, 'builtin-intensity');
    }
    const report = fs.readFileSync(path.join(out, 'report', 'README.md'), 'utf8');
    for (const heading of ['## Dice (%) per modality subset', '## Semantic priors of the refinement network', '## 95 % Hausdorff distance (mm) per modality subset']) {
      assert.ok(report.includes(heading), `report lacks "${heading}"`);
    }
    assert.match(report, /priors by builtin-intensity/);
    // The grade mix of each part of the split, counted from dataset.json.
    const grades = new Map<string, string>(JSON.parse(fs.readFileSync(path.join(out, 'data', 'dataset.json'), 'utf8')).cases.map((c: { id: string; grade: string }) => [c.id, c.grade]));
    const mix = (ids: string[]) => `${ids.filter((id) => grades.get(id) === 'high').length} / ${ids.filter((id) => grades.get(id) === 'low').length}`;
    const { train, val, test } = run.data.split;
    // Case 5 is the one low-grade case of five; the split, stratified by enhancement, gives that stratum's one case to
    // training (share 0.7 against 0.2 for test), and the four high-grade ones 3 / 0 / 1.
    assert.equal(grades.get('SMML_Synth_005'), 'low');
    assert.deepEqual([mix(train), mix(val), mix(test)], ['3 / 1', '0 / 0', '1 / 0']);
    assert.ok(report.includes(`Tumour grades (high / low): training ${mix(train)}, validation ${mix(val)}, test ${mix(test)}.`), 'the report states the grade mix');
    // Five cases leave no validation case, so the report says the last weights are evaluated.
    assert.equal(run.data.split.val.length, 0);
    assert.ok(report.includes("No validation ran: the evaluated weights are the last epoch's."));
    const csv = fs.readFileSync(path.join(out, 'report', 'results.csv'), 'utf8').trim().split('\n');
    assert.equal(csv.length, 1 + 15 + 1, 'header, 15 subsets and the average');
    // No validation ran, so there is no validation chart; every other figure is there as PNG and linked.
    const figures = ['loss', 'loss-terms', 'learning-rate', 'dice-heatmap', 'hd95-heatmap', 'per-case-dice', 'overlays'];
    assert.ok(!fs.existsSync(path.join(out, 'report', 'validation.png')));
    for (const name of figures) {
      assert.deepEqual([...fs.readFileSync(path.join(out, 'report', `${name}.png`)).subarray(0, 4)], PNG_SIGNATURE, name);
      assert.ok(report.includes(`](${name}.png)`), `README.md lacks ${name}.png`);
    }
    // The page holds the same figures as inline SVG, and the viewer lists every test case.
    const page = fs.readFileSync(path.join(out, 'report', 'index.html'), 'utf8');
    for (const name of figures) assert.match(page, new RegExp(`<figure id="${name}"[^>]*><svg`), name);
    for (const id of run.data.split.test) assert.ok(page.includes(`"id":"${id}"`), id);

    const records = readRunLog(path.join(out, 'run', 'log.jsonl')).length;
    await runDemo(options);
    assert.equal(readRunLog(path.join(out, 'run', 'log.jsonl')).length, records, 'the finished training is reused');
    // Only the first run's time is the whole demo's; the second says its training was reused.
    assert.match(report, /Wall-clock time of the whole demo: \d+\.\d minutes\./);
    const rerun = fs.readFileSync(path.join(out, 'report', 'README.md'), 'utf8');
    assert.match(rerun, /Wall-clock time of this run of the demo: \d+\.\d minutes \(training had finished in an earlier run and was reused\)\./);
    // Another training seed on the same folder is another run: refused rather than resumed or reported as this one.
    await assert.rejects(runDemo({ ...options, trainingSeed: 4 }), /holds a run started with training\.seed 3 \(asked: 4\); use --fresh/);
  });
});
