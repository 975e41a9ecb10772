/**
 * NIfTI-1 and NIfTI-2 reading (single .nii / .nii.gz files and .hdr/.img
 * pairs, either byte order) and NIfTI-1 writing.
 *
 * The header is parsed with a DataView through one field table per version,
 * so both versions share the reading code and the writer shares the NIfTI-1
 * table with the reader.
 */
import * as fs from 'node:fs';
import { gzipSync } from 'fflate';
import { readFileBytes, writeFileAtomic } from './files.ts';
import {
  decodeVoxels,
  elementBytes,
  elementTypeOf,
  encodeVoxelsLittleEndian,
  volumeShape,
  voxelCount,
  type ElementType,
  type VoxelArray,
} from './voxel-array.ts';
import type { Volume } from './volume.ts';

/** Geometry fields of a NIfTI header: what `writeNifti` copies from a reference. */
export interface NiftiGeometry {
  /** pixdim[0] = qfac (±1), pixdim[1..] = voxel sizes (spatial units) then time step; 8 entries. */
  pixdim: number[];
  /** Spatial units in bits 0-2 (2 = mm), temporal units in bits 3-5 (8 = s). */
  xyztUnits: number;
  qformCode: number;
  sformCode: number;
  /** Quaternion parameters b, c, d (a is implied). */
  quatern: number[];
  /** qoffset x, y, z. */
  qoffset: number[];
  /** srow_x, srow_y, srow_z: three rows of four. */
  srow: number[][];
}

export interface NiftiHeader extends NiftiGeometry {
  format: 'nifti1' | 'nifti2';
  littleEndian: boolean;
  /** 'n+1' / 'n+2' (single file) or 'ni1' / 'ni2' (header + .img pair). */
  magic: string;
  /** NIfTI datatype code (2 uint8, 4 int16, 16 float32, ...). */
  datatype: number;
  bitpix: number;
  /** dim[0] = number of dimensions, dim[1..dim[0]] = sizes; 8 entries. */
  dim: number[];
  /** Byte offset of the voxel data (in the .img file for pairs). */
  voxOffset: number;
  sclSlope: number;
  sclInter: number;
  intentCode: number;
  descrip: string;
}

const DATATYPE_ELEMENTS: ReadonlyMap<number, ElementType> = new Map([
  [2, 'uint8'],
  [4, 'int16'],
  [8, 'int32'],
  [16, 'float32'],
  [64, 'float64'],
  [256, 'int8'],
  [512, 'uint16'],
  [768, 'uint32'],
  [1024, 'int64'],
  [1280, 'uint64'],
]);
const ELEMENT_DATATYPES: ReadonlyMap<ElementType, number> = new Map(
  [...DATATYPE_ELEMENTS].map(([code, element]) => [element, code]),
);

type FieldType = 'u8' | 'i16' | 'i32' | 'i64' | 'f32' | 'f64';
interface Field {
  offset: number;
  type: FieldType;
}
interface TextField {
  offset: number;
  length: number;
}
interface HeaderLayout {
  format: 'nifti1' | 'nifti2';
  sizeofHdr: number;
  magic: TextField;
  datatype: Field;
  bitpix: Field;
  dim: Field;
  pixdim: Field;
  voxOffset: Field;
  sclSlope: Field;
  sclInter: Field;
  xyztUnits: Field;
  qformCode: Field;
  sformCode: Field;
  quatern: Field;
  qoffset: Field;
  srow: Field;
  intentCode: Field;
  descrip: TextField;
}

const NIFTI1_LAYOUT: HeaderLayout = {
  format: 'nifti1',
  sizeofHdr: 348,
  magic: { offset: 344, length: 4 },
  datatype: { offset: 70, type: 'i16' },
  bitpix: { offset: 72, type: 'i16' },
  dim: { offset: 40, type: 'i16' },
  pixdim: { offset: 76, type: 'f32' },
  voxOffset: { offset: 108, type: 'f32' },
  sclSlope: { offset: 112, type: 'f32' },
  sclInter: { offset: 116, type: 'f32' },
  xyztUnits: { offset: 123, type: 'u8' },
  qformCode: { offset: 252, type: 'i16' },
  sformCode: { offset: 254, type: 'i16' },
  quatern: { offset: 256, type: 'f32' },
  qoffset: { offset: 268, type: 'f32' },
  srow: { offset: 280, type: 'f32' },
  intentCode: { offset: 68, type: 'i16' },
  descrip: { offset: 148, length: 80 },
};

const NIFTI2_LAYOUT: HeaderLayout = {
  format: 'nifti2',
  sizeofHdr: 540,
  magic: { offset: 4, length: 8 },
  datatype: { offset: 12, type: 'i16' },
  bitpix: { offset: 14, type: 'i16' },
  dim: { offset: 16, type: 'i64' },
  pixdim: { offset: 104, type: 'f64' },
  voxOffset: { offset: 168, type: 'i64' },
  sclSlope: { offset: 176, type: 'f64' },
  sclInter: { offset: 184, type: 'f64' },
  xyztUnits: { offset: 500, type: 'i32' },
  qformCode: { offset: 344, type: 'i32' },
  sformCode: { offset: 348, type: 'i32' },
  quatern: { offset: 352, type: 'f64' },
  qoffset: { offset: 376, type: 'f64' },
  srow: { offset: 400, type: 'f64' },
  intentCode: { offset: 504, type: 'i32' },
  descrip: { offset: 240, length: 80 },
};

const FIELD_BYTES: Record<FieldType, number> = { u8: 1, i16: 2, i32: 4, i64: 8, f32: 4, f64: 8 };

/** NIfTI-1 single-file header plus the 4 extension-flag bytes; the data start here. */
const NIFTI1_SINGLE_FILE_VOX_OFFSET = 352;
const XYZT_UNITS_MM = 2;
const XFORM_SCANNER_ANAT = 1;

function getNumber(view: DataView, offset: number, type: FieldType, littleEndian: boolean): number {
  switch (type) {
    case 'u8':
      return view.getUint8(offset);
    case 'i16':
      return view.getInt16(offset, littleEndian);
    case 'i32':
      return view.getInt32(offset, littleEndian);
    case 'i64':
      return Number(view.getBigInt64(offset, littleEndian));
    case 'f32':
      return view.getFloat32(offset, littleEndian);
    case 'f64':
      return view.getFloat64(offset, littleEndian);
  }
}

function setNumber(view: DataView, offset: number, type: FieldType, value: number, littleEndian: boolean): void {
  switch (type) {
    case 'u8':
      return view.setUint8(offset, value);
    case 'i16':
      return view.setInt16(offset, value, littleEndian);
    case 'i32':
      return view.setInt32(offset, value, littleEndian);
    case 'i64':
      return view.setBigInt64(offset, BigInt(Math.round(value)), littleEndian);
    case 'f32':
      return view.setFloat32(offset, value, littleEndian);
    case 'f64':
      return view.setFloat64(offset, value, littleEndian);
  }
}

function getNumbers(view: DataView, field: Field, count: number, littleEndian: boolean): number[] {
  const values: number[] = [];
  for (let i = 0; i < count; i++) values.push(getNumber(view, field.offset + i * FIELD_BYTES[field.type], field.type, littleEndian));
  return values;
}

function setNumbers(view: DataView, field: Field, values: readonly number[], littleEndian: boolean): void {
  values.forEach((value, i) => setNumber(view, field.offset + i * FIELD_BYTES[field.type], field.type, value, littleEndian));
}

/** Text up to the first NUL byte. */
function getText(bytes: Uint8Array, field: TextField): string {
  const raw = bytes.subarray(field.offset, field.offset + field.length);
  const end = raw.indexOf(0);
  return new TextDecoder('latin1').decode(end < 0 ? raw : raw.subarray(0, end));
}

function describeBytes(bytes: Uint8Array): string {
  return JSON.stringify(new TextDecoder('latin1').decode(bytes));
}

/** Picks the header version and byte order from sizeof_hdr (348 or 540) read in each byte order. */
function detectLayout(view: DataView): { layout: HeaderLayout; littleEndian: boolean } | undefined {
  for (const littleEndian of [true, false]) {
    const sizeofHdr = view.getInt32(0, littleEndian);
    if (sizeofHdr === NIFTI1_LAYOUT.sizeofHdr) return { layout: NIFTI1_LAYOUT, littleEndian };
    if (sizeofHdr === NIFTI2_LAYOUT.sizeofHdr) return { layout: NIFTI2_LAYOUT, littleEndian };
  }
  return undefined;
}

/** Parses and validates a NIfTI-1 or NIfTI-2 header from the start of `bytes`. */
export function parseNiftiHeader(bytes: Uint8Array, filePath: string): NiftiHeader {
  if (bytes.length < 4) throw new Error(`${filePath}: too short to be a NIfTI file (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const detected = detectLayout(view);
  if (!detected) {
    throw new Error(`${filePath}: not a NIfTI file (sizeof_hdr is neither 348 nor 540 in either byte order)`);
  }
  const { layout, littleEndian } = detected;
  if (bytes.length < layout.sizeofHdr) {
    throw new Error(`${filePath}: truncated: expected a ${layout.sizeofHdr}-byte header, found ${bytes.length} bytes`);
  }
  const version = layout.format === 'nifti1' ? '1' : '2';
  const magicBytes = bytes.subarray(layout.magic.offset, layout.magic.offset + 4);
  const magic = getText(bytes, { offset: layout.magic.offset, length: 3 });
  if (magicBytes[3] !== 0 || (magic !== `n+${version}` && magic !== `ni${version}`)) {
    throw new Error(
      `${filePath}: bad NIfTI-${version} magic ${describeBytes(magicBytes)} (expected "n+${version}" or "ni${version}")`,
    );
  }
  const dim = getNumbers(view, layout.dim, 8, littleEndian);
  const rank = dim[0]!;
  if (!Number.isInteger(rank) || rank < 1 || rank > 7) throw new Error(`${filePath}: invalid dim[0] = ${rank}`);
  for (let axis = 1; axis <= rank; axis++) {
    if (!(dim[axis]! >= 1)) throw new Error(`${filePath}: invalid dim[${axis}] = ${dim[axis]}`);
  }
  const srowValues = getNumbers(view, layout.srow, 12, littleEndian);
  return {
    format: layout.format,
    littleEndian,
    magic,
    datatype: getNumber(view, layout.datatype.offset, layout.datatype.type, littleEndian),
    bitpix: getNumber(view, layout.bitpix.offset, layout.bitpix.type, littleEndian),
    dim,
    pixdim: getNumbers(view, layout.pixdim, 8, littleEndian),
    voxOffset: Math.floor(getNumber(view, layout.voxOffset.offset, layout.voxOffset.type, littleEndian)),
    sclSlope: getNumber(view, layout.sclSlope.offset, layout.sclSlope.type, littleEndian),
    sclInter: getNumber(view, layout.sclInter.offset, layout.sclInter.type, littleEndian),
    xyztUnits: getNumber(view, layout.xyztUnits.offset, layout.xyztUnits.type, littleEndian),
    qformCode: getNumber(view, layout.qformCode.offset, layout.qformCode.type, littleEndian),
    sformCode: getNumber(view, layout.sformCode.offset, layout.sformCode.type, littleEndian),
    quatern: getNumbers(view, layout.quatern, 3, littleEndian),
    qoffset: getNumbers(view, layout.qoffset, 3, littleEndian),
    srow: [srowValues.slice(0, 4), srowValues.slice(4, 8), srowValues.slice(8, 12)],
    intentCode: getNumber(view, layout.intentCode.offset, layout.intentCode.type, littleEndian),
    descrip: getText(bytes, layout.descrip),
  };
}

/** A voxel size usable in an affine: non-positive or non-finite sizes count as 1, as the NIfTI reference code does. */
function usableVoxelSize(size: number | undefined): number {
  return size !== undefined && Number.isFinite(size) && size > 0 ? size : 1;
}

/**
 * Voxel-to-world matrix from the quaternion representation (NIfTI "method 2"):
 * rotation from (a, b, c, d) with a = sqrt(1 - b² - c² - d²), columns scaled by
 * the voxel sizes, the third also by qfac = sign of pixdim[0] (0 counts as +1).
 */
export function quaternionAffine(quatern: readonly number[], qoffset: readonly number[], pixdim: readonly number[]): number[][] {
  let [b, c, d] = quatern as [number, number, number];
  let a: number;
  const squaredNorm = b * b + c * c + d * d;
  if (1 - squaredNorm < 1e-7) {
    // (b, c, d) is (nearly) a unit vector: a 180° rotation; renormalise it.
    const inverseNorm = 1 / Math.sqrt(squaredNorm);
    b *= inverseNorm;
    c *= inverseNorm;
    d *= inverseNorm;
    a = 0;
  } else {
    a = Math.sqrt(1 - squaredNorm);
  }
  const qfac = (pixdim[0] ?? 0) < 0 ? -1 : 1;
  const scale = [usableVoxelSize(pixdim[1]), usableVoxelSize(pixdim[2]), usableVoxelSize(pixdim[3]) * qfac];
  const rotation = [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c],
  ];
  return [
    ...rotation.map((row, r) => [...row.map((value, column) => value * scale[column]!), qoffset[r]!]),
    [0, 0, 0, 1],
  ];
}

/**
 * The voxel (i, j, k) → world matrix the NIfTI standard prescribes: the sform
 * when sform_code > 0, else the qform when qform_code > 0, else diag(pixdim).
 */
export function niftiAffine(header: NiftiGeometry): number[][] {
  if (header.sformCode > 0) return [...header.srow.map((row) => [...row]), [0, 0, 0, 1]];
  if (header.qformCode > 0) return quaternionAffine(header.quatern, header.qoffset, header.pixdim);
  return [
    [usableVoxelSize(header.pixdim[1]), 0, 0, 0],
    [0, usableVoxelSize(header.pixdim[2]), 0, 0],
    [0, 0, usableVoxelSize(header.pixdim[3]), 0],
    [0, 0, 0, 1],
  ];
}

/**
 * Applies scl_slope / scl_inter. A slope of 0 or NaN means "no scaling", and
 * the identity (1, 0) is skipped too so label volumes keep their integer type.
 */
function applyScaling(raw: VoxelArray, header: NiftiHeader, element: ElementType): VoxelArray {
  const slope = header.sclSlope;
  const intercept = Number.isFinite(header.sclInter) ? header.sclInter : 0;
  if (!Number.isFinite(slope) || slope === 0 || (slope === 1 && intercept === 0)) return raw;
  const wide = element === 'float64' || element === 'int64' || element === 'uint64';
  const scaled = wide ? new Float64Array(raw.length) : new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) scaled[i] = raw[i]! * slope + intercept;
  return scaled;
}

const PAIR_EXTENSION = /\.(hdr|img)(\.gz)?$/i;

function firstExisting(candidates: string[], what: string, forPath: string): string {
  const found = candidates.find((candidate) => fs.existsSync(candidate));
  if (!found) throw new Error(`${forPath}: ${what} not found (looked for ${candidates.join(', ')})`);
  return found;
}

/**
 * Reads a NIfTI-1/2 volume: `.nii`, `.nii.gz`, or a `.hdr`/`.img` pair (either
 * name may be given; `.img.gz` and `.hdr.gz` are accepted too).
 */
export function readNifti(filePath: string): Volume {
  const pairStem = PAIR_EXTENSION.test(filePath) ? filePath.replace(PAIR_EXTENSION, '') : undefined;
  const headerPath = pairStem ? firstExisting([`${pairStem}.hdr`, `${pairStem}.hdr.gz`], 'header file', filePath) : filePath;
  const headerBytes = readFileBytes(headerPath);
  const header = parseNiftiHeader(headerBytes, headerPath);
  const singleFile = header.magic.startsWith('n+');
  if (pairStem && singleFile) {
    throw new Error(`${headerPath}: magic "${header.magic}" marks a single-file NIfTI, but the name says header/image pair`);
  }
  if (!pairStem && !singleFile) {
    throw new Error(`${headerPath}: magic "${header.magic}" marks a header/image pair, but the name says single file`);
  }
  const dataPath = pairStem ? firstExisting([`${pairStem}.img`, `${pairStem}.img.gz`], 'image file', headerPath) : headerPath;
  const dataBytes = pairStem ? readFileBytes(dataPath) : headerBytes;

  const element = DATATYPE_ELEMENTS.get(header.datatype);
  if (!element) throw new Error(`${headerPath}: unsupported NIfTI datatype ${header.datatype}`);
  const minimumOffset = singleFile ? (header.format === 'nifti1' ? NIFTI1_LAYOUT : NIFTI2_LAYOUT).sizeofHdr : 0;
  if (header.voxOffset < minimumOffset) {
    throw new Error(`${headerPath}: vox_offset ${header.voxOffset} lies inside the header`);
  }
  const fileDims = header.dim.slice(1, header.dim[0]! + 1);
  const count = voxelCount(fileDims);
  const expectedBytes = count * elementBytes(element);
  const foundBytes = Math.max(0, dataBytes.length - header.voxOffset);
  if (foundBytes < expectedBytes) {
    throw new Error(`${dataPath}: truncated: expected ${expectedBytes} bytes of voxel data, found ${foundBytes}`);
  }
  const raw = decodeVoxels(dataBytes, header.voxOffset, count, element, header.littleEndian);
  return {
    data: applyScaling(raw, header, element),
    shape: volumeShape(fileDims),
    affine: niftiAffine(header),
    header,
  };
}

/** Geometry to write: the reference's NIfTI fields, or an sform built from its affine for other formats. */
function referenceGeometry(reference: Volume): NiftiGeometry {
  const header = reference.header;
  if (header.format === 'nifti1' || header.format === 'nifti2') {
    return {
      pixdim: [...header.pixdim],
      xyztUnits: header.xyztUnits,
      qformCode: header.qformCode,
      sformCode: header.sformCode,
      quatern: [...header.quatern],
      qoffset: [...header.qoffset],
      srow: header.srow.map((row) => [...row]),
    };
  }
  const affine = reference.affine;
  const columnLength = (column: number) => Math.hypot(affine[0]![column]!, affine[1]![column]!, affine[2]![column]!);
  return {
    pixdim: [1, columnLength(0), columnLength(1), columnLength(2), 1, 1, 1, 1],
    xyztUnits: XYZT_UNITS_MM,
    qformCode: 0,
    sformCode: XFORM_SCANNER_ANAT,
    quatern: [0, 0, 0],
    qoffset: [0, 0, 0],
    srow: affine.slice(0, 3).map((row) => [...row]),
  };
}

const IDENTITY_GEOMETRY: NiftiGeometry = {
  pixdim: [1, 1, 1, 1, 1, 1, 1, 1],
  xyztUnits: XYZT_UNITS_MM,
  qformCode: 0,
  sformCode: XFORM_SCANNER_ANAT,
  quatern: [0, 0, 0],
  qoffset: [0, 0, 0],
  srow: [
    [1, 0, 0, 0],
    [0, 1, 0, 0],
    [0, 0, 1, 0],
  ],
};

/**
 * Writes a little-endian NIfTI-1 single file (`.nii`, or gzipped when the
 * name ends in `.nii.gz`), atomically. The datatype follows the array type
 * (Uint8Array → uint8, Int16Array → int16, Float32Array → float32, and
 * likewise for the other typed arrays). Geometry (pixdim, qform/sform and
 * their codes, xyzt_units) comes from `reference.header` when given, with dim
 * taken from `shape`; otherwise the affine is the identity (1 mm voxels,
 * sform_code 1). `data` is in (i, j, k[, t]) order, i fastest.
 */
export function writeNifti(filePath: string, data: VoxelArray, shape: readonly number[], reference?: Volume): void {
  const compress = /\.nii\.gz$/i.test(filePath);
  if (!compress && !/\.nii$/i.test(filePath)) {
    throw new Error(`${filePath}: NIfTI output name must end in .nii or .nii.gz`);
  }
  if (shape.length < 1 || shape.length > 7) throw new Error(`${filePath}: cannot write a ${shape.length}-dimensional volume`);
  const count = voxelCount(shape);
  if (count !== data.length) {
    throw new Error(`${filePath}: shape [${shape.join(', ')}] needs ${count} voxels but the data has ${data.length}`);
  }
  const element = elementTypeOf(data);
  const geometry = reference ? referenceGeometry(reference) : IDENTITY_GEOMETRY;
  const pixdim = geometry.pixdim.map((size, axis) => (axis === 0 ? (size < 0 ? -1 : 1) : usableVoxelSize(size)));

  const voxelBytes = encodeVoxelsLittleEndian(data);
  const fileBytes = new Uint8Array(NIFTI1_SINGLE_FILE_VOX_OFFSET + voxelBytes.length);
  const view = new DataView(fileBytes.buffer);
  const layout = NIFTI1_LAYOUT;
  view.setInt32(0, layout.sizeofHdr, true);
  setNumbers(view, layout.dim, [shape.length, ...shape, ...new Array<number>(7 - shape.length).fill(1)], true);
  setNumber(view, layout.datatype.offset, layout.datatype.type, ELEMENT_DATATYPES.get(element)!, true);
  setNumber(view, layout.bitpix.offset, layout.bitpix.type, elementBytes(element) * 8, true);
  setNumbers(view, layout.pixdim, pixdim, true);
  setNumber(view, layout.voxOffset.offset, layout.voxOffset.type, NIFTI1_SINGLE_FILE_VOX_OFFSET, true);
  setNumber(view, layout.sclSlope.offset, layout.sclSlope.type, 1, true);
  setNumber(view, layout.sclInter.offset, layout.sclInter.type, 0, true);
  setNumber(view, layout.xyztUnits.offset, layout.xyztUnits.type, geometry.xyztUnits, true);
  setNumber(view, layout.qformCode.offset, layout.qformCode.type, geometry.qformCode, true);
  setNumber(view, layout.sformCode.offset, layout.sformCode.type, geometry.sformCode, true);
  setNumbers(view, layout.quatern, geometry.quatern, true);
  setNumbers(view, layout.qoffset, geometry.qoffset, true);
  setNumbers(view, layout.srow, geometry.srow.flat(), true);
  fileBytes.set(new TextEncoder().encode('smml'), layout.descrip.offset);
  fileBytes.set([0x6e, 0x2b, 0x31, 0x00], layout.magic.offset); // "n+1\0"
  fileBytes.set(voxelBytes, NIFTI1_SINGLE_FILE_VOX_OFFSET);
  // Level 1: about 1.5x faster than the default on volume data for a few percent larger files.
  writeFileAtomic(filePath, compress ? gzipSync(fileBytes, { level: 1, mtime: 0 }) : fileBytes);
}
