// Whole-volume segmentation of one case from any non-empty subset of its four modalities
// (docs/method.md §1, §7): sequences brought onto one grid, preprocessed as in training, resampled to the training
// voxel size when theirs differs, sliding window (SMML averages its branches), probabilities resampled back and pasted
// into the input grid, ET post-processing, labels in the data set's convention.
import * as path from 'node:path';
import { torch, type Tensor } from '../engine/index.ts';
import { MODALITIES, type Modality, type ModalityMask } from '../data/modalities.ts';
import {
  cropAndNormalize,
  type CropBox,
  cropBoxShape,
  cropToCOrder,
  nonZeroBoundingBox,
  type Shape3,
  spatialShape,
  uncropFromCOrder,
  zScoreNonZero,
} from '../data/preprocess.ts';
import { checkFinite, geometryMismatch, readVolume, voxelSpacing, writeVolume, type Volume } from '../data/volume.ts';
import { voxelCount, type VoxelArray } from '../data/voxel-array.ts';
import { inPrecision, modalityMask, type Precision, type SegmentationModel } from '../models/index.ts';
import { checkWritableFile } from './output.ts';
import { clearOutsideBrain, minEnhancingVoxels, suppressSmallEnhancingTumour } from './postprocess.ts';
import { needsResampling, resampledShape, resampleOntoGrid, resizeVolume, worldBox, worldBoxesOverlap } from './resample.ts';
import type { InferenceProcesses } from './processes.ts';
import { streamWindows, type WindowPredictor } from './sliding-window.ts';

/** A trained network ready for inference and how its classes are written to label files. */
export interface InferenceModel {
  model: SegmentationModel;
  /** Value stored in label files for class c (index c), e.g. [0, 1, 2, 4] for BraTS 2018–2021. */
  labelValues: readonly number[];
  /** Voxel size (mm, along i, j, k) of the training data: inputs on another are resampled to it. Absent: inputs are used on their own grid. */
  spacing?: Shape3;
}

/** Sliding-window settings shared by prediction and evaluation. */
export interface WholeVolumeOptions {
  /** Fraction of the patch shared by neighbouring windows; default 0.5 (docs/method.md §7). */
  overlap?: number;
  /** How overlapping windows are blended; default 'uniform' (plain averaging, docs/method.md §7). */
  weighting?: 'uniform' | 'gaussian';
  /** Windows per network call; default `defaultWindowBatch` of the patch. */
  batchSize?: number;
  /** Called after each window with (done, total). */
  onWindow?: (done: number, total: number) => void;
  /** The network's arithmetic, default 'fp32'; with 'bf16' it runs under bfloat16 autocast and its probabilities are blended in float32. */
  precision?: Precision;
}

/** Where whole-volume inference runs. */
export interface ProcessOptions {
  /** Processes that share the windows of each volume (on the CPU); absent: this process. */
  processes?: InferenceProcesses;
}

/**
 * The network's prediction of a batch of windows for several modality subsets, as `streamWindows` calls it: with one
 * subset the model's own inference path (SMML skips the encoders of absent modalities), with several each batch
 * encoded once and only the subset-dependent part run per subset (`encode` / `fuseProbabilities`: SMML's encoders do
 * not depend on the subset, docs/method.md §7; the U-Net's first convolution already mixes the modalities, so it runs
 * whole per subset). `dispose` frees the masks it made.
 */
export function subsetPredictor(
  model: SegmentationModel,
  subsets: readonly ModalityMask[],
  device: string,
): { predict: WindowPredictor; dispose: () => void } {
  const { patch, classes } = model.config;
  const masks = new Map<string, Tensor>();
  // One (B, K) mask per subset and batch size, made once.
  const maskOf = (s: number, batch: number) => {
    const key = `${s}/${batch}`;
    if (!masks.has(key)) masks.set(key, torch.keep(modalityMask(Array.from({ length: batch }, () => subsets[s])).to(device)));
    return masks.get(key)!;
  };
  const probabilities = (windows: Tensor, needed: readonly (readonly boolean[])[]): Tensor => {
    const batch = windows.size(0);
    if (subsets.length === 1) return model.predictProbabilities(windows, maskOf(0, batch)).unsqueeze(0);
    const encodings = model.encode(windows);
    return torch.stack(
      subsets.map((_, s) =>
        needed[s].some(Boolean) ? model.fuseProbabilities(encodings, maskOf(s, batch)) : torch.zeros([batch, classes, patch, patch, patch], { device }),
      ),
      0,
    );
  };
  // Float32 whatever the precision the network computes in (under bf16 autocast), for blending.
  const predict = (windows: Tensor, needed: readonly (readonly boolean[])[]): Tensor => probabilities(windows, needed).float();
  return { predict, dispose: () => masks.forEach((mask) => mask.dispose()) };
}

/** Checks what whole-volume inference is given: at least one subset, images (1, K, X, Y, Z). */
function checkWholeVolumeInput(images: Tensor, subsets: readonly ModalityMask[]): void {
  if (subsets.length === 0) throw new Error('whole-volume inference: no modality subset given');
  if (images.ndim !== 5 || images.size(0) !== 1) throw new Error(`expected images (1, K, X, Y, Z), got [${images.shape.join(', ')}]`);
}

/**
 * The network over the windows of a whole (preprocessed) volume for several modality subsets, blended window by
 * window (`streamWindows`, predictions of `subsetPredictor`): a window where every sequence of a subset is zero is not
 * predicted for it (it is outside the brain: background). Images must be on the model's device; the model is switched
 * to evaluation mode (no dropout). Slabs (S, C, n, Y, Z) along x go to `onSlab` in order.
 */
function streamSubsets(
  model: SegmentationModel,
  images: Tensor /* (1, K, X, Y, Z) */,
  subsets: readonly ModalityMask[],
  options: WholeVolumeOptions,
  onSlab: (xStart: number, blended: Tensor /* (S, C, n, Y, Z) */) => void,
): void {
  checkWholeVolumeInput(images, subsets);
  model.eval();
  const { patch, classes } = model.config;
  const predictor = subsetPredictor(model, subsets, images.device);
  try {
    // One scope for the whole volume casts each weight once; the probabilities are blended in float32.
    inPrecision(options.precision ?? 'fp32', images.device, () =>
      streamWindows(images, [patch, patch, patch], classes, subsets, predictor.predict, onSlab, {
        overlap: options.overlap ?? 0.5,
        weighting: options.weighting ?? 'uniform',
        batchSize: options.batchSize,
        onWindow: options.onWindow,
      }),
    );
  } finally {
    predictor.dispose();
  }
}

/** A slab consumer that copies blended slabs into `out` (S, C, X, Y, Z). */
const copyInto = (out: Tensor) => (x: number, slab: Tensor) => {
  out.narrow(2, x, slab.size(2)).copy_(slab);
};

/** A slab consumer that writes each slab's arg-max labels into `labels` (per subset (X, Y, Z), z fastest). */
const labelsInto = (labels: Uint8Array[], [, , , Y, Z]: number[]) => (x: number, slab: Tensor) => {
  argmaxLabels(slab).forEach((part, s) => labels[s].set(part, x * Y * Z));
};

/** Class probabilities of a whole (preprocessed) volume for several modality subsets (see `streamSubsets`). */
export function subsetProbabilities(
  model: SegmentationModel,
  images: Tensor /* (1, K, X, Y, Z) */,
  subsets: readonly ModalityMask[],
  options: WholeVolumeOptions = {},
): Tensor /* (S, C, X, Y, Z) */ {
  const [, , ...size] = images.shape;
  const out = torch.zeros([subsets.length, model.config.classes, ...size], { device: images.device });
  streamSubsets(model, images, subsets, options, copyInto(out));
  return out;
}

/**
 * Arg-max class per voxel of each subset's probabilities, (X, Y, Z) z fastest per subset, without holding every
 * subset's probabilities of the whole volume: each slab is reduced to labels as soon as it is final.
 */
export function subsetLabels(
  model: SegmentationModel,
  images: Tensor /* (1, K, X, Y, Z) */,
  subsets: readonly ModalityMask[],
  options: WholeVolumeOptions = {},
): Uint8Array[] {
  const [, , X, Y, Z] = images.shape;
  const labels = subsets.map(() => new Uint8Array(X * Y * Z));
  streamSubsets(model, images, subsets, options, labelsInto(labels, images.shape));
  return labels;
}

/** The blended slabs of `streamSubsets`, computed here or, with `options.processes`, split between those processes. */
async function streamAnywhere(
  model: SegmentationModel,
  images: Tensor /* (1, K, X, Y, Z) */,
  subsets: readonly ModalityMask[],
  options: WholeVolumeOptions & ProcessOptions,
  onSlab: (xStart: number, blended: Tensor /* (S, C, n, Y, Z) */) => void,
  what: string,
): Promise<void> {
  const { processes, ...windowOptions } = options;
  if (!processes) return streamSubsets(model, images, subsets, windowOptions, onSlab);
  checkWholeVolumeInput(images, subsets);
  if (images.device !== 'cpu') throw new Error(`${what}: inference processes run on the CPU, the images are on ${images.device}`);
  await processes.stream(images, subsets, windowOptions, onSlab, what);
}

/** `subsetProbabilities`, split between `options.processes` when given; `what` names the volume in errors. */
export async function wholeVolumeProbabilities(
  model: SegmentationModel,
  images: Tensor /* (1, K, X, Y, Z) */,
  subsets: readonly ModalityMask[],
  options: WholeVolumeOptions & ProcessOptions,
  what: string,
): Promise<Tensor /* (S, C, X, Y, Z) */> {
  const [, , ...size] = images.shape;
  const out = torch.zeros([subsets.length, model.config.classes, ...size], { device: images.device });
  try {
    await streamAnywhere(model, images, subsets, options, copyInto(out), what);
  } catch (error) {
    out.dispose();
    throw error;
  }
  return out;
}

/** `subsetLabels`, split between `options.processes` when given; `what` names the volume in errors. */
export async function wholeVolumeLabels(
  model: SegmentationModel,
  images: Tensor /* (1, K, X, Y, Z) */,
  subsets: readonly ModalityMask[],
  options: WholeVolumeOptions & ProcessOptions,
  what: string,
): Promise<Uint8Array[]> {
  const [, , X, Y, Z] = images.shape;
  const labels = subsets.map(() => new Uint8Array(X * Y * Z));
  await streamAnywhere(model, images, subsets, options, labelsInto(labels, images.shape), what);
  return labels;
}

/**
 * Arg-max class per voxel of each subset's probabilities: S arrays (X, Y, Z), z fastest. The classes are compared one
 * after another (a running maximum and the index where a class exceeds it), which keeps the first of equal maxima, as
 * libtorch's arg-max does, and is several times faster than its reduction across the class dimension of these
 * layouts (bench/README.md, "Around the network").
 */
export function argmaxLabels(probabilities: Tensor /* (S, C, X, Y, Z) */): Uint8Array[] {
  const subsets = probabilities.size(0);
  let all: Uint8Array = new Uint8Array(0);
  // Assigned rather than returned: tidy would walk every element of a returned typed array.
  torch.tidy(() => {
    let best = probabilities.select(1, 0);
    let labels = torch.zeros(best.shape, { dtype: 'uint8', device: probabilities.device });
    for (let c = 1; c < probabilities.size(1); c++) {
      const candidate = probabilities.select(1, c);
      labels = labels.maskedFill(candidate.gt(best), c);
      best = best.maximum(candidate);
    }
    all = labels.to('cpu').toTypedArray() as Uint8Array;
  });
  const voxels = all.length / subsets;
  return Array.from({ length: subsets }, (_, s) => all.slice(s * voxels, (s + 1) * voxels));
}

/** The modalities given for one case, preprocessed as in training (docs/method.md §1). */
export interface PreparedInput {
  /** (K, X, Y, Z), z fastest, on the input grid, modalities in MODALITIES order; channels of absent modalities are 0. */
  images: Float32Array;
  /** Cropped spatial shape (X, Y, Z). */
  shape: Shape3;
  /**
   * What the network sees when the input's voxel size differs from the training data's: the crop resampled to the
   * training voxel size (trilinear) and z-scored there. Absent when the input grid is used as it is.
   */
  network?: { images: Float32Array /* (K, X', Y', Z') */; shape: Shape3 };
  present: ModalityMask;
  cropBox: CropBox;
  /** Shape (I, J, K) of the input grid. */
  originalShape: Shape3;
  /** The reference sequence: the input grid is its grid, and outputs copy its geometry. */
  reference: Volume;
  /** Sequences that were resampled onto the reference's grid. */
  resampled: Modality[];
}

export interface PrepareOptions {
  /** Sequence whose grid the others are resampled onto when their grids differ; default the finest (smallest voxels). */
  reference?: Modality;
  /** Voxel size (mm, along i, j, k) the network was trained on; inputs on another are resampled to it. Default: none. */
  spacing?: Shape3;
}

/** Index (in `given`) of the reference sequence: the one asked for, or the one with the smallest voxels (the first of equals). */
function referenceIndex(given: readonly Modality[], volumes: readonly Volume[], wanted: Modality | undefined): number {
  if (wanted !== undefined) {
    const index = given.indexOf(wanted);
    if (index < 0) throw new Error(`the reference sequence ${wanted} is not among the given ones (${given.join(', ')})`);
    return index;
  }
  const voxelVolumes = volumes.map((volume) => voxelSpacing(volume.affine).reduce((product, size) => product * size, 1));
  return voxelVolumes.reduce((best, value, index) => (value < voxelVolumes[best] * (1 - 1e-6) ? index : best), 0);
}

/**
 * Reads the given modality files and brings them onto one grid: sequences on another grid than the reference's are
 * resampled onto it through their world geometry (trilinear; sequences whose world extents do not overlap the
 * reference's are an error naming both files). Then crops to the bounding box of voxels non-zero in any of them and
 * z-scores each over its non-zero voxels, with the same functions the training cache is made with; absent modalities
 * stay zero-filled. With `spacing`, a crop of another voxel size is also resampled to it for the network.
 */
export function prepareModalities(files: Partial<Record<Modality, string>>, options: PrepareOptions = {}): PreparedInput {
  const given = MODALITIES.filter((modality) => files[modality] !== undefined);
  if (given.length === 0) throw new Error(`no input modality given: pass at least one of ${MODALITIES.join(', ')}`);
  const paths = given.map((modality) => files[modality]!);
  const volumes = paths.map((file) => readVolume(file));
  volumes.forEach((volume, index) => checkFinite(volume, paths[index]));
  const shapes = volumes.map((volume, index) => spatialShape(volume, paths[index]));
  const r = referenceIndex(given, volumes, options.reference);
  const reference = volumes[r];
  const originalShape = shapes[r];
  const referenceBox = worldBox(originalShape, reference.affine);
  const resampled: Modality[] = [];
  const onGrid = volumes.map((volume, index) => {
    if (!geometryMismatch(reference, paths[r], volume, paths[index])) return volume.data;
    const box = worldBox(shapes[index], volume.affine);
    if (!worldBoxesOverlap(box, referenceBox)) {
      const extent = ({ min, max }: typeof box) => `[${min.map((v) => v.toFixed(1)).join(', ')}]–[${max.map((v) => v.toFixed(1)).join(', ')}] mm`;
      throw new Error(`${paths[index]} and ${paths[r]} do not overlap in world space (${extent(box)} vs ${extent(referenceBox)}): they cannot show the same head`);
    }
    resampled.push(given[index]);
    return resampleOntoGrid(volume.data, shapes[index], volume.affine, { shape: originalShape, affine: reference.affine });
  });
  const cropBox = nonZeroBoundingBox(onGrid, originalShape);
  if (!cropBox) throw new Error(`${paths.join(', ')}: every voxel is zero, there is no brain to segment`);
  const shape = cropBoxShape(cropBox);
  const channels = given.map((modality, index) => ({ data: onGrid[index], file: paths[index], channel: MODALITIES.indexOf(modality) }));
  const { images } = cropAndNormalize(channels, originalShape, cropBox, MODALITIES.length);
  const present = MODALITIES.map((modality) => given.includes(modality)) as unknown as ModalityMask;
  const inputSpacing = voxelSpacing(reference.affine);
  const prepared: PreparedInput = { images, shape, present, cropBox, originalShape, reference, resampled };
  if (options.spacing && needsResampling(inputSpacing, options.spacing)) {
    prepared.network = networkInput(channels, originalShape, cropBox, resampledShape(shape, inputSpacing, options.spacing));
  }
  return prepared;
}

/**
 * The crop of each channel resized to `networkShape` (trilinear on the raw intensities, so that the brain's edge blends
 * as an acquisition at that voxel size would), then z-scored over its non-zero voxels as in training.
 */
function networkInput(
  channels: readonly { data: VoxelArray; file: string; channel: number }[],
  originalShape: Shape3,
  cropBox: CropBox,
  networkShape: Shape3,
): { images: Float32Array; shape: Shape3 } {
  const shape = cropBoxShape(cropBox);
  const voxels = voxelCount(shape);
  const raw = new Float32Array(MODALITIES.length * voxels);
  for (const { data, channel } of channels) raw.subarray(channel * voxels, (channel + 1) * voxels).set(cropToCOrder(data, originalShape, cropBox));
  let images: Float32Array = new Float32Array(0);
  torch.tidy(() => {
    images = resizeVolume(torch.tensor(raw, [1, MODALITIES.length, ...shape]), networkShape).toTypedArray() as Float32Array;
  });
  const networkVoxels = voxelCount(networkShape);
  for (const { file, channel } of channels) zScoreNonZero(images.subarray(channel * networkVoxels, (channel + 1) * networkVoxels), `${file} (resampled to the training voxel size)`);
  return { images, shape: networkShape };
}

export interface PredictOptions extends WholeVolumeOptions, ProcessOptions {
  /** Sequence whose grid the others are resampled onto when their grids differ; default the finest. */
  reference?: Modality;
  /** Device of the model and of the images; default 'cpu'. */
  device?: string;
  /** Also return per-class probability maps. */
  probabilities?: boolean;
  /** ET post-processing threshold in mm³ (docs/method.md §7); default MIN_ENHANCING_VOLUME. */
  minEnhancingVolume?: number;
}

export interface CasePrediction {
  present: ModalityMask;
  /** Sequences resampled onto the reference sequence's grid. */
  resampled: Modality[];
  /** (I, J, K), i fastest, on the input grid: label values in the data set's convention. */
  labels: Uint8Array;
  /** (I, J, K, C), i fastest (class slowest): the model's class probabilities, before ET post-processing. */
  probabilities?: Float32Array;
  /** Input grid (I, J, K). */
  shape: Shape3;
  /** Volume whose geometry outputs copy. */
  reference: Volume;
}

/** Checks that a model can write labels of its classes and segment four-modality BraTS input. */
function checkInferenceModel({ model, labelValues }: InferenceModel): void {
  const { classes, modalities } = model.config;
  if (modalities !== MODALITIES.length) {
    throw new Error(`the model has ${modalities} input modalities; BraTS inference needs ${MODALITIES.length} (${MODALITIES.join(', ')})`);
  }
  if (labelValues.length !== classes) {
    throw new Error(`the model predicts ${classes} classes but its label convention lists ${labelValues.length} values [${labelValues.join(', ')}]`);
  }
  if (labelValues.some((value) => !Number.isInteger(value) || value < 0 || value > 255)) {
    throw new Error(`label values [${labelValues.join(', ')}] do not fit in uint8 label files`);
  }
}

/** Class indices → the data set's label values. */
export function toLabelValues(classes: Uint8Array, labelValues: readonly number[]): Uint8Array {
  const lookup = Uint8Array.from(labelValues);
  const out = new Uint8Array(classes.length);
  for (let i = 0; i < classes.length; i++) out[i] = lookup[classes[i]];
  return out;
}

/**
 * Per-class probabilities pasted into the input grid, (I, J, K, C) i fastest; outside the crop the
 * brain is absent, so background has probability 1 there.
 */
function uncropProbabilities(probabilities: Float32Array /* (C, X, Y, Z) */, box: CropBox, originalShape: Shape3): Float32Array {
  const cropped = voxelCount(cropBoxShape(box));
  const classes = probabilities.length / cropped;
  const gridVoxels = voxelCount(originalShape);
  const out = new Float32Array(classes * gridVoxels);
  for (let c = 0; c < classes; c++) {
    out.set(uncropFromCOrder(probabilities.subarray(c * cropped, (c + 1) * cropped), box, originalShape), c * gridVoxels);
  }
  const [I, J, K] = originalShape;
  let index = 0;
  for (let k = 0; k < K; k++)
    for (let j = 0; j < J; j++)
      for (let i = 0; i < I; i++, index++) {
        const inside =
          i >= box.start[0] && i < box.end[0] && j >= box.start[1] && j < box.end[1] && k >= box.start[2] && k < box.end[2];
        if (!inside) out[index] = 1;
      }
  return out;
}

/**
 * Segments one case from the given modality files (at least one; see `prepareModalities`), in this process or split
 * between `options.processes`.
 */
export async function predictCase(inference: InferenceModel, files: Partial<Record<Modality, string>>, options: PredictOptions = {}): Promise<CasePrediction> {
  checkInferenceModel(inference);
  const { model, labelValues } = inference;
  const input = prepareModalities(files, { reference: options.reference, spacing: inference.spacing });
  const network = input.network ?? { images: input.images, shape: input.shape };
  const images = torch.tensor(network.images, [1, MODALITIES.length, ...network.shape], { device: options.device ?? 'cpu' });
  let onNetworkGrid: Tensor;
  try {
    onNetworkGrid = await wholeVolumeProbabilities(model, images, [input.present], options, Object.values(files).join(', '));
  } finally {
    images.dispose();
  }
  let classes: Uint8Array = new Uint8Array(0);
  let probabilities: Float32Array | undefined;
  // Results leave the scope through assignments: tidy would walk every element of returned typed arrays.
  try {
    torch.tidy(() => {
      // Probabilities, not labels, go back to the input grid (nnU-Net's order): the arg-max then sees the blend.
      const blended = input.network ? resizeVolume(onNetworkGrid, input.shape) : onNetworkGrid;
      classes = clearOutsideBrain(argmaxLabels(blended)[0], input.images, input.present);
      if (options.probabilities) probabilities = blended.to('cpu').toTypedArray() as Float32Array;
    });
  } finally {
    onNetworkGrid.dispose();
  }
  const threshold = minEnhancingVoxels(voxelSpacing(input.reference.affine), options.minEnhancingVolume);
  const processed = suppressSmallEnhancingTumour(classes, model.config.classes, threshold);
  const prediction: CasePrediction = {
    present: input.present,
    resampled: input.resampled,
    labels: uncropFromCOrder(toLabelValues(processed, labelValues), input.cropBox, input.originalShape),
    shape: input.originalShape,
    reference: input.reference,
  };
  if (probabilities) prediction.probabilities = uncropProbabilities(probabilities, input.cropBox, input.originalShape);
  return prediction;
}

const NIFTI_OUTPUT = /\.nii(\.gz)?$/i;

function checkNiftiOutput(file: string, what: string): void {
  if (!NIFTI_OUTPUT.test(file)) throw new Error(`${what} ${file}: the name must end in .nii or .nii.gz`);
  checkWritableFile(file, what);
}

export interface PredictFilesOptions extends Omit<PredictOptions, 'probabilities'> {
  /** Label volume to write (.nii or .nii.gz). */
  out: string;
  /** Optional 4D NIfTI (I, J, K, C) of per-class probabilities, volume c = class c. */
  probabilities?: string;
}

/**
 * `predictCase` and writing its outputs with the input's geometry. Output paths are checked before
 * inference starts and every file is written atomically, so a failure leaves nothing half-written.
 */
export async function predictToFiles(inference: InferenceModel, files: Partial<Record<Modality, string>>, options: PredictFilesOptions): Promise<CasePrediction> {
  checkNiftiOutput(options.out, 'segmentation output');
  if (options.probabilities !== undefined) {
    checkNiftiOutput(options.probabilities, 'probability output');
    if (path.resolve(options.probabilities) === path.resolve(options.out)) {
      throw new Error(`the probability maps and the segmentation would both be written to ${options.out}`);
    }
  }
  const prediction = await predictCase(inference, files, { ...options, probabilities: options.probabilities !== undefined });
  if (options.probabilities !== undefined && prediction.probabilities) {
    writeVolume(options.probabilities, prediction.probabilities, [...prediction.shape, inference.model.config.classes], prediction.reference);
  }
  writeVolume(options.out, prediction.labels, prediction.shape, prediction.reference);
  return prediction;
}
