/**
 * MetaImage (ITK) reading: `.mha` (header and data in one file) and `.mhd`
 * (header naming a separate data file), raw or zlib-compressed, either byte
 * order.
 *
 * World coordinates: MetaImage/ITK uses LPS (x grows to the patient's left,
 * y to posterior) while NIfTI uses RAS. The affine returned here is
 * converted to RAS by negating its first two rows, so a volume read from
 * either format maps voxels to the same world points.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decompressSync } from 'fflate';
import { readFileBytes } from './files.ts';
import { decodeVoxels, elementBytes, volumeShape, voxelCount, type ElementType } from './voxel-array.ts';
import type { Volume } from './volume.ts';

export interface MetaImageHeader {
  format: 'metaimage';
  /** ElementType as written, e.g. 'MET_SHORT'. */
  metElementType: string;
  elementType: ElementType;
  dimSize: number[];
  /** Voxel spacing per axis (mm). */
  spacing: number[];
  /** World position of voxel 0, LPS, as in the file. */
  origin: number[];
  /** NDims x NDims direction matrix in LPS; column j is the direction of voxel axis j. */
  direction: number[][];
  littleEndian: boolean;
  compressed: boolean;
  /** 'LOCAL' or the resolved path of the data file. */
  dataFile: string;
  /** Every header line, key → value, as written. */
  fields: Record<string, string>;
}

const MET_ELEMENT_TYPES: ReadonlyMap<string, ElementType> = new Map([
  ['MET_UCHAR', 'uint8'],
  ['MET_CHAR', 'int8'],
  ['MET_USHORT', 'uint16'],
  ['MET_SHORT', 'int16'],
  ['MET_UINT', 'uint32'],
  ['MET_INT', 'int32'],
  // MetaIO's MET_LONG / MET_ULONG are 4-byte types.
  ['MET_ULONG', 'uint32'],
  ['MET_LONG', 'int32'],
  ['MET_ULONG_LONG', 'uint64'],
  ['MET_LONG_LONG', 'int64'],
  ['MET_FLOAT', 'float32'],
  ['MET_DOUBLE', 'float64'],
]);

/** Guards against scanning a large binary file for a header that is not there. */
const MAX_HEADER_BYTES = 1 << 16;

interface ParsedHeader {
  fields: Record<string, string>;
  /** Lower-cased key → value, for case-insensitive lookups. */
  byKey: Map<string, string>;
  /** Byte offset just after the ElementDataFile line. */
  dataStart: number;
}

/** Reads `Key = Value` lines up to and including ElementDataFile, which MetaIO requires to come last. */
function parseHeaderLines(bytes: Uint8Array, filePath: string): ParsedHeader {
  const decoder = new TextDecoder('latin1');
  const fields: Record<string, string> = {};
  const byKey = new Map<string, string>();
  let position = 0;
  while (position < bytes.length && position < MAX_HEADER_BYTES) {
    let lineEnd = bytes.indexOf(0x0a, position);
    if (lineEnd < 0) lineEnd = bytes.length;
    const line = decoder.decode(bytes.subarray(position, lineEnd)).trim();
    position = lineEnd + 1;
    if (line === '') continue;
    const equals = line.indexOf('=');
    if (equals <= 0) throw new Error(`${filePath}: malformed MetaImage header line ${JSON.stringify(line.slice(0, 80))}`);
    const key = line.slice(0, equals).trim();
    const value = line.slice(equals + 1).trim();
    fields[key] = value;
    byKey.set(key.toLowerCase(), value);
    if (key.toLowerCase() === 'elementdatafile') return { fields, byKey, dataStart: Math.min(position, bytes.length) };
  }
  throw new Error(`${filePath}: MetaImage header has no ElementDataFile line`);
}

function numbersField(header: ParsedHeader, keys: readonly string[], count: number, filePath: string): number[] | undefined {
  const key = keys.find((candidate) => header.byKey.has(candidate.toLowerCase()));
  if (!key) return undefined;
  const text = header.byKey.get(key.toLowerCase())!;
  const values = text.split(/\s+/).filter((token) => token !== '').map(Number);
  if (values.length < count || values.some((value) => !Number.isFinite(value))) {
    throw new Error(`${filePath}: ${key} must hold ${count} numbers, got ${JSON.stringify(text)}`);
  }
  return values.slice(0, count);
}

function booleanField(header: ParsedHeader, keys: readonly string[]): boolean {
  const key = keys.find((candidate) => header.byKey.has(candidate.toLowerCase()));
  return key !== undefined && /^(true|1|yes)$/i.test(header.byKey.get(key.toLowerCase())!);
}

/**
 * Voxel → world (RAS) matrix from MetaImage geometry: world_LPS = origin +
 * direction · diag(spacing) · index, then x and y negated. Axes beyond the
 * third are not spatial; missing spatial axes get unit columns.
 */
export function metaImageAffine(spacing: readonly number[], origin: readonly number[], direction: readonly number[][]): number[][] {
  const spatial = Math.min(3, spacing.length);
  const affine: number[][] = [];
  for (let row = 0; row < 3; row++) {
    // Subtracting from 0 (rather than multiplying by -1) keeps zeros as +0.
    const toRas = (lps: number) => (row < 2 ? 0 - lps : lps);
    const values: number[] = [];
    for (let column = 0; column < 3; column++) {
      const lps = row < spatial && column < spatial ? direction[row]![column]! * spacing[column]! : row === column ? 1 : 0;
      values.push(toRas(lps));
    }
    values.push(toRas(row < spatial ? origin[row]! : 0));
    affine.push(values);
  }
  affine.push([0, 0, 0, 1]);
  return affine;
}

/** Reads a MetaImage volume (`.mha` or `.mhd` plus its data file). */
export function readMetaImage(filePath: string): Volume {
  const bytes = readFileBytes(filePath);
  const header = parseHeaderLines(bytes, filePath);
  const objectType = header.byKey.get('objecttype');
  if (objectType !== undefined && objectType.toLowerCase() !== 'image') {
    throw new Error(`${filePath}: ObjectType ${objectType} is not an image`);
  }
  const rank = Number(header.byKey.get('ndims'));
  if (!Number.isInteger(rank) || rank < 1 || rank > 7) throw new Error(`${filePath}: missing or invalid NDims`);
  const dimSize = numbersField(header, ['DimSize'], rank, filePath);
  if (!dimSize) throw new Error(`${filePath}: missing DimSize`);
  const metElementType = header.byKey.get('elementtype') ?? '';
  const elementType = MET_ELEMENT_TYPES.get(metElementType.toUpperCase());
  if (!elementType) throw new Error(`${filePath}: unsupported ElementType ${JSON.stringify(metElementType)}`);
  const channels = header.byKey.get('elementnumberofchannels');
  if (channels !== undefined && Number(channels) !== 1) {
    throw new Error(`${filePath}: ElementNumberOfChannels ${channels} is not supported (single-channel images only)`);
  }
  const spacing = numbersField(header, ['ElementSpacing', 'ElementSize'], rank, filePath) ?? new Array<number>(rank).fill(1);
  const origin = numbersField(header, ['Offset', 'Position', 'Origin'], rank, filePath) ?? new Array<number>(rank).fill(0);
  const transform = numbersField(header, ['TransformMatrix', 'Rotation', 'Orientation'], rank * rank, filePath);
  // MetaIO lists the direction of voxel axis j as the j-th group of NDims numbers.
  const direction = Array.from({ length: rank }, (_, row) =>
    Array.from({ length: rank }, (_, column) => (transform ? transform[column * rank + row]! : row === column ? 1 : 0)),
  );
  const littleEndian = !booleanField(header, ['BinaryDataByteOrderMSB', 'ElementByteOrderMSB']);
  const compressed = booleanField(header, ['CompressedData']);

  const dataFileValue = header.byKey.get('elementdatafile')!;
  const local = dataFileValue.toUpperCase() === 'LOCAL';
  if (!local && (dataFileValue.toUpperCase().startsWith('LIST') || dataFileValue.includes('%'))) {
    throw new Error(`${filePath}: ElementDataFile ${JSON.stringify(dataFileValue)} (multiple data files) is not supported`);
  }
  const dataPath = local ? filePath : path.resolve(path.dirname(filePath), dataFileValue);
  if (!local && !fs.existsSync(dataPath)) throw new Error(`${filePath}: data file ${dataPath} not found`);
  const fileBytes = local ? bytes.subarray(header.dataStart) : readFileBytes(dataPath);

  const count = voxelCount(dimSize);
  const expectedBytes = count * elementBytes(elementType);
  let voxelBytes: Uint8Array;
  if (compressed) {
    const compressedSize = Number(header.byKey.get('compresseddatasize'));
    const stream = compressedSize > 0 ? fileBytes.subarray(0, compressedSize) : fileBytes;
    try {
      voxelBytes = decompressSync(stream);
    } catch (error) {
      throw new Error(`${dataPath}: compressed voxel data truncated or corrupt (${(error as Error).message})`);
    }
  } else {
    const headerSize = local ? 0 : Number(header.byKey.get('headersize') ?? 0);
    if (!Number.isInteger(headerSize) || headerSize < -1) {
      throw new Error(`${filePath}: invalid HeaderSize ${JSON.stringify(header.byKey.get('headersize'))}`);
    }
    // HeaderSize -1 means "the data is the last bytes of the file".
    const skip = headerSize === -1 ? Math.max(0, fileBytes.length - expectedBytes) : headerSize;
    voxelBytes = fileBytes.subarray(skip);
  }
  if (voxelBytes.length < expectedBytes) {
    throw new Error(`${dataPath}: truncated: expected ${expectedBytes} bytes of voxel data, found ${voxelBytes.length}`);
  }
  return {
    data: decodeVoxels(voxelBytes, 0, count, elementType, littleEndian),
    shape: volumeShape(dimSize),
    affine: metaImageAffine(spacing, origin, direction),
    header: {
      format: 'metaimage',
      metElementType,
      elementType,
      dimSize,
      spacing,
      origin,
      direction,
      littleEndian,
      compressed,
      dataFile: local ? 'LOCAL' : dataPath,
      fields: header.fields,
    },
  };
}
