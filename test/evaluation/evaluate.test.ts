import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { registerEvaluateCommand } from '../../src/cli/evaluate.ts';
import { discoverBrats } from '../../src/data/brats.ts';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { readVolume, voxelSpacing } from '../../src/data/volume.ts';
import { evaluateCase, evaluateDataset, type EvaluationCase } from '../../src/evaluation/evaluate.ts';
import { SUBSETS } from '../../src/data/modalities.ts';
import { summarise } from '../../src/evaluation/tables.ts';
import { subsetProbabilities } from '../../src/inference/predict.ts';
import { createModel, type SmmlModel } from '../../src/models/index.ts';
import { tempDir, tinyDataset, tinyModel, writeRunFolder } from '../inference/helpers.ts';

const dir = tempDir();
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

/**
 * A stand-in network with known answers: it reads the class of every voxel from image channel 0 and
 * predicts it with certainty, except that without T1ce it cannot see enhancement and calls ET
 * necrosis, like the real data's physics. It counts encoder and fusion calls.
 */
function oracleModel(patch: number) {
  const calls = { encode: 0, fuse: 0, windows: 0 };
  const encode = (window: Tensor) => {
    calls.encode++;
    calls.windows += window.size(0);
    return [{ levels: [], tokens: window }];
  };
  const fuseProbabilities = (encodings: { tokens: Tensor }[], mask: Tensor) =>
    torch.tidy(() => {
      calls.fuse++;
      let classes = encodings[0].tokens.narrow(1, 0, 1).squeeze(1).round().to('int64');
      if (!mask.toArray()[1]) classes = torch.where(classes.eq(3), torch.onesLike(classes), classes);
      return torch.oneHot(classes, 4).permute(0, 4, 1, 2, 3).to('float32');
    });
  const model = {
    config: { patch, classes: 4, modalities: 4 },
    eval() {},
    encode,
    fuseProbabilities,
    predictProbabilities: (window: Tensor, mask: Tensor) => fuseProbabilities(encode(window), mask),
  };
  return { model: model as unknown as SmmlModel, calls };
}

/** A 20 × 20 × 16 case: edema around an ET block of `etSide`^3 voxels and a 48-voxel necrosis block. */
function oracleCase(id: string, etSide: number): EvaluationCase {
  const [X, Y, Z] = [20, 20, 16];
  const label = new Uint8Array(X * Y * Z);
  const inBox = (x: number, y: number, z: number, lo: number[], hi: number[]) =>
    x >= lo[0] && x < hi[0] && y >= lo[1] && y < hi[1] && z >= lo[2] && z < hi[2];
  for (let x = 0; x < X; x++)
    for (let y = 0; y < Y; y++)
      for (let z = 0; z < Z; z++) {
        let c = 0;
        if (inBox(x, y, z, [2, 2, 2], [18, 18, 14])) c = 2;
        if (inBox(x, y, z, [4, 4, 4], [4 + etSide, 4 + etSide, 4 + etSide])) c = 3;
        if (inBox(x, y, z, [13, 4, 4], [16, 8, 8])) c = 1;
        label[(x * Y + y) * Z + z] = c;
      }
  // Channel 0 carries the class the oracle reads; the other sequences are a uniform non-zero brain.
  const images = new Float32Array(4 * label.length).fill(1);
  images.set(label);
  // Cropped from a larger acquisition grid: a region missed on one side scores that grid's diagonal.
  return { id, images, label, shape: [X, Y, Z], spacing: [1, 1, 2], gridShape: [40, 30, 20], cropBox: { start: [0, 0, 0], end: [X, Y, Z] } };
}

test('voxel spacing is the length of the affine columns', () => {
  assert.deepEqual(voxelSpacing([[0, 0, 2, 1], [3, 0, 0, 2], [0, 4, 0, 3], [0, 0, 0, 1]]), [3, 4, 2]);
});

test('known scores: ET lost without T1ce, small ET removed by post-processing, encoders run once per batch of windows', () => {
  const { model, calls } = oracleModel(16);
  // Case 1: a 512-voxel ET, kept. Case 2: a 64-voxel ET, relabelled as necrosis (< 500 mm³ = 250 voxels of 1 × 1 × 2 mm).
  const results = [evaluateCase(model, oracleCase('big', 8)), evaluateCase(model, oracleCase('small', 4))];
  // Windows of 16 on 20 × 20 × 16 with 50 % overlap: 2 × 2 × 1 per case, each encoded once, batched per position
  // along x (2 batches of 2 windows per case), each batch fused 15 times.
  assert.equal(calls.windows, 2 * 4);
  assert.equal(calls.encode, 2 * 2);
  assert.equal(calls.fuse, 2 * 2 * 15);
  const diagonal = Math.hypot(40, 30, 40);
  SUBSETS.forEach((subset, s) => {
    const big = results[0].scores[s];
    const small = results[1].scores[s];
    for (const scores of [big, small]) {
      assert.equal(scores.dice.WT, 1);
      assert.equal(scores.dice.TC, 1);
      assert.equal(scores.hausdorff95.WT, 0);
      assert.equal(scores.hausdorff95.TC, 0);
    }
    assert.equal(big.dice.ET, subset[1] ? 1 : 0, `big ET, subset ${s}`);
    assert.equal(big.hausdorff95.ET, subset[1] ? 0 : diagonal);
    assert.equal(small.dice.ET, 0);
    assert.equal(small.hausdorff95.ET, diagonal);
  });
  const summary = summarise({ subsets: SUBSETS, cases: results });
  for (const row of summary.subsets) assert.equal(row.dice.ET, row.subset[1] ? 0.5 : 0);
  // 8 of the 15 subsets hold T1ce.
  assert.ok(Math.abs(summary.average.dice.ET - (8 * 0.5) / 15) < 1e-12);
  assert.ok(Math.abs(summary.average.dice.mean - (1 + 1 + (8 * 0.5) / 15) / 3) < 1e-12);
});

test('encoding each window once and fusing per subset equals the full model run per subset', () => {
  const model = tinyModel();
  torch.manualSeed(5);
  // 36 voxels along x: two overlapping windows of 32.
  const images = torch.randn([1, 4, 36, 32, 32]);
  const all = subsetProbabilities(model, images, SUBSETS);
  assert.deepEqual(all.shape, [15, 4, 36, 32, 32]);
  SUBSETS.forEach((subset, s) => {
    const single = subsetProbabilities(model, images, [subset]);
    const difference = all.narrow(0, s, 1).sub(single).abs().amax().item();
    assert.ok(difference < 1e-5, `subset ${s}: ${difference}`);
  });
});

test('evaluating a data set: cases in order, from memory and from the cache alike', async () => {
  const { root, ids } = tinyDataset(path.join(dir, 'a'), 2);
  const dataset = discoverBrats(root);
  const model = tinyModel();
  const subsets = [SUBSETS[1], SUBSETS[14]];
  const inMemory = await evaluateDataset(model, { dataset, caseIds: [ids[1], ids[0]], subsets });
  const cacheDir = path.join(dir, 'a', 'cache');
  const seen: number[] = [];
  const cached = await evaluateDataset(model, { dataset, caseIds: [ids[1], ids[0]], subsets, cacheDir, onCase: ({ done }) => seen.push(done) });
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(inMemory.cases.map((c) => c.id), [ids[1], ids[0]]);
  assert.deepEqual(cached.cases.map((c) => c.scores), inMemory.cases.map((c) => c.scores));
  assert.ok(fs.existsSync(path.join(cacheDir, 'index.json')));
  for (const entry of inMemory.cases) {
    assert.equal(entry.scores.length, 2);
    for (const scores of entry.scores) for (const value of Object.values(scores.dice)) assert.ok(value >= 0 && value <= 1);
  }
});

test('a model for another number of classes, or a case without labels, is an error', async () => {
  const { root, ids } = tinyDataset(path.join(dir, 'b'), 1);
  const fiveClasses = createModel('tiny', { classes: 5 });
  await assert.rejects(evaluateDataset(fiveClasses, { dataset: discoverBrats(root), caseIds: ids }), /predicts 5 classes but the data set at .* has 4/);
  fs.rmSync(path.join(root, ids[0], `${ids[0]}_seg.nii.gz`));
  await assert.rejects(evaluateDataset(tinyModel(), { dataset: discoverBrats(root), caseIds: ids }), /has no label: evaluation needs the ground truth/);
  await assert.rejects(evaluateDataset(tinyModel(), { dataset: discoverBrats(root), caseIds: ['nope'] }), /not in/);
});

test('smml evaluate: the run\'s test split, all 15 subsets, four result files', async () => {
  const { root, ids } = tinyDataset(path.join(dir, 'c'), 1);
  const runDir = path.join(dir, 'c', 'run');
  writeRunFolder(runDir, tinyModel(), { root, test: ids });
  const program = new Command().exitOverride();
  registerEvaluateCommand(program);
  const out = path.join(dir, 'c', 'results');
  const printed: string[] = [];
  const errors: string[] = [];
  const [log, error] = [console.log, console.error];
  console.log = (line: string) => printed.push(line);
  console.error = (line: string) => errors.push(line);
  try {
    await program.parseAsync(['node', 'smml', 'evaluate', '--model', runDir, '--out', out]);
  } finally {
    [console.log, console.error] = [log, error];
  }
  assert.deepEqual(fs.readdirSync(out).sort(), ['per-case.csv', 'report', 'results.csv', 'results.json', 'results.md']);
  // The report: page, Markdown, charts, viewer script, and the case's volumes with one prediction per subset.
  const report = path.join(out, 'report');
  for (const file of ['index.html', 'README.md', 'dice-heatmap.png', 'hd95-heatmap.png', 'per-case-dice.png', 'viewer.js']) {
    assert.ok(fs.existsSync(path.join(report, file)), file);
  }
  const caseDir = path.join(report, 'volumes', ids[0]);
  assert.equal(fs.readdirSync(caseDir).filter((file) => file.startsWith('prediction-')).length, 15);
  // The written prediction of all four sequences is the one scored: its WT Dice against the ground truth,
  // counted here voxel by voxel, is results.json's.
  const predicted = readVolume(path.join(caseDir, 'prediction-flair-t1ce-t1-t2.nii.gz'));
  const truth = readVolume(path.join(caseDir, 'truth.nii.gz'));
  assert.deepEqual(predicted.affine, truth.affine);
  let [overlap, inPrediction, inTruth] = [0, 0, 0];
  for (let i = 0; i < truth.data.length; i++) {
    const p = Number(predicted.data[i]) > 0;
    const t = Number(truth.data[i]) > 0;
    if (p) inPrediction++;
    if (t) inTruth++;
    if (p && t) overlap++;
  }
  const scored = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')).perCase[0].subsets.find((s: { name: string }) => s.name === 'FLAIR+T1ce+T1+T2');
  assert.ok(inTruth > 0);
  assert.ok(Math.abs(scored.dice.WT - (2 * overlap) / (inPrediction + inTruth)) < 1e-9, `${scored.dice.WT} vs ${overlap}/${inPrediction}/${inTruth}`);
  const page = fs.readFileSync(path.join(report, 'index.html'), 'utf8');
  assert.match(page, /<svg[^>]*class="marks"/);
  assert.ok(page.includes('prediction-flair-t1ce-t1-t2.nii.gz'));
  assert.equal(printed[0].split('\n').length, 2 + 15 + 1);
  assert.ok(errors.some((line) => line.startsWith(`[1/1] ${ids[0]}`)), errors.join('\n'));
  assert.equal(fs.readFileSync(path.join(out, 'results.csv'), 'utf8').trim().split('\n').length, 1 + 15 + 1);
  assert.equal(fs.readFileSync(path.join(out, 'per-case.csv'), 'utf8').trim().split('\n').length, 1 + 15);
  const document = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
  assert.match(document.cases, /the run's test split \(1 cases\)/);
  // The run's cache is used for its own data.
  assert.ok(fs.existsSync(path.join(runDir, 'cache', ids[0], 'manifest.json')));

  // A results folder that cannot be made fails before any case is evaluated (the early check's
  // message, not the one of writing the results); so does an unknown split file.
  const blocker = path.join(dir, 'c', 'blocker');
  fs.writeFileSync(blocker, '');
  const evaluate = (...args: string[]) => {
    const failing = new Command().exitOverride();
    registerEvaluateCommand(failing);
    return failing.parseAsync(['node', 'smml', 'evaluate', '--model', runDir, ...args]);
  };
  await assert.rejects(evaluate('--out', path.join(blocker, 'results')), /results folder .* cannot be written/);
  await assert.rejects(evaluate('--out', out, '--split', path.join(dir, 'no-such-split.txt')), /cannot read split file/);
});
