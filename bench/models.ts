// Benchmark section `models`: one training step of the SMML model per configuration and precision (fp32, and
// bf16 mixed precision: the forward under autocast) — forward, every
// loss of the method with the KL terms on, one backward, Adam with amsgrad on both branches — with peak
// resident memory and the GFLOP/s achieved on the analytic convolution and matrix FLOPs. Each
// configuration runs in its own child process, so that its peak memory is its own.
//
// Run as a child: `tsx bench/models.ts '<WorkerRequest JSON>'` prints one WorkerResult JSON line.
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { torch, type Tensor } from '../src/engine/index.ts';
import { branchObjectives, DEFAULT_OBJECTIVE_CONFIG } from '../src/losses/index.ts';
import {
  createModel,
  modalityMask,
  modelConfig,
  trainingStepFlops,
  modelParameterCount,
  PRECISIONS,
  trainingForward,
  type Precision,
  type SmmlModel,
  type SmmlModelConfigOverrides,
  type SmmlPresetName,
} from '../src/models/index.ts';
import { describeTiming, formatMs, MIB, summarise, type BenchContext, type Section } from './harness.ts';
import { predictionsOf } from '../src/training/trainer.ts';
import type { BenchRow } from './table.ts';

interface WorkerRequest {
  preset: SmmlPresetName;
  overrides: SmmlModelConfigOverrides;
  batch: number;
  precision: Precision;
  warmup: number;
  runs: number;
  threads: number;
}

interface WorkerResult {
  samplesMs: number[];
  forwardMs: number[];
  /** CPU time of the whole process per timed step: with other work on the cores it stays honest. */
  cpuMs: number[];
  peakRssMiB: number;
}

/** One optimisation step as the trainer takes it, past the warm-up (so PBC and the refinement KL count). */
function trainingStep(
  model: SmmlModel,
  optimizers: torch.optim.Adam[],
  batch: { images: Tensor; masks: Tensor[]; priors: Tensor; labels: Tensor; onehot: Tensor },
  precision: Precision,
): number {
  return torch.tidy(() => {
    const start = performance.now();
    const [first, second] = trainingForward(precision, 'cpu', () => model.forward(batch.images, batch.masks, { priors: batch.priors, labels: batch.labels }));
    const forwardMs = performance.now() - start;
    const objective = branchObjectives(
      { branch1: predictionsOf(first), branch2: predictionsOf(second), onehot: batch.onehot, labels: batch.labels, epoch: DEFAULT_OBJECTIVE_CONFIG.warmupEpochs },
      DEFAULT_OBJECTIVE_CONFIG,
    );
    objective.total.backward();
    for (const optimizer of optimizers) {
      optimizer.step();
      optimizer.zeroGrad();
    }
    return forwardMs;
  });
}

function runWorker(request: WorkerRequest): WorkerResult {
  torch.setNumThreads(request.threads);
  torch.manualSeed(1024);
  const model = createModel(request.preset, request.overrides);
  const optimizers = model.branches.map((branch) => new torch.optim.Adam({ params: branch.parameters(), lr: 2e-4, weightDecay: 1e-4, amsgrad: true }));
  const { modalities: K, classes: C, patch } = model.config;
  const BATCH = request.batch;
  const masks = model.branches.map((_, i) =>
    modalityMask(Array.from({ length: BATCH }, (_, b) => Array.from({ length: K }, (_, k) => (k + b + i) % 3 !== 0))),
  );
  const labels = torch.randint(0, C, [BATCH, patch, patch, patch]);
  const batch = {
    images: torch.randn([BATCH, K, patch, patch, patch]),
    masks,
    priors: torch.rand([BATCH, C * K, patch, patch, patch]),
    labels,
    onehot: torch.oneHot(labels, C).permute(0, 4, 1, 2, 3).to('float32').contiguous(),
  };
  const samplesMs: number[] = [];
  const forwardMs: number[] = [];
  const cpuMs: number[] = [];
  for (let i = 0; i < request.warmup + request.runs; i++) {
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    const forward = trainingStep(model, optimizers, batch, request.precision);
    if (i >= request.warmup) {
      samplesMs.push(performance.now() - start);
      const cpu = process.cpuUsage(cpuStart);
      cpuMs.push((cpu.user + cpu.system) / 1000);
      forwardMs.push(forward);
    }
  }
  return { samplesMs, forwardMs, cpuMs, peakRssMiB: (process.resourceUsage().maxRSS * 1024) / MIB };
}

function spawnWorker(request: WorkerRequest): WorkerResult {
  const script = fileURLToPath(import.meta.url);
  const result = spawnSync(process.execPath, ['--import', 'tsx', script, JSON.stringify(request)], {
    encoding: 'utf8',
    maxBuffer: 16 * MIB,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (result.status !== 0) {
    const how = result.signal ? `was killed by ${result.signal} (out of memory?)` : `exited with status ${result.status}`;
    throw new Error(`the model benchmark worker for ${request.preset} ${JSON.stringify(request.overrides)} in ${request.precision} ${how}`);
  }
  return JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '') as WorkerResult;
}

interface Workload {
  preset: SmmlPresetName;
  overrides: SmmlModelConfigOverrides;
  batch: number;
  /** Untimed steps first (oneDNN builds its kernels on the first call of each shape). */
  warmup: number;
  runs: number;
  quickRuns: number;
  /** Run only when BENCH_PAPER=1 (it takes many minutes). */
  slow?: boolean;
}

// One step of `paper` at 64^3 already takes minutes on 2 cores, hence no warm-up there. `paper` recomputes every
// part during backward by default (src/models/config.ts); `recompute: []` measures it without. Activations grow
// with batch × voxels, so the peak memory of a larger `paper` run is estimated from the largest one of the same
// recomputation before it is tried: on a machine without that much memory the row says so instead of being killed.
const WORKLOADS: Workload[] = [
  { preset: 'cpu-small', overrides: {}, batch: 2, warmup: 1, runs: 5, quickRuns: 2 },
  { preset: 'cpu-medium', overrides: {}, batch: 2, warmup: 1, runs: 3, quickRuns: 1 },
  { preset: 'paper', overrides: { patch: 32, recompute: [] }, batch: 2, warmup: 1, runs: 2, quickRuns: 1 },
  { preset: 'paper', overrides: { patch: 64, recompute: [] }, batch: 2, warmup: 0, runs: 1, quickRuns: 1 },
  { preset: 'paper', overrides: { patch: 64 }, batch: 2, warmup: 0, runs: 1, quickRuns: 1 },
  { preset: 'paper', overrides: { patch: 128 }, batch: 2, warmup: 0, runs: 1, quickRuns: 1, slow: true },
];

const recomputation = (w: Workload) => modelConfig(w.preset, w.overrides).recompute.join(',');

/** Peak memory expected for `w` from a measured run of the same preset and recomputation, scaling with batch × voxels. */
function estimatedPeakMiB(w: Workload, measured: { workload: Workload; peakRssMiB: number } | undefined): number | undefined {
  if (!measured || measured.workload.preset !== w.preset || recomputation(measured.workload) !== recomputation(w)) return undefined;
  const size = (x: Workload) => x.batch * modelConfig(x.preset, x.overrides).patch ** 3;
  return (measured.peakRssMiB * size(w)) / size(measured.workload);
}

/** One row per workload and precision: step time, forward time, GFLOP/s, peak RSS and parameter count. */
export function modelBenchmarks(ctx: BenchContext): BenchRow[] {
  const largest = new Map<string, { workload: Workload; peakRssMiB: number }>();
  const workloads = WORKLOADS.filter((w) => !w.slow || process.env.BENCH_PAPER === '1');
  return workloads.flatMap((w) => PRECISIONS.map((precision) => ({ ...w, precision }))).map((w) => {
    const config = modelConfig(w.preset, w.overrides);
    const label = `${w.preset} @${config.patch}³${config.recompute.length ? ' recomputed' : ''} ${w.precision}`;
    const group = `${w.preset} ${recomputation(w)} ${w.precision}`;
    const params = (modelParameterCount(config) / 1e6).toFixed(2);
    const flops = trainingStepFlops(config, w.batch);
    const benchmark = `SMML ${label} dual-branch training step, batch ${w.batch} (${params} M parameters, ${(flops / 1e9).toFixed(0)} GFLOP)`;
    const estimate = estimatedPeakMiB(w, largest.get(group));
    const availableMiB = os.totalmem() / MIB;
    if (estimate !== undefined && estimate > 0.9 * availableMiB) {
      ctx.log(`models: ${label} skipped: about ${(estimate / 1024).toFixed(0)} GiB needed, ${(availableMiB / 1024).toFixed(0)} GiB in the machine`);
      return { benchmark, ours: `does not fit: about ${(estimate / 1024).toFixed(0)} GiB estimated, ${(availableMiB / 1024).toFixed(0)} GiB in this machine` };
    }
    const request: WorkerRequest = { preset: w.preset, overrides: w.overrides, batch: w.batch, precision: w.precision, warmup: w.warmup, runs: ctx.quick ? w.quickRuns : w.runs, threads: ctx.threads };
    ctx.log(`models: ${label}, batch ${w.batch}, ${request.runs} timed step(s)`);
    const result = spawnWorker(request);
    if (result.peakRssMiB > (largest.get(group)?.peakRssMiB ?? 0)) largest.set(group, { workload: w, peakRssMiB: result.peakRssMiB });
    const step = summarise(result.samplesMs);
    const forward = summarise(result.forwardMs);
    const gflops = flops / 1e9 / (step.medianMs / 1000);
    const cpu = summarise(result.cpuMs);
    ctx.log(`models: ${label}: step ${describeTiming(step)}, forward ${describeTiming(forward)}, CPU time per step ${formatMs(cpu.medianMs)}, peak RSS ${result.peakRssMiB.toFixed(0)} MiB`);
    return {
      benchmark,
      ours:
        `${formatMs(step.medianMs)} (forward ${formatMs(forward.medianMs)}; ${gflops.toFixed(1)} GFLOP/s; ` +
        `CPU time ${formatMs(cpu.medianMs)}; peak RSS ${(result.peakRssMiB / 1024).toFixed(2)} GiB)`,
    };
  });
}

export const modelSections: Section[] = [
  {
    name: 'models',
    description: 'SMML dual-branch training step per model preset, fp32 and bf16, with and without recomputation (time, GFLOP/s, peak memory; paper at 128³ with BENCH_PAPER=1)',
    run: modelBenchmarks,
  },
];

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv[2]) {
  console.log(JSON.stringify(runWorker(JSON.parse(process.argv[2]) as WorkerRequest)));
}
