// The input SAM-Med3D expects, made from a cached case, and the way back to the case's crop frame.
//
// SAM-Med3D reads a volume at its stored intensities, resamples it to 1.5 mm (trilinear for images,
// nearest for labels), crops or pads a 128^3 window centred on the label's bounding box, and z-normalises
// the window with the mean and standard deviation of its voxels > 0. The cache holds z-scored images, so
// the stored intensities are rebuilt first from the recorded statistics (background stays 0, as it was).
// Axes stay the cache's (X, Y, Z) = NIfTI (i, j, k), which is the order torchio gives SAM-Med3D.
import { resamplePatch } from '../../data/augment.ts';
import type { CaseManifest } from '../../data/cache.ts';
import type { Shape3 } from '../../data/preprocess.ts';

/** Voxel spacing (mm) SAM-Med3D works at. */
export const TARGET_SPACING_MM = 1.5;

/** How an output axis samples an input axis: neighbours `low`/`high`, the weight of `high`, and whether the point is inside. */
export interface AxisSampling {
  low: Int32Array;
  high: Int32Array;
  weight: Float32Array;
  inside: Uint8Array;
}

/**
 * Sampling of an input axis of `inputLength` voxels at continuous indices `position(j)` for output
 * voxels j, as ITK/SimpleITK resample (which torchio uses): a point within half a voxel of the ends is
 * interpolated with the edge voxel repeated, a point beyond reads 0. 'nearest' rounds halves up.
 */
export function axisSampling(inputLength: number, outputLength: number, position: (j: number) => number, mode: 'linear' | 'nearest'): AxisSampling {
  const sampling: AxisSampling = {
    low: new Int32Array(outputLength),
    high: new Int32Array(outputLength),
    weight: new Float32Array(outputLength),
    inside: new Uint8Array(outputLength),
  };
  for (let j = 0; j < outputLength; j++) {
    const c = position(j);
    if (!(c >= -0.5 && c < inputLength - 0.5)) continue;
    sampling.inside[j] = 1;
    if (mode === 'nearest') {
      sampling.low[j] = sampling.high[j] = Math.min(inputLength - 1, Math.floor(c + 0.5));
      continue;
    }
    const clamped = Math.min(Math.max(c, 0), inputLength - 1);
    const low = Math.floor(clamped);
    sampling.low[j] = low;
    sampling.high[j] = Math.min(low + 1, inputLength - 1);
    sampling.weight[j] = clamped - low;
  }
  return sampling;
}

/** Resamples a (X, Y, Z) volume, z fastest, with one sampling per axis; points outside read 0. */
export function resampleVolume<T extends Float32Array | Uint8Array>(data: T, shape: Shape3, samplings: [AxisSampling, AxisSampling, AxisSampling]): T {
  const [, Y, Z] = shape;
  const [sx, sy, sz] = samplings;
  const [OX, OY, OZ] = [sx.low.length, sy.low.length, sz.low.length];
  const out = (data instanceof Uint8Array ? new Uint8Array(OX * OY * OZ) : new Float32Array(OX * OY * OZ)) as T;
  for (let x = 0; x < OX; x++) {
    if (!sx.inside[x]) continue;
    const wx = sx.weight[x];
    const x0 = sx.low[x] * Y * Z;
    const x1 = sx.high[x] * Y * Z;
    for (let y = 0; y < OY; y++) {
      if (!sy.inside[y]) continue;
      const wy = sy.weight[y];
      const r00 = x0 + sy.low[y] * Z;
      const r01 = x0 + sy.high[y] * Z;
      const r10 = x1 + sy.low[y] * Z;
      const r11 = x1 + sy.high[y] * Z;
      const row = (x * OY + y) * OZ;
      for (let z = 0; z < OZ; z++) {
        if (!sz.inside[z]) continue;
        const z0 = sz.low[z];
        const z1 = sz.high[z];
        const wz = sz.weight[z];
        const front = (data[r00 + z0] * (1 - wz) + data[r00 + z1] * wz) * (1 - wy) + (data[r01 + z0] * (1 - wz) + data[r01 + z1] * wz) * wy;
        const back = (data[r10 + z0] * (1 - wz) + data[r10 + z1] * wz) * (1 - wy) + (data[r11 + z0] * (1 - wz) + data[r11 + z1] * wz) * wy;
        out[row + z] = front * (1 - wx) + back * wx;
      }
    }
  }
  return out;
}

/** The grid at the target spacing: output voxel j of axis a samples input index (j + 0.5)·r_a − 0.5, r_a = target / spacing_a. */
export interface SpacingChange {
  /** Shape at the target spacing: ceil(n_a / r_a). */
  shape: Shape3;
  /** r_a = target spacing / input spacing. */
  ratio: Shape3;
}

export function spacingChange(shape: Shape3, spacing: Shape3, target = TARGET_SPACING_MM): SpacingChange {
  const ratio = spacing.map((s) => target / s) as Shape3;
  // The tolerance keeps an exact ratio (240 voxels of 1 mm → 160 of 1.5 mm) from rounding up.
  return { shape: shape.map((n, a) => Math.max(1, Math.ceil(n / ratio[a] - 1e-6))) as Shape3, ratio };
}

/** Samplings that take a volume of `shape` to the target grid. */
export function toTargetSamplings(shape: Shape3, change: SpacingChange, mode: 'linear' | 'nearest'): [AxisSampling, AxisSampling, AxisSampling] {
  return [0, 1, 2].map((a) => axisSampling(shape[a], change.shape[a], (j) => (j + 0.5) * change.ratio[a] - 0.5, mode)) as [AxisSampling, AxisSampling, AxisSampling];
}

/** Samplings that take a window of the target grid (side `size`, first voxel `start`) back to the input grid of `shape`, linearly. */
export function fromWindowSamplings(shape: Shape3, change: SpacingChange, start: Shape3, size: number): [AxisSampling, AxisSampling, AxisSampling] {
  return [0, 1, 2].map((a) => axisSampling(size, shape[a], (x) => (x + 0.5) / change.ratio[a] - 0.5 - start[a], 'linear')) as [AxisSampling, AxisSampling, AxisSampling];
}

/**
 * First voxel of the `size`^3 window centred on the bounding box of the non-zero voxels of `mask`, as
 * torchio's CropOrPad with a mask places it: start = floor((low + high + 1)/2 − size/2) per axis, `high`
 * the last voxel. Null for an empty mask.
 */
export function windowAround(mask: Uint8Array, shape: Shape3, size: number): Shape3 | null {
  const [X, Y, Z] = shape;
  const low = [X, Y, Z];
  const high = [-1, -1, -1];
  for (let x = 0, v = 0; x < X; x++) {
    for (let y = 0; y < Y; y++) {
      for (let z = 0; z < Z; z++, v++) {
        if (!mask[v]) continue;
        if (x < low[0]) low[0] = x;
        if (x > high[0]) high[0] = x;
        if (y < low[1]) low[1] = y;
        if (y > high[1]) high[1] = y;
        if (z < low[2]) low[2] = z;
        if (z > high[2]) high[2] = z;
      }
    }
  }
  if (high[0] < 0) return null;
  return low.map((l, a) => Math.floor((l + high[a] + 1) / 2 - size / 2)) as Shape3;
}

/**
 * (x − mean)/std over every voxel, mean and std (unbiased) taken over the voxels > 0, in place.
 * Returns false, leaving the data as it is, when fewer than two voxels are > 0 or they are constant.
 */
export function zNormalizePositive(data: Float32Array): boolean {
  let count = 0;
  let sum = 0;
  for (const value of data) {
    if (value > 0) {
      count++;
      sum += value;
    }
  }
  if (count < 2) return false;
  const mean = sum / count;
  let squares = 0;
  for (const value of data) if (value > 0) squares += (value - mean) ** 2;
  const std = Math.sqrt(squares / (count - 1));
  if (!(std > 0)) return false;
  for (let i = 0; i < data.length; i++) data[i] = (data[i] - mean) / std;
  return true;
}

/** One modality's stored intensities rebuilt from the cached z-scores (zeros stay 0). */
export function storedIntensities(zScores: Float32Array, statistics: { mean: number; std: number }): Float32Array {
  const out = new Float32Array(zScores.length);
  for (let v = 0; v < zScores.length; v++) if (zScores[v] !== 0) out[v] = zScores[v] * statistics.std + statistics.mean;
  return out;
}

/** A case brought to SAM-Med3D's input: the window of every modality and of the label. */
export interface ModelInput {
  change: SpacingChange;
  /** First voxel of the window in the target grid. */
  start: Shape3;
  /** Per modality, (size^3) normalised intensities; null where the window holds no voxel > 0. */
  images: (Float32Array | null)[];
  /** (size^3) class indices in the window (0 where padded). */
  label: Uint8Array;
}

/**
 * Resamples a labelled cached case to the target spacing and cuts the `size`^3 window centred on its
 * tumour (all foreground classes together, so that one image embedding per modality serves every
 * class). Null when the label has no foreground.
 */
export function prepareModelInput(
  images: Float32Array /* (K, X, Y, Z) z-scores */,
  label: Uint8Array /* (X, Y, Z) */,
  shape: Shape3,
  meta: Pick<CaseManifest, 'modalities' | 'normalization'>,
  spacing: Shape3,
  size: number,
): ModelInput | null {
  const voxels = shape[0] * shape[1] * shape[2];
  const change = spacingChange(shape, spacing);
  const resampledLabel = resampleVolume(label, shape, toTargetSamplings(shape, change, 'nearest'));
  const start = windowAround(resampledLabel, change.shape, size);
  if (!start) return null;
  const linear = toTargetSamplings(shape, change, 'linear');
  const stored = meta.modalities.map((_, k) => resampleVolume(storedIntensities(images.subarray(k * voxels, (k + 1) * voxels), meta.normalization[k]), shape, linear));
  const window = resamplePatch({ shape: change.shape, images: stored, label: resampledLabel }, [size, size, size], start, null);
  return {
    change,
    start,
    images: window.images.map((channel) => (zNormalizePositive(channel) ? channel : null)),
    label: window.label!,
  };
}
