import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { gunzipSync } from 'fflate';
import { discoverBrats } from '../../src/data/brats.ts';
import { MODALITIES, type Modality } from '../../src/data/modalities.ts';
import { createRng } from '../../src/data/random.ts';
import { GradientNoise } from '../../src/data/synthetic/noise.ts';
import {
  caseSeed,
  LABEL_EDEMA,
  LABEL_ENHANCING,
  LABEL_NECROSIS,
  OUTSIDE_BRAIN,
  SYNTHETIC_MODALITIES,
  SYNTHETIC_VERSION,
  gradeOfCase,
  LOW_GRADE_SHARE,
  synthesizeCase,
  synthesizeDataset,
  synthesizeDatasetCase,
  syntheticAffine,
  syntheticCaseId,
  syntheticShape,
  TISSUE_INDEX,
  type SyntheticCase,
  type Tissue,
} from '../../src/data/synthetic.ts';
import { readVolume } from '../../src/data/volume.ts';
import { withTempDir } from './helpers.ts';

const SIZE = 40;
const SEED = 11;
/** Twelve small cases: enough to contain both grades, necrosis and enhancement. */
const CASES: SyntheticCase[] = Array.from({ length: 12 }, (_, index) => synthesizeDatasetCase(SEED, index, SIZE));

/** Mean intensity of `modality` over the voxels whose dominant tissue is `tissue`, and how many there are. */
function tissueMean(phantom: SyntheticCase, tissue: Tissue, modality: Modality): { mean: number; count: number } {
  const code = TISSUE_INDEX[tissue];
  const image = phantom.images[modality];
  let sum = 0;
  let count = 0;
  for (let i = 0; i < image.length; i++) {
    if (phantom.tissue[i] === code) {
      sum += image[i]!;
      count++;
    }
  }
  return { mean: count > 0 ? sum / count : NaN, count };
}

/** Calls `check(ratio, case)` with mean(a)/mean(b) on `modality` for each case where both tissues have ≥ 10 voxels; returns how many. */
function forEachRatio(a: Tissue, b: Tissue, modality: Modality, check: (ratio: number, label: string) => void): number {
  let checked = 0;
  CASES.forEach((phantom, index) => {
    const first = tissueMean(phantom, a, modality);
    const second = tissueMean(phantom, b, modality);
    if (first.count < 10 || second.count < 10) return;
    check(first.mean / second.mean, `case ${index} ${a}/${b} on ${modality}`);
    checked++;
  });
  return checked;
}

describe('synthetic phantom', () => {
  test('shape and affine: S x S x round(0.65 S), 240/S mm RAS+ centred on the volume', () => {
    assert.deepEqual(syntheticShape(96), [96, 96, 62]);
    assert.deepEqual(syntheticShape(40), [40, 40, 26]);
    // 6 mm voxels; the centre voxel (19.5, 19.5, 12.5) maps to the world origin.
    assert.deepEqual(syntheticAffine([40, 40, 26]), [
      [6, 0, 0, -117],
      [0, 6, 0, -117],
      [0, 0, 6, -75],
      [0, 0, 0, 1],
    ]);
    assert.deepEqual(syntheticAffine([240, 240, 156])[0], [1, 0, 0, -119.5]);
    assert.throws(() => syntheticShape(8), /size must be an integer ≥ 16, got 8/);
    assert.throws(() => synthesizeCase(1, 20.5, 'high'), /size must be an integer/);
  });

  test('generates the four sequences of MODALITIES, in its own generation order', () => {
    assert.deepEqual([...SYNTHETIC_MODALITIES].sort(), [...MODALITIES].sort());
  });

  test('same seed gives the same voxels, another seed different ones', () => {
    const again = synthesizeDatasetCase(SEED, 0, SIZE);
    for (const modality of SYNTHETIC_MODALITIES) assert.deepEqual(again.images[modality], CASES[0]!.images[modality]);
    assert.deepEqual(again.labels, CASES[0]!.labels);
    assert.notDeepEqual(CASES[1]!.images.flair, CASES[0]!.images.flair);
    assert.notDeepEqual(CASES[1]!.labels, CASES[0]!.labels);
    assert.notEqual(caseSeed(SEED, 0), caseSeed(SEED + 1, 0));
  });

  test('labels are BraTS 2020 values and lie inside the brain; images are 0 exactly outside it', () => {
    for (const [index, phantom] of CASES.entries()) {
      const labelValues = new Set(phantom.labels);
      assert.ok([...labelValues].every((value) => [0, 1, 2, 4].includes(value)), `case ${index}: labels ${[...labelValues]}`);
      let brainVoxels = 0;
      for (let i = 0; i < phantom.labels.length; i++) {
        const outside = phantom.tissue[i] === OUTSIDE_BRAIN;
        if (!outside) brainVoxels++;
        if (outside) assert.equal(phantom.labels[i], 0, `case ${index}: label outside the brain at ${i}`);
        for (const modality of SYNTHETIC_MODALITIES) {
          const value = phantom.images[modality][i]!;
          if (outside ? value !== 0 : value < 1) assert.fail(`case ${index}: ${modality} is ${value} at ${i} (outside: ${outside})`);
        }
      }
      // The brain fills a plausible part of the volume (BraTS: roughly 10-20 %).
      const share = brainVoxels / phantom.labels.length;
      assert.ok(share > 0.08 && share < 0.4, `case ${index}: brain share ${share}`);
    }
  });

  test('a fixed share of each data set is low grade, spread over the case indices', () => {
    const grades = Array.from({ length: 30 }, (_, index) => gradeOfCase(index));
    assert.equal(LOW_GRADE_SHARE, 0.2);
    // Every fifth case: indices 4, 9, 14, 19, 24, 29.
    assert.deepEqual(grades.flatMap((grade, index) => (grade === 'low' ? [index] : [])), [4, 9, 14, 19, 24, 29]);
    for (const cases of [5, 12, 30, 100]) {
      const low = Array.from({ length: cases }, (_, index) => gradeOfCase(index)).filter((grade) => grade === 'low').length;
      assert.equal(low, Math.floor(cases * LOW_GRADE_SHARE), `${cases} cases`);
    }
    assert.deepEqual(CASES.map((phantom) => phantom.grade), grades.slice(0, CASES.length));
  });

  test('every case has oedema and a tumour core; low grade has at most tiny enhancement, high grade has enhancement', () => {
    const grades = new Set(CASES.map((phantom) => phantom.grade));
    assert.deepEqual([...grades].sort(), ['high', 'low']);
    for (const [index, phantom] of CASES.entries()) {
      const count = (value: number) => phantom.labels.reduce((total, label) => total + (label === value ? 1 : 0), 0);
      const core = count(LABEL_NECROSIS) + count(LABEL_ENHANCING);
      assert.ok(count(LABEL_EDEMA) > 0, `case ${index} has no oedema`);
      assert.ok(core > 0, `case ${index} has no tumour core`);
      const enhancingShare = count(LABEL_ENHANCING) / core;
      if (phantom.grade === 'low') assert.ok(enhancingShare < 0.1, `low-grade case ${index}: ET is ${enhancingShare} of the core`);
      else assert.ok(enhancingShare > 0.2, `high-grade case ${index}: ET is only ${enhancingShare} of the core`);
    }
  });

  test('contrast: oedema brighter than white matter on FLAIR and T2, and T1 shows it least', () => {
    for (const modality of ['flair', 't2'] as const) {
      const checked = forEachRatio('edema', 'whiteMatter', modality, (ratio, label) => assert.ok(ratio > 1.3, `${label}: ${ratio}`));
      assert.ok(checked >= 8, `only ${checked} cases checked`);
    }
    CASES.forEach((phantom, index) => {
      const contrast = (modality: Modality) =>
        Math.abs(Math.log(tissueMean(phantom, 'edema', modality).mean / tissueMean(phantom, 'whiteMatter', modality).mean));
      if (tissueMean(phantom, 'edema', 't1').count < 10) return;
      assert.ok(contrast('t1') < contrast('flair') && contrast('t1') < contrast('t2'), `case ${index}: T1 oedema contrast not the lowest`);
    });
  });

  test('contrast: CSF dark on FLAIR and bright on T2 relative to white matter', () => {
    forEachRatio('csf', 'whiteMatter', 'flair', (ratio, label) => assert.ok(ratio < 0.8, `${label}: ${ratio}`));
    const checked = forEachRatio('csf', 'whiteMatter', 't2', (ratio, label) => assert.ok(ratio > 1.5, `${label}: ${ratio}`));
    assert.equal(checked, CASES.length);
  });

  test('contrast: enhancing tumour stands out on T1ce only', () => {
    const onT1ce = forEachRatio('enhancingTumour', 'edema', 't1ce', (ratio, label) => assert.ok(ratio >= 1.3, `${label}: ${ratio}`));
    forEachRatio('enhancingTumour', 'necrosis', 't1ce', (ratio, label) => assert.ok(ratio >= 1.3, `${label}: ${ratio}`));
    const onT1 = forEachRatio('enhancingTumour', 'edema', 't1', (ratio, label) => assert.ok(Math.abs(ratio - 1) <= 0.15, `${label}: ${ratio}`));
    for (const modality of ['flair', 't2'] as const) {
      forEachRatio('enhancingTumour', 'edema', modality, (ratio, label) => assert.ok(ratio < 1.15, `${label}: ${ratio}`));
    }
    assert.ok(onT1ce >= 5 && onT1 >= 5, `only ${onT1ce} / ${onT1} cases with enhancing tumour`);
  });

  test('contrast: necrosis dark on T1 and T1ce, bright on T2', () => {
    const checked = forEachRatio('necrosis', 'whiteMatter', 't1ce', (ratio, label) => assert.ok(ratio < 0.8, `${label}: ${ratio}`));
    forEachRatio('necrosis', 'whiteMatter', 't1', (ratio, label) => assert.ok(ratio < 0.8, `${label}: ${ratio}`));
    forEachRatio('necrosis', 'whiteMatter', 't2', (ratio, label) => assert.ok(ratio > 1.5, `${label}: ${ratio}`));
    assert.ok(checked >= 3, `only ${checked} cases with necrosis`);
  });
});

describe('synthetic data set on disk', () => {
  test('writes the BraTS 2020 layout, readable with the right shape, affine, types and voxels', () => {
    withTempDir((dir) => {
      const out = path.join(dir, 'synth');
      const progress: string[] = [];
      const info = synthesizeDataset({ out, cases: 2, size: 24, seed: 5, onProgress: (step) => progress.push(`${step.done}/${step.total} ${step.caseId}`) });
      assert.deepEqual(progress, ['1/2 SMML_Synth_001', '2/2 SMML_Synth_002']);
      assert.deepEqual(info.cases.map((entry) => entry.id), ['SMML_Synth_001', 'SMML_Synth_002']);
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'dataset.json'), 'utf8')), info);
      assert.equal(info.version, SYNTHETIC_VERSION);
      assert.deepEqual(info.shape, [24, 24, 16]);

      info.cases.forEach(({ id, grade }, index) => {
        const expected = synthesizeDatasetCase(5, index, 24);
        assert.equal(grade, expected.grade);
        for (const name of [...SYNTHETIC_MODALITIES, 'seg'] as const) {
          const volume = readVolume(path.join(out, id, `${id}_${name}.nii.gz`));
          assert.deepEqual(volume.shape, [24, 24, 16]);
          assert.deepEqual(volume.affine, syntheticAffine([24, 24, 16]));
          if (name === 'seg') {
            assert.ok(volume.data instanceof Uint8Array);
            assert.deepEqual(volume.data, expected.labels);
          } else {
            assert.ok(volume.data instanceof Int16Array);
            assert.deepEqual(volume.data, expected.images[name]);
          }
        }
      });

      const dataset = discoverBrats(out, { requireLabels: true });
      assert.equal(dataset.layout, 'brats2018');
      assert.deepEqual(dataset.cases.map((entry) => entry.id), ['SMML_Synth_001', 'SMML_Synth_002']);
    });
  });

  test('qform, sform, pixdim and dataset.json all state the same 240/S mm grid', () => {
    withTempDir((dir) => {
      const out = path.join(dir, 'synth');
      const info = synthesizeDataset({ out, cases: 1, size: 24, seed: 2 });
      const id = syntheticCaseId(0);
      // 240 mm field of view over 24 voxels: 10 mm, origin at the volume centre (-(n-1)/2 * 10 mm).
      const spacing = 10;
      const origin = [-115, -115, -75];
      assert.deepEqual(info.voxelSizeMm, [spacing, spacing, spacing]);
      for (const name of [...SYNTHETIC_MODALITIES, 'seg']) {
        // The NIfTI-1 header read field by field at the standard's byte offsets, not through src/data/nifti.ts.
        const bytes = gunzipSync(fs.readFileSync(path.join(out, id, `${id}_${name}.nii.gz`)));
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const f32 = (offset: number, count: number) => Array.from({ length: count }, (_, i) => view.getFloat32(offset + 4 * i, true));
        const pixdim = f32(76, 4);
        const qformCode = view.getInt16(252, true);
        const sformCode = view.getInt16(254, true);
        const [b, c, d] = f32(256, 3);
        const qoffset = f32(268, 3);
        const srow = [f32(280, 4), f32(296, 4), f32(312, 4)];
        assert.equal(view.getUint8(123) & 7, 2, `${name}: spatial unit mm`);
        assert.equal(qformCode, 1, name);
        assert.equal(sformCode, 1, name);
        assert.deepEqual(pixdim.slice(1), [spacing, spacing, spacing], `${name}: pixdim`);
        // Method 2 of the NIfTI standard with b = c = d = 0: rotation = identity, third column times qfac.
        assert.deepEqual([b, c, d], [0, 0, 0], `${name}: quaternion`);
        const qfac = pixdim[0]! < 0 ? -1 : 1;
        const qform = [
          [pixdim[1]!, 0, 0, qoffset[0]!],
          [0, pixdim[2]!, 0, qoffset[1]!],
          [0, 0, qfac * pixdim[3]!, qoffset[2]!],
        ];
        const expected = [
          [spacing, 0, 0, origin[0]],
          [0, spacing, 0, origin[1]],
          [0, 0, spacing, origin[2]],
        ];
        assert.deepEqual(qform, expected, `${name}: qform`);
        assert.deepEqual(srow, expected, `${name}: sform`);
      }
    });
  });

  test('the same options write the same voxels and the same dataset.json', () => {
    withTempDir((dir) => {
      const first = path.join(dir, 'a');
      const second = path.join(dir, 'b');
      synthesizeDataset({ out: first, cases: 1, size: 20, seed: 9 });
      synthesizeDataset({ out: second, cases: 1, size: 20, seed: 9 });
      assert.equal(fs.readFileSync(path.join(first, 'dataset.json'), 'utf8'), fs.readFileSync(path.join(second, 'dataset.json'), 'utf8'));
      const id = syntheticCaseId(0);
      for (const name of [...SYNTHETIC_MODALITIES, 'seg']) {
        const file = `${id}/${id}_${name}.nii.gz`;
        assert.deepEqual(readVolume(path.join(first, file)).data, readVolume(path.join(second, file)).data, file);
      }
    });
  });

  test('rejects bad options with clear errors', () => {
    withTempDir((dir) => {
      assert.throws(() => synthesizeDataset({ out: dir, cases: 0, size: 24, seed: 1 }), /cases must be a positive integer, got 0/);
      assert.throws(() => synthesizeDataset({ out: dir, cases: 1, size: 10, seed: 1 }), /size must be an integer ≥ 16, got 10/);
      assert.throws(() => synthesizeDataset({ out: dir, cases: 1, size: 24, seed: -3 }), /seed must be a non-negative integer, got -3/);
      const blocker = path.join(dir, 'file');
      fs.writeFileSync(blocker, 'x');
      assert.throws(() => synthesizeDataset({ out: path.join(blocker, 'sub'), cases: 1, size: 24, seed: 1 }), /cannot create the output folder/);
    });
  });
});

describe('gradient noise', () => {
  test('the analytic gradient matches central differences, and the field is smooth with zero mean', () => {
    const noise = new GradientNoise(createRng(4), 6);
    const rng = createRng(5);
    const gradient = new Float64Array(3);
    const step = 1e-4;
    let sum = 0;
    for (let i = 0; i < 500; i++) {
      const [x, y, z] = [rng() * 200, rng() * 200, rng() * 200];
      const value = noise.atWithGradient(x, y, z, gradient);
      assert.ok(Math.abs(value - noise.at(x, y, z)) < 1e-12);
      const numeric = [
        (noise.at(x + step, y, z) - noise.at(x - step, y, z)) / (2 * step),
        (noise.at(x, y + step, z) - noise.at(x, y - step, z)) / (2 * step),
        (noise.at(x, y, z + step) - noise.at(x, y, z - step)) / (2 * step),
      ];
      numeric.forEach((slope, axis) => assert.ok(Math.abs(slope - gradient[axis]!) < 1e-6, `axis ${axis}: ${slope} vs ${gradient[axis]}`));
      sum += value;
    }
    assert.ok(Math.abs(sum / 500) < 0.05, `mean ${sum / 500}`);
    assert.throws(() => new GradientNoise(createRng(1), 0), /cell size must be positive/);
  });
});
