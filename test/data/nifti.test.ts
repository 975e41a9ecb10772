import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { gzipSync } from 'fflate';
import { readVolume, writeVolume, type Volume } from '../../src/data/volume.ts';

const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
after(() => fs.rmSync(tempDir, { recursive: true, force: true }));
const tempPath = (name: string) => path.join(tempDir, name);

type ValueType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64' | 'i64';
const VALUE_BYTES: Record<ValueType, number> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, f64: 8, i64: 8 };

/** Encodes numbers with DataView setters, independently of the code under test. */
function encodeValues(values: readonly number[], type: ValueType, littleEndian: boolean): Uint8Array {
  const bytes = new Uint8Array(values.length * VALUE_BYTES[type]);
  const view = new DataView(bytes.buffer);
  values.forEach((value, i) => {
    const at = i * VALUE_BYTES[type];
    if (type === 'u8') view.setUint8(at, value);
    else if (type === 'i8') view.setInt8(at, value);
    else if (type === 'u16') view.setUint16(at, value, littleEndian);
    else if (type === 'i16') view.setInt16(at, value, littleEndian);
    else if (type === 'u32') view.setUint32(at, value, littleEndian);
    else if (type === 'i32') view.setInt32(at, value, littleEndian);
    else if (type === 'f32') view.setFloat32(at, value, littleEndian);
    else if (type === 'f64') view.setFloat64(at, value, littleEndian);
    else view.setBigInt64(at, BigInt(value), littleEndian);
  });
  return bytes;
}

interface HeaderSpec {
  littleEndian?: boolean;
  datatype: number;
  bitpix: number;
  dims: number[];
  pixdim?: number[];
  voxOffset?: number;
  sclSlope?: number;
  sclInter?: number;
  qformCode?: number;
  sformCode?: number;
  quatern?: number[];
  qoffset?: number[];
  srow?: number[][];
  magic?: string;
}

/** A NIfTI-1 header (348 bytes + 4 extension bytes) laid out by hand from the standard's offsets. */
function nifti1Header(spec: HeaderSpec): Uint8Array {
  const le = spec.littleEndian ?? true;
  const bytes = new Uint8Array(352);
  const view = new DataView(bytes.buffer);
  view.setInt32(0, 348, le);
  view.setInt16(40, spec.dims.length, le);
  spec.dims.forEach((size, i) => view.setInt16(42 + 2 * i, size, le));
  view.setInt16(70, spec.datatype, le);
  view.setInt16(72, spec.bitpix, le);
  (spec.pixdim ?? [1, 1, 1, 1, 1, 1, 1, 1]).forEach((value, i) => view.setFloat32(76 + 4 * i, value, le));
  view.setFloat32(108, spec.voxOffset ?? 352, le);
  view.setFloat32(112, spec.sclSlope ?? 0, le);
  view.setFloat32(116, spec.sclInter ?? 0, le);
  view.setUint8(123, 2);
  view.setInt16(252, spec.qformCode ?? 0, le);
  view.setInt16(254, spec.sformCode ?? 0, le);
  (spec.quatern ?? [0, 0, 0]).forEach((value, i) => view.setFloat32(256 + 4 * i, value, le));
  (spec.qoffset ?? [0, 0, 0]).forEach((value, i) => view.setFloat32(268 + 4 * i, value, le));
  (spec.srow ?? [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]).flat().forEach((value, i) => view.setFloat32(280 + 4 * i, value, le));
  bytes.set(new TextEncoder().encode(spec.magic ?? 'n+1'), 344);
  return bytes;
}

/** A NIfTI-2 header (540 bytes + 4 extension bytes). */
function nifti2Header(spec: HeaderSpec): Uint8Array {
  const le = spec.littleEndian ?? true;
  const bytes = new Uint8Array(544);
  const view = new DataView(bytes.buffer);
  view.setInt32(0, 540, le);
  bytes.set([0x6e, 0x2b, 0x32, 0x00, 0x0d, 0x0a, 0x1a, 0x0a], 4); // "n+2\0\r\n\032\n"
  view.setInt16(12, spec.datatype, le);
  view.setInt16(14, spec.bitpix, le);
  view.setBigInt64(16, BigInt(spec.dims.length), le);
  spec.dims.forEach((size, i) => view.setBigInt64(24 + 8 * i, BigInt(size), le));
  (spec.pixdim ?? [1, 1, 1, 1, 1, 1, 1, 1]).forEach((value, i) => view.setFloat64(104 + 8 * i, value, le));
  view.setBigInt64(168, BigInt(spec.voxOffset ?? 544), le);
  view.setFloat64(176, spec.sclSlope ?? 0, le);
  view.setFloat64(184, spec.sclInter ?? 0, le);
  view.setInt32(344, spec.qformCode ?? 0, le);
  view.setInt32(348, spec.sformCode ?? 0, le);
  (spec.srow ?? [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]).flat().forEach((value, i) => view.setFloat64(400 + 8 * i, value, le));
  view.setInt32(500, 2, le);
  return bytes;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function writeFile(name: string, bytes: Uint8Array): string {
  const filePath = tempPath(name);
  fs.writeFileSync(filePath, bytes);
  return filePath;
}

function assertAffineClose(actual: number[][], expected: number[][], tolerance = 1e-5): void {
  assert.equal(actual.length, 4);
  for (let r = 0; r < 4; r++) {
    for (let c = 0; c < 4; c++) {
      assert.ok(
        Math.abs(actual[r]![c]! - expected[r]![c]!) <= tolerance,
        `affine[${r}][${c}] = ${actual[r]![c]}, expected ${expected[r]![c]}`,
      );
    }
  }
}

const DATATYPE_CASES: { name: string; code: number; type: ValueType; values: number[]; array: string }[] = [
  { name: 'uint8', code: 2, type: 'u8', values: [0, 1, 2, 255, 128, 7, 9, 200], array: 'Uint8Array' },
  { name: 'int8', code: 256, type: 'i8', values: [0, -1, 2, -128, 127, 7, -9, 100], array: 'Int8Array' },
  { name: 'int16', code: 4, type: 'i16', values: [0, -1, 300, -32768, 32767, 7, -9, 1000], array: 'Int16Array' },
  { name: 'uint16', code: 512, type: 'u16', values: [0, 1, 300, 65535, 32768, 7, 9, 1000], array: 'Uint16Array' },
  { name: 'int32', code: 8, type: 'i32', values: [0, -1, 70000, -2147483648, 2147483647, 7, -9, 1], array: 'Int32Array' },
  { name: 'uint32', code: 768, type: 'u32', values: [0, 1, 70000, 4294967295, 2147483648, 7, 9, 1], array: 'Uint32Array' },
  { name: 'float32', code: 16, type: 'f32', values: [0, -1.5, 0.25, 1e10, -3e-5, 7, 9.5, 1], array: 'Float32Array' },
  { name: 'float64', code: 64, type: 'f64', values: [0, -1.5, 0.1, 1e300, -3e-300, 7, 9.5, 1], array: 'Float64Array' },
  { name: 'int64', code: 1024, type: 'i64', values: [0, -1, 2 ** 40, -(2 ** 52), 5, 7, 9, 1], array: 'Float64Array' },
];

describe('NIfTI-1 reading', () => {
  for (const littleEndian of [true, false]) {
    for (const { name, code, type, values, array } of DATATYPE_CASES) {
      test(`${name}, ${littleEndian ? 'little' : 'big'}-endian`, () => {
        const header = nifti1Header({ littleEndian, datatype: code, bitpix: VALUE_BYTES[type] * 8, dims: [2, 2, 2] });
        const filePath = writeFile(`${name}-${littleEndian}.nii`, concat(header, encodeValues(values, type, littleEndian)));
        const volume = readVolume(filePath);
        assert.equal(volume.data.constructor.name, array);
        assert.deepEqual(volume.shape, [2, 2, 2]);
        const expected = type === 'f32' ? values.map(Math.fround) : values;
        assert.deepEqual(Array.from(volume.data), expected);
        assert.equal(volume.header.format, 'nifti1');
      });
    }
  }

  test('gzip-compressed .nii.gz', () => {
    const values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8];
    const bytes = concat(nifti1Header({ datatype: 4, bitpix: 16, dims: [3, 2, 2] }), encodeValues(values, 'i16', true));
    const volume = readVolume(writeFile('gz.nii.gz', gzipSync(bytes)));
    assert.deepEqual(volume.shape, [3, 2, 2]);
    assert.deepEqual(Array.from(volume.data), values);
  });

  test('scl_slope / scl_inter scale to Float32Array; float64 sources to Float64Array', () => {
    const values = [0, 1, 2, 3, -4, 5, 6, 7];
    const int16 = concat(
      nifti1Header({ datatype: 4, bitpix: 16, dims: [2, 2, 2], sclSlope: 2, sclInter: -1 }),
      encodeValues(values, 'i16', true),
    );
    const scaled = readVolume(writeFile('scaled.nii', int16));
    assert.ok(scaled.data instanceof Float32Array);
    assert.deepEqual(Array.from(scaled.data), [-1, 1, 3, 5, -9, 9, 11, 13]);

    const float64 = concat(
      nifti1Header({ datatype: 64, bitpix: 64, dims: [2, 2, 2], sclSlope: 0.5, sclInter: 10 }),
      encodeValues(values, 'f64', true),
    );
    const scaledWide = readVolume(writeFile('scaled64.nii', float64));
    assert.ok(scaledWide.data instanceof Float64Array);
    assert.deepEqual(Array.from(scaledWide.data), [10, 10.5, 11, 11.5, 8, 12.5, 13, 13.5]);
  });

  test('slope 0, NaN or the identity (1, 0) leave data unscaled and in its own type', () => {
    const values = [0, 1, 2, 4, 0, 1, 2, 4];
    for (const [slope, intercept] of [[0, 5], [NaN, 5], [1, 0]] as const) {
      const bytes = concat(
        nifti1Header({ datatype: 2, bitpix: 8, dims: [2, 2, 2], sclSlope: slope, sclInter: intercept }),
        encodeValues(values, 'u8', true),
      );
      const volume = readVolume(writeFile(`unscaled-${slope}.nii`, bytes));
      assert.ok(volume.data instanceof Uint8Array, `slope ${slope}`);
      assert.deepEqual(Array.from(volume.data), values);
    }
  });

  test('4D volume keeps the t axis; a trailing unit axis is dropped', () => {
    const values = Array.from({ length: 24 }, (_, i) => i * 0.5);
    const fourD = concat(nifti1Header({ datatype: 16, bitpix: 32, dims: [2, 2, 2, 3] }), encodeValues(values, 'f32', true));
    const volume = readVolume(writeFile('4d.nii', fourD));
    assert.deepEqual(volume.shape, [2, 2, 2, 3]);
    assert.deepEqual(Array.from(volume.data), values);

    const unitT = concat(nifti1Header({ datatype: 16, bitpix: 32, dims: [2, 3, 4, 1] }), encodeValues(values, 'f32', true));
    assert.deepEqual(readVolume(writeFile('4d-unit.nii', unitT)).shape, [2, 3, 4]);
  });

  test('qform only: 90° rotation about z, with qfac +1 and -1', () => {
    // Quaternion (a, b, c, d) = (cos 45°, 0, 0, sin 45°) rotates x onto y: R = [[0,-1,0],[1,0,0],[0,0,1]].
    const half = Math.SQRT1_2;
    for (const qfac of [1, -1]) {
      const header = nifti1Header({
        datatype: 2,
        bitpix: 8,
        dims: [2, 2, 2],
        pixdim: [qfac, 2, 3, 4, 1, 1, 1, 1],
        qformCode: 1,
        quatern: [0, 0, half],
        qoffset: [10, 20, 30],
      });
      const volume = readVolume(writeFile(`qform-${qfac}.nii`, concat(header, new Uint8Array(8))));
      assertAffineClose(volume.affine, [
        [0, -3, 0, 10],
        [2, 0, 0, 20],
        [0, 0, 4 * qfac, 30],
        [0, 0, 0, 1],
      ]);
    }
  });

  test('qform with a = 0: 180° rotation about x, b rounded slightly above 1', () => {
    const header = nifti1Header({
      datatype: 2,
      bitpix: 8,
      dims: [2, 2, 2],
      pixdim: [1, 2, 3, 4, 1, 1, 1, 1],
      qformCode: 2,
      // float32(1.0000001) > 1, so 1 - b² < 0: the reader must renormalise instead of taking sqrt of a negative.
      quatern: [1.0000001, 0, 0],
      qoffset: [-1, -2, -3],
    });
    const volume = readVolume(writeFile('qform-180.nii', concat(header, new Uint8Array(8))));
    assertAffineClose(volume.affine, [
      [2, 0, 0, -1],
      [0, -3, 0, -2],
      [0, 0, -4, -3],
      [0, 0, 0, 1],
    ]);
  });

  test('sform takes precedence over qform; neither gives diag(pixdim)', () => {
    const srow = [
      [-1.5, 0, 0, 90],
      [0, 1.5, 0.25, -126],
      [0, 0, 2, -72],
    ];
    const both = nifti1Header({
      datatype: 2,
      bitpix: 8,
      dims: [2, 2, 2],
      pixdim: [1, 7, 8, 9, 1, 1, 1, 1],
      qformCode: 1,
      quatern: [0, 0, Math.SQRT1_2],
      qoffset: [1, 2, 3],
      sformCode: 2,
      srow,
    });
    assertAffineClose(readVolume(writeFile('sform.nii', concat(both, new Uint8Array(8)))).affine, [...srow, [0, 0, 0, 1]]);

    const neither = nifti1Header({ datatype: 2, bitpix: 8, dims: [2, 2, 2], pixdim: [1, 7, 8, 9, 1, 1, 1, 1], srow });
    assertAffineClose(readVolume(writeFile('noform.nii', concat(neither, new Uint8Array(8)))).affine, [
      [7, 0, 0, 0],
      [0, 8, 0, 0],
      [0, 0, 9, 0],
      [0, 0, 0, 1],
    ]);
  });

  test('.hdr/.img pair (also .img.gz), opened by either name', () => {
    const values = [10, 20, 30, 40, 50, 60, 70, 80];
    const header = nifti1Header({ datatype: 512, bitpix: 16, dims: [2, 2, 2], voxOffset: 0, magic: 'ni1' });
    const headerPath = writeFile('pair.hdr', header.subarray(0, 348));
    writeFile('pair.img', encodeValues(values, 'u16', true));
    assert.deepEqual(Array.from(readVolume(headerPath).data), values);
    assert.deepEqual(Array.from(readVolume(tempPath('pair.img')).data), values);

    writeFile('gzpair.hdr', header.subarray(0, 348));
    writeFile('gzpair.img.gz', gzipSync(encodeValues(values, 'u16', true)));
    assert.deepEqual(Array.from(readVolume(tempPath('gzpair.hdr')).data), values);
  });
});

describe('NIfTI-2 reading', () => {
  for (const littleEndian of [true, false]) {
    test(`int16 with sform, ${littleEndian ? 'little' : 'big'}-endian`, () => {
      const values = [1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12];
      const srow = [
        [0.5, 0, 0, -10],
        [0, 0.75, 0, 20],
        [0, 0, 1.25, 30],
      ];
      const header = nifti2Header({ littleEndian, datatype: 4, bitpix: 16, dims: [2, 3, 2], sformCode: 1, srow });
      const volume = readVolume(writeFile(`n2-${littleEndian}.nii`, concat(header, encodeValues(values, 'i16', littleEndian))));
      assert.equal(volume.header.format, 'nifti2');
      assert.ok(volume.data instanceof Int16Array);
      assert.deepEqual(volume.shape, [2, 3, 2]);
      assert.deepEqual(Array.from(volume.data), values);
      assertAffineClose(volume.affine, [...srow, [0, 0, 0, 1]], 0);
    });
  }

  test('4D float64 with scaling', () => {
    const values = Array.from({ length: 16 }, (_, i) => i);
    const header = nifti2Header({ datatype: 64, bitpix: 64, dims: [2, 2, 2, 2], sclSlope: 3, sclInter: 1 });
    const volume = readVolume(writeFile('n2-4d.nii', concat(header, encodeValues(values, 'f64', true))));
    assert.deepEqual(volume.shape, [2, 2, 2, 2]);
    assert.ok(volume.data instanceof Float64Array);
    assert.deepEqual(Array.from(volume.data), values.map((v) => 3 * v + 1));
  });
});

describe('NIfTI errors', () => {
  const goodFile = () => concat(nifti1Header({ datatype: 4, bitpix: 16, dims: [4, 4, 4] }), new Uint8Array(128));

  test('too-short voxel data names the file and the byte counts', () => {
    const filePath = writeFile('short.nii', goodFile().subarray(0, 352 + 100));
    assert.throws(
      () => readVolume(filePath),
      (error: Error) => error.message === `${filePath}: truncated: expected 128 bytes of voxel data, found 100`,
    );
  });

  test('truncated gzip names the file', () => {
    const compressed = gzipSync(goodFile());
    const filePath = writeFile('cut.nii.gz', compressed.subarray(0, Math.floor(compressed.length / 2)));
    assert.throws(() => readVolume(filePath), (error: Error) => error.message.startsWith(filePath) && /truncated/.test(error.message));
  });

  test('wrong magic', () => {
    const bytes = goodFile();
    bytes.set(new TextEncoder().encode('xyz'), 344);
    const filePath = writeFile('magic.nii', bytes);
    assert.throws(() => readVolume(filePath), (error: Error) => error.message.startsWith(filePath) && /magic "xyz/.test(error.message));
  });

  test('pair magic in a single-file name, bad sizeof_hdr, unsupported datatype, unknown extension', () => {
    const pairMagic = goodFile();
    pairMagic.set(new TextEncoder().encode('ni1'), 344);
    assert.throws(() => readVolume(writeFile('pairmagic.nii', pairMagic)), /header\/image pair/);

    const notNifti = goodFile();
    new DataView(notNifti.buffer).setInt32(0, 1234, true);
    assert.throws(() => readVolume(writeFile('notnifti.nii', notNifti)), /sizeof_hdr/);

    const rgb = concat(nifti1Header({ datatype: 128, bitpix: 24, dims: [2, 2, 2] }), new Uint8Array(24));
    assert.throws(() => readVolume(writeFile('rgb.nii', rgb)), /unsupported NIfTI datatype 128/);

    assert.throws(() => readVolume(tempPath('volume.png')), /unknown volume format/);
  });
});

describe('NIfTI writing', () => {
  const referenceSpec: HeaderSpec = {
    datatype: 16,
    bitpix: 32,
    dims: [3, 2, 2],
    pixdim: [-1, 1.5, 2.5, 3.5, 1, 1, 1, 1],
    qformCode: 1,
    quatern: [0, 0, Math.SQRT1_2],
    qoffset: [5, 6, 7],
    sformCode: 2,
    srow: [
      [0, -2.5, 0, 5],
      [1.5, 0, 0, 6],
      [0, 0, -3.5, 7],
    ],
  };
  const reference = (): Volume =>
    readVolume(writeFile('reference.nii', concat(nifti1Header(referenceSpec), new Uint8Array(12 * 4))));

  test('header bytes follow the NIfTI-1 single-file layout', () => {
    const filePath = tempPath('layout.nii');
    writeVolume(filePath, new Int16Array([1, -2, 3, -4, 5, -6]), [3, 2, 1]);
    const bytes = fs.readFileSync(filePath);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    assert.equal(bytes.length, 352 + 12);
    assert.equal(view.getInt32(0, true), 348);
    assert.equal(view.getInt16(40, true), 3);
    assert.deepEqual([view.getInt16(42, true), view.getInt16(44, true), view.getInt16(46, true)], [3, 2, 1]);
    assert.equal(view.getInt16(70, true), 4);
    assert.equal(view.getInt16(72, true), 16);
    assert.equal(view.getFloat32(108, true), 352);
    assert.equal(view.getInt16(254, true), 1);
    assert.deepEqual([...bytes.subarray(344, 348)], [0x6e, 0x2b, 0x31, 0]);
    assert.equal(view.getInt16(352 + 2, true), -2);
  });

  test('round trip keeps data, type and geometry of the reference', () => {
    const ref = reference();
    for (const [name, data] of [
      ['labels.nii.gz', new Uint8Array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])],
      ['int16.nii.gz', new Int16Array([-5, 0, 5, 10, -5, 0, 5, 10, 300, 0, 0, 1])],
      ['image.nii', new Float32Array([0.5, -1.25, 3, 0, 0, 0, 7.75, 1, 2, 3, 4, 5])],
    ] as const) {
      const filePath = tempPath(name);
      writeVolume(filePath, data, [3, 2, 2], ref);
      const back = readVolume(filePath);
      assert.equal(back.data.constructor, data.constructor, name);
      assert.deepEqual(Array.from(back.data), Array.from(data), name);
      assert.deepEqual(back.shape, [3, 2, 2]);
      assertAffineClose(back.affine, ref.affine, 0);
      assert.ok(back.header.format === 'nifti1' && ref.header.format === 'nifti1');
      assert.equal(back.header.qformCode, 1);
      assert.equal(back.header.sformCode, 2);
      assert.deepEqual(back.header.pixdim.slice(0, 4), [-1, 1.5, 2.5, 3.5]);
      assert.deepEqual(back.header.quatern, ref.header.quatern);
      assert.deepEqual(back.header.qoffset, [5, 6, 7]);
    }
    assert.deepEqual(fs.readdirSync(tempDir).filter((name) => name.includes('.tmp-')), []);
  });

  test('without a reference the affine is the identity; dims come from the shape', () => {
    const filePath = tempPath('identity.nii.gz');
    writeVolume(filePath, new Float32Array(2 * 3 * 4 * 2), [2, 3, 4, 2]);
    const back = readVolume(filePath);
    assert.deepEqual(back.shape, [2, 3, 4, 2]);
    assert.deepEqual(back.affine, [
      [1, 0, 0, 0],
      [0, 1, 0, 0],
      [0, 0, 1, 0],
      [0, 0, 0, 1],
    ]);
  });

  test('bad names and sizes are rejected', () => {
    assert.throws(() => writeVolume(tempPath('x.nii.gz'), new Uint8Array(5), [2, 2, 2]), /needs 8 voxels but the data has 5/);
    assert.throws(() => writeVolume(tempPath('x.mha'), new Uint8Array(8), [2, 2, 2]), /must end in \.nii or \.nii\.gz/);
  });
});
