// Whole-volume inference time for a BraTS-sized case (240 × 240 × 155) with the demo CPU preset and
// random weights: each of the 15 modality subsets run on its own, and all 15 with every window
// encoded once and fused per subset (what `smml evaluate` does).
//
// A whole 240 × 240 × 155 volume is hundreds of windows (minutes per subset on a laptop CPU), so the
// per-volume figures are the measured time of one window times the number of windows; a measured
// run over a smaller volume checks that blending the windows adds little to that estimate.
import { torch, type Tensor } from '../src/engine/index.ts';
import { SUBSETS, subsetName, type ModalityMask } from '../src/data/modalities.ts';
import { subsetProbabilities } from '../src/inference/predict.ts';
import { windowStarts } from '../src/inference/sliding-window.ts';
import { createModel, inferenceFlops, modalityMask, type SmmlModel, type SmmlPresetName } from '../src/models/index.ts';
import { describeTiming, formatMs, summarise, type BenchContext, type Section, type Timing } from './harness.ts';
import type { BenchRow } from './table.ts';

/** The demo's network (the training configuration's default preset). */
const DEMO_PRESET: SmmlPresetName = 'cpu-small';
const BRATS_GRID: [number, number, number] = [240, 240, 155];
/** A measured whole-volume run: the size of the built-in synthetic cases (in-plane 96). */
const CHECK_GRID: [number, number, number] = [96, 96, 62];
const OVERLAP = 0.5;

function windowCount(shape: readonly number[], patch: number): number {
  return shape.reduce((count, size) => count * windowStarts(Math.max(size, patch), patch, OVERLAP).length, 1);
}

/**
 * Times every workload once per round, round after round, so that a busy spell on a shared machine
 * spreads over all of them instead of inflating whichever ran during it.
 */
function timeInterleaved(workloads: readonly (() => void)[], warmup: number, runs: number): Timing[] {
  const samples = workloads.map(() => [] as number[]);
  for (let round = 0; round < warmup + runs; round++) {
    workloads.forEach((run, w) => {
      const start = performance.now();
      run();
      if (round >= warmup) samples[w].push(performance.now() - start);
    });
  }
  return samples.map(summarise);
}

/** One window under one subset through the model's own inference path (absent encoders skipped). */
function predictWindow(model: SmmlModel, window: Tensor, mask: Tensor): void {
  torch.noGrad(() => torch.tidy(() => model.predictProbabilities(window, mask)));
}

/** One window encoded once and fused for every subset. */
function encodeOnceWindow(model: SmmlModel, window: Tensor, masks: readonly Tensor[]): void {
  torch.noGrad(() =>
    torch.tidy(() => {
      const encodings = model.encode(window);
      for (const mask of masks) model.fuseProbabilities(encodings, mask);
    }),
  );
}

/** Measured whole-volume runs over `CHECK_GRID`, against the per-window estimate. */
function checkRows(model: SmmlModel, perWindow: { all: Timing; encodeOnce: Timing }, ctx: BenchContext): BenchRow[] {
  const { patch } = model.config;
  const windows = windowCount(CHECK_GRID, patch);
  const volume = torch.randn([1, 4, ...CHECK_GRID]);
  const measure = (subsets: readonly ModalityMask[]) => {
    const start = performance.now();
    torch.tidy(() => subsetProbabilities(model, volume, subsets, { overlap: OVERLAP }));
    return performance.now() - start;
  };
  const cases = [
    { what: 'all four modalities', subsets: [SUBSETS[14]], estimate: perWindow.all.medianMs * windows },
    { what: 'all 15 subsets, encode once', subsets: SUBSETS, estimate: perWindow.encodeOnce.medianMs * windows },
  ];
  const rows = cases.map(({ what, subsets, estimate }) => {
    const ms = measure(subsets);
    ctx.log(`${CHECK_GRID.join('×')} ${what}: measured ${formatMs(ms)}, estimate ${formatMs(estimate)}`);
    return {
      benchmark: `inference ${DEMO_PRESET} ${CHECK_GRID.join('×')} (${windows} windows), ${what}: measured whole volume`,
      ours: `${formatMs(ms)} (per-window estimate ${formatMs(estimate)})`,
    };
  });
  volume.dispose();
  return rows;
}

/** Rows: per subset, per-subset runs of all 15, encode-once for all 15, and a measured check. */
export function inferenceBenchmark(ctx: BenchContext): BenchRow[] {
  const { warmup, runs } = ctx.quick ? { warmup: 1, runs: 2 } : { warmup: 1, runs: 5 };
  torch.manualSeed(1);
  const model = createModel(DEMO_PRESET);
  model.eval();
  const { patch } = model.config;
  const windows = windowCount(BRATS_GRID, patch);
  const window = torch.randn([1, 4, patch, patch, patch]);
  const masks = SUBSETS.map((subset) => modalityMask([subset]));
  const grid = `${BRATS_GRID.join('×')} (${windows} windows of ${patch}³, ${OVERLAP * 100} % overlap)`;
  const volumeCell = (t: Timing) => `${formatMs(t.medianMs * windows)} (${formatMs(t.medianMs)} per window)`;

  const timings = timeInterleaved(
    [...masks.map((mask) => () => predictWindow(model, window, mask)), () => encodeOnceWindow(model, window, masks)],
    warmup,
    runs,
  );
  const perSubset = timings.slice(0, SUBSETS.length);
  const encodeOnce = timings[SUBSETS.length];
  SUBSETS.forEach((subset, s) => ctx.log(`${subsetName(subset)}: ${describeTiming(perSubset[s])} per window`));
  ctx.log(`encode once + 15 fusions: ${describeTiming(encodeOnce)} per window`);
  const rows: BenchRow[] = SUBSETS.map((subset, s) => ({
    benchmark: `inference ${DEMO_PRESET} ${grid}, ${subsetName(subset)}`,
    ours: volumeCell(perSubset[s]),
  }));
  const allFour = perSubset[14];
  rows[14].ours += `, ${(inferenceFlops(model.config, 1) / allFour.medianMs / 1e6).toFixed(1)} GFLOP/s`;

  const separateMs = perSubset.reduce((sum, t) => sum + t.medianMs, 0);
  rows.push(
    { benchmark: `inference ${DEMO_PRESET} ${grid}, all 15 subsets, one run per subset`, ours: `${formatMs(separateMs * windows)} (${formatMs(separateMs)} per window)` },
    {
      benchmark: `inference ${DEMO_PRESET} ${grid}, all 15 subsets, encode once + 15 fusions`,
      ours: `${volumeCell(encodeOnce)}, ${(separateMs / encodeOnce.medianMs).toFixed(2)}× faster than one run per subset`,
    },
  );
  if (!ctx.quick) rows.push(...checkRows(model, { all: allFour, encodeOnce }, ctx));
  window.dispose();
  for (const mask of masks) mask.dispose();
  return rows;
}

export const inferenceSection: Section = {
  name: 'inference',
  description: `whole-volume inference of a ${BRATS_GRID.join('×')} case per subset (${DEMO_PRESET}, random weights), encode-once vs per subset`,
  run: inferenceBenchmark,
};
