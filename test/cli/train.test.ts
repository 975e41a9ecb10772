// `smml train --model`: the family flag resolved into the configuration, its conflicts, and a U-Net run made by
// the real program that `smml evaluate` and `smml predict` then use unchanged.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { registerTrainCommand, resolveConfig } from '../../src/cli/train.ts';
import { readVolume } from '../../src/data/volume.ts';
import { readRunConfig } from '../../src/training/run-dir.ts';
import { caseFiles, tempDir, tinyDataset } from '../inference/helpers.ts';

const run = promisify(execFile);
const projectDir = fileURLToPath(new URL('../..', import.meta.url));
const programFile = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const smml = (...args: string[]) => run(process.execPath, ['--import', 'tsx', programFile, ...args], { cwd: projectDir });

const dir = tempDir();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const options = (extra: Record<string, unknown>) => resolveConfig({ out: path.join(dir, 'unused'), data: '/data', set: [], ...extra });

describe('smml train --model', () => {
  it('selects the family; the preset defaults to the family CPU one and names its family when given alone', () => {
    const pick = (extra: Record<string, unknown>) => [options(extra).model.family, options(extra).model.preset];
    assert.deepEqual(pick({}), ['smml', 'cpu-small']);
    assert.deepEqual(pick({ model: 'smml' }), ['smml', 'cpu-small']);
    assert.deepEqual(pick({ model: 'unet' }), ['unet', 'unet-cpu']);
    assert.deepEqual(pick({ preset: 'unet-paper' }), ['unet', 'unet-paper']);
    assert.deepEqual(pick({ model: 'unet', preset: 'unet-paper' }), ['unet', 'unet-paper']);
  });

  it('--precision sets training.precision (default fp32) and accepts only fp32 and bf16', () => {
    assert.equal(options({}).training.precision, 'fp32');
    assert.equal(options({ precision: 'bf16' }).training.precision, 'bf16');
    const program = new Command().exitOverride().configureOutput({ writeErr: () => {} });
    registerTrainCommand(program);
    assert.throws(() => program.parse(['train', '--out', 'x', '--precision', 'fp16'], { from: 'user' }), /argument 'fp16' is invalid\. Allowed choices are fp32, bf16/);
  });

  it('refuses a preset of the other family, --baseline and the SRN with the U-Net, naming the setting', () => {
    assert.throws(() => options({ model: 'unet', preset: 'cpu-small' }), /model\.preset: preset 'cpu-small' is a 'smml' network, but model\.family is 'unet'/);
    assert.throws(() => options({ model: 'unet', baseline: true }), /--baseline is the single-branch SMML variant/);
    assert.throws(() => options({ model: 'unet', srn: true }), /losses\.srn: the U-Net \(model\.family 'unet'\) has no refinement network; switch losses\.srn off/);
    const program = new Command().exitOverride().configureOutput({ writeErr: () => {} });
    registerTrainCommand(program);
    assert.throws(() => program.parse(['train', '--out', 'x', '--model', 'vnet'], { from: 'user' }), /argument 'vnet' is invalid\. Allowed choices are smml, unet/);
  });

  it('trains a U-Net run that smml evaluate and smml predict use as they are', async () => {
    const { root, ids } = tinyDataset(dir, 4);
    const runDir = path.join(dir, 'unet-run');
    const trained = await smml(
      'train', '--model', 'unet', '--preset', 'unet-tiny', '--data', root, '--out', runDir, '--epochs', '1', '--steps-per-epoch', '1',
      '--threads', '1', '--workers', '0', '--validate-every', '0', '--set', 'data.split.proportions=[2,1,1]',
    );
    assert.match(trained.stderr, /training a plain 3D U-Net with modality dropout in /);
    assert.match(trained.stderr, /one branch: the mutual-learning terms \(PBC, FRC\) need two and are off/);
    assert.doesNotMatch(trained.stderr, /refinement network \(SRN\) is off/);
    assert.equal(readRunConfig(runDir).model.family, 'unet');
    // The synthetic cases of 32 voxels across have 240/32 = 7.5 mm voxels: the median the run records.
    assert.deepEqual(readRunConfig(runDir).data.spacing, [7.5, 7.5, 7.5]);

    const evaluationDir = path.join(dir, 'evaluation');
    await smml('evaluate', '--model', runDir, '--out', evaluationDir);
    const results = JSON.parse(fs.readFileSync(path.join(evaluationDir, 'results.json'), 'utf8'));
    assert.equal(results.subsets.length, 15);
    assert.deepEqual(results.perCase.map((entry: { id: string }) => entry.id), readRunConfig(runDir).data.split.test);

    const { flair, t1 } = caseFiles(root, ids[0]);
    const segmentation = path.join(dir, 'seg.nii.gz');
    const predicted = await smml('predict', '--model', runDir, '--flair', flair, '--t1', t1, '--out', segmentation);
    assert.match(predicted.stdout, /segmented from FLAIR\+T1 in/);
    assert.ok(fs.statSync(segmentation).size > 0);
    const mixedSegmentation = path.join(dir, 'seg-bf16.nii.gz');
    await smml('predict', '--model', runDir, '--flair', flair, '--t1', t1, '--out', mixedSegmentation, '--precision', 'bf16');
    const [labels, mixed] = [segmentation, mixedSegmentation].map((file) => readVolume(file).data);
    const agreeing = labels.filter((label, v) => label === mixed[v]).length;
    assert.ok(agreeing >= 0.99 * labels.length, `bf16 labels agree with fp32 on ${agreeing} of ${labels.length} voxels`);
  });
});
