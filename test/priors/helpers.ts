// Shared by the prior tests: .npy files written by hand (independently of the reader) and small cached cases.
import { CACHE_FORMAT_VERSION, writeCachedCase, writeCacheIndex, type ArrayToStore } from '../../src/data/cache.ts';
import type { CropBox, Shape3 } from '../../src/data/preprocess.ts';

/** The bytes of a .npy file as NumPy writes them: magic, version, header padded to 64 bytes, then `body`. */
export function npyBytes(descr: string, shape: readonly number[], body: Uint8Array, options: { version?: 1 | 2; fortran?: boolean } = {}): Uint8Array {
  const version = options.version ?? 1;
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': ${options.fortran ? 'True' : 'False'}, 'shape': ${shapeText}, }`;
  const prefix = version === 1 ? 10 : 12;
  header += ' '.repeat(63 - ((prefix + header.length) % 64)) + '\n';
  const out = new Uint8Array(prefix + header.length + body.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, header.length, true);
  else view.setUint32(8, header.length, true);
  out.set(Array.from(header, (ch) => ch.charCodeAt(0)), prefix);
  out.set(body, prefix + header.length);
  return out;
}

/** Little-endian float32 bytes (big-endian when asked). */
export function float32Bytes(values: ArrayLike<number>, bigEndian = false): Uint8Array {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i], !bigEndian);
  return bytes;
}

export function float64Bytes(values: ArrayLike<number>, bigEndian = false): Uint8Array {
  const bytes = new Uint8Array(values.length * 8);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat64(8 * i, values[i], !bigEndian);
  return bytes;
}

export const IDENTITY = [
  [1, 0, 0, 0],
  [0, 1, 0, 0],
  [0, 0, 1, 0],
  [0, 0, 0, 1],
];

export interface TinyCase {
  id: string;
  /** (K, X, Y, Z) z-scored images, background exactly 0. */
  images: Float32Array;
  label?: Uint8Array;
  shape: Shape3;
  originalShape?: Shape3;
  cropBox?: CropBox;
  affine?: number[][];
}

/** Writes cases with `numClasses` classes and the four BraTS modalities into a cache, with its index. */
export function writeTinyCache(cacheDir: string, cases: TinyCase[], numClasses = 4): void {
  for (const kase of cases) {
    const arrays: Record<string, ArrayToStore> = { images: { data: kase.images, shape: [4, ...kase.shape] } };
    if (kase.label) arrays.label = { data: kase.label, shape: [...kase.shape] };
    writeCachedCase(
      cacheDir,
      {
        id: kase.id,
        shape: kase.shape,
        originalShape: kase.originalShape ?? kase.shape,
        cropBox: kase.cropBox ?? { start: [0, 0, 0], end: kase.shape },
        affine: kase.affine ?? IDENTITY,
        referenceFile: `${kase.id}_flair.nii.gz`,
        sourceFiles: {},
        modalities: ['flair', 't1ce', 't1', 't2'],
        normalization: [0, 1, 2, 3].map(() => ({ mean: 0, std: 1 })),
        numClasses,
      },
      arrays,
    );
  }
  writeCacheIndex(cacheDir, { formatVersion: CACHE_FORMAT_VERSION, numClasses, cases: cases.map((kase) => kase.id) });
}
