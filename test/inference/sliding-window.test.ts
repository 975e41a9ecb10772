import { test } from 'node:test';
import assert from 'node:assert/strict';
import { torch } from '../../src/engine/index.ts';
import { importanceMap, slidingWindowInference, windowStarts } from '../../src/inference/sliding-window.ts';

test('window starts cover the axis with the requested overlap', () => {
  assert.deepEqual(windowStarts(10, 4, 0.5), [0, 2, 4, 6]);
  assert.deepEqual(windowStarts(11, 4, 0.5), [0, 2, 4, 6, 7]);
  assert.deepEqual(windowStarts(4, 4, 0.5), [0]);
  assert.deepEqual(windowStarts(3, 4, 0.5), [0]);
});

test('an identity model is reconstructed exactly, for both weightings and a volume smaller than the patch on one axis', () => {
  torch.manualSeed(1);
  const volume = torch.randn([2, 3, 9, 7, 3]);
  for (const weighting of ['uniform', 'gaussian'] as const) {
    const out = slidingWindowInference(volume, [4, 4, 4], (w) => w.mul(1), { weighting });
    assert.deepEqual(out.shape, [2, 3, 9, 7, 3]);
    assert.ok(out.allclose(volume, 1e-5, 1e-6), weighting);
  }
});

test('overlapping windows are averaged with the importance weights', () => {
  // A model that outputs a constant per window (the window's index) on a 1-axis example:
  // size 6, patch 4, overlap 0.5 → windows [0,4) and [2,6); the middle voxels average 0 and 1.
  const volume = torch.zeros([1, 1, 6, 1, 1]);
  let calls = 0;
  const out = slidingWindowInference(volume, [4, 1, 1], (w) => torch.fullLike(w, calls++), { weighting: 'uniform' });
  assert.deepEqual(out.toArray(), [0, 0, 0.5, 0.5, 1, 1]);
});

test('gaussian importance peaks at the centre and stays positive', () => {
  const map = importanceMap([5, 5, 5], 'gaussian').toArray();
  assert.equal(Math.max(...map), map[2 * 25 + 2 * 5 + 2]);
  assert.ok(Math.min(...map) > 0);
});
