import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { PNG } from 'pngjs';
import { writeSlicePreview } from '../../src/data/preview.ts';
import { withTempDir } from './helpers.ts';

const SHAPE = [4, 3, 2];
const PLANE = 12;

/** Image whose slice 1 holds 1..12 (x fastest) and whose slice 0 is all 0. */
function rampImage(): Float32Array {
  const data = new Float32Array(24);
  for (let i = 0; i < PLANE; i++) data[PLANE + i] = i + 1;
  return data;
}

/** RGB of the pixel showing voxel (x, y) of panel `panel` (zoom 2, gap 4, j upwards). */
function voxelPixel(png: PNG, panel: number, x: number, y: number): number[] {
  const row = (SHAPE[1]! - 1 - y) * 2;
  const column = panel * (SHAPE[0]! * 2 + 4) + x * 2;
  const offset = 4 * (row * png.width + column);
  return [png.data[offset]!, png.data[offset + 1]!, png.data[offset + 2]!];
}

test('panels side by side, windowed to the 1st-99th percentile of the non-zero voxels, labels in colour', () => {
  withTempDir((dir) => {
    const file = path.join(dir, 'preview.png');
    const inverted = rampImage().map((value) => (value === 0 ? 0 : 13 - value));
    const labels = new Uint8Array(24);
    labels[PLANE + 5] = 2; // voxel (1, 1) of slice 1
    labels[PLANE + 8] = 4; // voxel (0, 2) of slice 1
    labels[3] = 1; // a single voxel on slice 0, so slice 1 (two voxels) has the most labels
    writeSlicePreview(
      file,
      [
        { name: 'a', data: rampImage(), shape: SHAPE },
        { name: 'b', data: inverted, shape: SHAPE },
        { name: 'seg', data: labels, shape: SHAPE, kind: 'label' },
      ],
      undefined,
      2,
    );
    const png = PNG.sync.read(fs.readFileSync(file));
    assert.equal(png.width, 3 * 8 + 2 * 4);
    assert.equal(png.height, 6);
    // 12 values: the 1st percentile is the smallest (1), the 99th the largest (12); grey = 255 (v - 1) / 11.
    assert.deepEqual(voxelPixel(png, 0, 0, 0), [0, 0, 0]);
    assert.deepEqual(voxelPixel(png, 0, 3, 2), [255, 255, 255]);
    const grey6 = Math.round((255 * 5) / 11);
    assert.deepEqual(voxelPixel(png, 0, 1, 1), [grey6, grey6, grey6]);
    assert.deepEqual(voxelPixel(png, 1, 0, 0), [255, 255, 255]);
    // The label panel shows the first image with oedema (2) blended 55 % green (40, 200, 60).
    const blend = (colour: number) => Math.round(0.45 * grey6 + 0.55 * colour);
    assert.deepEqual(voxelPixel(png, 2, 1, 1), [blend(40), blend(200), blend(60)]);
    assert.deepEqual(voxelPixel(png, 2, 3, 2), [255, 255, 255]);
    const grey9 = Math.round((255 * 8) / 11);
    const blend9 = (colour: number) => Math.round(0.45 * grey9 + 0.55 * colour);
    assert.deepEqual(voxelPixel(png, 2, 0, 2), [blend9(255), blend9(220), blend9(0)]);
    // The gap between panels is black.
    assert.deepEqual([png.data[4 * 8]!, png.data[4 * 8 + 1]!, png.data[4 * 8 + 2]!], [0, 0, 0]);
  });
});

test('an explicit slice is used as given; the background stays black', () => {
  withTempDir((dir) => {
    const file = path.join(dir, 'slice0.png');
    writeSlicePreview(file, [{ name: 'a', data: rampImage(), shape: SHAPE }], 0, 1);
    const png = PNG.sync.read(fs.readFileSync(file));
    assert.equal(png.width, 4);
    assert.ok(png.data.every((value, index) => (index % 4 === 3 ? value === 255 : value === 0)));
  });
});

test('bad input fails with a message naming the file and the problem', () => {
  withTempDir((dir) => {
    const file = path.join(dir, 'bad.png');
    const image = { name: 'a', data: rampImage(), shape: SHAPE };
    assert.throws(() => writeSlicePreview(file, []), /bad\.png: no volumes to preview/);
    assert.throws(() => writeSlicePreview(file, [image], 2), /slice 2 is outside 0\.\.1/);
    assert.throws(
      () => writeSlicePreview(file, [image, { name: 'b', data: new Float32Array(24), shape: [3, 4, 2] }]),
      /volume 'b' has shape \[3, 4, 2\], expected \[4, 3, 2\]/,
    );
    assert.throws(() => writeSlicePreview(file, [{ ...image, kind: 'label' }]), /label overlays need at least one image volume/);
    assert.ok(!fs.existsSync(file));
  });
});
