/**
 * The built-in synthetic BraTS-like data set: writes cases in the BraTS 2020
 * layout (`<out>/<Case>/<Case>_{flair,t1,t1ce,t2,seg}.nii.gz`) plus a
 * `dataset.json` describing how they were made. See src/data/README.md for
 * what the phantom contains and its contrast table.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './files.ts';
import type { NiftiHeader } from './nifti.ts';
import { SYNTHETIC_MODALITIES } from './synthetic/contrast.ts';
import { synthesizeDatasetCase, syntheticAffine, syntheticShape, type SyntheticCase } from './synthetic/phantom.ts';
import type { TumourGrade } from './synthetic/tumour.ts';
import { writeVolume, type Volume } from './volume.ts';

export {
  CONTRAST_TABLE,
  SYNTHETIC_MODALITIES,
  TISSUE_INDEX,
  TISSUES,
  WHITE_MATTER_LEVEL,
  type Tissue,
} from './synthetic/contrast.ts';
export {
  caseSeed,
  synthesizeCase,
  synthesizeDatasetCase,
  syntheticAffine,
  syntheticShape,
  LABEL_BACKGROUND,
  LABEL_EDEMA,
  LABEL_ENHANCING,
  LABEL_NECROSIS,
  MIN_SYNTHETIC_SIZE,
  OUTSIDE_BRAIN,
  type SyntheticCase,
} from './synthetic/phantom.ts';
export { gradeOfCase, LOW_GRADE_SHARE, type TumourGrade } from './synthetic/tumour.ts';

/** Bumped whenever the generator's output for a given seed changes (voxels or headers). */
export const SYNTHETIC_VERSION = 4;

export interface SynthesizeOptions {
  /** Output folder (created if missing; existing case files are replaced). */
  out: string;
  /** Number of cases. */
  cases: number;
  /** In-plane size S: volumes are S × S × round(0.65 S) voxels of 240/S mm. */
  size: number;
  /** Data-set seed; case i uses `caseSeed(seed, i)`, so a case does not depend on how many are generated. */
  seed: number;
  /** Called after each case is written. */
  onProgress?: (progress: SynthesisProgress) => void;
}

export interface SynthesisProgress {
  /** Cases written so far (1-based count). */
  done: number;
  total: number;
  caseId: string;
  grade: TumourGrade;
  /** Wall time for this case (generation and writing), seconds. */
  seconds: number;
}

/** Contents of `dataset.json`. */
export interface SyntheticDatasetInfo {
  generator: 'smml-synthetic';
  version: number;
  seed: number;
  size: number;
  shape: [number, number, number];
  voxelSizeMm: [number, number, number];
  imageType: 'int16';
  modalities: readonly string[];
  labels: Record<string, string>;
  cases: { id: string; grade: TumourGrade }[];
}

/** Case id of the i-th case (0-based): SMML_Synth_001, SMML_Synth_002, … */
export function syntheticCaseId(index: number): string {
  return `SMML_Synth_${String(index + 1).padStart(3, '0')}`;
}

/** Edge of a synthetic voxel in mm along i, j, k: the lengths of the affine's first three columns. */
function voxelSizeMm(affine: readonly (readonly number[])[]): [number, number, number] {
  const columnLength = (column: number) => Math.hypot(affine[0]![column]!, affine[1]![column]!, affine[2]![column]!);
  return [columnLength(0), columnLength(1), columnLength(2)];
}

/**
 * NIfTI geometry for the synthetic volumes: 240/S mm voxels, the RAS+ affine of
 * `syntheticAffine` in both sform and qform (code 1, scanner; the qform is the
 * identity rotation scaled by pixdim), so that every reader agrees on it.
 */
function syntheticReference(phantom: SyntheticCase): Volume {
  const affine = phantom.affine;
  const spacing = voxelSizeMm(affine);
  const header: NiftiHeader = {
    format: 'nifti1',
    littleEndian: true,
    magic: 'n+1',
    datatype: 4,
    bitpix: 16,
    dim: [3, ...phantom.shape, 1, 1, 1, 1],
    voxOffset: 352,
    sclSlope: 1,
    sclInter: 0,
    intentCode: 0,
    descrip: '',
    pixdim: [1, ...spacing, 1, 1, 1, 1],
    xyztUnits: 2,
    qformCode: 1,
    sformCode: 1,
    quatern: [0, 0, 0],
    qoffset: [affine[0]![3]!, affine[1]![3]!, affine[2]![3]!],
    srow: affine.slice(0, 3).map((row) => [...row]),
  };
  return { data: new Int16Array(0), shape: [...phantom.shape], affine, header };
}

/** Writes one case's five volumes into `<out>/<id>/`. */
function writeCase(out: string, id: string, phantom: SyntheticCase): void {
  const dir = path.join(out, id);
  fs.mkdirSync(dir, { recursive: true });
  const reference = syntheticReference(phantom);
  for (const modality of SYNTHETIC_MODALITIES) {
    writeVolume(path.join(dir, `${id}_${modality}.nii.gz`), phantom.images[modality], phantom.shape, reference);
  }
  writeVolume(path.join(dir, `${id}_seg.nii.gz`), phantom.labels, phantom.shape, reference);
}

/**
 * Generates and writes a synthetic data set; returns what it wrote to
 * `dataset.json`. The same options always give the same voxels.
 */
export function synthesizeDataset(options: SynthesizeOptions): SyntheticDatasetInfo {
  const { out, cases, size, seed, onProgress } = options;
  if (!Number.isInteger(cases) || cases < 1) throw new Error(`synthesizeDataset: cases must be a positive integer, got ${cases}`);
  const shape = syntheticShape(size);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`synthesizeDataset: seed must be a non-negative integer, got ${seed}`);
  try {
    fs.mkdirSync(out, { recursive: true });
  } catch (error) {
    throw new Error(`${out}: cannot create the output folder (${(error as Error).message})`);
  }

  const written: SyntheticDatasetInfo['cases'] = [];
  for (let index = 0; index < cases; index++) {
    const started = performance.now();
    const id = syntheticCaseId(index);
    const phantom = synthesizeDatasetCase(seed, index, size);
    writeCase(out, id, phantom);
    written.push({ id, grade: phantom.grade });
    onProgress?.({ done: index + 1, total: cases, caseId: id, grade: phantom.grade, seconds: (performance.now() - started) / 1000 });
  }

  const info: SyntheticDatasetInfo = {
    generator: 'smml-synthetic',
    version: SYNTHETIC_VERSION,
    seed,
    size,
    shape,
    voxelSizeMm: voxelSizeMm(syntheticAffine(shape)),
    imageType: 'int16',
    modalities: SYNTHETIC_MODALITIES,
    labels: { '0': 'background', '1': 'necrosis / non-enhancing tumour (NCR/NET)', '2': 'peritumoural oedema', '4': 'enhancing tumour' },
    cases: written,
  };
  writeFileAtomic(path.join(out, 'dataset.json'), `${JSON.stringify(info, null, 2)}\n`);
  return info;
}
