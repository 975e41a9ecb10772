/**
 * Training-time augmentation (docs/method.md §1) on plain typed arrays: random patch
 * crop (zero padding when the volume is smaller), a small random rotation,
 * per-modality intensity shift/scale and random flips.
 *
 * Layout: every volume is C-order (X, Y, Z) with z fastest, the cache layout
 * documented in preprocess.ts. Outputs have the patch shape (PX, PY, PZ).
 *
 * Choices:
 * - Crop and rotation are one resampling pass over the patch grid, so the
 *   cost scales with the patch, not the volume. Patch voxel p samples the
 *   volume at c + R·(p − (P−1)/2), c being the centre of the crop window;
 *   without rotation this is an exact integer copy.
 * - Rotation: about ONE axis chosen uniformly from x, y, z, by an angle
 *   uniform in ±maxRotationDegrees.
 *   Trilinear interpolation for float channels, nearest neighbour for labels,
 *   zero outside the volume.
 * - Intensity: per image channel x' = x·(1+s) + m with s ~ U(±intensityScale),
 *   m ~ U(±intensityShift), applied only where the channel is non-zero, so
 *   background (and padding) stays exactly 0 as after z-scoring.
 * - Flips: each axis independently with probability 0.5, after intensity.
 * - Extra float channels (e.g. semantic priors) get exactly the same spatial
 *   transform as the images but no intensity change; the label gets the same
 *   spatial transform with nearest-neighbour sampling.
 * - Every random number is drawn in a fixed order whatever the switches are,
 *   so turning one piece off does not change the others.
 */
import type { Shape3 } from './preprocess.ts';
import { randInt, uniform, type Rng } from './random.ts';

/** One training case as seen by the augmentation; every array is (X, Y, Z), z fastest. */
export interface AugmentInput {
  shape: Shape3;
  /** One volume per modality: spatial and intensity transforms. */
  images: Float32Array[];
  /** Further per-voxel float maps (priors): spatial transforms only. */
  extras?: Float32Array[];
  /** Class indices: spatial transforms with nearest-neighbour sampling. */
  label?: Uint8Array;
}

/** Patch-sized results, each (PX, PY, PZ), z fastest, in the order of the input lists. */
export interface AugmentOutput {
  images: Float32Array[];
  extras: Float32Array[];
  label?: Uint8Array;
}

export interface AugmentOptions {
  /** Where the patch is taken: uniformly at random, or centred (deterministic). */
  crop: 'random' | 'center';
  /** Largest rotation angle in degrees; 0 disables rotation. */
  maxRotationDegrees: number;
  /** Half-width of the additive intensity shift m; 0 disables it. */
  intensityShift: number;
  /** Half-width of the relative intensity scale s; 0 disables it. */
  intensityScale: number;
  /** Random flip of each axis with probability 0.5. */
  flip: boolean;
  /**
   * Chance that a random crop is centred on a uniformly drawn tumour voxel instead of placed uniformly
   * (nnU-Net's foreground oversampling); 0 is the paper's plain random crop. Needs labels.
   */
  foregroundProbability: number;
}

/** The paper's training augmentation. */
export const DEFAULT_AUGMENTATION: Readonly<AugmentOptions> = Object.freeze({
  crop: 'random',
  maxRotationDegrees: 10,
  intensityShift: 0.1,
  intensityScale: 0.1,
  flip: true,
  foregroundProbability: 0,
});

/** Random patch crop and nothing else. */
export const CROP_ONLY: Readonly<AugmentOptions> = Object.freeze({
  crop: 'random',
  maxRotationDegrees: 0,
  intensityShift: 0,
  intensityScale: 0,
  flip: false,
  foregroundProbability: 0,
});

/** The concrete random choices for one sample. */
export interface AugmentParams {
  /** Volume voxel under patch voxel (0, 0, 0) before rotation; negative where the patch pads. */
  origin: Shape3;
  rotationAxis: 0 | 1 | 2;
  rotationDegrees: number;
  /** Per image channel: x' = x·scale + shift on non-zero voxels. */
  intensity: { scale: number; shift: number }[];
  flips: [boolean, boolean, boolean];
}

/** Row-major 3x3 matrix. */
export type Matrix3 = [number, number, number, number, number, number, number, number, number];

/** Uniform in [−halfWidth, halfWidth); always consumes one draw, exactly 0 when disabled. */
function symmetricDraw(rng: Rng, halfWidth: number): number {
  const value = uniform(rng, -halfWidth, halfWidth);
  return halfWidth === 0 ? 0 : value;
}

/** Index of the `k`-th (0-based) non-zero voxel of `label`. */
function nthForegroundVoxel(label: Uint8Array, k: number): number {
  let seen = 0;
  for (let i = 0; i < label.length; i++) {
    if (label[i] !== 0 && seen++ === k) return i;
  }
  throw new Error(`label has fewer than ${k + 1} foreground voxels`);
}

/**
 * Patch origin whose centre is a random tumour voxel, kept inside the range a uniform crop could take;
 * null when the label has no tumour.
 */
function foregroundOrigin(shape: Shape3, patchSize: Shape3, label: Uint8Array, rng: Rng): Shape3 | null {
  let count = 0;
  for (let i = 0; i < label.length; i++) if (label[i] !== 0) count++;
  if (count === 0) return null;
  const index = nthForegroundVoxel(label, randInt(rng, 0, count));
  const voxel = [Math.floor(index / (shape[1] * shape[2])), Math.floor(index / shape[2]) % shape[1], index % shape[2]];
  return voxel.map((v, axis) => {
    const slack = shape[axis] - patchSize[axis];
    const centred = v - Math.floor(patchSize[axis] / 2);
    return Math.min(Math.max(centred, Math.min(0, slack)), Math.max(0, slack));
  }) as Shape3;
}

/**
 * Draws every random choice for one sample in a fixed order (crop, rotation, flips, intensity).
 * `label` is needed only for foreground oversampling.
 */
export function drawAugmentParams(
  shape: Shape3,
  patchSize: Shape3,
  imageCount: number,
  rng: Rng,
  options: AugmentOptions,
  label?: Uint8Array,
): AugmentParams {
  const uniformOrigin = [0, 1, 2].map((axis) => {
    const slack = shape[axis] - patchSize[axis];
    const drawn = slack >= 0 ? randInt(rng, 0, slack + 1) : -randInt(rng, 0, -slack + 1);
    return options.crop === 'random' ? drawn : Math.floor(slack / 2);
  }) as Shape3;
  // Draws happen only when oversampling is on, so plain random crops keep their random stream.
  const centreOnTumour =
    options.crop === 'random' && options.foregroundProbability > 0 && label !== undefined && rng() < options.foregroundProbability;
  const origin = (centreOnTumour && foregroundOrigin(shape, patchSize, label, rng)) || uniformOrigin;
  const rotationAxis = randInt(rng, 0, 3) as 0 | 1 | 2;
  const angle = symmetricDraw(rng, options.maxRotationDegrees);
  const flipDraws = [rng(), rng(), rng()];
  const intensity = Array.from({ length: imageCount }, () => {
    const s = symmetricDraw(rng, options.intensityScale);
    const m = symmetricDraw(rng, options.intensityShift);
    return { scale: 1 + s, shift: m };
  });
  return {
    origin,
    rotationAxis,
    rotationDegrees: angle,
    intensity,
    flips: flipDraws.map((u) => options.flip && u < 0.5) as [boolean, boolean, boolean],
  };
}

/**
 * Crop + rotation, then intensity, then flips (see the module comment).
 * `out` lets the caller supply the destination arrays (e.g. views into a
 * batch buffer); every voxel of them is overwritten.
 */
export function augmentSample(
  input: AugmentInput,
  patchSize: Shape3,
  rng: Rng,
  options: AugmentOptions = DEFAULT_AUGMENTATION,
  out?: AugmentOutput,
): AugmentOutput {
  const params = drawAugmentParams(input.shape, patchSize, input.images.length, rng, options, input.label);
  return applyAugmentation(input, patchSize, params, out);
}

/** Applies already drawn parameters; deterministic. */
export function applyAugmentation(
  input: AugmentInput,
  patchSize: Shape3,
  params: AugmentParams,
  out?: AugmentOutput,
): AugmentOutput {
  const rotation =
    params.rotationDegrees === 0 ? null : rotationMatrix(params.rotationAxis, params.rotationDegrees);
  const result = resamplePatch(input, patchSize, params.origin, rotation, out);
  result.images.forEach((channel, c) => scaleNonZero(channel, params.intensity[c].scale, params.intensity[c].shift));
  params.flips.forEach((flipped, axis) => {
    if (!flipped) return;
    for (const channel of [...result.images, ...result.extras]) flipInPlace(channel, patchSize, axis as 0 | 1 | 2);
    if (result.label) flipInPlace(result.label, patchSize, axis as 0 | 1 | 2);
  });
  return result;
}

/** Rotation by `degrees` about coordinate axis `axis` (right-handed: x→y about z, y→z about x, z→x about y). */
export function rotationMatrix(axis: 0 | 1 | 2, degrees: number): Matrix3 {
  const radians = (degrees * Math.PI) / 180;
  const cos = Math.cos(radians);
  const sin = Math.sin(radians);
  const matrix: Matrix3 = [1, 0, 0, 0, 1, 0, 0, 0, 1];
  const u = (axis + 1) % 3;
  const v = (axis + 2) % 3;
  matrix[u * 3 + u] = cos;
  matrix[u * 3 + v] = -sin;
  matrix[v * 3 + u] = sin;
  matrix[v * 3 + v] = cos;
  return matrix;
}

function checkArrays(input: AugmentInput): void {
  const [X, Y, Z] = input.shape;
  const voxels = X * Y * Z;
  const arrays: ArrayLike<number>[] = [...input.images, ...(input.extras ?? [])];
  if (input.label) arrays.push(input.label);
  for (const array of arrays) {
    if (array.length !== voxels) {
      throw new Error(`augmentation: array of length ${array.length} does not match shape (${X}, ${Y}, ${Z})`);
    }
  }
}

function allocateOutput(input: AugmentInput, patchVoxels: number, out?: AugmentOutput): AugmentOutput {
  const extras = input.extras ?? [];
  const result: AugmentOutput = out ?? {
    images: input.images.map(() => new Float32Array(patchVoxels)),
    extras: extras.map(() => new Float32Array(patchVoxels)),
    label: input.label ? new Uint8Array(patchVoxels) : undefined,
  };
  const outArrays: ArrayLike<number>[] = [...result.images, ...result.extras];
  if (result.label) outArrays.push(result.label);
  if (
    result.images.length !== input.images.length ||
    result.extras.length !== extras.length ||
    Boolean(result.label) !== Boolean(input.label) ||
    outArrays.some((array) => array.length !== patchVoxels)
  ) {
    throw new Error('augmentation: output arrays do not match the input channels and patch size');
  }
  return result;
}

/**
 * Samples the patch grid from the volume: patch voxel p reads volume point
 * c + R·(p − (P−1)/2) with c = origin + (P−1)/2 (exact integer copy when
 * `rotation` is null). Points outside the volume read 0.
 */
export function resamplePatch(
  input: AugmentInput,
  patchSize: Shape3,
  origin: Shape3,
  rotation: Matrix3 | null,
  out?: AugmentOutput,
): AugmentOutput {
  checkArrays(input);
  const [PX, PY, PZ] = patchSize;
  const result = allocateOutput(input, PX * PY * PZ, out);
  const sources = [...input.images, ...(input.extras ?? [])];
  const targets = [...result.images, ...result.extras];
  if (rotation === null) {
    copyWindow(input.shape, patchSize, origin, sources, targets);
    if (input.label && result.label) copyWindow(input.shape, patchSize, origin, [input.label], [result.label]);
  } else {
    resampleRotated(input.shape, patchSize, origin, rotation, sources, targets, input.label, result.label);
  }
  return result;
}

type PatchArray = Float32Array | Uint8Array;

function copyWindow(shape: Shape3, patchSize: Shape3, origin: Shape3, sources: PatchArray[], targets: PatchArray[]): void {
  const [X, Y, Z] = shape;
  const [PX, PY, PZ] = patchSize;
  const [ox, oy, oz] = origin;
  // Patch z range [zLow, zHigh) lies inside the volume.
  const zLow = Math.max(0, -oz);
  const zHigh = Math.min(PZ, Z - oz);
  for (const target of targets) target.fill(0);
  if (zHigh <= zLow) return;
  for (let px = 0; px < PX; px++) {
    const x = ox + px;
    if (x < 0 || x >= X) continue;
    for (let py = 0; py < PY; py++) {
      const y = oy + py;
      if (y < 0 || y >= Y) continue;
      const sourceStart = (x * Y + y) * Z + oz + zLow;
      const targetStart = (px * PY + py) * PZ + zLow;
      for (let c = 0; c < sources.length; c++) {
        targets[c].set(sources[c].subarray(sourceStart, sourceStart + zHigh - zLow), targetStart);
      }
    }
  }
}

/** Where a sample point falls: no neighbour inside, all 8 neighbours inside, or some inside. */
const OUTSIDE = 0;
const INTERIOR = 1;
const BORDER = 2;

function resampleRotated(
  shape: Shape3,
  patchSize: Shape3,
  origin: Shape3,
  rotation: Matrix3,
  sources: Float32Array[],
  targets: Float32Array[],
  labelSource: Uint8Array | undefined,
  labelTarget: Uint8Array | undefined,
): void {
  const [X, Y, Z] = shape;
  const [PX, PY, PZ] = patchSize;
  const half = patchSize.map((p) => (p - 1) / 2);
  const centre = origin.map((o, axis) => o + half[axis]);
  const [r00, r01, r02, r10, r11, r12, r20, r21, r22] = rotation;
  const strideX = Y * Z;
  // Geometry of one patch row (fixed px, py) is computed once and reused by every channel.
  const kinds = new Uint8Array(PZ);
  const bases = new Int32Array(PZ);
  const corners = new Int32Array(3 * PZ);
  const fractions = new Float64Array(3 * PZ);
  for (let px = 0; px < PX; px++) {
    const dx = px - half[0];
    for (let py = 0; py < PY; py++) {
      const dy = py - half[1];
      const rowStart = (px * PY + py) * PZ;
      for (let pz = 0; pz < PZ; pz++) {
        const dz = pz - half[2];
        const vx = centre[0] + r00 * dx + r01 * dy + r02 * dz;
        const vy = centre[1] + r10 * dx + r11 * dy + r12 * dz;
        const vz = centre[2] + r20 * dx + r21 * dy + r22 * dz;
        if (labelSource && labelTarget) {
          const nx = Math.floor(vx + 0.5);
          const ny = Math.floor(vy + 0.5);
          const nz = Math.floor(vz + 0.5);
          const inside = nx >= 0 && nx < X && ny >= 0 && ny < Y && nz >= 0 && nz < Z;
          labelTarget[rowStart + pz] = inside ? labelSource[nx * strideX + ny * Z + nz] : 0;
        }
        const x0 = Math.floor(vx);
        const y0 = Math.floor(vy);
        const z0 = Math.floor(vz);
        corners[3 * pz] = x0;
        corners[3 * pz + 1] = y0;
        corners[3 * pz + 2] = z0;
        fractions[3 * pz] = vx - x0;
        fractions[3 * pz + 1] = vy - y0;
        fractions[3 * pz + 2] = vz - z0;
        bases[pz] = x0 * strideX + y0 * Z + z0;
        if (x0 < -1 || x0 >= X || y0 < -1 || y0 >= Y || z0 < -1 || z0 >= Z) kinds[pz] = OUTSIDE;
        else if (x0 >= 0 && x0 + 1 < X && y0 >= 0 && y0 + 1 < Y && z0 >= 0 && z0 + 1 < Z) kinds[pz] = INTERIOR;
        else kinds[pz] = BORDER;
      }
      for (let c = 0; c < sources.length; c++) {
        const source = sources[c];
        const target = targets[c];
        for (let pz = 0; pz < PZ; pz++) {
          const kind = kinds[pz];
          if (kind === OUTSIDE) {
            target[rowStart + pz] = 0;
            continue;
          }
          const fx = fractions[3 * pz];
          const fy = fractions[3 * pz + 1];
          const fz = fractions[3 * pz + 2];
          if (kind === BORDER) {
            target[rowStart + pz] = trilinearAtBorder(source, shape, corners[3 * pz], corners[3 * pz + 1], corners[3 * pz + 2], fx, fy, fz);
            continue;
          }
          const base = bases[pz];
          const low = (1 - fz) * source[base] + fz * source[base + 1];
          const lowY = (1 - fz) * source[base + Z] + fz * source[base + Z + 1];
          const highX = (1 - fz) * source[base + strideX] + fz * source[base + strideX + 1];
          const highXY = (1 - fz) * source[base + strideX + Z] + fz * source[base + strideX + Z + 1];
          target[rowStart + pz] = (1 - fx) * ((1 - fy) * low + fy * lowY) + fx * ((1 - fy) * highX + fy * highXY);
        }
      }
    }
  }
}

/** Trilinear sample where some of the 8 neighbours fall outside the volume (they count as 0). */
function trilinearAtBorder(
  source: Float32Array,
  shape: Shape3,
  x0: number,
  y0: number,
  z0: number,
  fx: number,
  fy: number,
  fz: number,
): number {
  const [X, Y, Z] = shape;
  let sum = 0;
  for (let i = 0; i < 2; i++) {
    const x = x0 + i;
    if (x < 0 || x >= X) continue;
    const wx = i ? fx : 1 - fx;
    for (let j = 0; j < 2; j++) {
      const y = y0 + j;
      if (y < 0 || y >= Y) continue;
      const wy = j ? fy : 1 - fy;
      for (let k = 0; k < 2; k++) {
        const z = z0 + k;
        if (z < 0 || z >= Z) continue;
        sum += wx * wy * (k ? fz : 1 - fz) * source[(x * Y + y) * Z + z];
      }
    }
  }
  return sum;
}

/** x ← x·scale + shift on the non-zero entries; zeros (background, padding) stay 0. */
export function scaleNonZero(data: Float32Array, scale: number, shift: number): void {
  if (scale === 1 && shift === 0) return;
  for (let i = 0; i < data.length; i++) {
    const value = data[i];
    if (value !== 0) data[i] = value * scale + shift;
  }
}

/** Reverses `data` (shape (X, Y, Z), z fastest) along `axis`, in place. */
export function flipInPlace(data: PatchArray, shape: Shape3, axis: 0 | 1 | 2): void {
  const [X, Y, Z] = shape;
  if (data.length !== X * Y * Z) {
    throw new Error(`flipInPlace: array of length ${data.length} does not match shape (${X}, ${Y}, ${Z})`);
  }
  if (axis === 2) {
    for (let row = 0; row < X * Y; row++) data.subarray(row * Z, (row + 1) * Z).reverse();
    return;
  }
  // Swap whole contiguous blocks: rows of Z along y, slabs of Y·Z along x.
  const blockLength = axis === 1 ? Z : Y * Z;
  const blockCount = axis === 1 ? Y : X;
  const groupCount = axis === 1 ? X : 1;
  const held = data.slice(0, blockLength);
  for (let group = 0; group < groupCount; group++) {
    const groupStart = group * blockCount * blockLength;
    for (let low = 0, high = blockCount - 1; low < high; low++, high--) {
      const lowStart = groupStart + low * blockLength;
      const highStart = groupStart + high * blockLength;
      held.set(data.subarray(lowStart, lowStart + blockLength));
      data.copyWithin(lowStart, highStart, highStart + blockLength);
      data.set(held, highStart);
    }
  }
}
