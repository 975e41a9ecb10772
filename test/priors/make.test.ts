// makePriors: resumable (same provider and settings skipped, anything else redone), progress, bad cases.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { addCaseArray, caseDirectory } from '../../src/data/cache.ts';
import { makePriors, type PriorProgress } from '../../src/priors/make.ts';
import { PRIORS_ARRAY, type PriorProvider } from '../../src/priors/provider.ts';
import { loadPriors } from '../../src/priors/store.ts';
import { writeTinyCache } from './helpers.ts';

const VOXELS = 8;
const IDS = ['a', 'b', 'c'];

/** A provider that fills every prior with `value` and records which cases it was asked for. */
function constantProvider(value: number, calls: string[], length = 16 * VOXELS): PriorProvider {
  return {
    name: 'constant',
    settings: { value },
    async computeCase(kase) {
      calls.push(kase.id);
      return new Float32Array(length).fill(value);
    },
  };
}

let cacheDir: string;

before(() => {
  cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
  writeTinyCache(cacheDir, [
    ...IDS.map((id) => ({ id, shape: [2, 2, 2] as [number, number, number], images: new Float32Array(32).fill(1), label: new Uint8Array(VOXELS) })),
    { id: 'unlabelled', shape: [2, 2, 2], images: new Float32Array(32).fill(1) },
  ]);
});
after(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

describe('makePriors', () => {
  it('writes every case, then skips the cases already made by the same provider and settings', async () => {
    const calls: string[] = [];
    const progress: PriorProgress[] = [];
    const first = await makePriors({ cacheDir, ids: IDS, provider: constantProvider(0.25, calls), onProgress: (p) => progress.push(p) });
    assert.deepEqual(first, { written: IDS, skipped: [] });
    assert.deepEqual(calls, IDS);
    assert.deepEqual(progress.map((p) => `${p.done}/${p.total} ${p.id} ${p.status}`), ['1/3 a written', '2/3 b written', '3/3 c written']);
    for (const id of IDS) {
      const { priors, record } = loadPriors(cacheDir, id);
      assert.ok(priors.every((value) => value === 0.25));
      assert.deepEqual([record.provider, record.settings, record.storedAs], ['constant', { value: 0.25 }, 'float16']);
    }
    calls.length = 0;
    progress.length = 0;
    const again = await makePriors({ cacheDir, ids: IDS, provider: constantProvider(0.25, calls), onProgress: (p) => progress.push(p) });
    assert.deepEqual(again, { written: [], skipped: IDS });
    assert.deepEqual(calls, []);
    assert.deepEqual(progress.map((p) => p.status), ['skipped', 'skipped', 'skipped']);
  });

  it('redoes cases made with other settings or storage, damaged ones and ones without a provider record', async () => {
    const calls: string[] = [];
    await makePriors({ cacheDir, ids: IDS, provider: constantProvider(0.5, calls) });
    assert.deepEqual(calls, IDS, 'other settings');
    calls.length = 0;
    await makePriors({ cacheDir, ids: IDS, provider: constantProvider(0.5, calls), storedAs: 'uint8' });
    assert.deepEqual(calls, IDS, 'other storage');
    assert.equal(loadPriors(cacheDir, 'a').record.storedAs, 'uint8');
    calls.length = 0;
    fs.truncateSync(path.join(caseDirectory(cacheDir, 'b'), `${PRIORS_ARRAY}.bin`), 5);
    addCaseArray(cacheDir, 'c', PRIORS_ARRAY, { data: new Float32Array(16 * VOXELS), shape: [16, 2, 2, 2] });
    const result = await makePriors({ cacheDir, ids: IDS, provider: constantProvider(0.5, calls), storedAs: 'uint8' });
    assert.deepEqual(result, { written: ['b', 'c'], skipped: ['a'] });
    assert.deepEqual(calls, ['b', 'c']);
  });

  it('names a case without a label, and one whose provider returns the wrong size', async () => {
    await assert.rejects(makePriors({ cacheDir, ids: ['unlabelled'], provider: constantProvider(0, []) }), /case "unlabelled" in .* has no label/);
    await assert.rejects(makePriors({ cacheDir, ids: ['a'], provider: constantProvider(0, [], 12 * VOXELS) }), /case "a": 96 prior values, expected 4 classes × 4 modalities/);
  });
});
