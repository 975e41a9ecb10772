import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { registerEvaluateCommand } from '../../src/cli/evaluate.ts';
import { readVolume, writeVolume } from '../../src/data/volume.ts';
import { evaluatePredictionFolder } from '../../src/evaluation/folder.ts';
import { tempDir, tinyDataset, tinyModel, writeRunFolder } from '../inference/helpers.ts';

const dir = tempDir();
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const { root, ids } = tinyDataset(dir, 3);
const labelFile = (id: string) => path.join(root, id, `${id}_seg.nii.gz`);

/** Runs `smml evaluate` in this process; returns what it printed and the exit code it set. */
async function evaluate(...args: string[]): Promise<{ printed: string[]; errors: string[]; exitCode: number | undefined }> {
  const program = new Command().exitOverride();
  registerEvaluateCommand(program);
  const printed: string[] = [];
  const errors: string[] = [];
  const [log, error, exitCode] = [console.log, console.error, process.exitCode];
  console.log = (line: string) => printed.push(line);
  console.error = (line: string) => errors.push(line);
  process.exitCode = undefined;
  try {
    await program.parseAsync(['node', 'smml', 'evaluate', ...args]);
    return { printed, errors, exitCode: process.exitCode as number | undefined };
  } finally {
    [console.log, console.error, process.exitCode] = [log, error, exitCode];
  }
}

// Predictions: case 0 exactly its label; case 1 its label without oedema (value 2); case 2 has none.
const predictions = path.join(dir, 'predictions');
fs.mkdirSync(predictions);
const truth1 = readVolume(labelFile(ids[1]));
{
  const truth0 = readVolume(labelFile(ids[0]));
  writeVolume(path.join(predictions, `${ids[0]}.nii.gz`), truth0.data, truth0.shape, truth0);
  const withoutOedema = Uint8Array.from(truth1.data as ArrayLike<number>, (value) => (value === 2 ? 0 : value));
  writeVolume(path.join(predictions, `${ids[1]}.nii.gz`), withoutOedema, truth1.shape, truth1);
}
const count = (value: number) => (truth1.data as ArrayLike<number>).length - Array.from(truth1.data as ArrayLike<number>).filter((v) => v !== value).length;
const [n1, n2, n4] = [count(1), count(2), count(4)];
// Without oedema the prediction's WT is the truth's TC: 2|TC| / (|WT| + |TC|); TC and ET are untouched.
const expectedWt = (2 * (n1 + n4)) / (n1 + n2 + n4 + n1 + n4);

test('a folder of predictions against a BraTS data folder and against a flat label folder: Dice and HD95 per case', () => {
  assert.ok(n2 > 0 && n1 + n4 > 0, 'the case needs oedema and core');
  const flatLabels = path.join(dir, 'labels');
  fs.mkdirSync(flatLabels);
  for (const id of ids) fs.copyFileSync(labelFile(id), path.join(flatLabels, `${id}.nii.gz`));
  for (const labels of [root, flatLabels]) {
    const evaluation = evaluatePredictionFolder({ predictions, labels });
    assert.equal(evaluation.layout, 'brats2018');
    assert.deepEqual(evaluation.cases.map((entry) => entry.id), [ids[0], ids[1]]);
    assert.deepEqual(evaluation.missing, [ids[2]]);
    const [exact, partial] = evaluation.cases.map((entry) => entry.scores);
    assert.deepEqual(exact.dice, { WT: 1, TC: 1, ET: 1 });
    assert.deepEqual(exact.hausdorff95, { WT: 0, TC: 0, ET: 0 });
    assert.ok(Math.abs(partial.dice.WT - expectedWt) < 1e-12, `${partial.dice.WT} vs ${expectedWt}`);
    assert.equal(partial.dice.TC, 1);
    assert.ok(partial.hausdorff95.WT > 0);
    assert.ok(Math.abs(evaluation.mean.dice.WT - (1 + expectedWt) / 2) < 1e-12);
  }
});

test('smml evaluate --predictions --labels writes the summary and per-case scores and fails when a case has no prediction', async () => {
  const out = path.join(dir, 'folder-results');
  const { printed, exitCode, errors } = await evaluate('--predictions', predictions, '--labels', root, '--out', out);
  assert.equal(exitCode, 1);
  assert.ok(errors.some((line) => line.includes(`have no prediction in ${predictions}: ${ids[2]}`)), errors.join('\n'));
  assert.deepEqual(fs.readdirSync(out).sort(), ['per-case.csv', 'summary.json', 'summary.md']);
  const rows = fs.readFileSync(path.join(out, 'per-case.csv'), 'utf8').trim().split('\n');
  assert.equal(rows.length, 1 + 2);
  assert.equal(rows[1], `${ids[0]},1,1,1,0,0,0`);
  assert.equal(Number(rows[2].split(',')[1]), Number(expectedWt.toFixed(6)));
  assert.match(printed[0], /Dice \(%\)/);
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.deepEqual(summary.missing, [ids[2]]);

  // Scoring with every prediction present succeeds.
  const complete = path.join(dir, 'complete');
  fs.mkdirSync(complete);
  for (const id of [ids[0], ids[1]]) fs.copyFileSync(path.join(predictions, `${id}.nii.gz`), path.join(complete, `${id}.nii.gz`));
  const labels = path.join(dir, 'two-labels');
  fs.mkdirSync(labels);
  for (const id of [ids[0], ids[1]]) fs.copyFileSync(labelFile(id), path.join(labels, `${id}.nii.gz`));
  assert.equal((await evaluate('--predictions', complete, '--labels', labels)).exitCode, undefined);
  assert.ok(fs.existsSync(path.join(complete, 'evaluation', 'summary.md')));
});

test('a prediction on another grid, or values outside the label convention, are errors naming the files', async () => {
  const bad = path.join(dir, 'bad');
  fs.mkdirSync(bad);
  const truth = readVolume(labelFile(ids[0]));
  const shifted = truth.affine.map((row) => [...row]);
  shifted[0][3] += 5;
  writeVolume(path.join(bad, `${ids[0]}.nii.gz`), truth.data, truth.shape, { ...truth, affine: shifted, header: { ...truth.header, srow: shifted.slice(0, 3) } } as typeof truth);
  assert.throws(() => evaluatePredictionFolder({ predictions: bad, labels: root }), new RegExp(`${ids[0]}_seg.nii.gz and .*bad/${ids[0]}.nii.gz have different affines`));
  writeVolume(path.join(bad, `${ids[0]}.nii.gz`), new Uint8Array(truth.data.length).fill(3), truth.shape, truth);
  assert.throws(() => evaluatePredictionFolder({ predictions: bad, labels: root }), /bad\/.*\.nii\.gz: label value 3 at voxel 0 is not a BraTS 2018-2021 label/);
  await assert.rejects(evaluate('--predictions', bad), /--predictions and --labels go together/);
});

test('smml evaluate --data DIR without --split scores every labelled case of DIR', async () => {
  const runDir = path.join(dir, 'run');
  writeRunFolder(runDir, tinyModel(), { root: path.join(dir, 'elsewhere'), test: [ids[0]] });
  const out = path.join(dir, 'all-results');
  await evaluate('--model', runDir, '--data', root, '--out', out);
  const document = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
  assert.deepEqual(document.perCase.map((entry: { id: string }) => entry.id), ids);
  assert.match(document.cases, /every labelled case in .* \(3 cases\)/);
});
