// The built-in prior provider: Gaussian smoothing in closed form, the posterior against a brute-force count, exact
// leave-one-out (a case's priors do not change when its own labels do), and on synthetic cases the contrast physics:
// enhancing tumour is found on T1ce only.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { discoverBrats } from '../../src/data/brats.ts';
import { loadCase } from '../../src/data/cache.ts';
import { preprocessDataset, type Shape3 } from '../../src/data/preprocess.ts';
import { createRng, randInt } from '../../src/data/random.ts';
import { synthesizeDataset } from '../../src/data/synthetic.ts';
import { BUILTIN_PROVIDER, fitBuiltinProvider, smoothGaussianInPlace } from '../../src/priors/builtin.ts';
import { makePriors } from '../../src/priors/make.ts';
import { measurePriors } from '../../src/priors/quality.ts';
import { writeTinyCache, type TinyCase } from './helpers.ts';

const gauss = (d: number, sigma: number) => Math.exp(-(d * d) / (2 * sigma * sigma));

let root: string;
before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

describe('smoothGaussianInPlace', () => {
  it('spreads an interior impulse as the product of normalised 1D kernels', () => {
    const shape: Shape3 = [13, 13, 13];
    const data = new Float32Array(13 ** 3);
    const centre = (6 * 13 + 6) * 13 + 6;
    data[centre] = 1;
    smoothGaussianInPlace(data, shape, 1);
    let norm = 0;
    for (let d = -3; d <= 3; d++) norm += gauss(d, 1);
    for (let x = 0; x < 13; x++)
      for (let y = 0; y < 13; y++)
        for (let z = 0; z < 13; z++) {
          const [dx, dy, dz] = [x - 6, y - 6, z - 6];
          const inside = Math.max(Math.abs(dx), Math.abs(dy), Math.abs(dz)) <= 3;
          const expected = inside ? (gauss(dx, 1) * gauss(dy, 1) * gauss(dz, 1)) / norm ** 3 : 0;
          assert.ok(Math.abs(data[(x * 13 + y) * 13 + z] - expected) < 1e-7, `voxel ${x}, ${y}, ${z}`);
        }
  });

  it('renormalises the kernel at the border: constants stay constant, an edge impulse keeps its weights', () => {
    const constant = new Float32Array(5 * 4 * 3).fill(0.3);
    smoothGaussianInPlace(constant, [5, 4, 3], 1.5);
    for (const value of constant) assert.ok(Math.abs(value - 0.3) < 1e-6);
    const line = Float64Array.from([1, 0, 0, 0, 0]);
    smoothGaussianInPlace(line, [1, 1, 5], 1);
    line.forEach((value, p) => {
      let norm = 0;
      for (let q = Math.max(0, p - 3); q <= Math.min(4, p + 3); q++) norm += gauss(q - p, 1);
      // The kernel is cut at 3σ, so position 4 gets nothing from the impulse.
      const expected = p <= 3 ? gauss(p, 1) / norm : 0;
      assert.ok(Math.abs(value - expected) < 1e-12, `position ${p}`);
    });
  });
});

/** Small cases with intensities at bin centres (bins of width 1 over [-5, 5]) and some background voxels. */
function randomCases(seed: number): TinyCase[] {
  const rng = createRng(seed);
  const shape: Shape3 = [2, 3, 2];
  return ['a', 'b', 'c', 'd'].map((id) => {
    const images = new Float32Array(4 * 12);
    const label = new Uint8Array(12);
    for (let v = 0; v < 12; v++) {
      if (rng() < 0.2) continue;
      label[v] = randInt(rng, 0, 4);
      for (let k = 0; k < 4; k++) images[k * 12 + v] = randInt(rng, 0, 10) - 4.5;
    }
    return { id, shape, images, label };
  });
}

const EXACT = { bins: 10, range: [-5, 5] as [number, number], binSigma: 0, spatialSigma: 0, pseudoCount: 2 };

describe('the builtin provider', () => {
  it('gives each brain voxel the class posterior of its intensity bin, counted on the other training cases', async () => {
    const cacheDir = path.join(root, 'exact');
    const cases = randomCases(3);
    writeTinyCache(cacheDir, cases);
    const provider = await fitBuiltinProvider({ cacheDir, trainIds: ['a', 'b', 'c'], ...EXACT });
    assert.equal(provider.name, BUILTIN_PROVIDER);
    for (const target of cases) {
      const fit = cases.filter((other) => ['a', 'b', 'c'].includes(other.id) && other.id !== target.id);
      const brain = (kase: TinyCase, v: number) => [0, 1, 2, 3].some((k) => kase.images[k * 12 + v] !== 0);
      const bin = (kase: TinyCase, k: number, v: number) => Math.floor(kase.images[k * 12 + v] + 5);
      const classVoxels = [0, 1, 2, 3].map((c) => fit.reduce((n, kase) => n + kase.label!.filter((l, v) => l === c && brain(kase, v)).length, 0));
      const brainVoxels = classVoxels.reduce((a, b) => a + b, 0);
      const priors = await provider.computeCase({ ...loadCase(cacheDir, target.id), label: target.label! });
      for (let v = 0; v < 12; v++) {
        for (let k = 0; k < 4; k++) {
          const inBin = [0, 1, 2, 3].map((c) =>
            fit.reduce((n, kase) => n + [...Array(12).keys()].filter((u) => brain(kase, u) && kase.label![u] === c && bin(kase, k, u) === bin(target, k, v)).length, 0),
          );
          const total = inBin.reduce((a, b) => a + b, 0);
          for (let c = 0; c < 4; c++) {
            const expected = brain(target, v) ? (inBin[c] + (2 * classVoxels[c]) / brainVoxels) / (total + 2) : c === 0 ? 1 : 0;
            const actual = priors[(c * 4 + k) * 12 + v];
            assert.ok(Math.abs(actual - expected) < 1e-6, `case ${target.id} voxel ${v} modality ${k} class ${c}: ${actual} vs ${expected}`);
          }
        }
      }
    }
  });

  it("leaves a training case's own labels out: changing them changes the other cases' priors, not its own", async () => {
    const settings = { bins: 10, range: [-5, 5] as [number, number], binSigma: 1, spatialSigma: 1, pseudoCount: 1 };
    const cases = randomCases(8);
    const original = path.join(root, 'loo-original');
    writeTinyCache(original, cases);
    const relabelled = path.join(root, 'loo-relabelled');
    writeTinyCache(relabelled, cases.map((kase) => (kase.id === 'a' ? { ...kase, label: kase.label!.map((l) => (l + 1) % 4) } : kase)));
    const before = await fitBuiltinProvider({ cacheDir: original, trainIds: ['a', 'b', 'c'], ...settings });
    const after = await fitBuiltinProvider({ cacheDir: relabelled, trainIds: ['a', 'b', 'c'], ...settings });
    const priorsOf = async (provider: typeof before, cacheDir: string, id: string) => {
      const kase = loadCase(cacheDir, id);
      return provider.computeCase({ ...kase, label: kase.label! });
    };
    assert.deepEqual(await priorsOf(after, relabelled, 'a'), await priorsOf(before, original, 'a'));
    assert.notDeepEqual(await priorsOf(after, relabelled, 'b'), await priorsOf(before, original, 'b'));
    assert.notDeepEqual(await priorsOf(after, relabelled, 'd'), await priorsOf(before, original, 'd'));
  });

  it('makes per-voxel distributions over the classes for every modality, background outside the brain', async () => {
    const cacheDir = path.join(root, 'sums');
    const cases = randomCases(5);
    writeTinyCache(cacheDir, cases);
    const provider = await fitBuiltinProvider({ cacheDir, trainIds: ['a', 'b', 'c', 'd'] });
    const priors = await provider.computeCase({ ...loadCase(cacheDir, 'b'), label: cases[1].label! });
    for (let k = 0; k < 4; k++)
      for (let v = 0; v < 12; v++) {
        const column = [0, 1, 2, 3].map((c) => priors[(c * 4 + k) * 12 + v]);
        assert.ok(Math.abs(column.reduce((a, b) => a + b, 0) - 1) < 1e-5, `modality ${k} voxel ${v}`);
        if ([0, 1, 2, 3].every((m) => cases[1].images[m * 12 + v] === 0)) assert.deepEqual(column, [1, 0, 0, 0]);
      }
  });

  it('rejects bad settings and an empty training set', async () => {
    const cacheDir = path.join(root, 'exact');
    await assert.rejects(fitBuiltinProvider({ cacheDir, trainIds: [] }), /no training cases/);
    await assert.rejects(fitBuiltinProvider({ cacheDir, trainIds: ['a'], range: [2, 1] }), /range \[2, 1\] is empty/);
    await assert.rejects(fitBuiltinProvider({ cacheDir, trainIds: ['a'], pseudoCount: 0 }), /pseudoCount must be positive/);
    await assert.rejects(fitBuiltinProvider({ cacheDir, trainIds: ['a', 'nobody'] }), /case "nobody" is not in the cache/);
  });

  it('follows the contrast physics on synthetic cases: ET on T1ce only, oedema on FLAIR', async () => {
    const dataDir = path.join(root, 'synthetic');
    const cacheDir = path.join(root, 'synthetic-cache');
    synthesizeDataset({ out: dataDir, cases: 6, size: 40, seed: 11 });
    const dataset = discoverBrats(dataDir);
    await preprocessDataset({ dataset, cacheDir });
    const ids = dataset.cases.map((entry) => entry.id);
    const provider = await fitBuiltinProvider({ cacheDir, trainIds: ids });
    await makePriors({ cacheDir, ids, provider });
    const quality = await measurePriors({ cacheDir, ids });
    const row = (name: string) => quality.classes.find((entry) => entry.name === name)!.dice;
    const [flair, t1ce, t1, t2] = [0, 1, 2, 3];
    const et = row('ET');
    assert.ok(et[t1ce] > 0.5, `ET on T1ce: Dice ${et[t1ce]}`);
    for (const other of [flair, t1, t2]) assert.ok(et[other] < et[t1ce] - 0.4, `ET on modality ${other}: Dice ${et[other]} vs ${et[t1ce]} on T1ce`);
    const oedema = row('ED');
    assert.ok(oedema[flair] > 0.5 && oedema[flair] > oedema[t1] + 0.4, `oedema Dice per modality ${oedema.join(', ')}`);
  });
});
