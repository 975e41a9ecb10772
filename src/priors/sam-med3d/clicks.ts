// Simulated clicks, as SAM-Med3D's interactive evaluation places them: a voxel drawn uniformly from the
// error of the current prediction (the whole object before the first prediction), positive where the
// prediction missed the object, negative where it covered background.
import type { Shape3 } from '../../data/preprocess.ts';
import { randInt, type Rng } from '../../data/random.ts';

export interface Click {
  /** Voxel indices (x, y, z) in the volume the masks live in. */
  point: Shape3;
  /** true: inside the object (a missed voxel); false: a false-positive voxel. */
  positive: boolean;
}

/**
 * Draws the next click from the voxels where `predicted` (0/1, or null before any prediction) and
 * `truth` (0/1) disagree. Null when they agree everywhere (no error to correct).
 */
export function sampleClick(truth: Uint8Array, predicted: Uint8Array | null, shape: Shape3, rng: Rng): Click | null {
  const [, Y, Z] = shape;
  if (truth.length !== shape[0] * Y * Z || (predicted && predicted.length !== truth.length)) {
    throw new Error(`sampleClick: masks of ${truth.length}/${predicted?.length ?? '-'} voxels do not fit shape (${shape.join(', ')})`);
  }
  const errors = new Int32Array(truth.length);
  let count = 0;
  for (let v = 0; v < truth.length; v++) {
    if (predicted ? (truth[v] !== 0) !== (predicted[v] !== 0) : truth[v] !== 0) errors[count++] = v;
  }
  if (count === 0) return null;
  const chosen = errors[randInt(rng, 0, count)];
  return { point: [Math.floor(chosen / (Y * Z)), Math.floor(chosen / Z) % Y, chosen % Z], positive: truth[chosen] !== 0 };
}
