/**
 * Tissue contrast of the synthetic phantom: relative intensities per tissue and
 * MRI sequence, chosen to follow the qualitative physics of the BraTS
 * sequences (see src/data/README.md for the table in prose).
 */
import type { Modality } from '../modalities.ts';

/**
 * The four sequences of MODALITIES in generation order, which is not MODALITIES' order: a case draws each sequence's
 * acquisition (contrast jitter, gain, noise level, bias field) and, per voxel, its noise in this order, so another
 * order would change every generated voxel (SYNTHETIC_VERSION pins them). Files and dataset.json follow it too.
 */
export const SYNTHETIC_MODALITIES = ['flair', 't1', 't1ce', 't2'] as const satisfies readonly Modality[];

/** Tissue classes of the phantom: healthy ones, then oedema, then the tumour core compartments (code relies on this order). */
export const TISSUES = [
  'csf',
  'greyMatter',
  'deepGreyMatter',
  'whiteMatter',
  'choroidPlexus',
  'edema',
  'necrosis',
  'nonEnhancingTumour',
  'enhancingTumour',
] as const;
export type Tissue = (typeof TISSUES)[number];

/** Position of each tissue in TISSUES. */
export const TISSUE_INDEX = Object.fromEntries(TISSUES.map((tissue, index) => [tissue, index])) as Readonly<Record<Tissue, number>>;

/**
 * Mean intensity of each tissue relative to normal white matter (= 1) on each sequence.
 *
 * Why these values: FLAIR suppresses free water (CSF dark) while bound water in
 * oedema stays bright; T2 makes all water bright (CSF brightest, then necrosis,
 * then oedema); gadolinium shortens T1 only where the blood–brain barrier is
 * broken, so enhancing tumour (and the choroid plexus, which has no barrier) is
 * bright on T1ce alone and looks like the surrounding oedema/tumour elsewhere;
 * necrosis is fluid-like (dark on T1/T1ce, bright on T2); T1 shows tumour as a
 * mild hypointensity, close to grey matter, so it carries the least tumour
 * information.
 */
export const CONTRAST_TABLE: Readonly<Record<Tissue, Readonly<Record<Modality, number>>>> = {
  csf: { flair: 0.22, t1: 0.3, t1ce: 0.32, t2: 3.3 },
  greyMatter: { flair: 1.25, t1: 0.78, t1ce: 0.8, t2: 1.45 },
  deepGreyMatter: { flair: 1.15, t1: 0.86, t1ce: 0.88, t2: 1.25 },
  whiteMatter: { flair: 1, t1: 1, t1ce: 1, t2: 1 },
  choroidPlexus: { flair: 0.9, t1: 0.75, t1ce: 1.45, t2: 1.6 },
  edema: { flair: 2.0, t1: 0.8, t1ce: 0.82, t2: 2.5 },
  necrosis: { flair: 0.85, t1: 0.45, t1ce: 0.42, t2: 3.0 },
  nonEnhancingTumour: { flair: 1.7, t1: 0.7, t1ce: 0.72, t2: 2.2 },
  enhancingTumour: { flair: 1.75, t1: 0.83, t1ce: 1.75, t2: 2.1 },
};

/** Typical stored white-matter intensity per sequence (int16 units), like the scanner-dependent ranges in BraTS. */
export const WHITE_MATTER_LEVEL: Readonly<Record<Modality, number>> = {
  flair: 420,
  t1: 620,
  t1ce: 700,
  t2: 480,
};
