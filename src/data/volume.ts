/**
 * The in-memory volume type, format dispatch for reading/writing, and
 * validation helpers used before volumes are combined.
 */
import { readMetaImage, type MetaImageHeader } from './metaimage.ts';
import { readNifti, writeNifti, type NiftiHeader } from './nifti.ts';
import type { VoxelArray } from './voxel-array.ts';

export type { VoxelArray } from './voxel-array.ts';

/** Format-specific header; `format` tells which. */
export type VolumeHeader = NiftiHeader | MetaImageHeader;

export interface Volume {
  /** Voxel values in the file's order: i fastest, then j, k (then t). */
  data: VoxelArray;
  /** Sizes along i, j, k (, t); at least three entries. */
  shape: number[];
  /** 4x4 voxel (i, j, k) → world matrix, RAS+ millimetres for both formats. */
  affine: number[][];
  header: VolumeHeader;
}

const NIFTI_NAME = /\.(nii|hdr|img)(\.gz)?$/i;
const METAIMAGE_NAME = /\.(mha|mhd)$/i;

/** Reads a NIfTI (.nii, .nii.gz, .hdr/.img) or MetaImage (.mha, .mhd) volume, chosen by the file name. */
export function readVolume(path: string): Volume {
  if (NIFTI_NAME.test(path)) return readNifti(path);
  if (METAIMAGE_NAME.test(path)) return readMetaImage(path);
  throw new Error(`${path}: unknown volume format (expected .nii, .nii.gz, .hdr/.img, .mha or .mhd)`);
}

/**
 * Writes a NIfTI-1 volume (`.nii` or `.nii.gz`), atomically, copying the
 * geometry of `reference` when given. See `writeNifti` for details.
 */
export function writeVolume(path: string, data: VoxelArray, shape: number[], reference?: Volume): void {
  writeNifti(path, data, shape, reference);
}

/**
 * Why `volume` (file `name`) is not on the voxel grid of `first` (file `firstName`): a different shape, or an affine
 * entry differing by more than `toleranceMm`; null when it is.
 */
export function geometryMismatch(first: Volume, firstName: string, volume: Volume, name: string, toleranceMm = 1e-3): string | null {
  if (volume.shape.length !== first.shape.length || volume.shape.some((size, axis) => size !== first.shape[axis])) {
    return `${firstName} and ${name} have different shapes: [${first.shape.join(', ')}] vs [${volume.shape.join(', ')}]`;
  }
  for (let row = 0; row < 3; row++) {
    for (let column = 0; column < 4; column++) {
      const difference = Math.abs(volume.affine[row]![column]! - first.affine[row]![column]!);
      if (!(difference <= toleranceMm)) {
        return (
          `${firstName} and ${name} have different affines: entry [${row}][${column}] is ` +
          `${first.affine[row]![column]} vs ${volume.affine[row]![column]} (tolerance ${toleranceMm} mm)`
        );
      }
    }
  }
  return null;
}

/**
 * Throws when the volumes do not share one voxel grid (see `geometryMismatch`). The error names both
 * files (from `names`, parallel to `volumes`).
 */
export function checkSameGeometry(volumes: readonly Volume[], names: readonly string[], toleranceMm = 1e-3): void {
  if (names.length !== volumes.length) throw new Error(`checkSameGeometry: ${volumes.length} volumes but ${names.length} names`);
  const [first, ...rest] = volumes;
  if (!first) return;
  rest.forEach((volume, index) => {
    const mismatch = geometryMismatch(first, names[0], volume, names[index + 1], toleranceMm);
    if (mismatch) throw new Error(mismatch);
  });
}

/** Throws when the volume holds NaN or infinite voxels, naming the file and how many. */
export function checkFinite(volume: Volume, path: string): void {
  const data = volume.data;
  if (!(data instanceof Float32Array || data instanceof Float64Array)) return;
  let nonFinite = 0;
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) nonFinite++;
  if (nonFinite > 0) throw new Error(`${path}: ${nonFinite} of ${data.length} voxels are NaN or infinite`);
}

/** Voxel sizes (mm) along the three voxel axes: the lengths of the affine's first three columns. */
export function voxelSpacing(affine: readonly (readonly number[])[]): [number, number, number] {
  return [0, 1, 2].map((column) => Math.hypot(affine[0][column], affine[1][column], affine[2][column])) as [number, number, number];
}
