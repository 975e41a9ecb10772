// The prior store: layout, float16 and uint8 storage, the provider record, bad values; the loader dequantising uint8
// priors; and the trainer's check naming cases whose priors are missing or misshapen.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CROP_ONLY } from '../../src/data/augment.ts';
import { addCaseArray, readCaseManifest } from '../../src/data/cache.ts';
import { createBatchLoader } from '../../src/data/loader.ts';
import type { Shape3 } from '../../src/data/preprocess.ts';
import { createRng } from '../../src/data/random.ts';
import { PRIORS_ARRAY } from '../../src/priors/provider.ts';
import { loadPriors, sameSource, writePriors } from '../../src/priors/store.ts';
import { checkPriors } from '../../src/training/data.ts';
import { writeTinyCache } from './helpers.ts';

const SHAPE: Shape3 = [3, 4, 2];
const VOXELS = 24;
const CHANNELS = 16;

let cacheDir: string;

before(() => {
  cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
  writeTinyCache(
    cacheDir,
    ['a', 'b', 'c'].map((id) => ({ id, shape: SHAPE, images: new Float32Array(4 * VOXELS).fill(1), label: new Uint8Array(VOXELS) })),
  );
});
after(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

describe('writePriors / loadPriors', () => {
  it('stores (C·K, X, Y, Z) float16 with the provider record; multiples of 1/1024 come back exactly', () => {
    const priors = Float32Array.from({ length: CHANNELS * VOXELS }, (_, i) => (i % 1025) / 1024);
    writePriors(cacheDir, 'a', priors, { provider: 'test', settings: { alpha: 1, nested: { b: [1, 2] } } });
    const entry = readCaseManifest(cacheDir, 'a').arrays[PRIORS_ARRAY];
    assert.equal(entry.dtype, 'float16');
    assert.deepEqual(entry.shape, [CHANNELS, ...SHAPE]);
    assert.equal(entry.byteLength, CHANNELS * VOXELS * 2);
    const loaded = loadPriors(cacheDir, 'a');
    assert.deepEqual(loaded.priors, priors);
    assert.equal(loaded.record.provider, 'test');
    assert.deepEqual(loaded.record.settings, { alpha: 1, nested: { b: [1, 2] } });
    assert.equal(loaded.record.classes, 4);
    assert.deepEqual(loaded.record.modalities, ['flair', 't1ce', 't1', 't2']);
    assert.equal(loaded.record.storedAs, 'float16');
    assert.ok(!Number.isNaN(Date.parse(loaded.record.createdAt!)));
  });

  it('quantises to uint8 levels round(255·p) and dequantises to level/255', () => {
    const rng = createRng(5);
    const priors = Float32Array.from({ length: CHANNELS * VOXELS }, () => rng());
    priors.set([0, 1, 0.5, 0.2], 0);
    writePriors(cacheDir, 'b', priors, { provider: 'test', settings: {} }, 'uint8');
    const entry = readCaseManifest(cacheDir, 'b').arrays[PRIORS_ARRAY];
    assert.equal(entry.dtype, 'uint8');
    assert.equal(entry.byteLength, CHANNELS * VOXELS);
    const { priors: loaded, record } = loadPriors(cacheDir, 'b');
    assert.equal(record.storedAs, 'uint8');
    assert.deepEqual([...loaded.subarray(0, 4)], [0, 1, Math.fround(128 / 255), Math.fround(51 / 255)]);
    for (let i = 0; i < priors.length; i++) assert.ok(Math.abs(loaded[i] - priors[i]) <= 1 / 510 + 1e-7, `value ${i}`);
  });

  it('rejects priors of the wrong size or outside [0, 1], naming the case; clamps rounding noise', () => {
    assert.throws(
      () => writePriors(cacheDir, 'c', new Float32Array(12 * VOXELS), { provider: 'test', settings: {} }),
      /case "c": 288 prior values, expected 4 classes × 4 modalities × \[3, 4, 2\] = 384/,
    );
    const bad = new Float32Array(CHANNELS * VOXELS);
    bad[7] = 1.5;
    assert.throws(() => writePriors(cacheDir, 'c', bad, { provider: 'test', settings: {} }), /case "c" priors: value 1\.5 at index 7 is not a probability/);
    bad[7] = NaN;
    assert.throws(() => writePriors(cacheDir, 'c', bad, { provider: 'test', settings: {} }), /value NaN at index 7/);
    bad[7] = 1.0004;
    bad[8] = -0.0002;
    writePriors(cacheDir, 'c', bad, { provider: 'test', settings: {} });
    const { priors } = loadPriors(cacheDir, 'c');
    assert.deepEqual([priors[7], priors[8]], [1, 0]);
    assert.throws(() => writePriors(cacheDir, 'nobody', bad, { provider: 'test', settings: {} }), /case "nobody" is not in the cache/);
  });

  it('compares sources by provider, settings (whatever the key order) and storage', () => {
    const { record } = loadPriors(cacheDir, 'a');
    assert.ok(sameSource(record, { provider: 'test', settings: { nested: { b: [1, 2] }, alpha: 1 } }, 'float16'));
    assert.ok(!sameSource(record, { provider: 'test', settings: { nested: { b: [2, 1] }, alpha: 1 } }, 'float16'));
    assert.ok(!sameSource(record, { provider: 'other', settings: { nested: { b: [1, 2] }, alpha: 1 } }, 'float16'));
    assert.ok(!sameSource(record, { provider: 'test', settings: { nested: { b: [1, 2] }, alpha: 1 } }, 'uint8'));
  });
});

describe('the training data path', () => {
  it('the batch loader reads uint8 priors as probabilities', async () => {
    const { priors: expected } = loadPriors(cacheDir, 'b');
    const loader = createBatchLoader({
      cacheDir,
      ids: ['b'],
      batchSize: 1,
      patchSize: SHAPE,
      seed: 1,
      augment: { ...CROP_ONLY, crop: 'center' },
      workers: 0,
      extraArrays: [PRIORS_ARRAY],
    });
    try {
      for await (const batch of loader.epoch(0)) assert.deepEqual(batch.extras[PRIORS_ARRAY], expected);
    } finally {
      await loader.close();
    }
  });

  it('checkPriors names the cases without priors, and those whose priors do not fit the case', () => {
    assert.doesNotThrow(() => checkPriors(cacheDir, ['a', 'b', 'c'], CHANNELS));
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
    try {
      writeTinyCache(other, ['p', 'q', 'r'].map((id) => ({ id, shape: SHAPE, images: new Float32Array(4 * VOXELS), label: new Uint8Array(VOXELS) })));
      writePriors(other, 'p', new Float32Array(CHANNELS * VOXELS), { provider: 'test', settings: {} });
      assert.throws(() => checkPriors(other, ['p', 'q', 'r'], CHANNELS), /needs semantic priors, but 2 training case\(s\) in .* have none: q, r\. Make them first \(smml priors make/);
      addCaseArray(other, 'q', PRIORS_ARRAY, { data: new Float32Array(CHANNELS * 2 * 4 * 3), shape: [CHANNELS, 2, 4, 3] });
      addCaseArray(other, 'r', PRIORS_ARRAY, { data: new Float32Array(12 * VOXELS), shape: [12, ...SHAPE] });
      assert.throws(
        () => checkPriors(other, ['p', 'q', 'r'], CHANNELS),
        /must be \(classes × modalities = 16, X, Y, Z\) in the case's crop frame: q \(\[16, 2, 4, 3\], expected \[16, 3, 4, 2\]\), r \(\[12, 3, 4, 2\]/,
      );
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });
});
