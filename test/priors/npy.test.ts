// The .npy reader against files written byte by byte as NumPy lays them out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseNpy } from '../../src/priors/npy.ts';
import { float32Bytes, float64Bytes, npyBytes } from './helpers.ts';

describe('parseNpy', () => {
  it('reads little-endian float32 in C order with its shape', () => {
    const values = [0, 0.25, 0.5, 0.75, 1, 0.125];
    const array = parseNpy(npyBytes('<f4', [2, 3], float32Bytes(values)), 'a.npy');
    assert.deepEqual(array.shape, [2, 3]);
    assert.equal(array.dtype, 'float32');
    assert.ok(array.data instanceof Float32Array);
    assert.deepEqual([...array.data], values);
  });

  it('reads big-endian float64 behind a version 2 header', () => {
    const values = [0.1, 0.9, 1 / 3];
    const array = parseNpy(npyBytes('>f8', [3], float64Bytes(values, true), { version: 2 }), 'b.npy');
    assert.deepEqual(array.shape, [3]);
    assert.equal(array.dtype, 'float64');
    assert.deepEqual([...array.data], values);
  });

  it('widens float16 and keeps uint8 and bool bytes', () => {
    // Half-precision bits: 1.0, 0.5, the smallest subnormal 2^-24, 0.
    const halfBits = new Uint8Array(new Uint16Array([0x3c00, 0x3800, 0x0001, 0x0000]).buffer);
    const half = parseNpy(npyBytes('<f2', [4], halfBits), 'c.npy');
    assert.deepEqual([...half.data], [1, 0.5, 2 ** -24, 0]);
    const bytes = parseNpy(npyBytes('|u1', [2, 2], new Uint8Array([0, 1, 1, 0])), 'd.npy');
    assert.equal(bytes.dtype, 'uint8');
    assert.deepEqual([...bytes.data], [0, 1, 1, 0]);
    assert.equal(parseNpy(npyBytes('|b1', [2], new Uint8Array([1, 0])), 'e.npy').dtype, 'bool');
  });

  it('rejects damaged files and unsupported arrays, naming the file', () => {
    const good = npyBytes('<f4', [2], float32Bytes([0, 1]));
    assert.throws(() => parseNpy(new TextEncoder().encode('PK\u0003\u0004 not numpy'), 'zip.npy'), /zip\.npy: not a \.npy file/);
    assert.throws(() => parseNpy(good.subarray(0, good.length - 1), 'short.npy'), /short\.npy: 7 data bytes, but shape \(2\) of <f4 needs 8 \(truncated or corrupt\)/);
    assert.throws(() => parseNpy(good.subarray(0, 20), 'header.npy'), /header\.npy: truncated \.npy header/);
    const padded = new Uint8Array(good.length + 4);
    padded.set(good);
    assert.throws(() => parseNpy(padded, 'long.npy'), /long\.npy: 12 data bytes/);
    assert.throws(() => parseNpy(npyBytes('<i8', [2], new Uint8Array(16)), 'int.npy'), /int\.npy: unsupported element type '<i8'/);
    assert.throws(() => parseNpy(npyBytes('<f4', [2], float32Bytes([0, 1]), { fortran: true }), 'f.npy'), /f\.npy: Fortran-ordered/);
    const noShape = good.slice();
    noShape[new TextDecoder('latin1').decode(good).indexOf("'shape'") + 3] = 'o'.charCodeAt(0);
    assert.throws(() => parseNpy(noShape, 'bad.npy'), /bad\.npy: damaged \.npy header/);
  });
});
