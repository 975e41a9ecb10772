import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clearOutsideBrain, minEnhancingVoxels, suppressSmallEnhancingTumour } from '../../src/inference/postprocess.ts';

test('the ET post-processing threshold is 500 mm³ in voxels of the grid', () => {
  assert.equal(minEnhancingVoxels([1, 1, 1]), 500);
  assert.equal(minEnhancingVoxels([2, 2, 2]), 62.5);
  assert.equal(minEnhancingVoxels([1, 2, 2.5], 100), 20);
});

test('small enhancing tumour becomes necrosis, large stays', () => {
  const labels = Uint8Array.of(0, 3, 3, 2, 1);
  assert.deepEqual([...suppressSmallEnhancingTumour(labels, 4, 3)], [0, 1, 1, 2, 1]);
  assert.deepEqual([...suppressSmallEnhancingTumour(labels, 4, 2)], [0, 3, 3, 2, 1]);
  assert.deepEqual([...suppressSmallEnhancingTumour(Uint8Array.of(4, 4), 5, 3)], [1, 1]);
});

test('labels outside the brain are cleared: voxels where every given modality is 0', () => {
  // Two modalities (FLAIR given, T1ce absent) over 4 voxels; the absent channel's values do not count.
  const images = new Float32Array([0, 1.5, 0, -0.2, /* T1ce */ 9, 9, 9, 9]);
  const labels = clearOutsideBrain(new Uint8Array([3, 2, 1, 0]), images, [true, false]);
  assert.deepEqual([...labels], [0, 2, 0, 0]);
  assert.deepEqual([...clearOutsideBrain(new Uint8Array([3, 2, 1, 0]), images, [true, true])], [3, 2, 1, 0]);
  assert.throws(() => clearOutsideBrain(new Uint8Array(3), images, [true, false]), /8 image values for 2 × 3 voxels/);
});
