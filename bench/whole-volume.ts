// Measured whole-volume inference of one synthetic 240 × 240 × 155 case (random weights), the straightforward way
// (every window on its own through the network, blended over the whole crop) against the streamed one of
// `src/inference/predict.ts` (batched windows, windows without the subset's sequences skipped, each batch encoded once
// for every subset, blending sums for one window's extent along x), and the streamed one with the windows split between
// one single-threaded process per core (`InferenceProcesses`). Each workload runs once per side, the sides alternating,
// so a busy spell on a shared machine is less likely to favour one of them.
import * as fs from 'node:fs';
import { torch, type Tensor } from '../src/engine/index.ts';
import { ALL_MODALITIES, MODALITIES, SUBSETS, subsetName, type ModalityMask } from '../src/data/modalities.ts';
import { cropAndNormalize, cropBoxShape, nonZeroBoundingBox, type Shape3 } from '../src/data/preprocess.ts';
import { synthesizeDatasetCase } from '../src/data/synthetic.ts';
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
  const phantom = synthesizeDatasetCase(1, 0, GRID[0]);
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

/** CPU seconds this process has used, all its threads. */
function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** CPU seconds the given processes have used (Linux's /proc, in clock ticks of 1/100 s); null elsewhere. */
function processCpuSeconds(pids: readonly number[]): number | null {
  try {
    return pids.reduce((total, pid) => {
      const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return total + (Number(fields[11]) + Number(fields[12])) / 100;
    }, 0);
  } catch {
    return null;
  }
}

/**
 * Wall time (ms) and CPU seconds of `run`, in this process and in `pids`. On a shared machine the CPU time says what
 * the work costs, whatever share of the cores the other work leaves it.
 */
async function measured(run: () => void | Promise<void>, pids: readonly number[] = []): Promise<{ ms: number; cpu: number | null }> {
  const [startCpu, startChildren, start] = [ownCpuSeconds(), processCpuSeconds(pids), performance.now()];
  await run();
  const ms = performance.now() - start;
  const children = processCpuSeconds(pids);
  const cpu = children === null || startChildren === null ? null : ownCpuSeconds() - startCpu + children - startChildren;
  return { ms, cpu };
}

const cpuText = (cpu: number | null) => (cpu === null ? '' : `, CPU ${cpu.toFixed(1)} s`);

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
  const start = processes ? await measured(() => processes.stream(empty, [ALL_MODALITIES], {}, () => undefined, 'warm-up')) : null;
  empty.dispose();
  const rows: BenchRow[] = [];
  for (const { what, subsets } of workloads) {
    const single = subsets.length === 1;
    let before: Uint8Array[] = [];
    let after: Uint8Array[] = [];
    let split: Uint8Array[] = [];
    let probabilityDifference: number | null = null;
    const straight = await measured(() =>
      torch.tidy(() => {
        before = labelsOf(straightforward(model, images, subsets));
      }),
    );
    ctx.log(`${preset} ${what}: straightforward ${formatMs(straight.ms)}${cpuText(straight.cpu)}`);
    let streamed: Tensor | null = null;
    const oneProcess = await measured(() =>
      torch.tidy(() => {
        if (single) {
          streamed = torch.keep(subsetProbabilities(model, images, subsets));
          after = labelsOf(streamed);
        } else after = subsetLabels(model, images, subsets);
      }),
    );
    ctx.log(`${preset} ${what}: streamed ${formatMs(oneProcess.ms)}${cpuText(oneProcess.cpu)}`);
    const pids = processes?.pids ?? [];
    const inProcesses = processes
      ? await measured(async () => {
          if (single) {
            const probabilities = await wholeVolumeProbabilities(model, images, subsets, { processes }, 'synthetic case');
            split = torch.tidy(() => labelsOf(probabilities));
            probabilityDifference = maxDifference(probabilities, streamed!);
            probabilities.dispose();
          } else split = await wholeVolumeLabels(model, images, subsets, { processes }, 'synthetic case');
        }, pids)
      : null;
    (streamed as Tensor | null)?.dispose();
    if (inProcesses) ctx.log(`${preset} ${what}: streamed in ${count} processes ${formatMs(inProcesses.ms)}${cpuText(inProcesses.cpu)}`);
    // Blending sums held at once: the whole crop per subset before, one window's extent along x after.
    const sums = (extentX: number) => `${((subsets.length * classes * extentX * shape[1] * shape[2] * 4) / MIB).toFixed(0)} MiB`;
    const workload = `whole volume ${preset}, ${GRID.join('×')} (crop ${shape.join('×')}, ${windows} windows of ${patch}³), ${what}`;
    const voxels = before.length * before[0].length;
    rows.push({
      benchmark: `${workload}: straightforward → streamed`,
      ours:
        `${formatMs(straight.ms)} → ${formatMs(oneProcess.ms)} (${(straight.ms / oneProcess.ms).toFixed(2)}×; blending sums ${sums(shape[0])} → ${sums(patch)}; ` +
        `labels differ at ${labelDisagreement(before, after, values, subsets)} of ${voxels} voxels)`,
    });
    if (inProcesses && start) {
      const difference = probabilityDifference === null ? '' : `, probabilities within ${(probabilityDifference as number).toExponential(1)}`;
      const cpu = oneProcess.cpu === null || inProcesses.cpu === null ? '' : `; CPU ${oneProcess.cpu.toFixed(1)} s → ${inProcesses.cpu.toFixed(1)} s`;
      rows.push({
        benchmark: `${workload}: streamed in 1 process → ${count} processes`,
        ours:
          `${formatMs(oneProcess.ms)} → ${formatMs(inProcesses.ms)} (${(oneProcess.ms / inProcesses.ms).toFixed(2)}×${cpu}; processes started and loaded once in ${formatMs(start.ms)}; ` +
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
