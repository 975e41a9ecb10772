// Resampling between voxel grids for inference: sequences of one case acquired on different grids brought onto one
// reference grid through their world (RAS mm) geometry, and volumes scaled to the voxel size the network was trained on
// and back (as nnU-Net does: images trilinear, class probabilities trilinear before the arg-max).
import { torch, type Tensor } from '../engine/index.ts';
import type { Shape3 } from '../data/preprocess.ts';
import type { VoxelArray } from '../data/voxel-array.ts';

type Affine = readonly (readonly number[])[];

/** Inverse of a 4×4 affine (rotation/scale/shear and translation), by the 3×3 block's adjugate. */
export function invertAffine(a: Affine): number[][] {
  const [[a00, a01, a02], [a10, a11, a12], [a20, a21, a22]] = a;
  const c00 = a11 * a22 - a12 * a21;
  const c01 = a02 * a21 - a01 * a22;
  const c02 = a01 * a12 - a02 * a11;
  const det = a00 * c00 + a10 * c01 + a20 * c02;
  if (!(Math.abs(det) > 1e-12)) throw new Error('the voxel-to-world matrix is singular');
  const m = [
    [c00, c01, c02],
    [a12 * a20 - a10 * a22, a00 * a22 - a02 * a20, a02 * a10 - a00 * a12],
    [a10 * a21 - a11 * a20, a01 * a20 - a00 * a21, a00 * a11 - a01 * a10],
  ].map((row) => row.map((value) => value / det));
  const t = [0, 1, 2].map((r) => -(m[r][0] * a[0][3] + m[r][1] * a[1][3] + m[r][2] * a[2][3]));
  return [[...m[0], t[0]], [...m[1], t[1]], [...m[2], t[2]], [0, 0, 0, 1]];
}

function multiply(a: Affine, b: Affine): number[][] {
  return [0, 1, 2, 3].map((r) => [0, 1, 2, 3].map((c) => a[r][0] * b[0][c] + a[r][1] * b[1][c] + a[r][2] * b[2][c] + a[r][3] * b[3][c]));
}

/** The world-space box (mm) a grid covers: its voxels' outer faces, i.e. indices −0.5 … n − 0.5. */
export function worldBox(shape: Shape3, affine: Affine): { min: Shape3; max: Shape3 } {
  const min: Shape3 = [Infinity, Infinity, Infinity];
  const max: Shape3 = [-Infinity, -Infinity, -Infinity];
  for (const corner of [0, 1, 2, 3, 4, 5, 6, 7]) {
    const index = [0, 1, 2].map((axis) => ((corner >> axis) & 1 ? shape[axis] - 0.5 : -0.5));
    for (let r = 0; r < 3; r++) {
      const world = affine[r][0] * index[0] + affine[r][1] * index[1] + affine[r][2] * index[2] + affine[r][3];
      min[r] = Math.min(min[r], world);
      max[r] = Math.max(max[r], world);
    }
  }
  return { min, max };
}

/** Whether two grids' world boxes share a volume. */
export function worldBoxesOverlap(a: { min: Shape3; max: Shape3 }, b: { min: Shape3; max: Shape3 }): boolean {
  return [0, 1, 2].every((axis) => Math.min(a.max[axis], b.max[axis]) > Math.max(a.min[axis], b.min[axis]));
}

/**
 * A volume resampled onto another grid through world space: trilinear, zero outside the source. Both volumes are
 * i fastest (NIfTI order); returns the target grid's values, i fastest.
 */
export function resampleOntoGrid(
  data: VoxelArray /* (I, J, K), i fastest */,
  shape: Shape3,
  affine: Affine,
  target: { shape: Shape3; affine: Affine },
): Float32Array /* target (I', J', K'), i fastest */ {
  // Target voxel → source voxel indices.
  const map = multiply(invertAffine(affine), target.affine);
  const [I, J, K] = target.shape;
  let out: Float32Array = new Float32Array(0);
  torch.tidy(() => {
    // i fastest is C order (K, J, I): W = i, H = j, D = k, which is also grid_sample's coordinate order (x, y, z).
    const source = torch.tensor(Float32Array.from(data), [1, 1, shape[2], shape[1], shape[0]]);
    const ii = torch.arange(0, I, 1, { dtype: 'float32' }).view(1, 1, I);
    const jj = torch.arange(0, J, 1, { dtype: 'float32' }).view(1, J, 1);
    const kk = torch.arange(0, K, 1, { dtype: 'float32' }).view(K, 1, 1);
    // Normalised so that −1 and 1 are the outer faces of the first and last source voxel (alignCorners false).
    const coordinates = [0, 1, 2].map((axis) =>
      ii.mul(map[axis][0]).add(jj.mul(map[axis][1])).add(kk.mul(map[axis][2])).add(map[axis][3]).mul(2).add(1).div(shape[axis]).sub(1),
    );
    const grid = torch.stack(coordinates, 3).unsqueeze(0);
    out = torch.gridSample(source, grid, { mode: 'bilinear', padding: 'zeros', alignCorners: false }).toTypedArray() as Float32Array;
  });
  return out;
}

/** Spatial shape of a grid of `shape` voxels of size `from` resampled to voxels of size `to` (mm), as nnU-Net rounds it. */
export function resampledShape(shape: Shape3, from: Shape3, to: Shape3): Shape3 {
  return shape.map((size, axis) => Math.max(1, Math.round((size * from[axis]) / to[axis]))) as Shape3;
}

/** Whether voxel sizes differ by more than 1 % on some axis, enough for the network to see another scale. */
export function needsResampling(from: Shape3, to: Shape3): boolean {
  return from.some((size, axis) => Math.abs(size - to[axis]) > 0.01 * to[axis]);
}

/** (B, C, X, Y, Z) resized to `size` trilinearly, voxel centres mapped as nnU-Net's and PyTorch's alignCorners false. */
export function resizeVolume(volume: Tensor /* (B, C, X, Y, Z) */, size: Shape3): Tensor /* (B, C, ...size) */ {
  return torch.interpolate(volume, [...size], 'trilinear', false);
}
