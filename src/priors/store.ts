// The semantic-prior store (docs/method.md §4): a case's priors live in the preprocessing cache beside its images, as the
// array PRIORS_ARRAY of shape (C·K, X, Y, Z) (class-major, then modality) in the crop frame, stored as float16 or as
// probabilities quantised to uint8 (q/255), with a record of the provider and settings that made them.
import * as path from 'node:path';
import { z } from 'zod';
import { addCaseArray, caseDirectory, loadCaseArray, MANIFEST_FILE, readCaseManifest, type CaseManifest } from '../data/cache.ts';
import { dequantizeProbabilities, quantizeProbabilities } from '../data/quantize.ts';
import { PRIORS_ARRAY } from './provider.ts';

export const PRIOR_STORAGES = ['float16', 'uint8'] as const;
/** How priors are stored: float16 (relative error ≤ 2^-11) or uint8 levels q/255 (absolute error ≤ 1/510). */
export type PriorStorage = (typeof PRIOR_STORAGES)[number];

/** Values this far outside [0, 1] are rounding noise and clamped; further out they are an error. */
const RANGE_TOLERANCE = 1e-3;

const priorRecordSchema = z.object({
  /** The provider's name, e.g. `builtin-intensity`, `sam-med3d`, `imported`. */
  provider: z.string().min(1),
  /** What, with the provider's name, decided the values. */
  settings: z.record(z.string(), z.unknown()),
  classes: z.number().int().positive(),
  modalities: z.array(z.string()).min(1),
  storedAs: z.enum(PRIOR_STORAGES),
  /** ISO time the priors were written (the only part that differs between identical runs). */
  createdAt: z.string().optional(),
});

/** Recorded in the attributes of the stored priors array. */
export type PriorRecord = z.infer<typeof priorRecordSchema>;

/** Who made a set of priors, and how. */
export interface PriorSource {
  provider: string;
  settings: Record<string, unknown>;
}

/**
 * Checks that `values` are probabilities: finite and in [0, 1] up to rounding noise, which is clamped away in place.
 * `what` names the data in the error (a case, a file).
 */
export function checkProbabilities(values: Float32Array, what: string): void {
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (value >= 0 && value <= 1) continue;
    if (!(value >= -RANGE_TOLERANCE && value <= 1 + RANGE_TOLERANCE)) {
      throw new Error(`${what}: value ${value} at index ${i} is not a probability in [0, 1]`);
    }
    values[i] = value < 0 ? 0 : 1;
  }
}

/** Classes C, modalities K and the stored shape (C·K, X, Y, Z) of a cached case's priors. */
export function priorShape(manifest: CaseManifest): { classes: number; modalities: number; shape: [number, number, number, number] } {
  const classes = manifest.numClasses;
  const modalities = manifest.modalities.length;
  return { classes, modalities, shape: [classes * modalities, ...manifest.shape] };
}

/**
 * Stores a case's priors (C, K, X, Y, Z) — C the cache's classes (background first), K its modalities, X, Y, Z the
 * crop frame — replacing earlier ones atomically. Values must be probabilities (rounding noise beyond [0, 1] is clamped
 * in place); the error names the case.
 */
export function writePriors(
  cacheDir: string,
  id: string,
  priors: Float32Array /* (C, K, X, Y, Z) */,
  source: PriorSource,
  storedAs: PriorStorage = 'float16',
): CaseManifest {
  const manifest = readCaseManifest(cacheDir, id);
  const { classes, modalities, shape } = priorShape(manifest);
  const expected = shape.reduce((a, b) => a * b, 1);
  if (priors.length !== expected) {
    throw new Error(
      `case "${id}": ${priors.length} prior values, expected ${classes} classes × ${modalities} modalities × ` +
        `[${manifest.shape.join(', ')}] = ${expected}`,
    );
  }
  checkProbabilities(priors, `case "${id}" priors`);
  const record: PriorRecord = {
    provider: source.provider,
    settings: source.settings,
    classes,
    modalities: [...manifest.modalities],
    storedAs,
    createdAt: new Date().toISOString(),
  };
  const data = storedAs === 'uint8' ? quantizeProbabilities(priors) : priors;
  return addCaseArray(cacheDir, id, PRIORS_ARRAY, { data, shape, dtype: storedAs, attributes: record });
}

/** The record of a case's stored priors; undefined when it has none or it is not a valid record. */
export function storedPriorRecord(manifest: CaseManifest): PriorRecord | undefined {
  const parsed = priorRecordSchema.safeParse(manifest.arrays[PRIORS_ARRAY]?.attributes);
  return parsed.success ? parsed.data : undefined;
}

/** A case's stored priors as probabilities (C·K, X, Y, Z), uint8 levels dequantised, with their record. */
export function loadPriors(cacheDir: string, id: string): { priors: Float32Array; record: PriorRecord; manifest: CaseManifest } {
  const manifest = readCaseManifest(cacheDir, id);
  const file = path.join(caseDirectory(cacheDir, id), MANIFEST_FILE);
  if (!manifest.arrays[PRIORS_ARRAY]) throw new Error(`${file}: case "${id}" has no semantic priors`);
  const record = storedPriorRecord(manifest);
  if (!record) throw new Error(`${file}: the priors of case "${id}" carry no valid provider record; make or import them again`);
  const stored = loadCaseArray(cacheDir, manifest, PRIORS_ARRAY);
  const priors = stored instanceof Uint8Array ? dequantizeProbabilities(stored) : stored;
  return { priors, record, manifest };
}

/** JSON with object keys sorted, so equal settings compare equal whatever their key order. */
function canonicalJson(value: unknown): string {
  const sorted = (item: unknown): unknown => {
    if (Array.isArray(item)) return item.map(sorted);
    if (item === null || typeof item !== 'object') return item;
    return Object.fromEntries(Object.keys(item).sort().map((key) => [key, sorted((item as Record<string, unknown>)[key])]));
  };
  return JSON.stringify(sorted(JSON.parse(JSON.stringify(value))));
}

/** Whether stored priors were made by `source` (same provider name and settings) and stored as `storedAs`. */
export function sameSource(record: PriorRecord, source: PriorSource, storedAs: PriorStorage): boolean {
  return record.provider === source.provider && record.storedAs === storedAs && canonicalJson(record.settings) === canonicalJson(source.settings);
}
