// Measured whole-volume inference of one synthetic 240 × 240 × 155 case (random weights), the straightforward way
// (every window on its own through the network, blended over the whole crop) against the streamed one of
// `src/inference/predict.ts` (batched windows, windows without the subset's sequences skipped, each batch encoded once
// for every subset, blending sums for one window's extent along x), and the streamed one with the windows split between
// one single-threaded process per core (`InferenceProcesses`). Each workload runs once per side, the sides alternating,
// so a busy spell on a shared machine is less likely to favour one of them.
import { torch, type Tensor } from '../src/engine/index.ts';
import { ALL_MODALITIES, MODALITIES, SUBSETS, subsetName, type ModalityMask } from '../src/data/modalities.ts';
import { cropAndNormalize, cropBoxShape, nonZeroBoundingBox, type Shape3 } from '../src/data/preprocess.ts';
import { caseSeed, synthesizeCase } from '../src/data/synthetic.ts';
import { clearOutsideBrain } from '../src/inference/postprocess.ts';
import { subsetLabels, subsetProbabilities, wholeVolumeLabels, wholeVolumeProbabilities } from '../src/inference/predict.ts';
import { defaultProcessCount, InferenceProcesses } from '../src/inference/processes.ts';
import { slidingWindowInference, windowStarts } from '../src/inference/sliding-window.ts';
import { createModel, modalityMask, type SegmentationModel, type SmmlPresetName } from '../src/models/index.ts';
import { formatMs, MIB, type BenchContext, type Section } from './harness.ts';
import type { BenchRow } from './table.ts';

const GRID: Shape3 = [240, 240, 155];

/** A synthetic case of GRID (the generator's 156 slices less the top one), cropped and z-scored as prediction does: (1, 4, X, Y, Z). */
function syntheticCase(): { images: Tensor; shape: Shape3 } {
  const phantom = synthesizeCase(caseSeed(1, 0), GRID[0]);
  const voxels = GRID[0] * GRID[1] * GRID[2];
  const volumes = MODALITIES.map((modality) => phantom.images[modality].subarray(0, voxels));
  const box = nonZeroBoundingBox(volumes, GRID)!;
  const { images } = cropAndNormalize(
    volumes.map((data, channel) => ({ data, file: MODALITIES[channel], channel })),
    GRID,
    box,
    MODALITIES.length,
  );
  const shape = cropBoxShape(box);
  return { images: torch.tensor(images, [1, MODALITIES.length, ...shape]), shape };
}

/** Every window on its own: the model's inference path per subset, or encode once and fuse per subset for several. */
function straightforward(model: SegmentationModel, images: Tensor, subsets: readonly ModalityMask[]): Tensor {
  const { patch } = model.config;
  const masks = subsets.map((subset) => modalityMask([subset]));
  const predict =
    masks.length === 1
      ? (window: Tensor) => model.predictProbabilities(window, masks[0])
      : (window: Tensor) => {
          const encodings = model.encode(window);
          return torch.cat(masks.map((mask) => model.fuseProbabilities(encodings, mask)), 0);
        };
  return slidingWindowInference(images, [patch, patch, patch], predict, { overlap: 0.5 });
}

function timed(run: () => void): number {
  const start = performance.now();
  torch.noGrad(() => torch.tidy(run));
  return performance.now() - start;
}

async function timedAsync(run: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await run();
  return performance.now() - start;
}

/** The largest difference between two tensors' values. */
function maxDifference(a: Tensor, b: Tensor): number {
  return torch.tidy(() => a.sub(b).abs().max().item());
}

/** How many voxels' labels differ between two label sets, each cleared outside the brain as prediction does. */
function labelDisagreement(a: readonly Uint8Array[], b: readonly Uint8Array[], images: Float32Array, subsets: readonly ModalityMask[]): number {
  let differing = 0;
  a.forEach((labels, s) => {
    const [cleared, other] = [clearOutsideBrain(labels.slice(), images, subsets[s]), clearOutsideBrain(b[s].slice(), images, subsets[s])];
    for (let i = 0; i < cleared.length; i++) differing += cleared[i] !== other[i] ? 1 : 0;
  });
  return differing;
}

function labelsOf(probabilities: Tensor): Uint8Array[] {
  const subsets = probabilities.size(0);
  const all = probabilities.argmax(1).to('uint8').toTypedArray() as Uint8Array;
  const voxels = all.length / subsets;
  return Array.from({ length: subsets }, (_, s) => all.subarray(s * voxels, (s + 1) * voxels));
}

async function benchmarkPreset(preset: SmmlPresetName, workloads: readonly { what: string; subsets: readonly ModalityMask[] }[], ctx: BenchContext): Promise<BenchRow[]> {
  torch.manualSeed(1);
  const model = createModel(preset);
  model.eval();
  const { images, shape } = syntheticCase();
  const values = images.toTypedArray() as Float32Array;
  const { patch, classes } = model.config;
  const windows = shape.reduce((count, size) => count * windowStarts(Math.max(size, patch), patch, 0.5).length, 1);
  const count = defaultProcessCount();
  const processes = count > 1 ? new InferenceProcesses(model, count) : undefined;
  // Starting the processes and loading the model into them happens once per command: timed apart, on an empty volume.
  const empty = torch.zeros([1, MODALITIES.length, count * patch, patch, patch]);
  const startMs = processes ? await timedAsync(() => processes.stream(empty, [ALL_MODALITIES], {}, () => undefined, 'warm-up')) : 0;
  empty.dispose();
  const rows: BenchRow[] = [];
  for (const { what, subsets } of workloads) {
    const single = subsets.length === 1;
    let before: Uint8Array[] = [];
    let after: Uint8Array[] = [];
    let split: Uint8Array[] = [];
    let probabilityDifference: number | null = null;
    const beforeMs = timed(() => {
      before = labelsOf(straightforward(model, images, subsets));
    });
    ctx.log(`${preset} ${what}: straightforward ${formatMs(beforeMs)}`);
    let streamed: Tensor | null = null;
    const afterMs = timed(() => {
      if (single) {
        streamed = torch.keep(subsetProbabilities(model, images, subsets));
        after = labelsOf(streamed);
      } else after = subsetLabels(model, images, subsets);
    });
    ctx.log(`${preset} ${what}: streamed ${formatMs(afterMs)}`);
    const splitMs = processes
      ? await timedAsync(async () => {
          if (single) {
            const probabilities = await wholeVolumeProbabilities(model, images, subsets, { processes }, 'synthetic case');
            split = torch.tidy(() => labelsOf(probabilities));
            probabilityDifference = maxDifference(probabilities, streamed!);
            probabilities.dispose();
          } else split = await wholeVolumeLabels(model, images, subsets, { processes }, 'synthetic case');
        })
      : 0;
    (streamed as Tensor | null)?.dispose();
    if (processes) ctx.log(`${preset} ${what}: streamed in ${count} processes ${formatMs(splitMs)}`);
    // Blending sums held at once: the whole crop per subset before, one window's extent along x after.
    const sums = (extentX: number) => `${((subsets.length * classes * extentX * shape[1] * shape[2] * 4) / MIB).toFixed(0)} MiB`;
    const workload = `whole volume ${preset}, ${GRID.join('×')} (crop ${shape.join('×')}, ${windows} windows of ${patch}³), ${what}`;
    const voxels = before.length * before[0].length;
    rows.push({
      benchmark: `${workload}: straightforward → streamed`,
      ours:
        `${formatMs(beforeMs)} → ${formatMs(afterMs)} (${(beforeMs / afterMs).toFixed(2)}×; blending sums ${sums(shape[0])} → ${sums(patch)}; ` +
        `labels differ at ${labelDisagreement(before, after, values, subsets)} of ${voxels} voxels)`,
    });
    if (processes) {
      const difference = probabilityDifference === null ? '' : `, probabilities within ${(probabilityDifference as number).toExponential(1)}`;
      rows.push({
        benchmark: `${workload}: streamed in 1 process → ${count} processes`,
        ours:
          `${formatMs(afterMs)} → ${formatMs(splitMs)} (${(afterMs / splitMs).toFixed(2)}×; processes started and loaded once in ${formatMs(startMs)}; ` +
          `labels differ at ${labelDisagreement(after, split, values, subsets)} of ${voxels} voxels${difference})`,
      });
    }
  }
  processes?.close();
  images.dispose();
  model.dispose();
  return rows;
}

export async function wholeVolumeBenchmark(ctx: BenchContext): Promise<BenchRow[]> {
  const t1ce = SUBSETS.find((subset) => subsetName(subset) === 'T1ce')!;
  const small = [
    { what: 'T1ce alone', subsets: [t1ce] },
    { what: 'all four', subsets: [ALL_MODALITIES] },
    ...(ctx.quick ? [] : [{ what: 'all 15 subsets (evaluation)', subsets: SUBSETS }]),
  ];
  const rows = await benchmarkPreset('cpu-small', small, ctx);
  if (process.env.BENCH_PAPER === '1') rows.push(...(await benchmarkPreset('paper', [{ what: 'all four', subsets: [ALL_MODALITIES] }], ctx)));
  return rows;
}

export const wholeVolumeSection: Section = {
  name: 'volume',
  description: `measured whole-volume inference of a synthetic ${GRID.join('×')} case (cpu-small, random weights; paper at 128³ with BENCH_PAPER=1), straightforward vs streamed, and streamed in one process vs split between one process per core`,
  run: wholeVolumeBenchmark,
};
