/**
 * One synthetic BraTS-like case: the anatomy and tumour models turned into
 * four co-registered MR sequences and a BraTS 2020 label map.
 *
 * Per case the generator draws: anatomy (brain size, atrophy, ventricle size,
 * fold pattern), the tumour (grade, size, place, shape, necrosis, enhancement,
 * oedema extent, mass effect), small contrast variations (±4 % per tissue and
 * sequence), a global intensity scale per sequence (scanner gain), a smooth
 * multiplicative bias field per sequence, and Rician noise (magnitude of a
 * complex signal with Gaussian noise in both channels).
 */
import type { Modality } from '../modalities.ts';
import { createRng, uniform, type Rng } from '../random.ts';
import { BrainAnatomy, emptyHealthyTissue, type HealthyTissue } from './anatomy.ts';
import {
  CONTRAST_TABLE,
  SYNTHETIC_MODALITIES,
  TISSUES,
  TISSUE_INDEX,
  WHITE_MATTER_LEVEL,
} from './contrast.ts';
import { GradientNoise, gaussian, gaussianPair } from './noise.ts';
import { TumourModel, emptyTumourSample, gradeOfCase, type TumourGrade, type TumourSample } from './tumour.ts';

/** BraTS 2020 label values. */
export const LABEL_BACKGROUND = 0;
export const LABEL_NECROSIS = 1;
export const LABEL_EDEMA = 2;
export const LABEL_ENHANCING = 4;

/** Value of `SyntheticCase.tissue` outside the brain. */
export const OUTSIDE_BRAIN = 255;

/** Smallest in-plane size the phantom supports (its structures need a few voxels each). */
export const MIN_SYNTHETIC_SIZE = 16;

/** Largest value of the int16 images. */
const INT16_MAX = 32767;

export interface SyntheticCase {
  /** [X, Y, Z]: i → right, j → anterior, k → superior, voxels of 240/S mm. */
  shape: [number, number, number];
  /** Voxel → world (RAS+ mm) matrix, 4 × 4. */
  affine: number[][];
  /** Images in int16, 0 outside the brain and ≥ 1 inside, (X, Y, Z) with x fastest. */
  images: Record<Modality, Int16Array>;
  /** BraTS 2020 labels {0, 1, 2, 4}, (X, Y, Z) with x fastest. */
  labels: Uint8Array;
  /** Dominant tissue per voxel as an index into TISSUES, OUTSIDE_BRAIN outside; ground truth for checking contrast. */
  tissue: Uint8Array;
  grade: TumourGrade;
}

/** Volume shape for a given in-plane size: brain-like aspect, like BraTS's 240 × 240 × 155. */
export function syntheticShape(size: number): [number, number, number] {
  if (!Number.isInteger(size) || size < MIN_SYNTHETIC_SIZE) {
    throw new Error(`synthetic data: size must be an integer ≥ ${MIN_SYNTHETIC_SIZE}, got ${size}`);
  }
  return [size, size, Math.round(size * 0.65)];
}

/** Field of view of the synthetic volumes along X and Y in millimetres, as BraTS's 240 voxels of 1 mm. */
export const SYNTHETIC_FIELD_OF_VIEW = 240;

/**
 * Isotropic RAS+ affine with the world origin at the centre of the volume. Voxels are 240/S mm, so a
 * phantom brain is brain-sized in millimetres at every S (1 mm at S = 240, like BraTS): millimetre
 * measures (HD95, the ET post-processing volume) mean the same as on BraTS.
 */
export function syntheticAffine(shape: readonly [number, number, number]): number[][] {
  const spacing = SYNTHETIC_FIELD_OF_VIEW / shape[0];
  return [
    [spacing, 0, 0, (-(shape[0] - 1) / 2) * spacing],
    [0, spacing, 0, (-(shape[1] - 1) / 2) * spacing],
    [0, 0, spacing, (-(shape[2] - 1) / 2) * spacing],
    [0, 0, 0, 1],
  ];
}

/** Intensity settings of one case, per sequence. */
interface Acquisition {
  /** Relative intensity per tissue, indexed like TISSUES. */
  contrast: Float64Array;
  gain: number;
  noiseSigma: number;
  /** Coefficients of the log bias field on (u, v, w, u², v², w², uv, uw, vw), coordinates in [-1, 1] over the volume. */
  bias: number[];
}

function drawAcquisition(rng: Rng, modality: Modality): Acquisition {
  const contrast = Float64Array.from(TISSUES, (tissue) => {
    const jitter = tissue === 'whiteMatter' ? 1 : uniform(rng, 0.96, 1.04);
    return CONTRAST_TABLE[tissue][modality] * jitter;
  });
  const gain = WHITE_MATTER_LEVEL[modality] * Math.exp(0.2 * gaussian(rng));
  const noiseSigma = gain * uniform(rng, 0.015, 0.04);
  const bias = Array.from({ length: 9 }, (_, term) => gaussian(rng) * (term < 3 ? 0.08 : 0.05));
  return { contrast, gain, noiseSigma, bias };
}

/** Case `index` (0-based) of the data set with seed `datasetSeed`: independent of how many cases are generated. */
export function synthesizeDatasetCase(datasetSeed: number, index: number, size: number): SyntheticCase {
  return synthesizeCase(caseSeed(datasetSeed, index), size, gradeOfCase(index));
}

/** Seed of case `index` of a data set: cases are independent of how many are generated. */
export function caseSeed(datasetSeed: number, index: number): number {
  // Mix the two with a multiplicative hash so that neighbouring seeds/indices give unrelated streams.
  let hash = Math.imul((Math.trunc(datasetSeed) >>> 0) ^ 0x9e3779b9, 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13) ^ Math.imul(index + 1, 0xc2b2ae35), 0x27d4eb2f);
  return (hash ^ (hash >>> 16)) >>> 0;
}

/** Fills `fractions` (indexed like TISSUES) with the voxel's share of each tissue; they sum to 1. */
function mixTissues(healthy: HealthyTissue, lesion: TumourSample, fractions: Float64Array): void {
  const healthyShare = 1 - lesion.core;
  const intact = healthyShare * (1 - lesion.edema);
  const parenchyma = healthy.greyMatter + healthy.deepGreyMatter + healthy.whiteMatter;
  fractions[TISSUE_INDEX.csf] = healthyShare * healthy.csf;
  fractions[TISSUE_INDEX.greyMatter] = intact * healthy.greyMatter;
  fractions[TISSUE_INDEX.deepGreyMatter] = intact * healthy.deepGreyMatter;
  fractions[TISSUE_INDEX.whiteMatter] = intact * healthy.whiteMatter;
  fractions[TISSUE_INDEX.choroidPlexus] = healthyShare * healthy.choroidPlexus;
  fractions[TISSUE_INDEX.edema] = healthyShare * lesion.edema * parenchyma;
  fractions[TISSUE_INDEX.necrosis] = lesion.core * lesion.necrosis;
  fractions[TISSUE_INDEX.nonEnhancingTumour] = lesion.core * lesion.nonEnhancing;
  fractions[TISSUE_INDEX.enhancingTumour] = lesion.core * lesion.enhancing;
}

/**
 * BraTS label of a voxel: tumour core where the core fills at least half of
 * it (enhancing where that is the core's main compartment), else oedema where
 * oedema and core together fill half of it.
 */
function labelOf(lesion: TumourSample, edemaFraction: number): number {
  if (lesion.core >= 0.5) {
    const enhancingMost = lesion.enhancing > lesion.necrosis && lesion.enhancing > lesion.nonEnhancing;
    return enhancingMost ? LABEL_ENHANCING : LABEL_NECROSIS;
  }
  return edemaFraction + lesion.core >= 0.5 && edemaFraction > 0.1 ? LABEL_EDEMA : LABEL_BACKGROUND;
}

/** Terms of the quadratic log bias field at normalised position (u, v, w) ∈ [-1, 1]³. */
function biasBasis(u: number, v: number, w: number, terms: Float64Array): void {
  terms[0] = u;
  terms[1] = v;
  terms[2] = w;
  terms[3] = u * u;
  terms[4] = v * v;
  terms[5] = w * w;
  terms[6] = u * v;
  terms[7] = u * w;
  terms[8] = v * w;
}

/** Generates one case from its seed and tumour grade; `size` is the in-plane size (see `syntheticShape`). */
export function synthesizeCase(seed: number, size: number, grade: TumourGrade): SyntheticCase {
  const rng = createRng(seed);
  const shape = syntheticShape(size);
  const [sizeX, sizeY, sizeZ] = shape;
  const anatomy = new BrainAnatomy(rng, shape);
  const tumour = new TumourModel(rng, anatomy, grade);
  const acquisitions = SYNTHETIC_MODALITIES.map((modality) => drawAcquisition(rng, modality));
  const texture = new GradientNoise(rng, Math.max(1.5, anatomy.scale * 0.08));

  const count = sizeX * sizeY * sizeZ;
  const images = Object.fromEntries(SYNTHETIC_MODALITIES.map((modality) => [modality, new Int16Array(count)])) as Record<
    Modality,
    Int16Array
  >;
  const outputs = SYNTHETIC_MODALITIES.map((modality) => images[modality]);
  const labels = new Uint8Array(count);
  const tissue = new Uint8Array(count).fill(OUTSIDE_BRAIN);
  const healthy = emptyHealthyTissue();
  const lesion = emptyTumourSample();
  const fractions = new Float64Array(TISSUES.length);
  const biasTerms = new Float64Array(9);
  const noisePair = new Float64Array(2);
  const tissueCount = TISSUES.length;
  const { whiteMatter, edema } = TISSUE_INDEX;

  for (let z = 0; z < sizeZ; z++) {
    for (let y = 0; y < sizeY; y++) {
      for (let x = 0; x < sizeX; x++) {
        anatomy.sample(x, y, z, tumour, healthy);
        if (!healthy.inBrain) continue;
        tumour.sample(x, y, z, healthy, lesion);
        const index = x + sizeX * (y + sizeY * z);
        mixTissues(healthy, lesion, fractions);
        let dominant = 0;
        for (let t = 1; t < tissueCount; t++) if (fractions[t]! > fractions[dominant]!) dominant = t;
        tissue[index] = dominant;
        labels[index] = labelOf(lesion, fractions[edema]!);

        // Oedema is most intense next to the core and fades towards its front.
        const edemaStrength = 0.55 + 0.45 * lesion.edemaProximity;
        const grain = texture.at(x, y, z);
        const healthyGrain = 1 + 0.15 * grain;
        const tumourGrain = 1 + 0.5 * grain;
        biasBasis((2 * x) / (sizeX - 1) - 1, (2 * y) / (sizeY - 1) - 1, (2 * z) / (sizeZ - 1) - 1, biasTerms);

        for (let m = 0; m < outputs.length; m++) {
          const { contrast, gain, noiseSigma, bias } = acquisitions[m]!;
          const white = contrast[whiteMatter]!;
          // TISSUES lists healthy tissues, then oedema, then the core compartments.
          let healthyValue = fractions[edema]! * (white + (contrast[edema]! - white) * edemaStrength);
          for (let t = 0; t < edema; t++) healthyValue += fractions[t]! * contrast[t]!;
          let tumourValue = 0;
          for (let t = edema + 1; t < tissueCount; t++) tumourValue += fractions[t]! * contrast[t]!;
          let logBias = 0;
          for (let term = 0; term < 9; term++) logBias += bias[term]! * biasTerms[term]!;
          const signal = (healthyValue * healthyGrain + tumourValue * tumourGrain) * gain * Math.exp(logBias);
          // Rician noise: magnitude of (signal + n_re, n_im) with both noise channels N(0, σ²).
          gaussianPair(rng, noisePair);
          const real = signal + noiseSigma * noisePair[0]!;
          const imaginary = noiseSigma * noisePair[1]!;
          const magnitude = Math.sqrt(real * real + imaginary * imaginary);
          outputs[m]![index] = Math.min(INT16_MAX, Math.max(1, Math.round(magnitude)));
        }
      }
    }
  }
  return { shape, affine: syntheticAffine(shape), images, labels, tissue, grade: tumour.grade };
}
