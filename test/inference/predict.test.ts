import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { registerPredictCommand } from '../../src/cli/predict.ts';
import { readVolume, writeVolume } from '../../src/data/volume.ts';
import type { NiftiHeader } from '../../src/data/nifti.ts';
import { torch } from '../../src/engine/index.ts';
import { predictCase, predictToFiles, prepareModalities } from '../../src/inference/predict.ts';
import { modalityMask } from '../../src/models/index.ts';
import { BRATS2018_VALUES, caseFiles, tempDir, tinyDataset, tinyModel, writeRunFolder } from './helpers.ts';

const dir = tempDir();
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const { root, ids } = tinyDataset(dir, 1);
const files = caseFiles(root, ids[0]);
const model = tinyModel();
const inference = { model, labelValues: BRATS2018_VALUES };

/** Files in `folder` other than `except`, to show that a failed call wrote nothing. */
const filesIn = (folder: string) => (fs.existsSync(folder) ? fs.readdirSync(folder).sort() : []);

test('preprocessing of a subset: crop to the given modalities, z-score each, absent channels zero', () => {
  const input = prepareModalities({ flair: files.flair, t2: files.t2 });
  assert.deepEqual(input.present, [true, false, false, true]);
  assert.deepEqual(input.originalShape, [32, 32, 21]);
  const voxels = input.shape[0] * input.shape[1] * input.shape[2];
  const channel = (k: number) => input.images.subarray(k * voxels, (k + 1) * voxels);
  for (const k of [0, 3]) {
    const inside = channel(k).filter((v) => v !== 0);
    const mean = inside.reduce((s, v) => s + v, 0) / inside.length;
    const variance = inside.reduce((s, v) => s + (v - mean) ** 2, 0) / inside.length;
    assert.ok(Math.abs(mean) < 1e-4 && Math.abs(variance - 1) < 1e-3, `channel ${k}: mean ${mean}, variance ${variance}`);
  }
  for (const k of [1, 2]) assert.ok(channel(k).every((v) => v === 0), `absent channel ${k} must be zero`);
  // The crop holds every non-zero FLAIR voxel: their count is the same before and after cropping.
  const flair = readVolume(files.flair).data;
  assert.equal(channel(0).filter((v) => v !== 0).length, flair.filter((v) => v !== 0).length);
});

test('predict writes labels with the input grid and geometry, matching the network run by hand', async () => {
  const out = path.join(dir, 'out', 'seg.nii.gz');
  const probabilitiesFile = path.join(dir, 'out', 'probabilities.nii.gz');
  await predictToFiles(inference, { flair: files.flair, t2: files.t2 }, { out, probabilities: probabilitiesFile, weighting: 'uniform' });
  const source = readVolume(files.flair);
  const t2 = readVolume(files.t2);
  const seg = readVolume(out);
  assert.deepEqual(seg.shape, [32, 32, 21]);
  assert.deepEqual(seg.affine, source.affine);
  const probabilities = readVolume(probabilitiesFile);
  assert.deepEqual(probabilities.shape, [32, 32, 21, 4]);
  assert.deepEqual(probabilities.affine, source.affine);

  // The network by hand: the cropped input zero-padded to one 32^3 window, masked to FLAIR + T2.
  const input = prepareModalities({ flair: files.flair, t2: files.t2 });
  const [X, Y, Z] = input.shape;
  const expected = torch.noGrad(() => {
    const images = torch.tensor(input.images, [1, 4, X, Y, Z]);
    const padded = torch.pad(images, [0, 32 - Z, 0, 32 - Y, 0, 32 - X]);
    return model.predictProbabilities(padded, modalityMask([[true, false, false, true]])).narrow(2, 0, X).narrow(3, 0, Y).narrow(4, 0, Z).contiguous();
  });
  const hand = expected.toTypedArray() as Float32Array;
  const grid = 32 * 32 * 21;
  const { start, end } = input.cropBox;
  const classOf = new Uint8Array(grid);
  let maxError = 0;
  for (let k = 0; k < 21; k++)
    for (let j = 0; j < 32; j++)
      for (let i = 0; i < 32; i++) {
        const v = i + 32 * (j + 32 * k);
        const inside = i >= start[0] && i < end[0] && j >= start[1] && j < end[1] && k >= start[2] && k < end[2];
        let best = 0;
        for (let c = 0; c < 4; c++) {
          const p = probabilities.data[c * grid + v];
          const want = inside ? hand[((c * X + (i - start[0])) * Y + (j - start[1])) * Z + (k - start[2])] : c === 0 ? 1 : 0;
          maxError = Math.max(maxError, Math.abs(p - want));
          if (p > probabilities.data[best * grid + v]) best = c;
        }
        // Outside the brain (both given sequences 0) the label is background whatever the network says.
        classOf[v] = source.data[v] === 0 && t2.data[v] === 0 ? 0 : best;
      }
  assert.ok(maxError < 1e-5, `probabilities differ from the network run by hand by ${maxError}`);

  // Labels: arg-max, ET below 500 mm³ relabelled as necrosis (synthetic 32^3 voxels are 240/32 = 7.5 mm, so
  // 500 / 7.5³ ≈ 1.19 voxels), classes written as 0, 1, 2, 4.
  const enhancing = classOf.filter((c) => c === 3).length;
  const expectedLabels = Array.from(classOf, (c) => BRATS2018_VALUES[c === 3 && enhancing < 500 / 7.5 ** 3 ? 1 : c]);
  assert.deepEqual(Array.from(seg.data), expectedLabels);
  assert.ok(Array.from(seg.data).every((value) => [0, 1, 2, 4].includes(value)));
});

test('the probabilities sum to one at every voxel', () => {
  const probabilities = readVolume(path.join(dir, 'out', 'probabilities.nii.gz')).data;
  const grid = 32 * 32 * 21;
  for (let v = 0; v < grid; v += 7) {
    const sum = probabilities[v] + probabilities[grid + v] + probabilities[2 * grid + v] + probabilities[3 * grid + v];
    assert.ok(Math.abs(sum - 1) < 1e-5, `voxel ${v}: ${sum}`);
  }
});

test('no modality given is an error', async () => {
  await assert.rejects(predictCase(inference, {}), /no input modality given/);
  const out = path.join(dir, 'none', 'seg.nii.gz');
  await assert.rejects(predictToFiles(inference, {}, { out }), /no input modality given/);
  assert.equal(fs.existsSync(out), false);
});

test('a sequence on another grid of the same head is resampled onto the first one\'s, not refused', () => {
  const source = readVolume(files.flair);
  const header = source.header as NiftiHeader;
  const shifted = { ...source, header: { ...header, srow: header.srow.map((row, r) => row.map((v, c) => (c === 3 && r === 0 ? v + 2 : v))) } };
  const moved = path.join(dir, 'moved.nii.gz');
  writeVolume(moved, source.data, source.shape, shifted);
  const input = prepareModalities({ t1ce: moved, flair: files.flair });
  assert.deepEqual(input.resampled, ['t1ce']);
  assert.deepEqual(input.reference.affine, source.affine);
});

test('an output that cannot be written fails before inference and leaves nothing behind', async () => {
  const blocker = path.join(dir, 'blocker');
  fs.writeFileSync(blocker, 'a file where a folder is needed');
  const before = filesIn(dir);
  await assert.rejects(predictToFiles(inference, { flair: files.flair }, { out: path.join(blocker, 'seg.nii.gz') }), /segmentation output .* cannot be written/);
  await assert.rejects(predictToFiles(inference, { flair: files.flair }, { out: path.join(dir, 'seg.png') }), /must end in \.nii or \.nii\.gz/);
  const out = path.join(dir, 'ok.nii.gz');
  await assert.rejects(
    predictToFiles(inference, { flair: files.flair }, { out, probabilities: path.join(blocker, 'p.nii.gz') }),
    /probability output .* cannot be written/,
  );
  await assert.rejects(predictToFiles(inference, { flair: files.flair }, { out: dir }), /must end in/);
  fs.mkdirSync(path.join(dir, 'folder.nii.gz'));
  await assert.rejects(predictToFiles(inference, { flair: files.flair }, { out: path.join(dir, 'folder.nii.gz') }), /it is a folder/);
  assert.deepEqual(filesIn(dir), [...before, 'folder.nii.gz'].sort());
});

test('a label convention that does not fit the model is an error', async () => {
  await assert.rejects(predictCase({ model, labelValues: [0, 1, 2] }, { flair: files.flair }), /predicts 4 classes but its label convention lists 3 values/);
});

test('smml predict: flags, run folder, output', async () => {
  const runDir = path.join(dir, 'run');
  writeRunFolder(runDir, model, { root, test: ids });
  const run = (...args: string[]) => {
    const program = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    registerPredictCommand(program);
    return program.parseAsync(['node', 'smml', 'predict', ...args]);
  };
  const out = path.join(dir, 'cli', 'seg.nii');
  await assert.rejects(run('--model', runDir, '--out', out), /pass at least one of --flair, --t1ce, --t1, --t2/);
  await assert.rejects(run('--model', runDir, '--t1', files.t1, '--out', out, '--overlap', '1.5'), /expected a fraction in \[0, 1\)/);
  await assert.rejects(run('--model', path.join(dir, 'no-run'), '--t1', files.t1, '--out', out), /run\.json: not found/);
  const log = console.log;
  const lines: string[] = [];
  console.log = (line: string) => lines.push(line);
  try {
    await run('--model', runDir, '--t1ce', files.t1ce, '--t1', files.t1, '--out', out, '--weighting', 'uniform');
  } finally {
    console.log = log;
  }
  assert.match(lines[0], /segmented from T1ce\+T1 in/);
  const seg = readVolume(out);
  assert.deepEqual(seg.shape, [32, 32, 21]);
  const direct = await predictCase(inference, { t1ce: files.t1ce, t1: files.t1 }, { weighting: 'uniform' });
  assert.deepEqual(Array.from(seg.data), Array.from(direct.labels));
});
