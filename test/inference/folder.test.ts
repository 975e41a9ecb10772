import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { registerEvaluateCommand } from '../../src/cli/evaluate.ts';
import { registerPredictCommand } from '../../src/cli/predict.ts';
import { discoverInputCases } from '../../src/data/brats.ts';
import { readVolume } from '../../src/data/volume.ts';
import { predictCase } from '../../src/inference/predict.ts';
import { readRunQuality } from '../../src/training/run-dir.ts';
import { BRATS2018_VALUES, caseFiles, tempDir, tinyDataset, tinyModel, writeRunFolder } from './helpers.ts';

const dir = tempDir();
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const { root, ids } = tinyDataset(dir, 3);
const model = tinyModel();
const runDir = path.join(dir, 'run');
writeRunFolder(runDir, model, { root, test: [ids[0]] });

/** Runs an smml command in this process; returns what it printed and the exit code it set. */
async function smml(register: (program: Command) => Command, ...args: string[]): Promise<{ printed: string[]; errors: string[]; exitCode: number | undefined }> {
  const program = new Command().exitOverride();
  register(program);
  const printed: string[] = [];
  const errors: string[] = [];
  const [log, error, stderrWrite, exitCode] = [console.log, console.error, process.stderr.write, process.exitCode];
  console.log = (line: string) => printed.push(line);
  console.error = (line: string) => errors.push(line);
  process.stderr.write = ((chunk: string) => errors.push(String(chunk)) > 0) as typeof process.stderr.write;
  process.exitCode = undefined;
  try {
    await program.parseAsync(['node', 'smml', ...args]);
    return { printed, errors, exitCode: process.exitCode as number | undefined };
  } finally {
    [console.log, console.error, process.stderr.write, process.exitCode] = [log, error, stderrWrite, exitCode];
  }
}

// Case 0 complete; case 1 without T1 and T2; case 2 with a damaged FLAIR file.
const input = path.join(dir, 'input');
fs.cpSync(root, input, { recursive: true });
fs.rmSync(path.join(input, ids[1], `${ids[1]}_t1.nii.gz`));
fs.rmSync(path.join(input, ids[1], `${ids[1]}_t2.nii.gz`));
fs.writeFileSync(path.join(input, ids[2], `${ids[2]}_flair.nii.gz`), 'not a volume');

const labelsOf = (file: string) => Array.from(readVolume(file).data as ArrayLike<number>);

test('cases to segment: BraTS folders with whatever sequences they have, nnU-Net channel files in the given order', () => {
  const brats = discoverInputCases(input);
  assert.equal(brats.layout, 'brats2018');
  assert.deepEqual(brats.cases.map((entry) => Object.keys(entry.modalities).sort()), [['flair', 't1', 't1ce', 't2'], ['flair', 't1ce'], ['flair', 't1', 't1ce', 't2']]);
  const flat = path.join(dir, 'flat-names');
  fs.mkdirSync(flat);
  for (const channel of ['0000', '0003']) fs.writeFileSync(path.join(flat, `case_a_${channel}.nii.gz`), '');
  fs.writeFileSync(path.join(flat, 'case_b_0001.nii.gz'), '');
  const nnunet = discoverInputCases(flat, { channelOrder: ['t1', 't1ce', 't2', 'flair'] });
  assert.equal(nnunet.layout, 'nnunet');
  assert.deepEqual(nnunet.cases.map((entry) => [entry.id, entry.modalities]), [
    ['case_a', { t1: path.join(flat, 'case_a_0000.nii.gz'), flair: path.join(flat, 'case_a_0003.nii.gz') }],
    ['case_b', { t1ce: path.join(flat, 'case_b_0001.nii.gz') }],
  ]);
  fs.writeFileSync(path.join(flat, 'case_b_0004.nii.gz'), '');
  assert.throws(() => discoverInputCases(flat), /case_b_0004\.nii\.gz: channel 0004 has no modality \(the channel order is flair, t1ce, t1, t2\)/);
});

test('smml predict --input --output: every case from its own sequences, failures reported, done cases skipped', async () => {
  const output = path.join(dir, 'output');
  const first = await smml(registerPredictCommand, 'predict', '--model', runDir, '--input', input, '--output', output);
  assert.equal(first.exitCode, 1);
  assert.deepEqual(fs.readdirSync(output).sort(), [`${ids[0]}.nii.gz`, `${ids[1]}.nii.gz`]);
  const summary = first.printed.join('\n');
  assert.match(summary, /3 cases \(brats2018 layout\) in .* min: 2 segmented, 0 already done \(--overwrite redoes them\), 1 failed/);
  assert.match(summary, new RegExp(`failed: ${ids[2]}: .*${ids[2]}_flair\\.nii\\.gz`));
  assert.match(summary, /1 case\(s\) from FLAIR\+T1ce; expected quality for FLAIR\+T1ce: the run has not been evaluated on held-out cases/);
  assert.ok(first.errors.some((line) => line.includes(`predict 2/3 ${ids[1]}: from FLAIR+T1ce`)), first.errors.join(''));
  // The folder form writes what the single-case form computes.
  const inference = { model, labelValues: BRATS2018_VALUES };
  const single = await predictCase(inference, { flair: caseFiles(root, ids[1]).flair, t1ce: caseFiles(root, ids[1]).t1ce });
  assert.deepEqual(labelsOf(path.join(output, `${ids[1]}.nii.gz`)), Array.from(single.labels));

  const written = fs.statSync(path.join(output, `${ids[0]}.nii.gz`)).mtimeMs;
  const second = await smml(registerPredictCommand, 'predict', '--model', runDir, '--input', input, '--output', output);
  assert.match(second.printed.join('\n'), /0 segmented, 2 already done .* 1 failed/);
  assert.equal(fs.statSync(path.join(output, `${ids[0]}.nii.gz`)).mtimeMs, written);
  fs.rmSync(path.join(input, ids[2]), { recursive: true });
  const third = await smml(registerPredictCommand, 'predict', '--model', runDir, '--input', input, '--output', output, '--overwrite');
  assert.equal(third.exitCode, undefined);
  assert.match(third.printed.join('\n'), /2 cases .*: 2 segmented, 0 already done .* 0 failed/);
});

test('nnU-Net channel files give the same segmentation as the BraTS folder, in either channel order', async () => {
  const files = caseFiles(root, ids[0]);
  const reference = await predictCase({ model, labelValues: BRATS2018_VALUES }, files);
  for (const order of ['flair,t1ce,t1,t2', 't1,t1ce,t2,flair']) {
    const flat = path.join(dir, `nnunet-${order.replaceAll(',', '-')}`);
    fs.mkdirSync(flat);
    order.split(',').forEach((modality, channel) =>
      fs.copyFileSync(files[modality as keyof typeof files], path.join(flat, `${ids[0]}_${String(channel).padStart(4, '0')}.nii.gz`)),
    );
    const output = path.join(flat, 'out');
    const result = await smml(registerPredictCommand, 'predict', '--model', runDir, '--input', flat, '--output', output, '--channel-order', order);
    assert.equal(result.exitCode, undefined);
    assert.deepEqual(labelsOf(path.join(output, `${ids[0]}.nii.gz`)), Array.from(reference.labels));
  }
});

test('smml evaluate stores the held-out Dice per subset in the run; smml predict prints the one of its subset', async () => {
  await smml(registerEvaluateCommand, 'evaluate', '--model', runDir, '--out', path.join(dir, 'evaluation'));
  const quality = readRunQuality(runDir)!;
  assert.equal(quality.caseCount, 1);
  assert.equal(quality.subsets.length, 15);
  const results = JSON.parse(fs.readFileSync(path.join(dir, 'evaluation', 'results.json'), 'utf8'));
  const row = results.subsets.find((entry: { name: string }) => entry.name === 'FLAIR+T2');
  assert.deepEqual(quality.subsets.find((entry) => entry.name === 'FLAIR+T2')!.dice, { WT: row.dice.WT, TC: row.dice.TC, ET: row.dice.ET });
  const files = caseFiles(root, ids[0]);
  const { printed } = await smml(registerPredictCommand, 'predict', '--model', runDir, '--flair', files.flair, '--t2', files.t2, '--out', path.join(dir, 'one.nii.gz'));
  const percent = (value: number) => (100 * value).toFixed(1);
  assert.equal(
    printed[1],
    `expected quality for FLAIR+T2: held-out Dice (%) WT ${percent(row.dice.WT)}, TC ${percent(row.dice.TC)}, ET ${percent(row.dice.ET)} over 1 cases (the run's test split (1 cases))`,
  );

  // Scores on training cases are not held out and leave quality.json alone.
  fs.rmSync(path.join(runDir, 'quality.json'));
  const trainingRun = path.join(dir, 'trained-on-all');
  writeRunFolder(trainingRun, model, { root, test: [ids[0]] });
  const run = JSON.parse(fs.readFileSync(path.join(trainingRun, 'run.json'), 'utf8'));
  run.data.split.train = [ids[0]];
  fs.writeFileSync(path.join(trainingRun, 'run.json'), JSON.stringify(run));
  await smml(registerEvaluateCommand, 'evaluate', '--model', trainingRun, '--split', 'train', '--out', path.join(dir, 'evaluation-train'));
  assert.equal(readRunQuality(trainingRun), null);
});
