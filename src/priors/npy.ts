// Reader of NumPy `.npy` files (format versions 1–3): the magic string, a little-endian header length, a Python-literal
// header dict {'descr', 'fortran_order', 'shape'}, then the raw array. Only the element types priors come in are
// accepted: floats (16, 32, 64 bit, either byte order), uint8 and bool.
import { float16ToFloat32 } from '../data/cache.ts';
import { readFileBytes } from '../data/files.ts';
import { decodeVoxels, elementBytes, type ElementType } from '../data/voxel-array.ts';

const MAGIC = [0x93, ...Array.from('NUMPY', (ch) => ch.charCodeAt(0))];

export type NpyDtype = 'float16' | 'float32' | 'float64' | 'uint8' | 'bool';

export interface NpyArray {
  /** Shape in C order (last axis fastest). */
  shape: number[];
  dtype: NpyDtype;
  /** Values in C order; float16 is widened to float32, bool stays 0/1 bytes. */
  data: Float32Array | Float64Array | Uint8Array;
}

const FLOAT_SIZES: Record<string, { dtype: NpyDtype; element: ElementType }> = {
  '2': { dtype: 'float16', element: 'uint16' },
  '4': { dtype: 'float32', element: 'float32' },
  '8': { dtype: 'float64', element: 'float64' },
};

/** Element type and byte order of a `descr` such as '<f4' or '|u1'. */
function parseDescr(descr: string, file: string): { dtype: NpyDtype; element: ElementType; littleEndian: boolean } {
  const match = /^([<>|=])([a-zA-Z])(\d+)$/.exec(descr);
  const [order, kind, size] = match ? [match[1], match[2], match[3]] : ['', '', ''];
  if (kind === 'f' && FLOAT_SIZES[size]) return { ...FLOAT_SIZES[size], littleEndian: order !== '>' };
  if ((kind === 'u' || kind === 'b') && size === '1') return { dtype: kind === 'u' ? 'uint8' : 'bool', element: 'uint8', littleEndian: true };
  throw new Error(`${file}: unsupported element type '${descr}' (priors must be float16/32/64, uint8 or bool)`);
}

/** The header dict's fields; the header is a Python literal, read with patterns rather than evaluated. */
function parseHeader(header: string, file: string): { descr: string; fortranOrder: boolean; shape: number[] } {
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(header)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new Error(`${file}: damaged .npy header ${JSON.stringify(header.trim())}`);
  }
  const parts = shapeText.split(',').map((part) => part.trim()).filter((part) => part !== '');
  if (!parts.every((part) => /^\d+L?$/.test(part))) throw new Error(`${file}: damaged .npy shape (${shapeText})`);
  return { descr, fortranOrder: fortran === 'True', shape: parts.map((part) => Number.parseInt(part, 10)) };
}

/** Parses the bytes of a `.npy` file; `file` names it in errors. */
export function parseNpy(bytes: Uint8Array, file: string): NpyArray {
  if (bytes.length < 10 || MAGIC.some((byte, i) => bytes[i] !== byte)) throw new Error(`${file}: not a .npy file (no \\x93NUMPY magic)`);
  const major = bytes[6];
  if (major < 1 || major > 3) throw new Error(`${file}: unsupported .npy format version ${major}.${bytes[7]}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lengthBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lengthBytes) throw new Error(`${file}: truncated .npy header`);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataStart = 8 + lengthBytes + headerLength;
  if (bytes.length < dataStart) throw new Error(`${file}: truncated .npy header (${bytes.length} bytes, header ends at ${dataStart})`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(8 + lengthBytes, dataStart));
  const { descr, fortranOrder, shape } = parseHeader(header, file);
  if (fortranOrder) throw new Error(`${file}: Fortran-ordered arrays are not supported (save with numpy.ascontiguousarray)`);
  const { dtype, element, littleEndian } = parseDescr(descr, file);
  const count = shape.reduce((product, size) => product * size, 1);
  const needed = count * elementBytes(element);
  if (bytes.length - dataStart !== needed) {
    throw new Error(`${file}: ${bytes.length - dataStart} data bytes, but shape (${shape.join(', ')}) of ${descr} needs ${needed} (truncated or corrupt)`);
  }
  const decoded = decodeVoxels(bytes, dataStart, count, element, littleEndian);
  const data = dtype === 'float16' ? float16ToFloat32(decoded as Uint16Array) : (decoded as Float32Array | Float64Array | Uint8Array);
  return { shape, dtype, data };
}

/** Reads a `.npy` file (gzip-compressed content is unpacked transparently). */
export function readNpy(file: string): NpyArray {
  return parseNpy(readFileBytes(file), file);
}
