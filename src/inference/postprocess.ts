// Post-processing of a predicted label map (class indices, (X, Y, Z) z fastest, in the preprocessing crop): labels
// outside the brain cleared, then the small-ET rule of docs/method.md §7.
import { regionClasses } from '../data/regions.ts';

/**
 * docs/method.md §7: a predicted ET smaller than 500 voxels of BraTS's 1 mm grid is relabelled as necrosis. Kept as a
 * volume in mm³ so that it means the same on grids of other voxel sizes.
 */
export const MIN_ENHANCING_VOLUME = 500;

/** The ET post-processing threshold in voxels of `spacing` (mm) for a volume in mm³. */
export function minEnhancingVoxels(spacing: readonly [number, number, number], volume = MIN_ENHANCING_VOLUME): number {
  return volume / (spacing[0] * spacing[1] * spacing[2]);
}

/**
 * docs/method.md §7 post-processing: a predicted enhancing tumour smaller than `minVoxels` is relabelled as
 * necrosis (class 1), since tiny ET predictions are mostly false positives. `minVoxels` comes from the
 * voxel size (`minEnhancingVoxels`: 500 mm³). Returns a new array.
 */
export function suppressSmallEnhancingTumour(labels: Uint8Array, numClasses: number, minVoxels: number): Uint8Array {
  const et = regionClasses(numClasses).ET[0];
  let count = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i] === et) count++;
  const out = labels.slice();
  if (count > 0 && count < minVoxels) for (let i = 0; i < out.length; i++) if (out[i] === et) out[i] = 1;
  return out;
}

/**
 * Sets to background (0) every voxel outside the brain: where each of the `present` modalities of `images` is 0
 * (preprocessing keeps the background at exactly 0). Windows that straddle the edge of the brain's crop box
 * otherwise leave tumour labels in the empty space around the head. In place; returns `labels`.
 */
export function clearOutsideBrain(
  labels: Uint8Array /* (X, Y, Z) */,
  images: Float32Array /* (K, X, Y, Z) */,
  present: readonly boolean[] /* K */,
): Uint8Array {
  const voxels = labels.length;
  if (images.length !== present.length * voxels) throw new Error(`clearOutsideBrain: ${images.length} image values for ${present.length} × ${voxels} voxels`);
  const channels = present.flatMap((given, k) => (given ? [images.subarray(k * voxels, (k + 1) * voxels)] : []));
  for (let i = 0; i < voxels; i++) {
    if (labels[i] !== 0 && channels.every((channel) => channel[i] === 0)) labels[i] = 0;
  }
  return labels;
}
