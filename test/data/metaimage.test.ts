import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { zlibSync } from 'fflate';
import { readVolume, writeVolume } from '../../src/data/volume.ts';

const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
after(() => fs.rmSync(tempDir, { recursive: true, force: true }));
const tempPath = (name: string) => path.join(tempDir, name);

function int16Bytes(values: readonly number[], littleEndian: boolean): Uint8Array {
  const bytes = new Uint8Array(values.length * 2);
  const view = new DataView(bytes.buffer);
  values.forEach((value, i) => view.setInt16(2 * i, value, littleEndian));
  return bytes;
}

function float64Bytes(values: readonly number[], littleEndian: boolean): Uint8Array {
  const bytes = new Uint8Array(values.length * 8);
  const view = new DataView(bytes.buffer);
  values.forEach((value, i) => view.setFloat64(8 * i, value, littleEndian));
  return bytes;
}

function writeMha(name: string, headerLines: string[], data: Uint8Array): string {
  const text = new TextEncoder().encode(`${headerLines.join('\n')}\nElementDataFile = LOCAL\n`);
  const bytes = new Uint8Array(text.length + data.length);
  bytes.set(text);
  bytes.set(data, text.length);
  const filePath = tempPath(name);
  fs.writeFileSync(filePath, bytes);
  return filePath;
}

const VALUES = [0, 1, -2, 300, -32768, 32767, 7, 8, 9, 10, 11, 12];
const BASE_HEADER = ['ObjectType = Image', 'NDims = 3', 'DimSize = 3 2 2', 'ElementType = MET_SHORT'];

describe('MetaImage reading', () => {
  test('.mha with raw little-endian data; identity direction: LPS → RAS negates x and y', () => {
    const filePath = writeMha(
      'raw.mha',
      [...BASE_HEADER, 'BinaryData = True', 'BinaryDataByteOrderMSB = False', 'ElementSpacing = 0.5 2 3', 'Offset = 10 -20 30', 'TransformMatrix = 1 0 0 0 1 0 0 0 1'],
      int16Bytes(VALUES, true),
    );
    const volume = readVolume(filePath);
    assert.ok(volume.data instanceof Int16Array);
    assert.deepEqual(volume.shape, [3, 2, 2]);
    assert.deepEqual(Array.from(volume.data), VALUES);
    assert.deepEqual(volume.affine, [
      [-0.5, 0, 0, -10],
      [0, -2, 0, 20],
      [0, 0, 3, 30],
      [0, 0, 0, 1],
    ]);
    assert.equal(volume.header.format, 'metaimage');
  });

  test('big-endian (MSB) data, short and double', () => {
    const shortPath = writeMha('msb.mha', [...BASE_HEADER, 'BinaryDataByteOrderMSB = True'], int16Bytes(VALUES, false));
    assert.deepEqual(Array.from(readVolume(shortPath).data), VALUES);

    const doubles = VALUES.map((v) => v / 3);
    const doublePath = writeMha(
      'msb-double.mha',
      ['NDims = 3', 'DimSize = 3 2 2', 'ElementType = MET_DOUBLE', 'ElementByteOrderMSB = True'],
      float64Bytes(doubles, false),
    );
    const volume = readVolume(doublePath);
    assert.ok(volume.data instanceof Float64Array);
    assert.deepEqual(Array.from(volume.data), doubles);
  });

  test('zlib-compressed data, with and without CompressedDataSize', () => {
    const compressed = zlibSync(int16Bytes(VALUES, true));
    const sized = writeMha('zsized.mha', [...BASE_HEADER, 'CompressedData = True', `CompressedDataSize = ${compressed.length}`], compressed);
    assert.deepEqual(Array.from(readVolume(sized).data), VALUES);
    const unsized = writeMha('zunsized.mha', [...BASE_HEADER, 'CompressedData = True'], compressed);
    assert.deepEqual(Array.from(readVolume(unsized).data), VALUES);

    const cut = writeMha('zcut.mha', [...BASE_HEADER, 'CompressedData = True'], compressed.subarray(0, compressed.length - 8));
    assert.throws(() => readVolume(cut), (error: Error) => error.message.startsWith(cut) && /truncated or corrupt/.test(error.message));
  });

  test('.mhd with a separate .raw data file (relative path, HeaderSize -1)', () => {
    const floats = new Float32Array([1.5, -2.25, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12.125]);
    fs.mkdirSync(tempPath('mhd'), { recursive: true });
    const raw = new Uint8Array(16 + floats.byteLength);
    raw.set(new Uint8Array(floats.buffer), 16); // 16 junk bytes before the data
    fs.writeFileSync(tempPath('mhd/volume.raw'), raw);
    const headerPath = tempPath('mhd/volume.mhd');
    fs.writeFileSync(
      headerPath,
      ['NDims = 3', 'DimSize = 2 3 2', 'ElementType = MET_FLOAT', 'HeaderSize = -1', 'ElementSpacing = 1 1 1', 'ElementDataFile = volume.raw', ''].join('\r\n'),
    );
    const volume = readVolume(headerPath);
    assert.ok(volume.data instanceof Float32Array);
    assert.deepEqual(volume.shape, [2, 3, 2]);
    assert.deepEqual(Array.from(volume.data), Array.from(floats));
  });

  test('other element types', () => {
    const cases = [
      { type: 'MET_UCHAR', bytes: new Uint8Array([0, 1, 255, 4]), expected: [0, 1, 255, 4], array: 'Uint8Array' },
      { type: 'MET_CHAR', bytes: new Uint8Array([0, 1, 255, 128]), expected: [0, 1, -1, -128], array: 'Int8Array' },
      { type: 'MET_USHORT', bytes: new Uint8Array([1, 0, 255, 255, 0, 1, 2, 0]), expected: [1, 65535, 256, 2], array: 'Uint16Array' },
      { type: 'MET_INT', bytes: new Uint8Array([255, 255, 255, 255, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 128]), expected: [-1, 1, 65536, -2147483648], array: 'Int32Array' },
      { type: 'MET_UINT', bytes: new Uint8Array([255, 255, 255, 255, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 128]), expected: [4294967295, 1, 65536, 2147483648], array: 'Uint32Array' },
    ];
    for (const { type, bytes, expected, array } of cases) {
      const volume = readVolume(writeMha(`${type}.mha`, ['NDims = 3', 'DimSize = 2 2 1', `ElementType = ${type}`], bytes));
      assert.equal(volume.data.constructor.name, array, type);
      assert.deepEqual(Array.from(volume.data), expected, type);
    }
    const longLong = new Uint8Array(16);
    new DataView(longLong.buffer).setBigInt64(0, -5n, true);
    new DataView(longLong.buffer).setBigInt64(8, 2n ** 40n, true);
    const volume = readVolume(writeMha('longlong.mha', ['NDims = 3', 'DimSize = 2 1 1', 'ElementType = MET_LONG_LONG'], longLong));
    assert.ok(volume.data instanceof Float64Array);
    assert.deepEqual(Array.from(volume.data), [-5, 2 ** 40]);
  });

  test('rotated direction: TransformMatrix lists each axis direction in turn; RAS agrees with an equivalent NIfTI', () => {
    // Axis i points along LPS +y, axis j along LPS -x, axis k along +z; spacing (2, 3, 4); origin (5, 6, 7) LPS.
    const filePath = writeMha(
      'rotated.mha',
      [...BASE_HEADER, 'ElementSpacing = 2 3 4', 'Offset = 5 6 7', 'TransformMatrix = 0 1 0 -1 0 0 0 0 1'],
      int16Bytes(VALUES, true),
    );
    const volume = readVolume(filePath);
    const expectedRas = [
      [0, 3, 0, -5],
      [-2, 0, 0, -6],
      [0, 0, 4, 7],
      [0, 0, 0, 1],
    ];
    assert.deepEqual(volume.affine, expectedRas);

    // Written to NIfTI with the MetaImage volume as reference, the same voxels land on the same world points.
    const niftiPath = tempPath('from-mha.nii.gz');
    writeVolume(niftiPath, volume.data, volume.shape, volume);
    const nifti = readVolume(niftiPath);
    assert.deepEqual(Array.from(nifti.data), VALUES);
    assert.deepEqual(nifti.affine, expectedRas);
    assert.ok(nifti.header.format === 'nifti1');
    assert.deepEqual(nifti.header.pixdim.slice(1, 4), [2, 3, 4]);
  });

  test('errors name the file', () => {
    const short = writeMha('short.mha', BASE_HEADER, int16Bytes(VALUES.slice(0, 5), true));
    assert.throws(() => readVolume(short), (error: Error) => error.message === `${short}: truncated: expected 24 bytes of voxel data, found 10`);

    const badType = writeMha('badtype.mha', ['NDims = 3', 'DimSize = 2 2 1', 'ElementType = MET_FLOAT_ARRAY'], new Uint8Array(16));
    assert.throws(() => readVolume(badType), (error: Error) => error.message.startsWith(badType) && /unsupported ElementType/.test(error.message));

    const missing = tempPath('missing.mhd');
    fs.writeFileSync(missing, 'NDims = 3\nDimSize = 2 2 1\nElementType = MET_UCHAR\nElementDataFile = nowhere.raw\n');
    assert.throws(() => readVolume(missing), /nowhere\.raw not found/);

    const noDataLine = tempPath('nodata.mhd');
    fs.writeFileSync(noDataLine, 'NDims = 3\nDimSize = 2 2 1\nElementType = MET_UCHAR\n');
    assert.throws(() => readVolume(noDataLine), /no ElementDataFile/);

    const badSpacing = writeMha('badspacing.mha', [...BASE_HEADER, 'ElementSpacing = 1 x 1'], int16Bytes(VALUES, true));
    assert.throws(() => readVolume(badSpacing), /ElementSpacing must hold 3 numbers/);
  });
});
