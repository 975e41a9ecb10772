// Importing priors made elsewhere into the store, from either layout:
//
// - npy: the authors' layout, one `<id>.npy` per case of shape (C, K, X, Y, Z) — classes (background first), then
//   modalities (FLAIR, T1ce, T1, T2), then the case's crop frame in C order — float16/32/64, or uint8/bool masks.
// - nifti: one volume per class and modality in the case's original grid, `<id>_prior_<c>_<modality>.nii[.gz]` with
//   c the class index (0 = background) and modality one of the cache's (flair, t1ce, t1, t2); they are cropped here.
//
// Files are looked for in the folder and in `<id>/` subfolders of it. Values must be probabilities in [0, 1]. A case
// not in the cache, a missing file, a shape or grid that does not match the case, or a damaged file is an error naming
// it; cases are stored one by one, so an import stopped by an error keeps the cases before it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { readCacheIndex, readCaseManifest, type CaseManifest } from '../data/cache.ts';
import { cropToCOrder, type Shape3 } from '../data/preprocess.ts';
import { readVolume } from '../data/volume.ts';
import type { PriorProgress } from './make.ts';
import { readNpy } from './npy.ts';
import { checkProbabilities, priorShape, writePriors, type PriorStorage } from './store.ts';

export const PRIOR_IMPORT_FORMATS = ['npy', 'nifti'] as const;
export type PriorImportFormat = (typeof PRIOR_IMPORT_FORMATS)[number];

/** Provider name recorded for imported priors unless the caller names the real one (e.g. `sam-med3d`). */
export const IMPORTED_PROVIDER = 'imported';

const NPY_NAME = /^(.+)\.npy$/;
const NIFTI_NAME = /^(.+)_prior_(\d+)_([A-Za-z0-9]+)\.nii(\.gz)?$/;

/** Largest affine difference (mm) at which a NIfTI prior still counts as being in the case's grid. */
const GRID_TOLERANCE_MM = 1e-3;

export interface ImportPriorsOptions {
  cacheDir: string;
  /** Folder holding the prior files. */
  from: string;
  format: PriorImportFormat;
  /** Cases to import (each must have files); default: every case with files in `from`. */
  ids?: readonly string[];
  /** Default float16. */
  storedAs?: PriorStorage;
  /** Recorded as the provider (default `imported`). */
  provider?: string;
  onProgress?: (progress: PriorProgress) => void;
}

/** A prior file found in the folder: its case, and for NIfTI its class and modality. */
interface PriorFile {
  file: string;
  id: string;
  classIndex?: number;
  modality?: string;
}

/** Prior files of `format` in `from` and its immediate subfolders, grouped by case id. */
function findPriorFiles(from: string, format: PriorImportFormat): Map<string, PriorFile[]> {
  if (!fs.existsSync(from) || !fs.statSync(from).isDirectory()) throw new Error(`${from}: not a folder`);
  const folders = [from, ...fs.readdirSync(from, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => path.join(from, entry.name))];
  const byCase = new Map<string, PriorFile[]>();
  for (const folder of folders) {
    for (const name of fs.readdirSync(folder).sort()) {
      const match = (format === 'npy' ? NPY_NAME : NIFTI_NAME).exec(name);
      if (!match) continue;
      const found: PriorFile = { file: path.join(folder, name), id: match[1] };
      if (format === 'nifti') {
        found.classIndex = Number.parseInt(match[2], 10);
        found.modality = match[3].toLowerCase();
      }
      byCase.set(found.id, [...(byCase.get(found.id) ?? []), found]);
    }
  }
  return byCase;
}

const listed = (items: readonly string[]) => `${items.slice(0, 10).join(', ')}${items.length > 10 ? `, … (${items.length} in all)` : ''}`;

/** Priors (C, K, X, Y, Z) of a case from its `.npy` file. */
function npyPriors(files: PriorFile[], manifest: CaseManifest): Float32Array {
  if (files.length > 1) throw new Error(`case "${manifest.id}": more than one prior file: ${files.map((f) => f.file).join(', ')}`);
  const { file } = files[0];
  const array = readNpy(file);
  const { classes, modalities } = priorShape(manifest);
  const expected = [classes, modalities, ...manifest.shape];
  if (array.shape.join() !== expected.join()) {
    throw new Error(
      `${file}: shape (${array.shape.join(', ')}) does not match case "${manifest.id}", which needs (classes, modalities, X, Y, Z) = ` +
        `(${expected.join(', ')}) in its crop frame`,
    );
  }
  const values = array.data instanceof Float32Array ? array.data : Float32Array.from(array.data);
  checkProbabilities(values, file);
  return values;
}

/** Throws unless the volume's grid is the case's original grid. */
function checkCaseGrid(file: string, shape: readonly number[], affine: number[][], manifest: CaseManifest): void {
  const sameShape = shape.length === 3 && shape.every((size, axis) => size === manifest.originalShape[axis]);
  const sameAffine = affine.every((row, r) => row.every((value, c) => Math.abs(value - manifest.affine[r][c]) <= GRID_TOLERANCE_MM));
  if (!sameShape || !sameAffine) {
    throw new Error(
      `${file}: its grid (shape [${shape.join(', ')}], affine ${JSON.stringify(affine)}) differs from case "${manifest.id}" ` +
        `(shape [${manifest.originalShape.join(', ')}], affine ${JSON.stringify(manifest.affine)}); NIfTI priors must be in the case's original grid`,
    );
  }
}

/** Priors (C, K, X, Y, Z) of a case from one NIfTI file per class and modality, cropped to the case's frame. */
function niftiPriors(files: PriorFile[], manifest: CaseManifest): Float32Array {
  const { classes, modalities } = priorShape(manifest);
  const voxels = manifest.shape[0] * manifest.shape[1] * manifest.shape[2];
  const slots = new Map<string, string>();
  for (const found of files) {
    const key = `${found.classIndex}_${found.modality}`;
    if (found.classIndex! >= classes || !manifest.modalities.includes(found.modality!)) {
      throw new Error(`${found.file}: case "${manifest.id}" has classes 0–${classes - 1} and modalities ${manifest.modalities.join(', ')}`);
    }
    if (slots.has(key)) throw new Error(`case "${manifest.id}": two prior files for class ${found.classIndex}, ${found.modality}: ${slots.get(key)}, ${found.file}`);
    slots.set(key, found.file);
  }
  const missing: string[] = [];
  for (let c = 0; c < classes; c++) for (const modality of manifest.modalities) if (!slots.has(`${c}_${modality}`)) missing.push(`${manifest.id}_prior_${c}_${modality}.nii.gz`);
  if (missing.length > 0) throw new Error(`case "${manifest.id}": missing NIfTI prior file(s) ${listed(missing)}`);
  const priors = new Float32Array(classes * modalities * voxels);
  for (let c = 0; c < classes; c++) {
    manifest.modalities.forEach((modality, k) => {
      const file = slots.get(`${c}_${modality}`)!;
      const volume = readVolume(file);
      checkCaseGrid(file, volume.shape, volume.affine, manifest);
      const cropped = cropToCOrder(volume.data, manifest.originalShape as Shape3, manifest.cropBox);
      const values = cropped instanceof Float32Array ? cropped : Float32Array.from(cropped);
      checkProbabilities(values, file);
      priors.set(values, (c * modalities + k) * voxels);
    });
  }
  return priors;
}

/** Imports priors into the cache (see the module comment); returns the cases written. */
export async function importPriors(options: ImportPriorsOptions): Promise<{ written: string[] }> {
  const { cacheDir, format } = options;
  const from = path.resolve(options.from);
  const byCase = findPriorFiles(from, format);
  const pattern = format === 'npy' ? '<id>.npy' : '<id>_prior_<class>_<modality>.nii.gz';
  const cached = new Set(readCacheIndex(cacheDir).cases);
  const ids = options.ids ? [...options.ids] : [...byCase.keys()].sort();
  if (ids.length === 0) throw new Error(`${from}: no prior files named ${pattern}`);
  const withoutFiles = ids.filter((id) => !byCase.has(id));
  if (withoutFiles.length > 0) throw new Error(`${from}: no prior files (${pattern}) for case(s) ${listed(withoutFiles)}`);
  const unknown = ids.filter((id) => !cached.has(id));
  if (unknown.length > 0) throw new Error(`${from}: case(s) ${listed(unknown)} are not in the cache ${cacheDir} (preprocess them first, or check the file names)`);
  const source = { provider: options.provider ?? IMPORTED_PROVIDER, settings: { format, from } };
  const written: string[] = [];
  for (const [index, id] of ids.entries()) {
    const started = performance.now();
    const manifest = readCaseManifest(cacheDir, id);
    const files = byCase.get(id)!;
    const priors = format === 'npy' ? npyPriors(files, manifest) : niftiPriors(files, manifest);
    writePriors(cacheDir, id, priors, source, options.storedAs);
    written.push(id);
    options.onProgress?.({ done: index + 1, total: ids.length, id, status: 'written', seconds: (performance.now() - started) / 1000 });
    await yieldToEventLoop();
  }
  return { written };
}
