import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_AUGMENTATION } from '../../src/data/augment.ts';
import { addCaseArray, writeCachedCase } from '../../src/data/cache.ts';
import { CaseMemory, createBatchLoader, deriveSeed, type Batch, type BatchLoaderOptions } from '../../src/data/loader.ts';
import type { Shape3 } from '../../src/data/preprocess.ts';

const SHAPE: Shape3 = [10, 9, 8];
const VOXELS = 10 * 9 * 8;
const PATCH: Shape3 = [6, 5, 4];
const PATCH_VOXELS = 6 * 5 * 4;
const IDS = ['c0', 'c1', 'c2', 'c3', 'c4'];

/** Image value that tells case, channel and position apart (exact in float32). */
const encode = (caseIndex: number, channel: number, x: number, y: number, z: number) =>
  1 + caseIndex * 10000 + channel * 1000 + x * 100 + y * 10 + z;
const labelAt = (x: number, y: number, z: number) => (x + 2 * y + 3 * z) % 4;

function writeSyntheticCase(cacheDir: string, id: string, caseIndex: number, withLabel = true): void {
  const images = new Float32Array(4 * VOXELS);
  const label = new Uint8Array(VOXELS);
  for (let c = 0; c < 4; c++)
    for (let x = 0; x < 10; x++)
      for (let y = 0; y < 9; y++)
        for (let z = 0; z < 8; z++) {
          const index = (x * 9 + y) * 8 + z;
          images[c * VOXELS + index] = encode(caseIndex, c, x, y, z);
          label[index] = labelAt(x, y, z);
        }
  const arrays: Parameters<typeof writeCachedCase>[2] = { images: { data: images, shape: [4, ...SHAPE] } };
  if (withLabel) arrays.label = { data: label, shape: [...SHAPE] };
  writeCachedCase(
    cacheDir,
    {
      id,
      shape: SHAPE,
      originalShape: SHAPE,
      cropBox: { start: [0, 0, 0], end: SHAPE },
      affine: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
      referenceFile: `${id}_flair.nii.gz`,
      sourceFiles: {},
      modalities: ['flair', 't1ce', 't1', 't2'],
      normalization: [],
      numClasses: 4,
    },
    arrays,
  );
}

async function collect(options: BatchLoaderOptions, epochs: number[]): Promise<Batch[]> {
  const loader = createBatchLoader(options);
  try {
    const batches: Batch[] = [];
    for (const epoch of epochs) for await (const batch of loader.epoch(epoch)) batches.push(batch);
    return batches;
  } finally {
    await loader.close();
  }
}

describe('createBatchLoader', () => {
  let cacheDir: string;
  let base: BatchLoaderOptions;

  before(() => {
    cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
    IDS.forEach((id, index) => writeSyntheticCase(cacheDir, id, index));
    writeSyntheticCase(cacheDir, 'unlabelled', 9, false);
    for (const id of IDS) {
      // Three prior channels, each a copy of the FLAIR volume, so alignment with the images is checkable.
      const flair = Float32Array.from({ length: VOXELS }, (_, index) => {
        const x = Math.floor(index / 72);
        const y = Math.floor(index / 8) % 9;
        return encode(IDS.indexOf(id), 0, x, y, index % 8);
      });
      addCaseArray(cacheDir, id, 'priors', { data: Float32Array.from([...flair, ...flair, ...flair]), shape: [3, ...SHAPE] });
    }
    base = { cacheDir, ids: IDS, batchSize: 2, patchSize: PATCH, seed: 7, augment: true, workers: 0 };
  });
  after(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

  it('shards each step among processes: together they build exactly the batches of one process with the whole step', async () => {
    // 5 cases, 2 processes × batch 1: two full steps of 2 (dropLast), the same samples and augmentations as batch 2.
    const whole = await collect({ ...base, batchSize: 2, dropLast: true }, [0, 1]);
    const shards = await Promise.all([0, 1].map((rank) => collect({ ...base, batchSize: 1, dropLast: true, shard: { rank, count: 2 } }, [0, 1])));
    assert.equal(whole.length, 4);
    whole.forEach((batch, step) => {
      const [first, second] = [shards[0][step], shards[1][step]];
      assert.deepEqual([...first.ids, ...second.ids], batch.ids);
      assert.deepEqual(first.stepIds, batch.ids);
      assert.deepEqual([...first.images, ...second.images], [...batch.images]);
      assert.deepEqual([...first.labels, ...second.labels], [...batch.labels]);
    });
    assert.throws(() => createBatchLoader({ ...base, ids: IDS.slice(0, 3), batchSize: 2, dropLast: true, shard: { rank: 0, count: 2 } }), /3 cases make no full step of 2 processes × batch 2/);
  });

  it('stacks cropped patches as (B, 4, X, Y, Z) images and (B, X, Y, Z) labels', async () => {
    const batches = await collect({ ...base, augment: false }, [0]);
    assert.deepEqual(batches.map((batch) => batch.ids.length), [2, 2, 1]);
    assert.deepEqual(batches.flatMap((batch) => batch.ids).sort(), IDS);
    for (const batch of batches) {
      const size = batch.ids.length;
      assert.equal(batch.images.length, size * 4 * PATCH_VOXELS);
      assert.equal(batch.labels.length, size * PATCH_VOXELS);
      assert.deepEqual(batch.channels, { images: 4, extras: {} });
      batch.ids.forEach((id, b) => {
        const caseIndex = IDS.indexOf(id);
        // Decode the crop origin from the first voxel, then every voxel must follow from it.
        const first = batch.images[b * 4 * PATCH_VOXELS] - 1 - caseIndex * 10000;
        const origin = [Math.floor(first / 100), Math.floor(first / 10) % 10, first % 10];
        assert.ok(origin[0] <= 4 && origin[1] <= 4 && origin[2] <= 4);
        for (let c = 0; c < 4; c++)
          for (let x = 0; x < 6; x++)
            for (let y = 0; y < 5; y++)
              for (let z = 0; z < 4; z++) {
                const p = (x * 5 + y) * 4 + z;
                const [vx, vy, vz] = [origin[0] + x, origin[1] + y, origin[2] + z];
                assert.equal(batch.images[(b * 4 + c) * PATCH_VOXELS + p], encode(caseIndex, c, vx, vy, vz));
                assert.equal(batch.labels[b * PATCH_VOXELS + p], labelAt(vx, vy, vz));
              }
      });
    }
  });

  it('gives identical batches with 0, 1 or 2 workers, different ones per epoch', async () => {
    const inline = await collect({ ...base, workers: 0 }, [0, 1]);
    const one = await collect({ ...base, workers: 1, prefetch: 1 }, [0, 1]);
    const two = await collect({ ...base, workers: 2, prefetch: 3 }, [0, 1]);
    assert.deepEqual(one, inline);
    assert.deepEqual(two, inline);
    assert.deepEqual(inline.map((batch) => [batch.epoch, batch.index]), [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]);
    assert.notDeepEqual(inline[3].images, inline[0].images);
    const otherSeed = await collect({ ...base, seed: 8 }, [0]);
    assert.notDeepEqual(otherSeed[0].images, inline[0].images);
  });

  it('keeps decoded cases up to its byte budget, and batches do not depend on it', async () => {
    // One case: 4 image and 3 prior channels as float32, and a uint8 label.
    const caseBytes = (4 + 3) * 4 * VOXELS + VOXELS;
    const memory = new CaseMemory(caseBytes + 10);
    const first = memory.source(cacheDir, 'c0', ['priors']);
    assert.equal(memory.bytes, caseBytes);
    assert.equal(memory.source(cacheDir, 'c0', ['priors']), first, 'a kept case is not read again');
    const second = memory.source(cacheDir, 'c1', ['priors']);
    assert.notEqual(memory.source(cacheDir, 'c1', ['priors']), second, 'a case beyond the budget is read at every use');
    assert.equal(memory.bytes, caseBytes);
    assert.notEqual(memory.source(cacheDir, 'c0', []), first, 'another choice of arrays is another entry');
    assert.equal(first.images[2][(3 * 9 + 4) * 8 + 5], 1 + 2 * 1000 + 3 * 100 + 4 * 10 + 5);
    // Three epochs of batches with priors: every case kept, none, and through a worker.
    const options = { ...base, extraArrays: ['priors'] };
    const kept = await collect(options, [0, 1, 2]);
    assert.deepEqual(await collect({ ...options, caseMemoryBytes: 0 }, [0, 1, 2]), kept);
    assert.deepEqual(await collect({ ...options, workers: 1, caseMemoryBytes: caseBytes }, [0, 1, 2]), kept);
    assert.throws(() => createBatchLoader({ ...base, caseMemoryBytes: -1 }), /caseMemoryBytes must be a non-negative number, got -1/);
  });

  it('transforms extra arrays exactly like the images', async () => {
    const augment = { ...DEFAULT_AUGMENTATION, intensityScale: 0, intensityShift: 0 };
    const batches = await collect({ ...base, augment, workers: 1, extraArrays: ['priors'] }, [0, 1]);
    let rotated = 0;
    for (const batch of batches) {
      assert.deepEqual(batch.channels, { images: 4, extras: { priors: 3 } });
      const priors = batch.extras.priors;
      assert.equal(priors.length, batch.ids.length * 3 * PATCH_VOXELS);
      batch.ids.forEach((_, b) => {
        const flair = batch.images.subarray(b * 4 * PATCH_VOXELS, (b * 4 + 1) * PATCH_VOXELS);
        if (flair.some((value) => !Number.isInteger(value))) rotated++;
        for (let k = 0; k < 3; k++) {
          assert.deepEqual(priors.subarray((b * 3 + k) * PATCH_VOXELS, (b * 3 + k + 1) * PATCH_VOXELS), flair);
        }
      });
    }
    assert.ok(rotated > 0, 'some samples were rotated (interpolated values)');
  });

  it('derives distinct seeds from (seed, epoch, position)', () => {
    const seeds = new Set<number>();
    for (let epoch = 0; epoch < 20; epoch++) for (let position = 0; position < 50; position++) seeds.add(deriveSeed(7, epoch, position));
    assert.equal(seeds.size, 1000);
    assert.equal(deriveSeed(7, 1, 2), deriveSeed(7, 1, 2));
    assert.notEqual(deriveSeed(7, 1, 2), deriveSeed(7, 2, 1));
  });

  it('reports bad cases when their batch is reached and can be closed afterwards', async () => {
    for (const workers of [0, 1]) {
      const loader = createBatchLoader({ ...base, ids: ['c0', 'unlabelled'], workers, shuffle: false });
      await assert.rejects(async () => {
        for await (const batch of loader.epoch(0)) assert.fail(`unexpected batch ${batch.ids}`);
      }, /case "unlabelled" .* has no label/);
      await loader.close();
      const missing = createBatchLoader({ ...base, ids: ['c0', 'nowhere'], workers });
      await assert.rejects(async () => {
        for await (const batch of missing.epoch(0)) assert.ok(batch);
      }, /nowhere[/\\]manifest\.json: case "nowhere" is not in the cache/);
      await missing.close();
    }
    assert.throws(() => createBatchLoader({ ...base, batchSize: 0 }), /batchSize must be a positive integer/);
  });

  it('survives an early break and serves the next epoch in full', async () => {
    const loader = createBatchLoader({ ...base, workers: 2, prefetch: 3 });
    try {
      for await (const batch of loader.epoch(0)) {
        assert.equal(batch.index, 0);
        break;
      }
      const indices: number[] = [];
      for await (const batch of loader.epoch(0)) indices.push(batch.index);
      assert.deepEqual(indices, [0, 1, 2]);
    } finally {
      await loader.close();
    }
    await assert.rejects(async () => {
      for await (const batch of loader.epoch(1)) assert.ok(batch);
    }, /closed/);
  });

  it('does not keep the process alive when a loader is never closed', () => {
    const projectRoot = fileURLToPath(new URL('../..', import.meta.url));
    const script = `
      import { createBatchLoader } from './src/data/loader.ts';
      const loader = createBatchLoader(${JSON.stringify({ ...base, workers: 2 })});
      for await (const batch of loader.epoch(0)) { console.log('batch', batch.index); break; }
    `;
    const output = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: projectRoot,
      timeout: 30_000,
      encoding: 'utf8',
    });
    assert.equal(output.trim(), 'batch 0');
  });
});
