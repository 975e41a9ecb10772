import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { discoverBrats, type BratsDataset } from '../../src/data/brats.ts';
import {
  addCaseArray,
  float16ToFloat32,
  float32ToFloat16,
  inspectCachedCase,
  loadCase,
  readCacheIndex,
  readCaseManifest,
} from '../../src/data/cache.ts';
import {
  cropToCOrder,
  fromCOrder,
  nonZeroBoundingBox,
  preprocessCase,
  preprocessDataset,
  toCOrder,
  uncropFromCOrder,
  zScoreNonZero,
  type PreprocessProgress,
  type Shape3,
} from '../../src/data/preprocess.ts';
import { writeVolume } from '../../src/data/volume.ts';

const SHAPE: Shape3 = [6, 5, 4];
/** NIfTI index of voxel (i, j, k): i fastest. */
const nifti = (i: number, j: number, k: number) => i + SHAPE[0] * (j + SHAPE[1] * k);

function volumeWith(values: [number, number, number, number][], type: 'int16' | 'float32' = 'float32') {
  const data = type === 'int16' ? new Int16Array(6 * 5 * 4) : new Float32Array(6 * 5 * 4);
  for (const [i, j, k, value] of values) data[nifti(i, j, k)] = value;
  return data;
}

/** Writes one BraTS-2018-style case folder. */
function writeCase(root: string, id: string, volumes: Record<string, Int16Array | Float32Array>): void {
  const dir = path.join(root, id);
  fs.mkdirSync(dir, { recursive: true });
  for (const [role, data] of Object.entries(volumes)) writeVolume(path.join(dir, `${id}_${role}.nii`), data, SHAPE);
}

// Case "alpha": brain voxels spread over i 1..4, j 1..3, k 1..3 (box start (1,1,1), end (5,4,4)).
const ALPHA_MODALITIES = {
  flair: volumeWith([[1, 1, 1, 2], [2, 3, 1, 4]], 'int16'),
  t1ce: volumeWith([[4, 2, 2, 10], [3, 2, 2, 20]]),
  t1: volumeWith([[3, 1, 3, -1], [2, 2, 2, 1], [1, 2, 3, 3]]),
  t2: volumeWith([[2, 2, 2, 7], [2, 2, 3, 9]]),
};
const ALPHA = { ...ALPHA_MODALITIES, seg: volumeWith([[2, 2, 2, 4], [1, 1, 1, 1], [3, 3, 3, 2]], 'int16') };

describe('axis-order helpers', () => {
  const shape: Shape3 = [2, 3, 4];
  const iFastest = Float32Array.from({ length: 24 }, (_, index) => {
    const i = index % 2;
    const j = Math.floor(index / 2) % 3;
    const k = Math.floor(index / 6);
    return i + 10 * j + 100 * k;
  });

  it('toCOrder puts (x, y, z) = (i, j, k) at (x·Y + y)·Z + z and fromCOrder inverts it', () => {
    const cOrder = toCOrder(iFastest, shape);
    for (let x = 0; x < 2; x++)
      for (let y = 0; y < 3; y++) for (let z = 0; z < 4; z++) assert.equal(cOrder[(x * 3 + y) * 4 + z], x + 10 * y + 100 * z);
    assert.ok(cOrder instanceof Float32Array);
    assert.deepEqual(fromCOrder(cOrder, shape), iFastest);
  });

  it('crops a box and pastes it back into zeros', () => {
    const box = { start: [1, 1, 2] as Shape3, end: [2, 3, 4] as Shape3 };
    const cropped = cropToCOrder(iFastest, shape, box);
    assert.deepEqual([...cropped], [211, 311, 221, 321]);
    const pasted = uncropFromCOrder(cropped, box, shape);
    const expected = iFastest.map((value, index) => {
      const i = index % 2;
      const j = Math.floor(index / 2) % 3;
      const k = Math.floor(index / 6);
      return i === 1 && j >= 1 && k >= 2 ? value : 0;
    });
    assert.deepEqual(pasted, expected);
    assert.throws(() => cropToCOrder(iFastest, shape, { start: [0, 0, 0], end: [3, 1, 1] }), /does not fit/);
  });

  it('finds the bounding box of non-zero voxels over several volumes', () => {
    const box = nonZeroBoundingBox([ALPHA.flair, ALPHA.t1ce, ALPHA.t1, ALPHA.t2], SHAPE);
    assert.deepEqual(box, { start: [1, 1, 1], end: [5, 4, 4] });
    assert.equal(nonZeroBoundingBox([new Float32Array(120)], SHAPE), null);
  });

  it('z-scores over non-zero voxels only and rejects empty or constant data', () => {
    const data = Float32Array.from([0, 2, 0, 4, 6, 0]);
    const stats = zScoreNonZero(data, 'x.nii');
    assert.deepEqual(stats, { mean: 4, std: Math.sqrt(8 / 3) });
    const s = Math.sqrt(8 / 3);
    assert.deepEqual([...data], [0, Math.fround(-2 / s), 0, 0, Math.fround(2 / s), 0]);
    assert.throws(() => zScoreNonZero(new Float32Array(4), 'empty.nii'), /empty\.nii: no non-zero voxels/);
    assert.throws(() => zScoreNonZero(Float32Array.from([0, 3, 3]), 'flat.nii'), /flat\.nii: constant intensity/);
  });
});

describe('float16 storage codec', () => {
  it('encodes exact values and rounds half to even', () => {
    const values = Float32Array.from([0, 1, -2, 65504, 2 ** -24, 1 + 2 ** -10, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 70000, -1e-9]);
    const bits = float32ToFloat16(values);
    assert.deepEqual([...bits], [0x0000, 0x3c00, 0xc000, 0x7bff, 0x0001, 0x3c01, 0x3c00, 0x3c02, 0x7c00, 0x8000]);
    assert.deepEqual([...float16ToFloat32(bits)], [0, 1, -2, 65504, 2 ** -24, 1 + 2 ** -10, 1, 1 + 2 ** -9, Infinity, -0]);
  });

  it('keeps the relative error within 2^-11 over a range of magnitudes', () => {
    const values = Float32Array.from({ length: 1500 }, (_, i) => (i % 2 ? -1 : 1) * 1e-3 * 1.01 ** i);
    assert.ok(Math.abs(values[values.length - 1]) < 6e4);
    const decoded = float16ToFloat32(float32ToFloat16(values));
    decoded.forEach((value, i) => assert.ok(Math.abs(value - values[i]) <= Math.abs(values[i]) * 2 ** -11));
  });
});

describe('preprocessing and cache', () => {
  let root: string;
  let cacheDir: string;
  let dataset: BratsDataset;

  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
    cacheDir = path.join(root, 'cache');
    writeCase(path.join(root, 'data'), 'alpha', ALPHA);
    // "beta": a tumour voxel outside the brain widens the box to include it.
    writeCase(path.join(root, 'data'), 'beta', { ...ALPHA, seg: volumeWith([[5, 4, 0, 2]], 'int16') });
    writeCase(path.join(root, 'data'), 'gamma', ALPHA_MODALITIES);
    dataset = discoverBrats(path.join(root, 'data'));
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('crops to the brain box, z-scores each modality and maps labels', () => {
    const alpha = dataset.cases.find((entry) => entry.id === 'alpha')!;
    const result = preprocessCase(alpha, dataset);
    assert.deepEqual(result.meta.cropBox, { start: [1, 1, 1], end: [5, 4, 4] });
    assert.deepEqual(result.meta.shape, [4, 3, 3]);
    assert.deepEqual(result.meta.originalShape, [6, 5, 4]);
    const voxels = 4 * 3 * 3;
    const at = (c: number, i: number, j: number, k: number) => c * voxels + ((i - 1) * 3 + (j - 1)) * 3 + (k - 1);
    // flair {2, 4}: mean 3, std 1. t1ce {10, 20}: mean 15, std 5. t2 {7, 9}: mean 8, std 1.
    assert.equal(result.images[at(0, 1, 1, 1)], -1);
    assert.equal(result.images[at(0, 2, 3, 1)], 1);
    assert.equal(result.images[at(1, 4, 2, 2)], -1);
    assert.equal(result.images[at(1, 3, 2, 2)], 1);
    assert.equal(result.images[at(3, 2, 2, 2)], -1);
    assert.equal(result.images[at(3, 2, 2, 3)], 1);
    // t1 {-1, 1, 3}: mean 1, std sqrt(8/3).
    assert.equal(result.images[at(2, 3, 1, 3)], Math.fround(-2 / Math.sqrt(8 / 3)));
    assert.equal(result.images[at(2, 2, 2, 2)], 0);
    assert.deepEqual(result.meta.normalization[1], { mean: 15, std: 5 });
    for (let c = 0; c < 4; c++) {
      const channel = result.images.subarray(c * voxels, (c + 1) * voxels);
      // Background stays 0; of t1's three brain voxels the one at the mean becomes 0 too.
      assert.equal(channel.filter((v) => v !== 0).length, 2);
      assert.ok(Math.abs(channel.reduce((a, b) => a + b, 0)) < 1e-6);
    }
    // Labels {4, 1, 2} -> classes {3, 1, 2} at their cropped positions.
    const label = result.label!;
    const labelAt = (i: number, j: number, k: number) => label[((i - 1) * 3 + (j - 1)) * 3 + (k - 1)];
    assert.equal(labelAt(2, 2, 2), 3);
    assert.equal(labelAt(1, 1, 1), 1);
    assert.equal(labelAt(3, 3, 3), 2);
    assert.equal(label.reduce((a, b) => a + b, 0), 6);
    assert.equal(result.meta.referenceFile, alpha.modalities.flair);
  });

  it('widens the box to hold labels outside the brain', () => {
    const beta = preprocessCase(dataset.cases.find((entry) => entry.id === 'beta')!, dataset);
    assert.deepEqual(beta.meta.cropBox, { start: [1, 1, 0], end: [6, 5, 4] });
    assert.equal(beta.label![beta.label!.length - 4], 2); // (x, y, z) = (4, 3, 0) of a (5, 4, 4) crop
  });

  it('rejects bad cases with errors naming the case or file', () => {
    const bad = path.join(root, 'bad');
    const zero = new Float32Array(120);
    writeCase(bad, 'empty', { flair: zero, t1ce: zero, t1: zero, t2: zero });
    const nan = ALPHA.t1ce.slice();
    nan[7] = NaN;
    writeCase(bad, 'nan', { ...ALPHA, t1ce: nan });
    const badDataset = discoverBrats(bad);
    const byId = (id: string) => badDataset.cases.find((entry) => entry.id === id)!;
    assert.throws(() => preprocessCase(byId('empty'), badDataset), /case empty: empty brain mask/);
    assert.throws(() => preprocessCase(byId('nan'), badDataset), /nan_t1ce\.nii: 1 of 120 voxels are NaN/);
    const other = path.join(root, 'other');
    writeCase(other, 'shifted', ALPHA);
    writeVolume(path.join(other, 'shifted', 'shifted_t2.nii'), new Float32Array(6 * 5 * 5).fill(1), [6, 5, 5]);
    const otherDataset = discoverBrats(other);
    assert.throws(() => preprocessCase(otherDataset.cases[0], otherDataset), /shifted_t2\.nii have different shapes/);
  });

  it('writes every case once, then skips finished ones without touching them', async () => {
    const progress: PreprocessProgress[] = [];
    const first = await preprocessDataset({ dataset, cacheDir, onProgress: (p) => progress.push(p) });
    assert.deepEqual(first, { written: ['alpha', 'beta', 'gamma'], skipped: [] });
    assert.deepEqual(
      progress.map((p) => [p.done, p.total, p.id, p.status]),
      [[1, 3, 'alpha', 'written'], [2, 3, 'beta', 'written'], [3, 3, 'gamma', 'written']],
    );
    assert.deepEqual(readCacheIndex(cacheDir), { formatVersion: 1, numClasses: 4, cases: ['alpha', 'beta', 'gamma'] });

    const loaded = loadCase(cacheDir, 'alpha', { verify: 'checksum' });
    const direct = preprocessCase(dataset.cases[0], dataset);
    assert.deepEqual(loaded.images, direct.images);
    assert.deepEqual(loaded.label, direct.label);
    assert.deepEqual(loaded.shape, [4, 3, 3]);
    assert.deepEqual(loaded.meta.arrays.images.shape, [4, 4, 3, 3]);
    assert.equal(loadCase(cacheDir, 'gamma').label, undefined);

    const files = ['manifest.json', 'images.bin', 'label.bin'].map((name) => path.join(cacheDir, 'alpha', name));
    const mtimes = files.map((file) => fs.statSync(file).mtimeMs);
    const second = await preprocessDataset({ dataset, cacheDir });
    assert.deepEqual(second, { written: [], skipped: ['alpha', 'beta', 'gamma'] });
    assert.deepEqual(files.map((file) => fs.statSync(file).mtimeMs), mtimes);
  });

  it('redoes a corrupt, truncated or manifest-less case and nothing else', async () => {
    const imagesFile = path.join(cacheDir, 'alpha', 'images.bin');
    const bytes = fs.readFileSync(imagesFile);
    bytes[17] ^= 0xff;
    fs.writeFileSync(imagesFile, bytes);
    const inspection = inspectCachedCase(cacheDir, 'alpha', 'checksum');
    assert.ok(!inspection.finished && /sha256/.test(inspection.reason));
    assert.equal(inspectCachedCase(cacheDir, 'alpha', 'size').finished, true);
    assert.throws(() => loadCase(cacheDir, 'alpha', { verify: 'checksum' }), /images\.bin: sha256 does not match/);
    fs.truncateSync(path.join(cacheDir, 'beta', 'label.bin'), 10);
    assert.throws(() => loadCase(cacheDir, 'beta'), /label\.bin: 10 bytes, expected 80/);
    fs.rmSync(path.join(cacheDir, 'gamma', 'manifest.json'));

    const reasons: Record<string, string | undefined> = {};
    const run = await preprocessDataset({ dataset, cacheDir, onProgress: (p) => (reasons[p.id] = p.reason) });
    assert.deepEqual(run.written, ['alpha', 'beta', 'gamma']);
    assert.match(reasons.alpha!, /sha256/);
    assert.match(reasons.beta!, /10 bytes/);
    assert.match(reasons.gamma!, /no manifest/);
    assert.deepEqual(loadCase(cacheDir, 'alpha', { verify: 'checksum' }).images, preprocessCase(dataset.cases[0], dataset).images);
    assert.deepEqual((await preprocessDataset({ dataset, cacheDir })).written, []);
  });

  it('stores images as float16 on request and rewrites when the storage type changes', async () => {
    const run = await preprocessDataset({ dataset, cacheDir, imageDtype: 'float16' });
    assert.deepEqual(run.written, ['alpha', 'beta', 'gamma']);
    const loaded = loadCase(cacheDir, 'alpha', { verify: 'checksum' });
    assert.equal(fs.statSync(path.join(cacheDir, 'alpha', 'images.bin')).size, 4 * 36 * 2);
    const exact = preprocessCase(dataset.cases[0], dataset).images;
    exact.forEach((value, i) => assert.ok(Math.abs(loaded.images[i] - value) <= Math.abs(value) * 2 ** -11));
    assert.deepEqual((await preprocessDataset({ dataset, cacheDir, imageDtype: 'float16' })).written, []);
  });

  it('adds further arrays (priors) to a finished case', () => {
    const priors = Float32Array.from({ length: 2 * 36 }, (_, i) => i / 72);
    addCaseArray(cacheDir, 'alpha', 'priors', { data: priors, shape: [2, 4, 3, 3], attributes: { provider: 'test' } });
    const manifest = readCaseManifest(cacheDir, 'alpha');
    assert.deepEqual(manifest.arrays.priors.attributes, { provider: 'test' });
    assert.deepEqual(loadCase(cacheDir, 'alpha', { extraArrays: ['priors'], verify: 'checksum' }).extras.priors, priors);
    assert.equal(inspectCachedCase(cacheDir, 'alpha', 'checksum', ['images', 'label', 'priors']).finished, true);
    assert.throws(() => addCaseArray(cacheDir, 'alpha', 'bad', { data: priors, shape: [3, 4, 3, 3] }), /do not fill shape/);
  });
});
