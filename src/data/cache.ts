/**
 * On-disk cache of preprocessed cases.
 *
 * Layout of a cache directory (one per data set):
 *   index.json            { formatVersion, numClasses, cases: [finished ids] }
 *   <id>/manifest.json    geometry, provenance and one entry per stored array
 *   <id>/images.bin       (4, X, Y, Z) float32 or float16, z fastest, little-endian
 *   <id>/label.bin        (X, Y, Z) uint8 class indices (labelled cases only)
 *   <id>/<name>.bin       further arrays added later (e.g. priors), same scheme
 *
 * Every file is written atomically and the manifest last, so a case counts as
 * finished only when its manifest exists and every array it lists has the
 * recorded size and sha256. The checksum also catches files left empty by a
 * crash between write and rename (no fsync is needed for correctness).
 * Readers may run at any time; only one process should write a cache at once.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from './files.ts';
import { decodeVoxels, encodeVoxelsLittleEndian, voxelCount } from './voxel-array.ts';

export const CACHE_FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
export const INDEX_FILE = 'index.json';

/** How an array is stored on disk; float16 is decoded to Float32Array on load. */
export type StoredDtype = 'float32' | 'float16' | 'uint8';

const STORED_BYTES: Record<StoredDtype, number> = { float32: 4, float16: 2, uint8: 1 };

const shape3Schema = z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]);
const index3Schema = z.tuple([z.number().int(), z.number().int(), z.number().int()]);

const arrayEntrySchema = z.object({
  file: z.string().regex(/^[\w.-]+\.bin$/),
  dtype: z.enum(['float32', 'float16', 'uint8']),
  shape: z.array(z.number().int().positive()).min(1),
  byteLength: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Free-form facts about how the array was made (e.g. which prior provider). */
  attributes: z.record(z.string(), z.unknown()).optional(),
});

const manifestSchema = z.object({
  formatVersion: z.literal(CACHE_FORMAT_VERSION),
  id: z.string().min(1),
  /** Cropped spatial shape (X, Y, Z). */
  shape: shape3Schema,
  /** Shape (I, J, K) of the source grid. */
  originalShape: shape3Schema,
  /** Crop window in source voxel indices: start inclusive, end exclusive, per axis (i, j, k). */
  cropBox: z.object({ start: index3Schema, end: index3Schema }),
  /** Source voxel-to-world (RAS mm) 4x4 affine. */
  affine: z.array(z.array(z.number()).length(4)).length(4),
  /** Modality file whose header is reused when writing predictions back. */
  referenceFile: z.string(),
  /** Paths the case was made from, by role (modality names, 'label'). */
  sourceFiles: z.record(z.string(), z.string()),
  /** Channel order of `images`. */
  modalities: z.array(z.string()).min(1),
  /** Per modality, the z-score statistics over its non-zero voxels. */
  normalization: z.array(z.object({ mean: z.number(), std: z.number() })),
  numClasses: z.number().int().positive(),
  arrays: z.record(z.string(), arrayEntrySchema),
});

const indexSchema = z.object({
  formatVersion: z.literal(CACHE_FORMAT_VERSION),
  numClasses: z.number().int().positive(),
  cases: z.array(z.string()),
});

export type ArrayEntry = z.infer<typeof arrayEntrySchema>;
export type CaseManifest = z.infer<typeof manifestSchema>;
/** Everything in a manifest except the format version and the stored arrays. */
export type CaseMeta = Omit<CaseManifest, 'formatVersion' | 'arrays'>;
export type CacheIndex = z.infer<typeof indexSchema>;

/** An array to store: `data` holds `shape` in C order (last axis fastest). */
export interface ArrayToStore {
  data: Float32Array | Uint8Array;
  shape: number[];
  /** Defaults to float32 for Float32Array and uint8 for Uint8Array. */
  dtype?: StoredDtype;
  attributes?: Record<string, unknown>;
}

/** Folder of one case; rejects ids that would escape the cache directory. */
export function caseDirectory(cacheDir: string, id: string): string {
  if (!/^[\w.-]+$/.test(id) || id === '.' || id === '..') {
    throw new Error(`case id "${id}" cannot be used as a cache folder name (letters, digits, '_', '-', '.' only)`);
  }
  return path.join(cacheDir, id);
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function describeZodError(file: string, error: z.ZodError): Error {
  return new Error(`${file}: invalid content\n${z.prettifyError(error)}`);
}

/** Indented JSON with arrays of plain numbers kept on one line (shapes, affine rows). */
function toReadableJson(value: unknown): string {
  const text = JSON.stringify(value, null, 2).replace(/\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]/g, (_, numbers: string) =>
    `[${numbers.split(/,\s*/).join(', ')}]`,
  );
  return `${text}\n`;
}

function readJson(file: string): unknown {
  const text = fs.readFileSync(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: not valid JSON (${(error as Error).message})`);
  }
}

function encodeArray(array: ArrayToStore, file: string): { bytes: Uint8Array; entry: ArrayEntry } {
  const dtype = array.dtype ?? (array.data instanceof Uint8Array ? 'uint8' : 'float32');
  const count = voxelCount(array.shape);
  if (array.data.length !== count) {
    throw new Error(`${file}: ${array.data.length} values do not fill shape [${array.shape.join(', ')}]`);
  }
  if ((dtype === 'uint8') !== (array.data instanceof Uint8Array)) {
    throw new Error(`${file}: dtype ${dtype} does not match a ${array.data.constructor.name}`);
  }
  const bytes =
    dtype === 'float16'
      ? encodeVoxelsLittleEndian(float32ToFloat16(array.data as Float32Array))
      : encodeVoxelsLittleEndian(array.data);
  const entry: ArrayEntry = { file, dtype, shape: [...array.shape], byteLength: bytes.byteLength, sha256: sha256Hex(bytes) };
  if (array.attributes) entry.attributes = array.attributes;
  return { bytes, entry };
}

function writeManifest(cacheDir: string, manifest: CaseManifest): void {
  const parsed = manifestSchema.safeParse(manifest);
  const file = path.join(caseDirectory(cacheDir, manifest.id), MANIFEST_FILE);
  if (!parsed.success) throw describeZodError(file, parsed.error);
  writeFileAtomic(file, toReadableJson(parsed.data));
}

/**
 * Writes one case from scratch: clears its folder (an earlier partial or
 * stale version, including arrays derived from it), writes every array, then
 * the manifest. Array `name` is stored in `<name>.bin`.
 */
export function writeCachedCase(cacheDir: string, meta: CaseMeta, arrays: Record<string, ArrayToStore>): CaseManifest {
  const dir = caseDirectory(cacheDir, meta.id);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const entries: Record<string, ArrayEntry> = {};
  for (const [name, array] of Object.entries(arrays)) {
    const { bytes, entry } = encodeArray(array, `${name}.bin`);
    writeFileAtomic(path.join(dir, entry.file), bytes);
    entries[name] = entry;
  }
  const manifest: CaseManifest = { formatVersion: CACHE_FORMAT_VERSION, ...meta, arrays: entries };
  writeManifest(cacheDir, manifest);
  return manifest;
}

/**
 * Adds (or replaces) one array of a finished case, e.g. its semantic priors,
 * and records it in the manifest.
 */
export function addCaseArray(cacheDir: string, id: string, name: string, array: ArrayToStore): CaseManifest {
  const manifest = readCaseManifest(cacheDir, id);
  const { bytes, entry } = encodeArray(array, `${name}.bin`);
  writeFileAtomic(path.join(caseDirectory(cacheDir, id), entry.file), bytes);
  const updated: CaseManifest = { ...manifest, arrays: { ...manifest.arrays, [name]: entry } };
  writeManifest(cacheDir, updated);
  return updated;
}

/** Reads and validates a case manifest; errors name the file. */
export function readCaseManifest(cacheDir: string, id: string): CaseManifest {
  const file = path.join(caseDirectory(cacheDir, id), MANIFEST_FILE);
  if (!fs.existsSync(file)) throw new Error(`${file}: case "${id}" is not in the cache (no manifest)`);
  const parsed = manifestSchema.safeParse(readJson(file));
  if (!parsed.success) throw describeZodError(file, parsed.error);
  if (parsed.data.id !== id) throw new Error(`${file}: manifest is for case "${parsed.data.id}", expected "${id}"`);
  return parsed.data;
}

/** How thoroughly stored arrays are checked: file size only (cheap) or also sha256. */
export type Verification = 'size' | 'checksum';

function checkArrayFile(dir: string, entry: ArrayEntry, verify: Verification): string | null {
  const file = path.join(dir, entry.file);
  const expectedBytes = voxelCount(entry.shape) * STORED_BYTES[entry.dtype];
  if (entry.byteLength !== expectedBytes) return `${file}: manifest byteLength ${entry.byteLength} does not fit shape`;
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch {
    return `${file}: missing`;
  }
  if (size !== entry.byteLength) return `${file}: ${size} bytes, expected ${entry.byteLength}`;
  if (verify === 'checksum' && sha256Hex(fs.readFileSync(file)) !== entry.sha256) {
    return `${file}: sha256 does not match the manifest`;
  }
  return null;
}

/**
 * Whether a case is completely and correctly stored. Returns the manifest
 * when it is, otherwise the reason it is not (missing, partial, corrupt,
 * older format, or lacking one of `requiredArrays`).
 */
export function inspectCachedCase(
  cacheDir: string,
  id: string,
  verify: Verification,
  requiredArrays: string[] = ['images'],
): { finished: true; manifest: CaseManifest } | { finished: false; reason: string } {
  let manifest: CaseManifest;
  try {
    manifest = readCaseManifest(cacheDir, id);
  } catch (error) {
    return { finished: false, reason: (error as Error).message };
  }
  const missing = requiredArrays.filter((name) => !(name in manifest.arrays));
  if (missing.length > 0) return { finished: false, reason: `case "${id}" lacks array(s) ${missing.join(', ')}` };
  const dir = caseDirectory(cacheDir, id);
  for (const entry of Object.values(manifest.arrays)) {
    const problem = checkArrayFile(dir, entry, verify);
    if (problem) return { finished: false, reason: problem };
  }
  return { finished: true, manifest };
}

/**
 * Reads one stored array (float16 decoded to float32). The size is always
 * checked; `verify: 'checksum'` also hashes the bytes.
 */
export function loadCaseArray(
  cacheDir: string,
  manifest: CaseManifest,
  name: string,
  verify: Verification = 'size',
): Float32Array | Uint8Array {
  const entry = manifest.arrays[name];
  const dir = caseDirectory(cacheDir, manifest.id);
  if (!entry) throw new Error(`${path.join(dir, MANIFEST_FILE)}: case "${manifest.id}" has no array "${name}"`);
  const file = path.join(dir, entry.file);
  const bytes = fs.readFileSync(file);
  if (bytes.byteLength !== entry.byteLength) {
    throw new Error(`${file}: ${bytes.byteLength} bytes, expected ${entry.byteLength} (re-run preprocessing)`);
  }
  if (verify === 'checksum' && sha256Hex(bytes) !== entry.sha256) {
    throw new Error(`${file}: sha256 does not match the manifest (re-run preprocessing)`);
  }
  const count = voxelCount(entry.shape);
  if (entry.dtype === 'float16') return float16ToFloat32(decodeVoxels(bytes, 0, count, 'uint16', true) as Uint16Array);
  return decodeVoxels(bytes, 0, count, entry.dtype, true) as Float32Array | Uint8Array;
}

/** A cached case in memory. */
export interface CachedCase {
  id: string;
  /** (4, X, Y, Z), z fastest; channel order in meta.modalities. */
  images: Float32Array;
  /** (X, Y, Z) class indices; absent for unlabelled cases. */
  label?: Uint8Array;
  shape: [number, number, number];
  /** Further arrays asked for by name, e.g. priors (N, X, Y, Z). */
  extras: Record<string, Float32Array | Uint8Array>;
  meta: CaseManifest;
}

export interface LoadCaseOptions {
  verify?: Verification;
  /** Names of further stored arrays to load into `extras`. */
  extraArrays?: string[];
}

/** The class-index label (X, Y, Z) of a case whose manifest lists one. */
export function loadCaseLabel(cacheDir: string, meta: CaseManifest, verify: Verification = 'size'): Uint8Array {
  const label = loadCaseArray(cacheDir, meta, 'label', verify);
  if (!(label instanceof Uint8Array)) throw new Error(`case "${meta.id}": label is not stored as uint8`);
  return label;
}

/** Loads a case written by preprocessing; sizes are always checked, checksums on request. */
export function loadCase(cacheDir: string, id: string, options: LoadCaseOptions = {}): CachedCase {
  const verify = options.verify ?? 'size';
  const meta = readCaseManifest(cacheDir, id);
  const images = loadCaseArray(cacheDir, meta, 'images', verify);
  if (!(images instanceof Float32Array)) throw new Error(`case "${id}": images are not stored as floats`);
  const label = 'label' in meta.arrays ? loadCaseLabel(cacheDir, meta, verify) : undefined;
  const extras: CachedCase['extras'] = {};
  for (const name of options.extraArrays ?? []) extras[name] = loadCaseArray(cacheDir, meta, name, verify);
  return { id, images, label, shape: meta.shape, extras, meta };
}

/** Reads index.json: the finished cases of the cache. */
export function readCacheIndex(cacheDir: string): CacheIndex {
  const file = path.join(cacheDir, INDEX_FILE);
  if (!fs.existsSync(file)) throw new Error(`${file}: no cache index (run preprocessing first)`);
  const parsed = indexSchema.safeParse(readJson(file));
  if (!parsed.success) throw describeZodError(file, parsed.error);
  return parsed.data;
}

export function writeCacheIndex(cacheDir: string, index: CacheIndex): void {
  writeFileAtomic(path.join(cacheDir, INDEX_FILE), toReadableJson(index));
}

const float32Scratch = new Float32Array(1);
const float32Bits = new Uint32Array(float32Scratch.buffer);

/** IEEE half-precision bits of `value`, rounded to nearest even; overflow gives ±Infinity. */
function toHalfBits(value: number): number {
  float32Scratch[0] = value;
  const bits = float32Bits[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const halfExponent = exponent - 112;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  let shift = 13;
  let half: number;
  if (halfExponent <= 0) {
    // Subnormal half: keep the implicit leading bit and shift it in.
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    shift = 14 - halfExponent;
    half = mantissa >>> shift;
  } else {
    half = (halfExponent << 10) | (mantissa >>> shift);
  }
  const remainder = mantissa & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  // A carry out of the mantissa correctly bumps the exponent (up to Infinity).
  if (remainder > halfway || (remainder === halfway && (half & 1) === 1)) half++;
  return sign | half;
}

let halfTable: Float32Array | undefined;

function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >>> 10) & 0x1f;
    const mantissa = bits & 0x3ff;
    if (exponent === 0) halfTable[bits] = sign * mantissa * 2 ** -24;
    else if (exponent === 0x1f) halfTable[bits] = mantissa ? NaN : sign * Infinity;
    else halfTable[bits] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  return halfTable;
}

/** Half-precision encoding (relative error ≤ 2^-11 within ±65504). */
export function float32ToFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = toHalfBits(values[i]);
  return out;
}

export function float16ToFloat32(bits: Uint16Array): Float32Array {
  const table = halfToFloatTable();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}
