// Whole-volume inference split between processes against the same in one process, the split of the windows, and
// what happens when a process dies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SUBSETS, type ModalityMask } from '../../src/data/modalities.ts';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { argmaxLabels, subsetProbabilities } from '../../src/inference/predict.ts';
import { defaultProcessCount, InferenceProcesses } from '../../src/inference/processes.ts';
import { inferenceProcessesFor } from '../../src/cli/predict.ts';
import { createModel, type SmmlModel } from '../../src/models/index.ts';
import { splitWindows, windowWork } from '../../src/inference/sliding-window.ts';
import { phantomImages, PHANTOM_SHAPE, tinyModel } from './helpers.ts';

test('splitWindows: contiguous runs of about equal work, none empty', () => {
  assert.deepEqual(splitWindows([1, 1, 1, 1], 2), [[0, 2], [2, 4]]);
  // Shares of 3: the first item alone reaches it.
  assert.deepEqual(splitWindows([3, 1, 1, 1], 2), [[0, 1], [1, 4]]);
  // Items without work join the run before them; the last run keeps at least one item.
  assert.deepEqual(splitWindows([4, 0, 0, 4], 2), [[0, 3], [3, 4]]);
  assert.deepEqual(splitWindows([2, 2, 2, 2, 2, 2], 3), [[0, 2], [2, 4], [4, 6]]);
  // More parts than items: one item each. No work at all: split by count.
  assert.deepEqual(splitWindows([5, 5], 4), [[0, 1], [1, 2]]);
  assert.deepEqual(splitWindows([0, 0, 0], 2), [[0, 2], [2, 3]]);
});

test('windowWork: per window (x, then y, then z), 1 + the outputs predicted there', () => {
  const images = phantomImages();
  // x starts 0, 16, 32, 40; y starts 0, 8; z start 0. The brain spans x 4–29: the windows at x 0 and 16 hold it; T1
  // (channel 2) only reaches x 4–11, so T1 alone is predicted at x 0 only.
  const t1 = [false, false, true, false];
  const all = [true, true, true, true];
  assert.deepEqual(windowWork(images, [32, 32, 32], [t1, all]), { xStarts: [0, 16, 32, 40], work: [3, 3, 2, 2, 0, 0, 0, 0] });
  images.dispose();
});

/** Probabilities and labels of the phantom, in one process and split between `processes`. */
async function bothWays(processes: InferenceProcesses, subsets: readonly ModalityMask[], weighting: 'uniform' | 'gaussian') {
  const model = tinyModel();
  const images = phantomImages();
  const [X] = PHANTOM_SHAPE;
  const single = subsetProbabilities(model, images, subsets, { weighting });
  const split = torch.zeros(single.shape);
  const slabs: number[] = [];
  const progress: number[] = [];
  await processes.stream(
    images,
    subsets,
    { weighting, onWindow: (done, total) => progress.push(done / total) },
    (x, slab) => {
      for (let i = 0; i < slab.size(2); i++) slabs.push(x + i);
      split.narrow(2, x, slab.size(2)).copy_(slab);
    },
    'phantom',
  );
  // Every x exactly once, and progress up to every window.
  assert.deepEqual(slabs.sort((a, b) => a - b), Array.from({ length: X }, (_, x) => x));
  assert.equal(progress.at(-1), 1);
  const result = { single: single.toTypedArray() as Float32Array, split: split.toTypedArray() as Float32Array, singleLabels: argmaxLabels(single), splitLabels: argmaxLabels(split) };
  torch.dispose([single, split, images]);
  model.dispose();
  return result;
}

function maxDifference(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

test('split between 3 processes: the probabilities of one process within float rounding, the same labels', async () => {
  const model = tinyModel();
  // With T1, T1ce and all four the windows' work is 4, 4, 3, 3, 0, 0, 0, 0: runs of windows [0], [1], [2–7], the first
  // two at the same x start (their sums are added plane by plane), the last reaching from x 16 to the end.
  const processes = new InferenceProcesses(model, 3);
  try {
    for (const [subsets, weighting] of [
      [[SUBSETS[2], SUBSETS[1], SUBSETS[14]], 'uniform'],
      // T2 alone and FLAIR + T2: the processes are sent only channels 0 and 3 and put them back in place.
      [[SUBSETS[0], SUBSETS[8]], 'gaussian'],
    ] as const) {
      const { single, split, singleLabels, splitLabels } = await bothWays(processes, subsets, weighting);
      const difference = maxDifference(single, split);
      assert.ok(difference < 1e-5, `${weighting}: max difference ${difference}`);
      assert.deepEqual(splitLabels, singleLabels);
    }
  } finally {
    processes.close();
    model.dispose();
  }
});

test('a process that dies fails the volume, naming it; the next volume starts it again; close ends them all', async () => {
  const model = tinyModel();
  const processes = new InferenceProcesses(model, 2);
  const images = phantomImages();
  const subsets = [SUBSETS[14]];
  try {
    const run = processes.stream(images, subsets, {}, () => undefined, 'case-7');
    // Killed before it could have received its windows.
    process.kill(processes.pids[1], 'SIGKILL');
    await assert.rejects(run, /^Error: case-7: inference process 2 of 2 (was killed by SIGKILL before it finished its windows|could not be sent its windows)/);
    let covered = 0;
    await processes.stream(images, subsets, {}, (_, slab: Tensor) => (covered += slab.size(2)), 'case-8');
    assert.equal(covered, PHANTOM_SHAPE[0]);
  } finally {
    const { pids } = processes;
    processes.close();
    images.dispose();
    model.dispose();
    assert.equal(pids.length, 2);
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let wait = 0; wait < 100 && pids.some(alive); wait++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(pids.filter(alive), []);
  }
});

test('inference processes need at least two', () => {
  assert.throws(() => new InferenceProcesses(tinyModel(), 1), /expected at least 2, got 1/);
});

test('inferenceProcessesFor: by default one per core for 32³ windows and none for 128³ ones; --processes decides', () => {
  const small = tinyModel();
  torch.manualSeed(3);
  const wide = createModel('tiny', { patch: 128 });
  const count = (model: SmmlModel, options: { processes?: number; device: string }) => {
    const processes = inferenceProcessesFor(model, options);
    processes?.close();
    return processes?.count ?? 1;
  };
  assert.equal(count(small, { device: 'cpu' }), defaultProcessCount());
  assert.equal(count(wide, { device: 'cpu' }), 1);
  assert.equal(count(wide, { device: 'cpu', processes: 2 }), 2);
  assert.equal(count(small, { device: 'cpu', processes: 1 }), 1);
  assert.throws(() => inferenceProcessesFor(small, { device: 'cuda', processes: 2 }), /--processes 2 splits the windows between CPU processes: it needs --device cpu/);
  small.dispose();
  wide.dispose();
});
