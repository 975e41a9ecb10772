// Segmentation metrics on label volumes: region masks, Dice, Hausdorff 95 %.
//
// Label volumes are class-index arrays in C order over (X, Y, Z) (Z fastest), the layout the
// preprocessing cache uses; `spacing` gives the voxel size in millimetres along X, Y, Z.
import { REGIONS, regionClasses, type Region } from '../data/regions.ts';

/** A binary mask (1 inside) of the voxels whose class belongs to `classes`. */
export function regionMask(labels: ArrayLike<number>, classes: readonly number[]): Uint8Array {
  const inRegion = new Uint8Array(256);
  for (const c of classes) inRegion[c] = 1;
  const mask = new Uint8Array(labels.length);
  for (let i = 0; i < labels.length; i++) mask[i] = inRegion[labels[i]];
  return mask;
}

/** Which regions a label map contains. */
export function regionsPresent(labels: ArrayLike<number>, numClasses: number): Record<Region, boolean> {
  const classes = regionClasses(numClasses);
  const present = new Set<number>();
  for (let i = 0; i < labels.length; i++) present.add(labels[i]);
  return Object.fromEntries(REGIONS.map((region) => [region, classes[region].some((c) => present.has(c))])) as Record<Region, boolean>;
}

/** 2|A∩B| / (|A| + |B|); 1 when both masks are empty (nothing to find, nothing found). */
export function dice(prediction: Uint8Array, truth: Uint8Array): number {
  if (prediction.length !== truth.length) throw new Error(`dice: masks have ${prediction.length} and ${truth.length} voxels`);
  let both = 0;
  let sum = 0;
  for (let i = 0; i < prediction.length; i++) {
    both += prediction[i] & truth[i];
    sum += prediction[i] + truth[i];
  }
  return sum === 0 ? 1 : (2 * both) / sum;
}

// ---------------------------------------------------------------------------------------------
// Hausdorff distance.

type Shape3 = readonly [number, number, number];

/** Voxels of the mask with at least one 6-neighbour outside it (the volume border counts as outside). */
function surface(mask: Uint8Array, [nx, ny, nz]: Shape3): Uint8Array {
  const out = new Uint8Array(mask.length);
  const sy = nz;
  const sx = ny * nz;
  for (let x = 0; x < nx; x++)
    for (let y = 0; y < ny; y++)
      for (let z = 0; z < nz; z++) {
        const i = x * sx + y * sy + z;
        if (!mask[i]) continue;
        const border = x === 0 || y === 0 || z === 0 || x === nx - 1 || y === ny - 1 || z === nz - 1;
        if (border || !mask[i - sx] || !mask[i + sx] || !mask[i - sy] || !mask[i + sy] || !mask[i - 1] || !mask[i + 1]) out[i] = 1;
      }
  return out;
}

/**
 * Exact squared Euclidean distance along one line (lower envelope of parabolas, Felzenszwalb &
 * Huttenlocher), in place on `f` with sample spacing `h`.
 */
function distanceTransform1d(f: Float64Array, n: number, h: number, v: Int32Array, zb: Float64Array, out: Float64Array): void {
  let k = 0;
  let first = 0;
  while (first < n && f[first] === Infinity) first++;
  if (first === n) return;
  v[0] = first;
  zb[0] = -Infinity;
  zb[1] = Infinity;
  for (let q = first + 1; q < n; q++) {
    if (f[q] === Infinity) continue;
    let s: number;
    // zb[0] = −∞ stops the search at the first parabola at the latest.
    for (;;) {
      const p = v[k];
      s = (f[q] + (q * h) ** 2 - (f[p] + (p * h) ** 2)) / (2 * h * (q - p));
      if (s > zb[k]) break;
      k--;
    }
    k++;
    v[k] = q;
    zb[k] = s;
    zb[k + 1] = Infinity;
  }
  k = 0;
  for (let q = 0; q < n; q++) {
    while (zb[k + 1] < q * h) k++;
    out[q] = ((q - v[k]) * h) ** 2 + f[v[k]];
  }
  for (let q = 0; q < n; q++) f[q] = out[q];
}

/** Squared distance (mm²) from every voxel to the nearest voxel set in `seeds`. */
function squaredDistanceTo(seeds: Uint8Array, shape: Shape3, spacing: Shape3): Float64Array {
  const [nx, ny, nz] = shape;
  const d = new Float64Array(seeds.length);
  for (let i = 0; i < seeds.length; i++) d[i] = seeds[i] ? 0 : Infinity;
  const longest = Math.max(nx, ny, nz);
  const line = new Float64Array(longest);
  const out = new Float64Array(longest);
  const v = new Int32Array(longest);
  const zb = new Float64Array(longest + 1);
  const strides = [ny * nz, nz, 1];
  const sizes = [nx, ny, nz];
  for (let axis = 0; axis < 3; axis++) {
    const n = sizes[axis];
    const stride = strides[axis];
    const others = [0, 1, 2].filter((a) => a !== axis);
    for (let a = 0; a < sizes[others[0]]; a++)
      for (let b = 0; b < sizes[others[1]]; b++) {
        const base = a * strides[others[0]] + b * strides[others[1]];
        for (let q = 0; q < n; q++) line[q] = d[base + q * stride];
        distanceTransform1d(line, n, spacing[axis], v, zb, out);
        for (let q = 0; q < n; q++) d[base + q * stride] = line[q];
      }
  }
  return d;
}

/** The p-th percentile with linear interpolation between order statistics (numpy's default). */
export function percentile(values: Float64Array, p: number): number {
  const sorted = values.slice().sort();
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

function directedSurfaceDistances(from: Uint8Array, toDistances: Float64Array): Float64Array {
  const out: number[] = [];
  for (let i = 0; i < from.length; i++) if (from[i]) out.push(Math.sqrt(toDistances[i]));
  return Float64Array.from(out);
}

/** Length in millimetres of the diagonal of a grid of `shape` voxels of size `spacing`. */
export function gridDiagonal(shape: Shape3, spacing: Shape3): number {
  return Math.hypot(shape[0] * spacing[0], shape[1] * spacing[1], shape[2] * spacing[2]);
}

/**
 * 95th-percentile Hausdorff distance in millimetres between the surfaces of two masks: the larger of
 * the two directed 95th percentiles (MONAI's definition). Both empty → 0; exactly one empty →
 * `worstDistance`, by default the diagonal of this grid (the BraTS challenge scores it as the diagonal of
 * the whole acquisition grid: pass that when the masks are a crop of it).
 */
export function hausdorff95(prediction: Uint8Array, truth: Uint8Array, shape: Shape3, spacing: Shape3 = [1, 1, 1], worstDistance = gridDiagonal(shape, spacing)): number {
  const predictionSurface = surface(prediction, shape);
  const truthSurface = surface(truth, shape);
  const hasPrediction = predictionSurface.some((v) => v === 1);
  const hasTruth = truthSurface.some((v) => v === 1);
  if (!hasPrediction && !hasTruth) return 0;
  if (!hasPrediction || !hasTruth) return worstDistance;
  const toTruth = directedSurfaceDistances(predictionSurface, squaredDistanceTo(truthSurface, shape, spacing));
  const toPrediction = directedSurfaceDistances(truthSurface, squaredDistanceTo(predictionSurface, shape, spacing));
  return Math.max(percentile(toTruth, 95), percentile(toPrediction, 95));
}

export interface RegionScores {
  dice: Record<Region, number>;
  hausdorff95: Record<Region, number>;
}

export interface ScoreOptions {
  /** Voxel size in millimetres; default 1 mm. */
  spacing?: Shape3;
  /** HD95 of a region found on one side only (see `hausdorff95`); default the diagonal of `shape`. */
  worstDistance?: number;
  /** False skips HD95 (reported as NaN): training validation needs Dice only. Default true. */
  hausdorff?: boolean;
}

/** Dice and HD95 of WT, TC and ET for one case. */
export function scoreCase(prediction: Uint8Array, truth: Uint8Array, numClasses: number, shape: Shape3, options: ScoreOptions = {}): RegionScores {
  const spacing = options.spacing ?? [1, 1, 1];
  const worstDistance = options.worstDistance ?? gridDiagonal(shape, spacing);
  const classes = regionClasses(numClasses);
  const scores: RegionScores = { dice: { WT: 0, TC: 0, ET: 0 }, hausdorff95: { WT: NaN, TC: NaN, ET: NaN } };
  for (const region of REGIONS) {
    const p = regionMask(prediction, classes[region]);
    const t = regionMask(truth, classes[region]);
    scores.dice[region] = dice(p, t);
    if (options.hausdorff ?? true) scores.hausdorff95[region] = hausdorff95(p, t, shape, spacing, worstDistance);
  }
  return scores;
}
