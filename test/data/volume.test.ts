import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { checkFinite, checkSameGeometry, type Volume } from '../../src/data/volume.ts';

function volume(shape: number[], affine: number[][], data: Float32Array | Uint8Array = new Float32Array(shape.reduce((a, b) => a * b, 1))): Volume {
  return { data, shape, affine, header: { format: 'metaimage' } as Volume['header'] };
}
const identity = () => [
  [1, 0, 0, 0],
  [0, 1, 0, 0],
  [0, 0, 1, 0],
  [0, 0, 0, 1],
];

test('checkSameGeometry accepts differences within 1e-3 mm', () => {
  const shifted = identity();
  shifted[0]![3] = 0.0009;
  checkSameGeometry([volume([2, 2, 2], identity()), volume([2, 2, 2], shifted)], ['a.nii', 'b.nii']);
});

test('checkSameGeometry names both files for a shape or affine mismatch', () => {
  assert.throws(
    () => checkSameGeometry([volume([2, 2, 2], identity()), volume([2, 2, 3], identity())], ['flair.nii', 't1.nii']),
    (error: Error) => error.message === 'flair.nii and t1.nii have different shapes: [2, 2, 2] vs [2, 2, 3]',
  );
  const shifted = identity();
  shifted[2]![3] = 0.002;
  assert.throws(
    () => checkSameGeometry([volume([2, 2, 2], identity()), volume([2, 2, 2], identity()), volume([2, 2, 2], shifted)], ['f.nii', 'g.nii', 'h.nii']),
    (error: Error) => error.message.startsWith('f.nii and h.nii have different affines: entry [2][3] is 0 vs 0.002'),
  );
});

test('checkFinite counts NaN and infinite voxels; integer data always passes', () => {
  checkFinite(volume([2, 2, 1], identity(), new Float32Array([0, 1, -2, 3])), 'ok.nii');
  checkFinite(volume([2, 2, 1], identity(), new Uint8Array(4)), 'labels.nii');
  assert.throws(
    () => checkFinite(volume([2, 2, 1], identity(), new Float32Array([NaN, 1, Infinity, -Infinity])), 'bad.nii'),
    (error: Error) => error.message === 'bad.nii: 3 of 4 voxels are NaN or infinite',
  );
});
