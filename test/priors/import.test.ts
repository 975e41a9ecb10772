// Importing priors: the authors' .npy layout in the crop frame and NIfTI per class and modality in the original grid
// (cropped here), and the bad inputs — wrong shape, wrong dtype, corrupt file, other grid, case not in the cache.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readCaseManifest } from '../../src/data/cache.ts';
import type { Shape3 } from '../../src/data/preprocess.ts';
import { writeVolume } from '../../src/data/volume.ts';
import { importPriors } from '../../src/priors/import.ts';
import { PRIORS_ARRAY } from '../../src/priors/provider.ts';
import { loadPriors } from '../../src/priors/store.ts';
import { float32Bytes, float64Bytes, npyBytes, writeTinyCache } from './helpers.ts';

const MODALITIES = ['flair', 't1ce', 't1', 't2'];
/** Case frame of every case: the crop [1, 4) × [1, 5) × [0, 3) of a 5 × 6 × 4 original grid. */
const SHAPE: Shape3 = [3, 4, 3];
const ORIGINAL: Shape3 = [5, 6, 4];
const CROP = { start: [1, 1, 0] as Shape3, end: [4, 5, 3] as Shape3 };
const VOXELS = 36;
const PRIOR_VALUES = 16 * VOXELS;

/** A distinct prior value per (class, modality, original voxel), exact in float16. */
const priorAt = (c: number, m: number, i: number, j: number, k: number) => ((c * 4 + m) * 120 + i + 5 * j + 30 * k) / 2048;

/** The expected stored priors (C, K, X, Y, Z): the crop of `priorAt`, written out voxel by voxel. */
function expectedCrop(): Float32Array {
  const out = new Float32Array(PRIOR_VALUES);
  let n = 0;
  for (let c = 0; c < 4; c++)
    for (let m = 0; m < 4; m++)
      for (let x = 0; x < 3; x++) for (let y = 0; y < 4; y++) for (let z = 0; z < 3; z++) out[n++] = priorAt(c, m, x + 1, y + 1, z);
  return out;
}

let root: string;
let cacheDir: string;

function freshFolder(name: string): string {
  const dir = path.join(root, name);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
  cacheDir = path.join(root, 'cache');
  writeTinyCache(
    cacheDir,
    ['case1', 'case2', 'shifted'].map((id) => ({
      id,
      shape: SHAPE,
      originalShape: ORIGINAL,
      cropBox: CROP,
      images: new Float32Array(4 * VOXELS).fill(1),
      label: new Uint8Array(VOXELS),
      affine: id === 'shifted' ? [[1, 0, 0, 2], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]] : undefined,
    })),
  );
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

describe('importing the authors’ .npy layout', () => {
  it('stores (classes, modalities, X, Y, Z) arrays, from the folder and from <id>/ subfolders', async () => {
    const from = freshFolder('npy');
    const values = expectedCrop();
    fs.writeFileSync(path.join(from, 'case1.npy'), npyBytes('<f4', [4, 4, ...SHAPE], float32Bytes(values)));
    fs.mkdirSync(path.join(from, 'case2'));
    fs.writeFileSync(path.join(from, 'case2', 'case2.npy'), npyBytes('>f8', [4, 4, ...SHAPE], float64Bytes(values, true)));
    const seen: string[] = [];
    const { written } = await importPriors({ cacheDir, from, format: 'npy', provider: 'sam-med3d', onProgress: (p) => seen.push(`${p.done}/${p.total} ${p.id}`) });
    assert.deepEqual(written, ['case1', 'case2']);
    assert.deepEqual(seen, ['1/2 case1', '2/2 case2']);
    for (const id of written) {
      const { priors, record } = loadPriors(cacheDir, id);
      assert.deepEqual(priors, values);
      assert.equal(record.provider, 'sam-med3d');
      assert.deepEqual(record.settings, { format: 'npy', from });
    }
  });

  it('accepts 0/1 uint8 masks and stores them quantised on request', async () => {
    const from = freshFolder('masks');
    const mask = Uint8Array.from({ length: PRIOR_VALUES }, (_, i) => (i % 3 === 0 ? 1 : 0));
    fs.writeFileSync(path.join(from, 'case1.npy'), npyBytes('|u1', [4, 4, ...SHAPE], mask));
    await importPriors({ cacheDir, from, format: 'npy', storedAs: 'uint8' });
    assert.equal(readCaseManifest(cacheDir, 'case1').arrays[PRIORS_ARRAY].dtype, 'uint8');
    const { priors, record } = loadPriors(cacheDir, 'case1');
    assert.deepEqual([...priors], [...mask]);
    assert.equal(record.provider, 'imported');
  });

  it('rejects a wrong shape, dtype or value range and a corrupt file, naming case and file', async () => {
    const from = freshFolder('bad-npy');
    const file = path.join(from, 'case1.npy');
    fs.writeFileSync(file, npyBytes('<f4', [3, 4, ...SHAPE], float32Bytes(new Float32Array(12 * VOXELS))));
    await assert.rejects(
      importPriors({ cacheDir, from, format: 'npy' }),
      (error: Error) => error.message.includes(`${file}: shape (3, 4, 3, 4, 3) does not match case "case1", which needs (classes, modalities, X, Y, Z) = (4, 4, 3, 4, 3)`),
    );
    fs.writeFileSync(file, npyBytes('<i4', [4, 4, ...SHAPE], new Uint8Array(4 * PRIOR_VALUES)));
    await assert.rejects(importPriors({ cacheDir, from, format: 'npy' }), (error: Error) => error.message.includes(`${file}: unsupported element type '<i4'`));
    const good = npyBytes('<f4', [4, 4, ...SHAPE], float32Bytes(expectedCrop()));
    fs.writeFileSync(file, good.subarray(0, good.length - 10));
    await assert.rejects(importPriors({ cacheDir, from, format: 'npy' }), (error: Error) => error.message.startsWith(`${file}: 2294 data bytes, but shape`));
    // First stored value: priorAt(0, 0, 1, 1, 0) = 6/2048, so 4·6/2048 − 1 = −0.98828125.
    const logits = expectedCrop().map((value) => 4 * value - 1);
    fs.writeFileSync(file, npyBytes('<f4', [4, 4, ...SHAPE], float32Bytes(logits)));
    await assert.rejects(importPriors({ cacheDir, from, format: 'npy' }), (error: Error) => error.message.startsWith(`${file}: value -0.98828125 at index 0 is not a probability`));
  });

  it('rejects files of cases that are not in the cache before storing anything, and cases without files', async () => {
    const from = freshFolder('unknown');
    const values = npyBytes('<f4', [4, 4, ...SHAPE], float32Bytes(expectedCrop()));
    fs.writeFileSync(path.join(from, 'case2.npy'), values);
    fs.writeFileSync(path.join(from, 'BraTS_999.npy'), values);
    const before = readCaseManifest(cacheDir, 'case2').arrays[PRIORS_ARRAY]?.sha256;
    await assert.rejects(importPriors({ cacheDir, from, format: 'npy' }), /case\(s\) BraTS_999 are not in the cache/);
    assert.equal(readCaseManifest(cacheDir, 'case2').arrays[PRIORS_ARRAY]?.sha256, before, 'nothing was written');
    await assert.rejects(importPriors({ cacheDir, from, format: 'npy', ids: ['case1', 'case2'] }), /no prior files \(<id>\.npy\) for case\(s\) case1/);
    await assert.rejects(importPriors({ cacheDir, from: freshFolder('empty'), format: 'npy' }), /no prior files named <id>\.npy/);
  });
});

describe('importing NIfTI priors per class and modality', () => {
  /** Writes `<id>_prior_<c>_<modality>.nii.gz` in the original grid (i fastest) for every class and modality. */
  function writeNiftiPriors(from: string, id: string, grid: Shape3 = ORIGINAL): void {
    const [I, J, K] = grid;
    for (let c = 0; c < 4; c++) {
      MODALITIES.forEach((modality, m) => {
        const data = new Float32Array(I * J * K);
        for (let k = 0; k < K; k++) for (let j = 0; j < J; j++) for (let i = 0; i < I; i++) data[i + I * (j + J * k)] = priorAt(c, m, i, j, k);
        writeVolume(path.join(from, `${id}_prior_${c}_${modality}.nii.gz`), data, grid);
      });
    }
  }

  it('crops each class and modality from the original grid into the case frame', async () => {
    const from = freshFolder('nifti');
    writeNiftiPriors(from, 'case2');
    const { written } = await importPriors({ cacheDir, from, format: 'nifti' });
    assert.deepEqual(written, ['case2']);
    const { priors, record } = loadPriors(cacheDir, 'case2');
    assert.deepEqual(priors, expectedCrop());
    assert.deepEqual(record.settings, { format: 'nifti', from });
  });

  it('rejects a grid that differs from the case, and missing or surplus files', async () => {
    const from = freshFolder('nifti-bad');
    writeNiftiPriors(from, 'shifted');
    await assert.rejects(importPriors({ cacheDir, from, format: 'nifti' }), /shifted_prior_0_flair\.nii\.gz: its grid .* differs from case "shifted" .*must be in the case's original grid/);
    writeNiftiPriors(from, 'case1', [5, 6, 5]);
    await assert.rejects(
      importPriors({ cacheDir, from, format: 'nifti', ids: ['case1'] }),
      /case1_prior_0_flair\.nii\.gz: its grid \(shape \[5, 6, 5\].* differs from case "case1" \(shape \[5, 6, 4\]/,
    );
    writeNiftiPriors(from, 'case1');
    fs.rmSync(path.join(from, 'case1_prior_3_t2.nii.gz'));
    await assert.rejects(importPriors({ cacheDir, from, format: 'nifti', ids: ['case1'] }), /case "case1": missing NIfTI prior file\(s\) case1_prior_3_t2\.nii\.gz/);
    writeNiftiPriors(from, 'case1');
    fs.copyFileSync(path.join(from, 'case1_prior_3_t2.nii.gz'), path.join(from, 'case1_prior_4_t2.nii.gz'));
    await assert.rejects(importPriors({ cacheDir, from, format: 'nifti', ids: ['case1'] }), /case1_prior_4_t2\.nii\.gz: case "case1" has classes 0–3/);
  });
});
