import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dice, hausdorff95, percentile, regionMask, regionsPresent, scoreCase } from '../../src/evaluation/metrics.ts';

const shape = [6, 6, 6] as const;
const index = (x: number, y: number, z: number) => (x * 6 + y) * 6 + z;

function box(x0: number, x1: number, y0: number, y1: number, z0: number, z1: number): Uint8Array {
  const m = new Uint8Array(216);
  for (let x = x0; x <= x1; x++) for (let y = y0; y <= y1; y++) for (let z = z0; z <= z1; z++) m[index(x, y, z)] = 1;
  return m;
}

test('regionMask marks the voxels of the given classes', () => {
  assert.deepEqual([...regionMask([0, 1, 2, 3, 2], [1, 3])], [0, 1, 0, 1, 0]);
});

test('regionsPresent reads the regions from the classes', () => {
  assert.deepEqual(regionsPresent(Uint8Array.of(0, 2, 2), 4), { WT: true, TC: false, ET: false });
  assert.deepEqual(regionsPresent(Uint8Array.of(0, 3), 4), { WT: true, TC: true, ET: true });
  assert.deepEqual(regionsPresent(Uint8Array.of(0, 3), 5), { WT: true, TC: true, ET: false });
  assert.deepEqual(regionsPresent(Uint8Array.of(0, 0), 4), { WT: false, TC: false, ET: false });
});

test('dice by hand', () => {
  // |A| = 3, |B| = 2, |A∩B| = 2 → 4/5
  assert.equal(dice(Uint8Array.of(1, 1, 1, 0), Uint8Array.of(0, 1, 1, 0)), 0.8);
  assert.equal(dice(Uint8Array.of(0, 0), Uint8Array.of(0, 0)), 1);
  assert.equal(dice(Uint8Array.of(1, 0), Uint8Array.of(0, 0)), 0);
});

test('percentile interpolates like numpy', () => {
  // numpy.percentile([1, 2, 3, 4], 95) = 3.85
  assert.ok(Math.abs(percentile(Float64Array.of(4, 1, 3, 2), 95) - 3.85) < 1e-12);
});

test('hausdorff95 of two single voxels is their distance, with anisotropic spacing', () => {
  const a = new Uint8Array(216);
  const b = new Uint8Array(216);
  a[index(1, 1, 1)] = 1;
  b[index(4, 1, 3)] = 1;
  assert.ok(Math.abs(hausdorff95(a, b, shape) - Math.hypot(3, 2)) < 1e-9);
  assert.ok(Math.abs(hausdorff95(a, b, shape, [2, 1, 0.5]) - Math.hypot(6, 1)) < 1e-9);
});

test('hausdorff95 of a box against the box shifted by one voxel', () => {
  // Every surface voxel of one box is at most 1 voxel from the other's surface; most are at 0 or 1.
  const a = box(1, 3, 1, 3, 1, 3);
  const b = box(2, 4, 1, 3, 1, 3);
  assert.equal(hausdorff95(a, b, shape), 1);
  assert.equal(hausdorff95(a, a, shape), 0);
});

test('hausdorff95 empty cases', () => {
  const empty = new Uint8Array(216);
  assert.equal(hausdorff95(empty, empty, shape), 0);
  assert.ok(Math.abs(hausdorff95(box(1, 1, 1, 1, 1, 1), empty, shape) - Math.hypot(6, 6, 6)) < 1e-12);
});

test('hausdorff95 matches a brute-force surface distance on random shapes', () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const a = new Uint8Array(216).map(() => (rand() < 0.3 ? 1 : 0));
  const b = new Uint8Array(216).map(() => (rand() < 0.3 ? 1 : 0));
  const spacing = [1.5, 1, 0.7] as const;
  const isSurface = (m: Uint8Array, x: number, y: number, z: number) => {
    if (!m[index(x, y, z)]) return false;
    const n = [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]];
    return n.some(([dx, dy, dz]) => {
      const [u, v, w] = [x + dx, y + dy, z + dz];
      return u < 0 || v < 0 || w < 0 || u > 5 || v > 5 || w > 5 || !m[index(u, v, w)];
    });
  };
  const points = (m: Uint8Array) => {
    const out: number[][] = [];
    for (let x = 0; x < 6; x++) for (let y = 0; y < 6; y++) for (let z = 0; z < 6; z++) if (isSurface(m, x, y, z)) out.push([x, y, z]);
    return out;
  };
  const directed = (from: number[][], to: number[][]) =>
    Float64Array.from(from.map((p) => Math.min(...to.map((q) => Math.hypot((p[0] - q[0]) * spacing[0], (p[1] - q[1]) * spacing[1], (p[2] - q[2]) * spacing[2])))));
  const [pa, pb] = [points(a), points(b)];
  const expected = Math.max(percentile(directed(pa, pb), 95), percentile(directed(pb, pa), 95));
  assert.ok(Math.abs(hausdorff95(a, b, shape, spacing) - expected) < 1e-9);
});

test('scoreCase combines regions', () => {
  const truth = new Uint8Array(216);
  const prediction = new Uint8Array(216);
  truth[index(2, 2, 2)] = 3;
  truth[index(2, 2, 3)] = 2;
  prediction[index(2, 2, 2)] = 1;
  prediction[index(2, 2, 3)] = 2;
  const s = scoreCase(prediction, truth, 4, shape);
  const diceOnly = scoreCase(prediction, truth, 4, shape, { hausdorff: false });
  assert.deepEqual(diceOnly.dice, s.dice);
  assert.ok(Number.isNaN(diceOnly.hausdorff95.WT) && Number.isNaN(diceOnly.hausdorff95.ET));
  assert.equal(s.dice.WT, 1);
  assert.equal(s.dice.TC, 1);
  assert.equal(s.dice.ET, 0);
  assert.equal(s.hausdorff95.WT, 0);
});
