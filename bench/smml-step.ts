// Benchmark section `smml-step`: one real SMML dual-branch training step, ours beside the same step in plain torch.nn
// from Python (smml_reference.py): both branches' forward under their modality masks, every term of the objective with
// the KL terms past their warm-up (docs/method.md §5), one backward, an AMSGrad Adam step of each branch, as the trainer
// does. Each preset runs in a child process with its own Python process, so that each side's peak memory is its own.
//
// Run as a child: `tsx bench/smml-step.ts '<WorkerRequest JSON>'` prints one WorkerResult JSON line.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { torch, type Tensor } from '../src/engine/index.ts';
import { branchObjectives, DEFAULT_OBJECTIVE_CONFIG } from '../src/losses/index.ts';
import { branchLayerCosts, createModel, modalityMask, modelConfig, modelParameterCount, trainingStepFlops, type SmmlModel, type SmmlModelConfig, type SmmlPresetName } from '../src/models/index.ts';
import { parseTrainingConfig } from '../src/training/config.ts';
import { predictionsOf } from '../src/training/trainer.ts';
import { describeTiming, formatMs, MIB, PythonReference, summarise, timeAlternating, type BenchContext, type PythonTorch, type Section, type Timing } from './harness.ts';
import type { BenchRow } from './table.ts';

const REFERENCE_SCRIPT = fileURLToPath(new URL('./smml_reference.py', import.meta.url));

/** The trainer's optimiser settings (its configuration's defaults: AMSGrad Adam with L2 weight decay). */
function optimiserSettings() {
  const { lr, betas, eps, weightDecay, amsgrad } = parseTrainingConfig({ data: { root: '.' } }).training;
  return { lr, betas, eps, weightDecay, amsgrad };
}

export interface StepWorkload {
  model: SmmlModel;
  /** Runs one training step; returns its loss. */
  step(): number;
}

/**
 * The model, one Adam per branch and a random batch (images, labels, priors; the modality masks of bench/models.ts);
 * `step` does what the trainer's step does with every loss term on and the KL terms counting.
 */
export function smmlStepWorkload(config: SmmlModelConfig, batch: number): StepWorkload {
  torch.manualSeed(1024);
  const model = createModel(config);
  model.train();
  const settings = optimiserSettings();
  const optimizers = model.branches.map((branch) => new torch.optim.Adam({ params: branch.parameters(), ...settings }));
  const { modalities: K, classes: C, patch } = config;
  const masks = model.branches.map((_, i) =>
    modalityMask(Array.from({ length: batch }, (_, b) => Array.from({ length: K }, (_, k) => (k + b + i) % 3 !== 0))),
  );
  const images = torch.randn([batch, K, patch, patch, patch]);
  const labels = torch.randint(0, C, [batch, patch, patch, patch]);
  const priors = torch.rand([batch, C * K, patch, patch, patch]);
  const onehot: Tensor = torch.oneHot(labels, C).permute(0, 4, 1, 2, 3).to('float32').contiguous();
  const objectiveConfig = DEFAULT_OBJECTIVE_CONFIG;
  const step = () =>
    torch.tidy(() => {
      const [out1, out2] = model.forward(images, masks, { priors, labels });
      const { total } = branchObjectives(
        { branch1: predictionsOf(out1), branch2: predictionsOf(out2), onehot, labels, epoch: objectiveConfig.warmupEpochs },
        objectiveConfig,
      );
      const loss = total.item();
      for (const optimizer of optimizers) optimizer.zeroGrad();
      total.backward();
      for (const optimizer of optimizers) optimizer.step();
      for (const optimizer of optimizers) optimizer.zeroGrad();
      return loss;
    });
  return { model, step };
}

interface WorkerRequest {
  preset: SmmlPresetName;
  patch: number;
  batch: number;
  warmup: number;
  runs: number;
  threads: number;
  python: PythonTorch | null;
}

interface WorkerResult {
  ourMs: number[];
  referenceMs: number[] | null;
  /** The steps before the timed ones, each side. */
  warmupMs: { ours: number[]; reference: number[] };
  ourLosses: number[];
  referenceLosses: unknown[];
  ourParameters: number;
  referenceParameters: number | null;
  /** The reference's forward FLOPs of both branches, counted layer by layer as it ran. */
  referenceForwardFlops: number | null;
  ourPeakRssMiB: number;
  referencePeakRssMiB: number | null;
}

/**
 * The preset at `patch` with every activation kept, as PyTorch's eager step keeps them: the same step on both sides
 * (`paper` recomputes its blocks by default; the models section measures what that costs and saves).
 */
function stepConfig(preset: SmmlPresetName, patch: number): SmmlModelConfig {
  return modelConfig(preset, { patch, recompute: [] });
}

async function runWorker(request: WorkerRequest): Promise<WorkerResult> {
  torch.setNumThreads(request.threads);
  const config = stepConfig(request.preset, request.patch);
  const reference = request.python ? PythonReference.start(request.python, REFERENCE_SCRIPT) : undefined;
  try {
    const setup = reference
      ? await reference.request<{ parameters: number; forwardFlops: number }>({ op: 'setup', workload: 'smml_step', threads: request.threads, config, batch: request.batch, optimizer: optimiserSettings(), tau: DEFAULT_OBJECTIVE_CONFIG.tau })
      : undefined;
    const workload = smmlStepWorkload(config, request.batch);
    const timed = await timeAlternating(workload.step, reference, request.warmup, request.runs);
    const referencePeak = reference ? (await reference.request<{ peakRssMiB: number }>({ op: 'peak' })).peakRssMiB : null;
    return {
      ourMs: timed.ours.samplesMs,
      referenceMs: timed.reference?.samplesMs ?? null,
      warmupMs: timed.warmupMs,
      ourLosses: timed.ourValues,
      referenceLosses: timed.referenceValues,
      ourParameters: workload.model.parameters().reduce((n, p) => n + p.numel, 0),
      referenceParameters: setup?.parameters ?? null,
      referenceForwardFlops: setup?.forwardFlops ?? null,
      ourPeakRssMiB: (process.resourceUsage().maxRSS * 1024) / MIB,
      referencePeakRssMiB: referencePeak,
    };
  } finally {
    reference?.close();
  }
}

function spawnWorker(request: WorkerRequest): WorkerResult {
  const result = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), JSON.stringify(request)], {
    encoding: 'utf8',
    maxBuffer: 16 * MIB,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (result.status !== 0) {
    const how = result.signal ? `was killed by ${result.signal} (out of memory?)` : `exited with status ${result.status}`;
    throw new Error(`the training-step worker for ${request.preset} @${request.patch}³ ${how}`);
  }
  return JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '') as WorkerResult;
}

interface Workload {
  preset: SmmlPresetName;
  patch: number;
  warmup: number;
  runs: number;
  quickRuns: number;
}

// `paper` at 64³ takes tens of seconds per step on two cores, hence its few repetitions. PyTorch's first steps are
// slower than its later ones (`paper` @32³ alone: 4.6, 3.8, 3.6 s, then 2.2 s from the fourth step on), so three
// warm-up steps come before the timed ones on both sides.
const BATCH = 2;
const WORKLOADS: Workload[] = [
  { preset: 'cpu-small', patch: 32, warmup: 3, runs: 5, quickRuns: 2 },
  { preset: 'paper', patch: 32, warmup: 3, runs: 3, quickRuns: 1 },
  { preset: 'paper', patch: 64, warmup: 3, runs: 2, quickRuns: 1 },
];

/**
 * Throws unless our model, the analytic count and the Python model agree on the number of parameters, and the
 * FLOPs the Python model counted in its forward equal the analytic forward FLOPs (src/models/cost.ts).
 */
function checkParity(label: string, config: SmmlModelConfig, result: WorkerResult): void {
  const analytic = modelParameterCount(config);
  const counts = [`analytic ${analytic}`, `ours ${result.ourParameters}`, `PyTorch ${result.referenceParameters ?? '—'}`].join(', ');
  if (result.ourParameters !== analytic || (result.referenceParameters !== null && result.referenceParameters !== analytic)) {
    throw new Error(`${label}: the parameter counts differ (${counts}): the Python model no longer mirrors src/models`);
  }
  const forwardFlops = config.branches * BATCH * branchLayerCosts(config).reduce((n, l) => n + l.forwardFlops, 0);
  if (result.referenceForwardFlops !== null && result.referenceForwardFlops !== forwardFlops) {
    throw new Error(`${label}: the Python model's forward counted ${result.referenceForwardFlops} FLOPs, src/models/cost.ts says ${forwardFlops}`);
  }
}

export async function smmlStepBenchmarks(ctx: BenchContext): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const w of WORKLOADS) {
    const config = stepConfig(w.preset, w.patch);
    const label = `${w.preset} @${w.patch}³`;
    const flops = trainingStepFlops(config, BATCH);
    const parameters = modelParameterCount(config);
    const runs = ctx.quick ? w.quickRuns : w.runs;
    ctx.log(`smml-step: ${label}, batch ${BATCH}, ${w.warmup} warm-up and ${runs} timed step(s) per side, alternating`);
    const result = spawnWorker({ preset: w.preset, patch: w.patch, batch: BATCH, warmup: w.warmup, runs, threads: ctx.threads, python: ctx.python });
    checkParity(label, config, result);
    const ours = summarise(result.ourMs);
    const reference = result.referenceMs ? summarise(result.referenceMs) : undefined;
    ctx.log(`smml-step: ${label}: parameters ours ${result.ourParameters}, PyTorch ${result.referenceParameters ?? '—'} (analytic ${parameters}); forward FLOPs counted by PyTorch ${result.referenceForwardFlops ?? '—'}, as cost.ts`);
    ctx.log(`smml-step: ${label}: first losses ours ${result.ourLosses[0]?.toFixed(4)}, PyTorch ${String(result.referenceLosses[0] ?? '—')}`);
    ctx.log(`smml-step: ${label}: ours ${describeTiming(ours)}, peak RSS ${result.ourPeakRssMiB.toFixed(0)} MiB`);
    if (reference) ctx.log(`smml-step: ${label}: PyTorch ${describeTiming(reference)}, peak RSS ${result.referencePeakRssMiB?.toFixed(0)} MiB`);
    const warmups = (samples: number[]) => samples.map(formatMs).join(', ') || '—';
    ctx.log(`smml-step: ${label}: warm-up steps ours ${warmups(result.warmupMs.ours)}; PyTorch ${warmups(result.warmupMs.reference)}`);
    const cell = (t: Timing, peakMiB: number) => `${formatMs(t.medianMs)} (${(flops / t.medianMs / 1e6).toFixed(1)} GFLOP/s; peak RSS ${(peakMiB / 1024).toFixed(2)} GiB)`;
    rows.push({
      benchmark: `SMML ${label} dual-branch training step with every loss term, batch ${BATCH} (${(parameters / 1e6).toFixed(2)} M parameters, ${(flops / 1e9).toFixed(0)} GFLOP)`,
      ours: cell(ours, result.ourPeakRssMiB),
      python: reference && cell(reference, result.referencePeakRssMiB!),
      ratio: reference && ours.medianMs / reference.medianMs,
    });
  }
  return rows;
}

export const smmlStepSection: Section = {
  name: 'smml-step',
  description: 'SMML dual-branch training step (every loss term, AMSGrad Adam) per preset, beside the same step in PyTorch from Python',
  run: smmlStepBenchmarks,
};

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv[2]) {
  runWorker(JSON.parse(process.argv[2]) as WorkerRequest).then(
    (result) => console.log(JSON.stringify(result)),
    (error: unknown) => {
      console.error(error instanceof Error ? (error.stack ?? error.message) : error);
      process.exit(1);
    },
  );
}
