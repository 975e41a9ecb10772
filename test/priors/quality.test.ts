// The prior Dice table against hand-computed values on two 2 × 2 × 2 cases.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { measurePriors, priorQualityMarkdown } from '../../src/priors/quality.ts';
import { writePriors } from '../../src/priors/store.ts';
import { writeTinyCache } from './helpers.ts';

let cacheDir: string;

/** Priors (4 classes, 4 modalities, 8 voxels) from per-(class, modality) voxel lists. */
function priorsOf(maps: Record<string, number[]>): Float32Array {
  const priors = new Float32Array(4 * 4 * 8);
  for (const [key, values] of Object.entries(maps)) {
    const [c, k] = key.split(',').map(Number);
    priors.set(values, (c * 4 + k) * 8);
  }
  return priors;
}

before(() => {
  cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
  const images = new Float32Array(4 * 8).fill(1);
  writeTinyCache(cacheDir, [
    { id: 'x', shape: [2, 2, 2], images, label: Uint8Array.from([0, 1, 1, 2, 2, 3, 0, 0]) },
    { id: 'y', shape: [2, 2, 2], images, label: Uint8Array.from([0, 1, 0, 0, 0, 0, 0, 0]) },
  ]);
  writePriors(
    cacheDir,
    'x',
    priorsOf({
      '1,0': [0, 1, 1, 0, 0, 0, 0, 0], // exactly the NCR voxels: Dice 1
      '1,1': [0, 0.6, 0, 0.6, 0, 0, 0, 0], // {1, 3} against {1, 2}: Dice 0.5
      '1,2': [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], // not above 0.5: empty, Dice 0
      '1,3': [1, 1, 1, 1, 1, 1, 1, 1], // everything: 2·2 / (8 + 2) = 0.4
      '3,1': [0, 0, 0, 0, 0, 1, 0, 0], // exactly the ET voxel on T1ce
    }),
    { provider: 'hand', settings: {} },
  );
  writePriors(cacheDir, 'y', priorsOf({ '1,0': [0, 1, 0, 0, 0, 0, 0, 0], '1,1': [0, 1, 0, 0, 0, 0, 0, 0], '1,2': [0, 1, 0, 0, 0, 0, 0, 0], '1,3': [0, 1, 0, 0, 0, 0, 0, 0] }), {
    provider: 'hand',
    settings: {},
  });
});
after(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

describe('measurePriors', () => {
  it('averages the Dice of prior > 0.5 per class and modality over the cases that contain the class', async () => {
    const quality = await measurePriors({ cacheDir, ids: ['x', 'y'] });
    assert.equal(quality.cases, 2);
    assert.deepEqual(quality.providers, ['hand']);
    assert.deepEqual(quality.modalities, ['flair', 't1ce', 't1', 't2']);
    const [ncr, ed, et] = quality.classes;
    assert.deepEqual(ncr, { name: 'NCR/NET', cases: 2, dice: [1, 0.75, 0.5, 0.7] });
    assert.deepEqual(ed, { name: 'ED', cases: 1, dice: [0, 0, 0, 0] });
    assert.deepEqual(et, { name: 'ET', cases: 1, dice: [0, 1, 0, 0] });
    const [wt, , etRegion] = quality.regions;
    // WT of case x: summed priors > 0.5 at {1, 2} (FLAIR), {1, 3, 5} (T1ce), nowhere (T1), everywhere (T2) against
    // {1, 2, 3, 4, 5}; case y finds its single voxel on every modality.
    const expected = [(2 * 2) / 7, (2 * 3) / 8, 0, (2 * 5) / 13].map((value) => (value + 1) / 2);
    assert.equal(wt.cases, 2);
    wt.dice.forEach((value, k) => assert.ok(Math.abs(value - expected[k]) < 1e-12, `WT ${k}: ${value} vs ${expected[k]}`));
    assert.deepEqual(etRegion.dice, et.dice);
    const table = priorQualityMarkdown(quality);
    assert.match(table, /\| Prior +\| Cases \| FLAIR \| +T1ce \| +T1 \| +T2 \|/);
    assert.match(table, /\| NCR\/NET +\| +2 \| 100\.0 \| +75\.0 \| 50\.0 \| 70\.0 \|/);
  });

  it('needs cases with priors', async () => {
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
    try {
      writeTinyCache(other, [{ id: 'z', shape: [2, 2, 2], images: new Float32Array(32), label: new Uint8Array(8) }]);
      await assert.rejects(measurePriors({ cacheDir: other, ids: ['z'] }), /case "z" has no semantic priors/);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });
});
