/**
 * Voxel element types and conversion between raw bytes (either byte order)
 * and typed arrays. Shared by the NIfTI and MetaImage readers/writers.
 */

/** Typed arrays a volume's voxel data can live in. */
export type VoxelArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array;

/**
 * Element types found in files. 64-bit integers are decoded into
 * Float64Array: exact up to 2^53, rounded beyond (far outside any intensity
 * or label range in practice), and it keeps every consumer on plain numbers.
 */
export type ElementType =
  | 'uint8'
  | 'int8'
  | 'uint16'
  | 'int16'
  | 'uint32'
  | 'int32'
  | 'float32'
  | 'float64'
  | 'int64'
  | 'uint64';

const ELEMENT_BYTES: Record<ElementType, number> = {
  uint8: 1,
  int8: 1,
  uint16: 2,
  int16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  float64: 8,
  int64: 8,
  uint64: 8,
};

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function elementBytes(type: ElementType): number {
  return ELEMENT_BYTES[type];
}

/** Product of the dimensions, validating that each is a positive integer. */
export function voxelCount(shape: readonly number[]): number {
  let count = 1;
  for (const size of shape) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`invalid volume shape [${shape.join(', ')}]`);
    count *= size;
  }
  return count;
}

/** The element type stored by a typed array. */
export function elementTypeOf(data: VoxelArray): ElementType {
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Uint16Array) return 'uint16';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Uint32Array) return 'uint32';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Float32Array) return 'float32';
  return 'float64';
}

function reverseEachElement(bytes: Uint8Array, size: number): void {
  for (let start = 0; start < bytes.length; start += size) {
    for (let low = start, high = start + size - 1; low < high; low++, high--) {
      const held = bytes[low]!;
      bytes[low] = bytes[high]!;
      bytes[high] = held;
    }
  }
}

/**
 * Decodes `count` elements of `type` starting at `byteOffset`, stored in the
 * given byte order. The caller checks that enough bytes exist. Always copies,
 * so the result owns an aligned buffer.
 */
export function decodeVoxels(
  bytes: Uint8Array,
  byteOffset: number,
  count: number,
  type: ElementType,
  littleEndian: boolean,
): VoxelArray {
  const size = ELEMENT_BYTES[type];
  const copy = new Uint8Array(bytes.subarray(byteOffset, byteOffset + count * size));
  if (littleEndian !== HOST_LITTLE_ENDIAN && size > 1) reverseEachElement(copy, size);
  switch (type) {
    case 'uint8':
      return copy;
    case 'int8':
      return new Int8Array(copy.buffer);
    case 'uint16':
      return new Uint16Array(copy.buffer);
    case 'int16':
      return new Int16Array(copy.buffer);
    case 'uint32':
      return new Uint32Array(copy.buffer);
    case 'int32':
      return new Int32Array(copy.buffer);
    case 'float32':
      return new Float32Array(copy.buffer);
    case 'float64':
      return new Float64Array(copy.buffer);
    case 'int64':
    case 'uint64': {
      const wide = type === 'int64' ? new BigInt64Array(copy.buffer) : new BigUint64Array(copy.buffer);
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = Number(wide[i]);
      return out;
    }
  }
}

/** The array's bytes in little-endian order (a view when the host is little-endian). */
export function encodeVoxelsLittleEndian(data: VoxelArray): Uint8Array {
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (HOST_LITTLE_ENDIAN || data.BYTES_PER_ELEMENT === 1) return view;
  const copy = new Uint8Array(view);
  reverseEachElement(copy, data.BYTES_PER_ELEMENT);
  return copy;
}

/**
 * The volume shape for a file's dimension sizes: at least three entries
 * (missing spatial axes become 1) and trailing unit axes beyond the third
 * dropped, so a 3D image stored as (X, Y, Z, 1) reads as (X, Y, Z).
 */
export function volumeShape(fileDims: readonly number[]): number[] {
  const shape = [...fileDims];
  while (shape.length > 3 && shape[shape.length - 1] === 1) shape.pop();
  while (shape.length < 3) shape.push(1);
  return shape;
}
