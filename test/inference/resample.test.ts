import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { registerPredictCommand } from '../../src/cli/predict.ts';
import { MODALITIES } from '../../src/data/modalities.ts';
import { synthesizeDataset, syntheticCaseId } from '../../src/data/synthetic.ts';
import { readVolume, writeVolume, type Volume } from '../../src/data/volume.ts';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { predictCase, prepareModalities, type InferenceModel } from '../../src/inference/predict.ts';
import { invertAffine, resampleOntoGrid, resampledShape, worldBox, worldBoxesOverlap } from '../../src/inference/resample.ts';
import type { SegmentationModel } from '../../src/models/index.ts';
import { medianSpacing } from '../../src/training/data.ts';
import { BRATS2018_VALUES, caseFiles, tempDir, tinyDataset, tinyModel, writeRunFolder } from './helpers.ts';

const dir = tempDir();
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const { root, ids } = tinyDataset(dir, 1);
// A finer case for the two slice thicknesses: structures a few voxels across survive averaging slices in pairs.
const fine = path.join(dir, 'fine');
synthesizeDataset({ out: fine, cases: 1, size: 64, seed: 4 });
const files = caseFiles(root, ids[0]);

test('affine inverse, world boxes and the median voxel size', () => {
  const affine = [[0, 0, 2, 10], [-3, 0, 0, 20], [0, 4, 0, -5], [0, 0, 0, 1]];
  const inverse = invertAffine(affine);
  const product = [0, 1, 2, 3].map((r) => [0, 1, 2, 3].map((c) => [0, 1, 2, 3].reduce((sum, k) => sum + affine[r][k] * inverse[k][c], 0)));
  product.forEach((row, r) => row.forEach((value, c) => assert.ok(Math.abs(value - (r === c ? 1 : 0)) < 1e-12)));
  // Voxel faces at −0.5 and 1.5 along every axis of a 2 × 2 × 2 grid.
  assert.deepEqual(worldBox([2, 2, 2], affine), { min: [9, 15.5, -7], max: [13, 21.5, 1] });
  const box = (lo: number, hi: number) => ({ min: [lo, 0, 0] as [number, number, number], max: [hi, 1, 1] as [number, number, number] });
  assert.equal(worldBoxesOverlap(box(0, 2), box(1, 3)), true);
  assert.equal(worldBoxesOverlap(box(0, 1), box(1, 3)), false);
  assert.deepEqual(medianSpacing([[1, 1, 5], [1, 2, 3], [0.9, 1, 1]]), [1, 1, 3]);
  assert.deepEqual(medianSpacing([[1, 1, 5], [2, 1, 3]]), [1.5, 1, 4]);
  assert.deepEqual(resampledShape([240, 240, 31], [1, 1, 5], [1, 1, 1]), [240, 240, 155]);
});

test('resampling onto another grid through world space is exact for a linear ramp inside the source', () => {
  // Source: 4 × 3 × 5 voxels of 2 × 1 × 3 mm; values 10·x + y + 0.5·z of the world position.
  const source = { shape: [4, 3, 5] as [number, number, number], affine: [[2, 0, 0, 1], [0, 1, 0, -2], [0, 0, 3, 0], [0, 0, 0, 1]] };
  const ramp = (x: number, y: number, z: number) => 10 * x + y + 0.5 * z;
  const data = new Float32Array(4 * 3 * 5);
  for (let k = 0; k < 5; k++) for (let j = 0; j < 3; j++) for (let i = 0; i < 4; i++) data[i + 4 * (j + 3 * k)] = ramp(2 * i + 1, j - 2, 3 * k);
  // Target: 1 mm voxels, axes permuted (i' runs along world z, k' along world x), inside the source's centres.
  const target = { shape: [10, 2, 5] as [number, number, number], affine: [[0, 0, 1, 1.5], [0, 1, 0, -1.5], [1, 0, 0, 0.5], [0, 0, 0, 1]] };
  const resampled = resampleOntoGrid(data, source.shape, source.affine, target);
  for (let k = 0; k < 5; k++)
    for (let j = 0; j < 2; j++)
      for (let i = 0; i < 10; i++) {
        const expected = ramp(k + 1.5, j - 1.5, i + 0.5);
        const value = resampled[i + 10 * (j + 2 * k)];
        assert.ok(Math.abs(value - expected) < 1e-3, `(${i}, ${j}, ${k}): ${value} vs ${expected}`);
      }
});

/**
 * A stand-in network whose answer is known: oedema (class 2) with probability sigmoid(4 (FLAIR − 1)) from the z-scored
 * FLAIR of each voxel (the synthetic oedema is twice as bright as white matter), background otherwise.
 */
function flairThresholdModel(patch: number): SegmentationModel {
  const predictProbabilities = (window: Tensor) =>
    torch.tidy(() => {
      const oedema = window.narrow(1, 0, 1).sub(1).mul(4).sigmoid();
      const zero = torch.zerosLike(oedema);
      return torch.cat([oedema.neg().add(1), zero, oedema, zero], 1);
    });
  return { config: { patch, classes: 4, modalities: 4 }, eval() {}, predictProbabilities } as unknown as SegmentationModel;
}

/** The case with slices averaged in pairs along k: the same head at twice the slice thickness (voxel centres between the pairs). */
function thickSlices(volume: Volume): Volume {
  const [I, J, K] = volume.shape;
  const thick = Math.floor(K / 2);
  const data = new Float32Array(I * J * thick);
  for (let k = 0; k < thick; k++)
    for (let v = 0; v < I * J; v++) data[v + I * J * k] = (Number(volume.data[v + I * J * 2 * k]) + Number(volume.data[v + I * J * (2 * k + 1)])) / 2;
  const affine = volume.affine.map((row) => [...row]);
  for (let r = 0; r < 3; r++) {
    affine[r][3] += 0.5 * affine[r][2];
    affine[r][2] *= 2;
  }
  const header = { ...volume.header, srow: affine.slice(0, 3), sformCode: 1, qformCode: 0 };
  return { data, shape: [I, J, thick], affine, header } as Volume;
}

const thickDir = path.join(dir, 'thick');
fs.mkdirSync(thickDir);
const fineFiles = caseFiles(fine, syntheticCaseId(0));
const thickFiles = Object.fromEntries(
  MODALITIES.map((modality) => {
    const file = path.join(thickDir, `${modality}.nii.gz`);
    const volume = thickSlices(readVolume(fineFiles[modality]));
    writeVolume(file, volume.data, volume.shape, volume);
    return [modality, file];
  }),
) as typeof files;

function wholeTumourDice(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let both = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const [p, q] = [a[i] > 0 ? 1 : 0, b[i] > 0 ? 1 : 0];
    both += p & q;
    sum += p + q;
  }
  return (2 * both) / sum;
}

test('a case at two slice thicknesses: resampled to the training voxel size, the two predictions agree', async () => {
  const spacing: [number, number, number] = [3.75, 3.75, 3.75];
  const thin = readVolume(fineFiles.flair);
  const [I, J, K] = thin.shape;
  // The network sees the thick case on the training grid: twice as many slices, the in-plane size unchanged.
  const prepared = prepareModalities(thickFiles, { spacing });
  assert.deepEqual(prepared.network!.shape, [prepared.shape[0], prepared.shape[1], 2 * prepared.shape[2]]);
  assert.equal(prepareModalities(fineFiles, { spacing }).network, undefined);

  const inference: InferenceModel = { model: flairThresholdModel(32), labelValues: BRATS2018_VALUES, spacing };
  const onThin = (await predictCase(inference, fineFiles, { probabilities: true })).probabilities!;
  const onThick = await predictCase(inference, thickFiles);
  assert.deepEqual(onThick.shape, [I, J, Math.floor(K / 2)]);
  assert.deepEqual(onThick.reference.affine, readVolume(thickFiles.flair).affine);
  // The thin prediction on the thick grid: oedema where the mean of the two slices' oedema probabilities exceeds 0.5
  // (the stand-in's only classes are background and oedema, class 2 = volume 2 of the (I, J, K, C) maps).
  const thinOnThick = new Uint8Array(onThick.labels.length);
  const oedemaOf = (k: number, v: number) => onThin[2 * I * J * K + v + I * J * k];
  for (let k = 0; k < onThick.shape[2]; k++)
    for (let v = 0; v < I * J; v++) thinOnThick[v + I * J * k] = (oedemaOf(2 * k, v) + oedemaOf(2 * k + 1, v)) / 2 > 0.5 ? 2 : 0;
  const oedema = thinOnThick.filter((value) => value === 2).length;
  assert.ok(oedema > 100, `the stand-in finds oedema (${oedema} voxels)`);
  const dice = wholeTumourDice(onThick.labels, thinOnThick);
  assert.ok(dice > 0.85, `Dice between the two predictions ${dice}`);
});

test('sequences on different grids: resampled onto the finest or the chosen one; disjoint ones are an error naming the files', async () => {
  const mixed = { flair: fineFiles.flair, t2: thickFiles.t2 };
  const finest = prepareModalities(mixed);
  assert.deepEqual(finest.resampled, ['t2']);
  assert.deepEqual(finest.reference.affine, readVolume(fineFiles.flair).affine);
  const chosen = prepareModalities(mixed, { reference: 't2' });
  assert.deepEqual(chosen.resampled, ['flair']);
  assert.deepEqual(chosen.originalShape, readVolume(thickFiles.t2).shape);
  assert.throws(() => prepareModalities(mixed, { reference: 't1' }), /the reference sequence t1 is not among the given ones \(flair, t2\)/);

  const far = readVolume(files.t2);
  const moved = far.affine.map((row, r) => row.map((value, c) => (c === 3 && r === 0 ? value + 1000 : value)));
  const farFile = path.join(dir, 'far-t2.nii.gz');
  writeVolume(farFile, far.data, far.shape, { ...far, affine: moved, header: { ...far.header, srow: moved.slice(0, 3), sformCode: 1, qformCode: 0 } } as Volume);
  assert.throws(() => prepareModalities({ flair: files.flair, t2: farFile }), new RegExp(`${farFile} and ${files.flair} do not overlap in world space`));

  // The command line: --reference picks the output grid.
  const runDir = path.join(dir, 'run');
  writeRunFolder(runDir, tinyModel(), { root, test: ids });
  const out = path.join(dir, 'mixed.nii.gz');
  const program = new Command().exitOverride();
  registerPredictCommand(program);
  const [log, error] = [console.log, console.error];
  const printed: string[] = [];
  console.log = (line: string) => printed.push(line);
  console.error = (line: string) => printed.push(line);
  try {
    await program.parseAsync(['node', 'smml', 'predict', '--model', runDir, '--flair', fineFiles.flair, '--t2', thickFiles.t2, '--reference', 't2', '--out', out]);
  } finally {
    [console.log, console.error] = [log, error];
  }
  assert.deepEqual(readVolume(out).shape, readVolume(thickFiles.t2).shape);
  assert.ok(printed.some((line) => /records no training voxel size .* segmented on their own grid/.test(line)), printed.join('\n'));
  assert.ok(printed.some((line) => line.startsWith('segmented from FLAIR+T2 (flair resampled onto the reference grid)')), printed.join('\n'));
});
