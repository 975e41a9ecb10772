import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  applyAugmentation,
  augmentSample,
  CROP_ONLY,
  DEFAULT_AUGMENTATION,
  drawAugmentParams,
  flipInPlace,
  resamplePatch,
  rotationMatrix,
  type AugmentInput,
  type AugmentParams,
} from '../../src/data/augment.ts';
import type { Shape3 } from '../../src/data/preprocess.ts';
import { createRng } from '../../src/data/random.ts';

const at = (shape: Shape3, x: number, y: number, z: number) => (x * shape[1] + y) * shape[2] + z;

function randomVolume(shape: Shape3, seed: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: shape[0] * shape[1] * shape[2] }, () => rng() * 2 - 1);
}

function filledVolume(shape: Shape3, value: (x: number, y: number, z: number) => number): Float32Array {
  const out = new Float32Array(shape[0] * shape[1] * shape[2]);
  for (let x = 0; x < shape[0]; x++)
    for (let y = 0; y < shape[1]; y++) for (let z = 0; z < shape[2]; z++) out[at(shape, x, y, z)] = value(x, y, z);
  return out;
}

function labelVolume(shape: Shape3, seed: number): Uint8Array {
  const rng = createRng(seed);
  return Uint8Array.from({ length: shape[0] * shape[1] * shape[2] }, () => Math.floor(rng() * 4));
}

function identityParams(origin: Shape3, imageCount: number): AugmentParams {
  return {
    origin,
    rotationAxis: 0,
    rotationDegrees: 0,
    intensity: Array.from({ length: imageCount }, () => ({ scale: 1, shift: 0 })),
    flips: [false, false, false],
  };
}

describe('flipInPlace', () => {
  const shape: Shape3 = [2, 3, 4];
  const original = filledVolume(shape, (x, y, z) => 100 * x + 10 * y + z);

  it('reverses exactly one axis', () => {
    for (const axis of [0, 1, 2] as const) {
      const flipped = original.slice();
      flipInPlace(flipped, shape, axis);
      for (let x = 0; x < 2; x++)
        for (let y = 0; y < 3; y++)
          for (let z = 0; z < 4; z++) {
            const source: Shape3 = [x, y, z];
            source[axis] = shape[axis] - 1 - source[axis];
            assert.equal(flipped[at(shape, x, y, z)], 100 * source[0] + 10 * source[1] + source[2]);
          }
    }
  });

  it('twice is the identity, for labels too', () => {
    const labels = labelVolume(shape, 3);
    for (const axis of [0, 1, 2] as const) {
      const data = original.slice();
      const labelCopy = labels.slice();
      flipInPlace(data, shape, axis);
      flipInPlace(labelCopy, shape, axis);
      assert.notDeepEqual(data, original);
      flipInPlace(data, shape, axis);
      flipInPlace(labelCopy, shape, axis);
      assert.deepEqual(data, original);
      assert.deepEqual(labelCopy, labels);
    }
  });
});

describe('resamplePatch', () => {
  const shape: Shape3 = [9, 8, 7];
  const input: AugmentInput = { shape, images: [randomVolume(shape, 1), randomVolume(shape, 2)], label: labelVolume(shape, 5) };

  it('without rotation copies the window at the origin', () => {
    const out = resamplePatch(input, [4, 3, 5], [2, 5, 1], null);
    for (let x = 0; x < 4; x++)
      for (let y = 0; y < 3; y++)
        for (let z = 0; z < 5; z++) {
          const source = at(shape, x + 2, y + 5, z + 1);
          const target = at([4, 3, 5], x, y, z);
          assert.equal(out.images[1][target], input.images[1][source]);
          assert.equal(out.label![target], input.label![source]);
        }
  });

  it('rotation by 0 degrees equals the plain crop', () => {
    for (const axis of [0, 1, 2] as const) {
      const rotated = resamplePatch(input, [5, 6, 4], [3, 1, 2], rotationMatrix(axis, 0));
      const copied = resamplePatch(input, [5, 6, 4], [3, 1, 2], null);
      assert.deepEqual(rotated, copied);
    }
  });

  it('rotation by 90 degrees permutes indices: (u, v) -> (S-1-v, u) in the rotated plane', () => {
    const cube: Shape3 = [6, 6, 6];
    const cubeInput: AugmentInput = { shape: cube, images: [randomVolume(cube, 7)], label: labelVolume(cube, 8) };
    for (const axis of [0, 1, 2] as const) {
      const out = resamplePatch(cubeInput, cube, [0, 0, 0], rotationMatrix(axis, 90));
      const u = (axis + 1) % 3;
      const v = (axis + 2) % 3;
      for (let x = 0; x < 6; x++)
        for (let y = 0; y < 6; y++)
          for (let z = 0; z < 6; z++) {
            const p = [x, y, z];
            const source: Shape3 = [x, y, z];
            source[u] = 5 - p[v];
            source[v] = p[u];
            const target = at(cube, x, y, z);
            assert.ok(Math.abs(out.images[0][target] - cubeInput.images[0][at(cube, ...source)]) < 1e-5);
            assert.equal(out.label![target], cubeInput.label![at(cube, ...source)]);
          }
    }
  });

  it('interpolates a linear intensity ramp exactly at any angle', () => {
    const big: Shape3 = [20, 20, 20];
    const ramp = (x: number, y: number, z: number) => 0.5 * x - 0.25 * y + 0.125 * z + 3;
    const out = resamplePatch({ shape: big, images: [filledVolume(big, ramp)] }, [8, 8, 8], [6, 6, 6], rotationMatrix(1, 7.3));
    const angle = (7.3 * Math.PI) / 180;
    // Rotation about y maps (dz, dx) -> (cos·dz − sin·dx, sin·dz + cos·dx) for (z, x).
    for (let x = 0; x < 8; x++)
      for (let y = 0; y < 8; y++)
        for (let z = 0; z < 8; z++) {
          const dx = x - 3.5;
          const dz = z - 3.5;
          const expected = ramp(
            9.5 + Math.sin(angle) * dz + Math.cos(angle) * dx,
            6 + y,
            9.5 + Math.cos(angle) * dz - Math.sin(angle) * dx,
          );
          assert.ok(Math.abs(out.images[0][at([8, 8, 8], x, y, z)] - expected) < 1e-4);
        }
  });

  it('keeps a constant volume constant inside after rotation', () => {
    const big: Shape3 = [20, 20, 20];
    const out = resamplePatch({ shape: big, images: [filledVolume(big, () => 5)] }, [10, 10, 10], [5, 5, 5], rotationMatrix(0, -9.5));
    for (const value of out.images[0]) assert.ok(Math.abs(value - 5) < 1e-5);
  });

  it('pads a volume smaller than the patch with zeros (centred crop)', () => {
    const small: Shape3 = [2, 3, 4];
    const values = filledVolume(small, (x, y, z) => 1 + 100 * x + 10 * y + z);
    const labels = Uint8Array.from(values, (value) => value % 7);
    const params = drawAugmentParams(small, [4, 5, 6], 1, createRng(1), { ...CROP_ONLY, crop: 'center' });
    assert.deepEqual(params.origin, [-1, -1, -1]);
    const out = applyAugmentation({ shape: small, images: [values], label: labels }, [4, 5, 6], params);
    for (let x = 0; x < 4; x++)
      for (let y = 0; y < 5; y++)
        for (let z = 0; z < 6; z++) {
          const inside = x >= 1 && x <= 2 && y >= 1 && y <= 3 && z >= 1 && z <= 4;
          const expected = inside ? 1 + 100 * (x - 1) + 10 * (y - 1) + (z - 1) : 0;
          assert.equal(out.images[0][at([4, 5, 6], x, y, z)], expected);
          assert.equal(out.label![at([4, 5, 6], x, y, z)], expected % 7);
        }
  });
});

describe('drawAugmentParams', () => {
  it('draws crop origins uniformly, padding included', () => {
    const counts = new Map<string, number>();
    const rng = createRng(11);
    for (let draw = 0; draw < 3000; draw++) {
      const { origin } = drawAugmentParams([5, 2, 4], [3, 4, 4], 1, rng, DEFAULT_AUGMENTATION);
      // x: volume 5 > patch 3 -> 0..2; y: volume 2 < patch 4 -> -2..0; z: equal -> 0.
      assert.ok(origin[0] >= 0 && origin[0] <= 2 && origin[1] >= -2 && origin[1] <= 0 && origin[2] === 0);
      counts.set(`${origin[0]},${origin[1]}`, (counts.get(`${origin[0]},${origin[1]}`) ?? 0) + 1);
    }
    assert.equal(counts.size, 9);
    for (const count of counts.values()) assert.ok(Math.abs(count - 3000 / 9) < 70, `count ${count}`);
  });

  it('keeps rotation and intensity within their ranges and flips each axis half the time', () => {
    const rng = createRng(12);
    const flipCounts = [0, 0, 0];
    const axisCounts = [0, 0, 0];
    for (let draw = 0; draw < 2000; draw++) {
      const params = drawAugmentParams([8, 8, 8], [4, 4, 4], 4, rng, DEFAULT_AUGMENTATION);
      assert.ok(Math.abs(params.rotationDegrees) <= 10);
      axisCounts[params.rotationAxis]++;
      for (const { scale, shift } of params.intensity) assert.ok(Math.abs(scale - 1) <= 0.1 && Math.abs(shift) <= 0.1);
      params.flips.forEach((flipped, axis) => (flipCounts[axis] += flipped ? 1 : 0));
    }
    for (const count of flipCounts) assert.ok(Math.abs(count - 1000) < 100);
    for (const count of axisCounts) assert.ok(Math.abs(count - 2000 / 3) < 100);
  });

  it('centres foreground-oversampled crops on a tumour voxel, clamped to the volume', () => {
    // Two tumour voxels: (1, 1, 1) near a corner and (9, 6, 8); patch 4 in a 10 × 8 × 9 volume.
    const shape: Shape3 = [10, 8, 9];
    const label = new Uint8Array(10 * 8 * 9);
    label[at(shape, 1, 1, 1)] = 2;
    label[at(shape, 9, 6, 8)] = 3;
    const options = { ...DEFAULT_AUGMENTATION, foregroundProbability: 1 };
    const seen = new Set<string>();
    const rng = createRng(21);
    for (let draw = 0; draw < 200; draw++) seen.add(drawAugmentParams(shape, [4, 4, 4], 1, rng, options, label).origin.join(','));
    // Centre voxel − 2 per axis, clamped to [0, volume − patch]: (−1,−1,−1) → (0,0,0); (7,4,6) → (6,4,5).
    assert.deepEqual([...seen].sort(), ['0,0,0', '6,4,5']);
  });

  it('oversamples the foreground at the requested rate and falls back to uniform crops without tumour', () => {
    const shape: Shape3 = [20, 20, 20];
    const label = new Uint8Array(20 ** 3);
    label[at(shape, 18, 18, 18)] = 1;
    const rng = createRng(22);
    let centred = 0;
    for (let draw = 0; draw < 2000; draw++) {
      const { origin } = drawAugmentParams(shape, [4, 4, 4], 1, rng, { ...CROP_ONLY, foregroundProbability: 0.3 }, label);
      if (origin.join(',') === '16,16,16') centred++;
    }
    // 30 % centred, plus uniform crops that land there by chance (1/17³ of 70 %).
    assert.ok(Math.abs(centred - 600) < 70, `centred ${centred}`);
    const empty = drawAugmentParams(shape, [4, 4, 4], 1, createRng(23), { ...CROP_ONLY, foregroundProbability: 1 }, new Uint8Array(20 ** 3));
    const uniform = drawAugmentParams(shape, [4, 4, 4], 1, createRng(23), CROP_ONLY);
    assert.deepEqual(empty.origin, uniform.origin);
  });

  it('switching a piece off leaves the other draws unchanged', () => {
    const withAll = drawAugmentParams([9, 9, 9], [4, 4, 4], 2, createRng(5), DEFAULT_AUGMENTATION);
    const noRotation = drawAugmentParams([9, 9, 9], [4, 4, 4], 2, createRng(5), { ...DEFAULT_AUGMENTATION, maxRotationDegrees: 0 });
    assert.equal(noRotation.rotationDegrees, 0);
    assert.deepEqual(noRotation.origin, withAll.origin);
    assert.deepEqual(noRotation.flips, withAll.flips);
    assert.deepEqual(noRotation.intensity, withAll.intensity);
  });
});

describe('augmentSample', () => {
  const shape: Shape3 = [12, 11, 10];
  const marker: Shape3 = [6, 4, 7];

  function markedInput(): AugmentInput {
    const index = at(shape, ...marker);
    const images = [0, 1].map(() => new Float32Array(12 * 11 * 10));
    const extras = [0, 1, 2].map(() => new Float32Array(12 * 11 * 10));
    const label = new Uint8Array(12 * 11 * 10);
    for (const array of [...images, ...extras]) array[index] = 1;
    label[index] = 3;
    return { shape, images, extras, label };
  }

  function markerPositions(array: ArrayLike<number>): number[] {
    const found: number[] = [];
    for (let i = 0; i < array.length; i++) if (array[i] !== 0) found.push(i);
    return found;
  }

  it('moves a marker voxel identically in images, extras and label (crop, intensity, flips)', () => {
    const patch: Shape3 = [8, 8, 8];
    for (let seed = 0; seed < 20; seed++) {
      const options = { ...DEFAULT_AUGMENTATION, maxRotationDegrees: 0 };
      const params = drawAugmentParams(shape, patch, 2, createRng(seed), options);
      const out = augmentSample(markedInput(), patch, createRng(seed), options);
      const expected = marker.map((m, axis) => {
        const p = m - params.origin[axis];
        return params.flips[axis] ? patch[axis] - 1 - p : p;
      });
      const inside = expected.every((p, axis) => p >= 0 && p < patch[axis]);
      const positions = inside ? [at(patch, ...(expected as Shape3))] : [];
      for (const array of [...out.images, ...out.extras, out.label!]) assert.deepEqual(markerPositions(array), positions);
      out.images.forEach((image, c) => {
        if (inside) assert.ok(Math.abs(image[positions[0]] - (params.intensity[c].scale + params.intensity[c].shift)) < 1e-6);
      });
      for (const extra of out.extras) if (inside) assert.equal(extra[positions[0]], 1);
    }
  });

  it('keeps the marker aligned under a 90 degree rotation with flips', () => {
    const patch: Shape3 = [8, 10, 8];
    const params: AugmentParams = { ...identityParams([2, 1, 1], 2), rotationAxis: 2, rotationDegrees: 90, flips: [true, false, true] };
    const out = applyAugmentation(markedInput(), patch, params);
    // Centre c = origin + (P−1)/2 = (5.5, 5.5, 4.5). About z by 90°: volume x = c_x − (p_y − 4.5),
    // volume y = c_y + (p_x − 3.5), volume z = c_z + (p_z − 3.5). Marker (6, 4, 7) -> p = (2, 4, 6),
    // then the x and z flips give (7 − 2, 4, 7 − 6).
    const expected = [at(patch, 5, 4, 1)];
    assert.deepEqual(markerPositions(out.label!), expected);
    for (const array of [...out.images, ...out.extras]) {
      assert.deepEqual(markerPositions(array).filter((i) => Math.abs(array[i]) > 1e-6), expected);
      assert.ok(Math.abs(array[expected[0]] - 1) < 1e-6);
    }
  });

  it('is reproducible from the seed and changes with it', () => {
    const input: AugmentInput = { shape, images: [randomVolume(shape, 1)], extras: [randomVolume(shape, 2)], label: labelVolume(shape, 3) };
    const first = augmentSample(input, [6, 6, 6], createRng(42));
    const again = augmentSample(input, [6, 6, 6], createRng(42));
    const other = augmentSample(input, [6, 6, 6], createRng(43));
    assert.deepEqual(again, first);
    assert.notDeepEqual(other.images[0], first.images[0]);
  });

  it('writes into caller-provided buffers', () => {
    const input: AugmentInput = { shape, images: [randomVolume(shape, 1), randomVolume(shape, 4)], label: labelVolume(shape, 3) };
    const batch = new Float32Array(2 * 216).fill(NaN);
    const labels = new Uint8Array(216).fill(9);
    const out = { images: [batch.subarray(0, 216), batch.subarray(216)], extras: [], label: labels };
    const fresh = augmentSample(input, [6, 6, 6], createRng(8));
    augmentSample(input, [6, 6, 6], createRng(8), DEFAULT_AUGMENTATION, out);
    assert.deepEqual(batch, Float32Array.from([...fresh.images[0], ...fresh.images[1]]));
    assert.deepEqual(labels, fresh.label);
  });
});
