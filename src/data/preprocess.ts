/**
 * Per-case preprocessing (docs/method.md §1) and the axis-order convention of the data
 * layer.
 *
 * Axis order. NIfTI stores a volume of shape (I, J, K) with i fastest. The
 * engine's tensors are row-major with the LAST axis fastest, shaped
 * (B, C, H, W, D). Everything below the file readers therefore uses C order:
 * a volume is (X, Y, Z) with X = i, Y = j, Z = k and z fastest, i.e. element
 * (x, y, z) sits at (x·Y + y)·Z + z. The spatial axes keep their NIfTI
 * meaning (the affine still applies to (x, y, z) = (i, j, k)); only the
 * memory order changes. Preprocessing transposes once (`cropToCOrder`), so a
 * cached (C, X, Y, Z) array becomes a tensor without a copy, and
 * `uncropFromCOrder` transposes back when pasting predictions into the
 * original grid.
 *
 * Preprocessing: validate the four modalities (+ label), crop everything to
 * the bounding box of voxels that are non-zero in any modality (widened to
 * hold every labelled voxel, should a label reach outside the brain, so no
 * ground truth is ever cut off), z-score each
 * modality over its own non-zero voxels (zeros stay exactly 0) and map label
 * values to class indices. A modality that is entirely zero, or constant over
 * its non-zero voxels, carries no usable intensity and is rejected as broken
 * input rather than silently turned into zeros.
 */
import * as fs from 'node:fs';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { BratsCase, BratsDataset } from './brats.ts';
import {
  CACHE_FORMAT_VERSION,
  inspectCachedCase,
  readCacheIndex,
  writeCachedCase,
  writeCacheIndex,
  type ArrayToStore,
  type CaseMeta,
  type Verification,
} from './cache.ts';
import { MODALITIES } from './modalities.ts';
import { checkFinite, checkSameGeometry, readVolume, type Volume } from './volume.ts';
import { voxelCount, type VoxelArray } from './voxel-array.ts';

/** Spatial sizes or voxel indices along (x, y, z) = (i, j, k). */
export type Shape3 = [number, number, number];

/** Axis-aligned box of source voxel indices: start inclusive, end exclusive. */
export interface CropBox {
  start: Shape3;
  end: Shape3;
}

export function cropBoxShape(box: CropBox): Shape3 {
  return [box.end[0] - box.start[0], box.end[1] - box.start[1], box.end[2] - box.start[2]];
}

function checkBoxInside(box: CropBox, shape: Shape3): void {
  for (let axis = 0; axis < 3; axis++) {
    if (!(box.start[axis] >= 0 && box.start[axis] < box.end[axis] && box.end[axis] <= shape[axis])) {
      throw new Error(
        `crop box [${box.start.join(', ')}]..[${box.end.join(', ')}] does not fit in shape (${shape.join(', ')})`,
      );
    }
  }
}

function sameTypeArray<T extends VoxelArray>(like: T, length: number): T {
  return new (like.constructor as new (length: number) => T)(length);
}

/**
 * Copies `box` out of a volume stored i-fastest with shape (I, J, K) into a
 * new C-order (X, Y, Z) array (z fastest) of the same element type.
 */
export function cropToCOrder<T extends VoxelArray>(data: T /* (I, J, K), i fastest */, shape: Shape3, box: CropBox): T {
  const [I, J, K] = shape;
  if (data.length !== I * J * K) throw new Error(`array of length ${data.length} does not match shape (${shape.join(', ')})`);
  checkBoxInside(box, shape);
  const [X, Y, Z] = cropBoxShape(box);
  const out = sameTypeArray(data, X * Y * Z);
  const strideK = I * J;
  let target = 0;
  for (let x = 0; x < X; x++) {
    for (let y = 0; y < Y; y++) {
      let source = box.start[0] + x + I * (box.start[1] + y) + strideK * box.start[2];
      for (let z = 0; z < Z; z++, source += strideK) out[target++] = data[source];
    }
  }
  return out;
}

/** The whole volume, transposed from i-fastest (I, J, K) to C-order (X, Y, Z) = (I, J, K). */
export function toCOrder<T extends VoxelArray>(data: T /* (I, J, K), i fastest */, shape: Shape3): T /* z fastest */ {
  return cropToCOrder(data, shape, { start: [0, 0, 0], end: [...shape] });
}

/**
 * Pastes a C-order (X, Y, Z) array (the crop `box`) into a zero volume of
 * `originalShape` stored i-fastest, ready to be written as NIfTI.
 */
export function uncropFromCOrder<T extends VoxelArray>(
  data: T /* (X, Y, Z), z fastest */,
  box: CropBox,
  originalShape: Shape3,
): T /* (I, J, K), i fastest */ {
  checkBoxInside(box, originalShape);
  const [X, Y, Z] = cropBoxShape(box);
  if (data.length !== X * Y * Z) {
    throw new Error(`array of length ${data.length} does not match crop shape (${X}, ${Y}, ${Z})`);
  }
  const [I, J, K] = originalShape;
  const out = sameTypeArray(data, I * J * K);
  const strideK = I * J;
  let source = 0;
  for (let x = 0; x < X; x++) {
    for (let y = 0; y < Y; y++) {
      let target = box.start[0] + x + I * (box.start[1] + y) + strideK * box.start[2];
      for (let z = 0; z < Z; z++, target += strideK) out[target] = data[source++];
    }
  }
  return out;
}

/** Inverse of `toCOrder`: C-order (X, Y, Z) back to i-fastest (I, J, K) = (X, Y, Z). */
export function fromCOrder<T extends VoxelArray>(data: T /* (X, Y, Z), z fastest */, shape: Shape3): T /* i fastest */ {
  return uncropFromCOrder(data, { start: [0, 0, 0], end: [...shape] }, shape);
}

/**
 * Smallest box holding every voxel that is non-zero in at least one of the
 * volumes (all i-fastest with `shape`); null when all are zero everywhere.
 */
export function nonZeroBoundingBox(volumes: VoxelArray[], shape: Shape3): CropBox | null {
  const [I, J, K] = shape;
  const start: Shape3 = [I, J, K];
  const end: Shape3 = [0, 0, 0];
  for (const volume of volumes) {
    let index = 0;
    for (let k = 0; k < K; k++) {
      for (let j = 0; j < J; j++) {
        for (let i = 0; i < I; i++, index++) {
          if (volume[index] === 0) continue;
          if (i < start[0]) start[0] = i;
          if (i >= end[0]) end[0] = i + 1;
          if (j < start[1]) start[1] = j;
          if (j >= end[1]) end[1] = j + 1;
          if (k < start[2]) start[2] = k;
          if (k >= end[2]) end[2] = k + 1;
        }
      }
    }
  }
  return end[0] === 0 ? null : { start, end };
}

/**
 * Z-scores `data` in place over its non-zero entries (population std);
 * zeros stay 0. Throws (naming `source`) when there are no non-zero entries
 * or they are all equal.
 */
export function zScoreNonZero(data: Float32Array, source: string): { mean: number; std: number } {
  let count = 0;
  let sum = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== 0) {
      count++;
      sum += data[i];
    }
  }
  if (count === 0) throw new Error(`${source}: no non-zero voxels (empty modality)`);
  const mean = sum / count;
  let squares = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== 0) squares += (data[i] - mean) ** 2;
  }
  const std = Math.sqrt(squares / count);
  if (!(std > 0)) throw new Error(`${source}: constant intensity ${mean} over its non-zero voxels (zero variance)`);
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== 0) data[i] = (data[i] - mean) / std;
  }
  return { mean, std };
}

/** What preprocessing needs from a data set (a `BratsDataset` or anything shaped like it). */
export type PreprocessDataset = Pick<BratsDataset, 'cases' | 'numClasses' | 'mapLabels'>;

/** A preprocessed case in memory, ready for `writeCachedCase`. */
export interface PreprocessedCase {
  meta: CaseMeta;
  /** (4, X, Y, Z), z fastest, modalities in MODALITIES order. */
  images: Float32Array;
  /** (X, Y, Z) class indices. */
  label?: Uint8Array;
}

/** The (I, J, K) grid of a 3D volume (trailing axes of size 1 allowed); anything else is an error naming `file`. */
export function spatialShape(volume: Volume, file: string): Shape3 {
  if (volume.shape.length < 3 || voxelCount(volume.shape.slice(3)) !== 1) {
    throw new Error(`${file}: expected a 3D volume, got shape [${volume.shape.join(', ')}]`);
  }
  return [volume.shape[0], volume.shape[1], volume.shape[2]];
}

/**
 * Crops modality volumes to `box` into their channels of a (channels, X, Y, Z) array, z fastest, each
 * z-scored over its non-zero voxels. Channels without a volume stay zero.
 */
export function cropAndNormalize(
  volumes: readonly { data: VoxelArray /* (I, J, K), i fastest */; file: string; channel: number }[],
  shape: Shape3,
  box: CropBox,
  channels: number,
): { images: Float32Array; normalization: { mean: number; std: number }[] } {
  const voxels = voxelCount(cropBoxShape(box));
  const images = new Float32Array(channels * voxels);
  const normalization = volumes.map(({ data, file, channel }) => {
    const target = images.subarray(channel * voxels, (channel + 1) * voxels);
    target.set(cropToCOrder(data, shape, box));
    return zScoreNonZero(target, file);
  });
  return { images, normalization };
}

function unionBox(a: CropBox, b: CropBox | null): CropBox {
  if (!b) return a;
  return {
    start: a.start.map((value, axis) => Math.min(value, b.start[axis])) as Shape3,
    end: a.end.map((value, axis) => Math.max(value, b.end[axis])) as Shape3,
  };
}

/** Reads, validates, crops, normalises and label-maps one case (see the module comment). */
export function preprocessCase(entry: BratsCase, dataset: Pick<PreprocessDataset, 'numClasses' | 'mapLabels'>): PreprocessedCase {
  const files = MODALITIES.map((modality) => entry.modalities[modality]);
  const volumes = files.map((file) => readVolume(file));
  const labelVolume = entry.label ? readVolume(entry.label) : undefined;
  const allVolumes = labelVolume ? [...volumes, labelVolume] : volumes;
  const allFiles = entry.label ? [...files, entry.label] : files;
  checkSameGeometry(allVolumes, allFiles);
  allVolumes.forEach((volume, index) => checkFinite(volume, allFiles[index]));
  const shape = spatialShape(volumes[0], files[0]);

  const brainBox = nonZeroBoundingBox(volumes.map((volume) => volume.data), shape);
  if (!brainBox) throw new Error(`case ${entry.id}: empty brain mask (all four modalities are zero everywhere in ${entry.dir})`);
  const classes = labelVolume && entry.label ? dataset.mapLabels(labelVolume.data, entry.label) : undefined;
  const box = classes ? unionBox(brainBox, nonZeroBoundingBox([classes], shape)) : brainBox;

  const croppedShape = cropBoxShape(box);
  const { images, normalization } = cropAndNormalize(
    volumes.map((volume, channel) => ({ data: volume.data, file: files[channel], channel })),
    shape,
    box,
    MODALITIES.length,
  );
  const sourceFiles: Record<string, string> = Object.fromEntries(MODALITIES.map((modality, c) => [modality, files[c]]));
  if (entry.label) sourceFiles.label = entry.label;
  return {
    meta: {
      id: entry.id,
      shape: croppedShape,
      originalShape: shape,
      cropBox: box,
      affine: volumes[0].affine.map((row) => [...row]),
      referenceFile: files[0],
      sourceFiles,
      modalities: [...MODALITIES],
      normalization,
      numClasses: dataset.numClasses,
    },
    images,
    label: classes ? cropToCOrder(classes, shape, box) : undefined,
  };
}

export interface PreprocessProgress {
  /** 1-based position of the case in the data set. */
  done: number;
  total: number;
  id: string;
  /** 'skipped': already finished in the cache; 'written': (re)processed now. */
  status: 'written' | 'skipped';
  /** Why a case was (re)written: nothing cached yet, partial, corrupt, other storage type. */
  reason?: string;
}

export interface PreprocessDatasetOptions {
  dataset: PreprocessDataset;
  /** One cache directory per data set. */
  cacheDir: string;
  /** Storage of the images; float16 halves the disk use (relative error ≤ 2^-11). Default float32. */
  imageDtype?: 'float32' | 'float16';
  /** How finished cases are checked before being skipped; default 'checksum'. */
  verify?: Verification;
  onProgress?: (progress: PreprocessProgress) => void;
}

/**
 * Preprocesses every case of the data set into `cacheDir`, skipping cases
 * already finished there (manifest present, arrays of the recorded size and
 * checksum, same image storage type) and redoing partial or corrupt ones.
 * index.json lists the finished cases and is kept current after every case,
 * so an interrupted run leaves a consistent cache. Yields to the event loop
 * between cases so progress displays can redraw.
 */
export async function preprocessDataset(options: PreprocessDatasetOptions): Promise<{ written: string[]; skipped: string[] }> {
  const { dataset, cacheDir } = options;
  const imageDtype = options.imageDtype ?? 'float32';
  const verify = options.verify ?? 'checksum';
  fs.mkdirSync(cacheDir, { recursive: true });
  const datasetIds = new Set(dataset.cases.map((entry) => entry.id));
  const finished = new Set(previouslyIndexed(cacheDir).filter((id) => datasetIds.has(id)));
  const saveIndex = () =>
    writeCacheIndex(cacheDir, {
      formatVersion: CACHE_FORMAT_VERSION,
      numClasses: dataset.numClasses,
      cases: dataset.cases.map((entry) => entry.id).filter((id) => finished.has(id)),
    });
  const written: string[] = [];
  const skipped: string[] = [];
  for (const [index, entry] of dataset.cases.entries()) {
    const required = entry.label ? ['images', 'label'] : ['images'];
    const inspection = inspectCachedCase(cacheDir, entry.id, verify, required);
    let reason: string | undefined;
    if (!inspection.finished) reason = inspection.reason;
    else if (inspection.manifest.arrays.images.dtype !== imageDtype) reason = `images stored as ${inspection.manifest.arrays.images.dtype}`;
    if (reason === undefined) {
      finished.add(entry.id);
      skipped.push(entry.id);
    } else {
      if (finished.delete(entry.id)) saveIndex();
      const processed = preprocessCase(entry, dataset);
      const [X, Y, Z] = processed.meta.shape;
      const arrays: Record<string, ArrayToStore> = {
        images: { data: processed.images, shape: [MODALITIES.length, X, Y, Z], dtype: imageDtype },
      };
      if (processed.label) arrays.label = { data: processed.label, shape: [X, Y, Z] };
      writeCachedCase(cacheDir, processed.meta, arrays);
      finished.add(entry.id);
      written.push(entry.id);
    }
    saveIndex();
    options.onProgress?.({
      done: index + 1,
      total: dataset.cases.length,
      id: entry.id,
      status: reason === undefined ? 'skipped' : 'written',
      reason,
    });
    await yieldToEventLoop();
  }
  return { written, skipped };
}

/** Cases listed by an earlier run; a missing or unreadable index is simply rebuilt. */
function previouslyIndexed(cacheDir: string): string[] {
  try {
    return readCacheIndex(cacheDir).cases;
  } catch {
    return [];
  }
}
