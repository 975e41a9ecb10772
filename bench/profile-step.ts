// Where the time of one SMML training step (bench/smml-step.ts) goes on our side, by wall clock from TypeScript: CPU
// operations are synchronous, so a call into the addon takes exactly as long as its work.
//   - the step's phases: forward of both branches, the objective, backward, optimiser (Adam and zeroing the gradients);
//   - every addon call of the forward and objective phases, by operation type;
//   - every convolution, grouped by kernel and level: its forward as timed inside the step, and its backward measured
//     on its own (the backward call alone after a forward with gradients, same shapes, padding and stride, repeated as often as the step has it).
// The backward as a whole is one addon call; bench/perf_op_types.py splits it by autograd node from a `perf` recording.
//
//   npx tsx bench/profile-step.ts [--preset paper] [--patch 32] [--batch 2] [--steps 2] [--threads N] [--perf-control FIFO]
// (see bench/perf_op_types.py for the perf recording)
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { torch, type Tensor } from '../src/engine/index.ts';
import { native, type NativeHandle } from '../src/engine/native.ts';
import { wrap } from '../src/engine/tensor.ts';
import { modelConfig, trainingStepFlops, type SmmlPresetName } from '../src/models/index.ts';
import { formatMs, summarise } from './harness.ts';
import { smmlStepWorkload } from './smml-step.ts';
import { formatMarkdownTable } from './table.ts';

type Phase = 'forward' | 'objective' | 'backward' | 'optimiser';

/** Operation type of an addon call (convolutions are keyed by their shapes separately). */
const OP_TYPES: Record<string, string[]> = {
  'norm + activation': ['instanceNormLeakyRelu', 'instanceNorm', 'batchNorm', 'layerNorm', 'groupNorm', 'relu', 'leakyRelu', 'gelu', 'sigmoid'],
  'matrix products (attention, linear)': ['matmul', 'bmm', 'linear', 'einsum'],
  'softmax, log-softmax, KL': ['softmax', 'logSoftmax', 'klDiv', 'logsumexp'],
  'trilinear upsampling': ['interpolate'],
  dropout: ['dropout'],
  'copies (cat, stack, contiguous, to, index, one-hot)': ['cat', 'stack', 'contiguous', 'clone', 'to', 'indexSelect', 'oneHot', 'reshape', 'flatten', 'permute', 'transpose', 'unbind', 'narrow', 'pad'],
  'fills (zeros, ones, full)': ['zeros', 'ones', 'full', 'zero_', 'fill_', 'empty'],
  reductions: ['sum', 'mean', 'amax', 'amin'],
  'read-back (item, toBuffer)': ['item', 'toBuffer'],
  'optimiser step (fused Adam)': ['adamStep'],
};
const TYPE_OF = new Map(Object.entries(OP_TYPES).flatMap(([type, names]) => names.map((name) => [name, type] as const)));
const ELEMENTWISE = 'elementwise (add, mul, div, clamp, log, …)';
const BOOKKEEPING = new Set(['shape', 'dtype', 'device', 'numel', 'isDisposed', 'dispose', 'requiresGrad', 'isLeaf', 'grad', 'setGrad', 'strides', 'isContiguous', 'gradFnName', 'isGradEnabled', 'setGradEnabled', 'detach', 'setRequiresGrad']);

interface ConvCall {
  x: number[];
  weight: number[];
  stride: number[];
  padding: number[];
  paddingMode: string;
  transposed: boolean;
}

const shapeOf = native.shape as (h: NativeHandle) => number[];

class StepProfiler {
  recording = false;
  phase: Phase = 'forward';
  /** Summed over the recorded steps. */
  readonly phaseMs = new Map<Phase, number>();
  readonly opMs = new Map<string, number>();
  readonly convs = new Map<string, { call: ConvCall; count: number; forwardMs: number }>();
  private depth = 0;

  /** Replaces every addon function by one that times its outermost calls while recording. */
  install(): void {
    for (const [name, fn] of Object.entries(native)) {
      if (typeof fn !== 'function' || name === 'NativeTensor') continue;
      native[name] = (...args: unknown[]) => {
        if (!this.recording || this.depth > 0) return fn(...args);
        this.depth++;
        const start = performance.now();
        try {
          return fn(...args);
        } finally {
          this.depth--;
          this.record(name, args, performance.now() - start);
        }
      };
    }
  }

  private record(name: string, args: unknown[], ms: number): void {
    if (name === 'convolution' || name === 'convTranspose') {
      const call: ConvCall = {
        x: shapeOf(args[0] as NativeHandle),
        weight: shapeOf(args[1] as NativeHandle),
        stride: args[3] as number[],
        padding: args[4] as number[],
        paddingMode: name === 'convolution' ? (args[7] as string) : 'zeros',
        transposed: name === 'convTranspose',
      };
      const key = JSON.stringify(call);
      const entry = this.convs.get(key) ?? { call, count: 0, forwardMs: 0 };
      entry.count++;
      entry.forwardMs += ms;
      this.convs.set(key, entry);
    }
    if (this.phase === 'backward' || name === 'backward') return;
    const type = name === 'convolution' || name === 'convTranspose' ? 'convolution forward' : BOOKKEEPING.has(name) ? 'handles and metadata' : (TYPE_OF.get(name) ?? ELEMENTWISE);
    this.opMs.set(`${this.phase}: ${type}`, (this.opMs.get(`${this.phase}: ${type}`) ?? 0) + ms);
  }

  addPhase(phase: Phase, ms: number): void {
    this.phaseMs.set(phase, (this.phaseMs.get(phase) ?? 0) + ms);
  }
}

/** Output spatial size of a convolution call (cubic volumes). */
function outputSize(c: ConvCall): number {
  const [, , size] = c.x;
  const kernel = c.weight[2];
  return c.transposed ? size * c.stride[0] : Math.floor((size + 2 * c.padding[0] - kernel) / c.stride[0]) + 1;
}

/** Input and output channels of a convolution call. */
function channelsOf(c: ConvCall): { inC: number; outC: number } {
  return c.transposed ? { inC: c.weight[0], outC: c.weight[1] } : { inC: c.weight[1], outC: c.weight[0] };
}

/** Kernel, stride, output size and output width: the level a convolution works at. */
function convLabel(c: ConvCall): string {
  const kernel = c.weight[2];
  const what = c.transposed ? `transposed ${kernel}³ stride ${c.stride[0]}` : `${kernel}³${c.stride[0] > 1 ? ` stride ${c.stride[0]}` : ''}`;
  return `${what} → ${channelsOf(c).outC} @${outputSize(c)}³`;
}

/** The backward of one convolution call on its own, with random data of its shapes: the median in ms. */
function isolatedConvBackward(c: ConvCall, repeats: number): number {
  return torch.tidy(() => {
    const x = torch.randn(c.x);
    // The image stem's input needs no gradient; every other convolution's input does.
    if (c.x[1] > 1) x.requiresGrad = true;
    const weight = torch.randn(c.weight);
    weight.requiresGrad = true;
    const run = () =>
      c.transposed
        ? wrap(native.convTranspose(x.handle, weight.handle, null, c.stride, c.padding, [0, 0, 0], 1, [1, 1, 1]))
        : wrap(native.convolution(x.handle, weight.handle, null, c.stride, c.padding, [1, 1, 1], 1, c.paddingMode));
    const backward: number[] = [];
    // the first call prepares the kernels of these shapes and is not counted
    for (let i = 0; i < repeats + 1; i++) {
      torch.tidy(() => {
        const out: Tensor = run();
        const gradient = torch.onesLike(out);
        const start = performance.now();
        out.backward(gradient);
        if (i > 0) backward.push(performance.now() - start);
        x.grad = null;
        weight.grad = null;
      });
    }
    return summarise(backward).medianMs;
  });
}

function main(): void {
  const { values } = parseArgs({
    options: {
      preset: { type: 'string', default: 'paper' },
      patch: { type: 'string', default: '32' },
      batch: { type: 'string', default: '2' },
      steps: { type: 'string', default: '2' },
      threads: { type: 'string' },
      // Under `perf record -k CLOCK_MONOTONIC --control fifo:FIFO -D -1`: recording is switched on for the timed steps
      // only, and each phase's start (CLOCK_MONOTONIC, seconds) is written to FIFO.phases for bench/perf_op_types.py.
      'perf-control': { type: 'string' },
    },
  });
  if (values.threads) torch.setNumThreads(Number(values.threads));
  // every activation kept, as in the smml-step section (recomputed blocks would hide their operations in backward)
  const config = modelConfig(values.preset as SmmlPresetName, { patch: Number(values.patch), recompute: [] });
  const batch = Number(values.batch);
  const steps = Number(values.steps);
  const profiler = new StepProfiler();
  profiler.install();
  const workload = smmlStepWorkload(config, batch);
  const { model } = workload;

  // Phase marks: the model's forward, then the objective until the backward call, then the optimiser.
  const forward = model.forward.bind(model);
  let mark = 0;
  const phaseStarts: [Phase, number][] = [];
  const enter = (phase: Phase) => {
    const now = performance.now();
    if (profiler.recording) phaseStarts.push([phase, Number(process.hrtime.bigint()) / 1e9]);
    if (profiler.recording) profiler.addPhase(profiler.phase, now - mark);
    profiler.phase = phase;
    mark = now;
  };
  model.forward = (...args: Parameters<typeof model.forward>) => {
    enter('forward');
    const outputs = forward(...args);
    enter('objective');
    return outputs;
  };
  const backward = native.backward;
  native.backward = (...args: unknown[]) => {
    enter('backward');
    const result = backward(...args);
    enter('optimiser');
    return result;
  };

  const perfControl = values['perf-control'];
  const stepMs: number[] = [];
  // Warm-up: oneDNN prepares itself on the first call of each shape, and the modality masks of the first steps
  // bring new shapes (encoders run for the samples that have their modality); steps settle from the fourth on.
  for (let s = 0; s < 3; s++) workload.step();
  if (perfControl) writeFileSync(perfControl, 'enable\n');
  for (let s = 0; s < steps; s++) {
    profiler.recording = true;
    profiler.phase = 'forward';
    const start = performance.now();
    mark = start;
    workload.step();
    enter('forward');
    stepMs.push(performance.now() - start);
    profiler.recording = false;
  }
  if (perfControl) {
    writeFileSync(perfControl, 'disable\n');
    writeFileSync(`${perfControl}.phases`, JSON.stringify(phaseStarts));
  }
  // Means: the phase and operation times are sums over the steps.
  const step = stepMs.reduce((a, b) => a + b, 0) / steps;
  const perStep = (ms: number) => ms / steps;
  const percent = (ms: number) => `${((100 * ms) / step).toFixed(1)}%`;
  const flops = trainingStepFlops(config, batch);
  console.log(`# ${values.preset} @${config.patch}³, batch ${batch}, ${torch.getNumThreads()} thread(s): step ${formatMs(step)} (mean of ${steps}; ${(flops / step / 1e6).toFixed(1)} GFLOP/s)\n`);

  const phases = [...profiler.phaseMs].map(([phase, ms]) => [phase, formatMs(perStep(ms)), percent(perStep(ms))]);
  console.log(formatMarkdownTable(['phase', 'time', 'share of step'], phases), '\n');

  const ops = [...profiler.opMs].sort((a, b) => b[1] - a[1]).map(([op, ms]) => [op, formatMs(perStep(ms)), percent(perStep(ms))]);
  console.log(formatMarkdownTable(['forward and objective, by operation type', 'time per step', 'share of step'], ops), '\n');

  if (perfControl) return;
  // Convolutions: counts and forward times from the step, backward measured on its own; grouped by kernel and level.
  const groups = new Map<string, { channels: Set<string>; calls: number; forwardMs: number; backwardMs: number; flops: number }>();
  for (const { call, count, forwardMs } of profiler.convs.values()) {
    const calls = count / steps;
    const backwardMs = isolatedConvBackward(call, 3);
    const label = convLabel(call);
    const group = groups.get(label) ?? { channels: new Set<string>(), calls: 0, forwardMs: 0, backwardMs: 0, flops: 0 };
    const { inC, outC } = channelsOf(call);
    group.channels.add(String(inC));
    group.calls += calls;
    group.forwardMs += perStep(forwardMs);
    group.backwardMs += calls * backwardMs;
    const voxels = call.transposed ? call.x[0] * call.x[2] ** 3 : call.x[0] * outputSize(call) ** 3;
    group.flops += calls * 2 * inC * outC * call.weight[2] ** 3 * voxels;
    groups.set(label, group);
  }
  const convRows = [...groups]
    .sort((a, b) => b[1].forwardMs + b[1].backwardMs - (a[1].forwardMs + a[1].backwardMs))
    .map(([label, g]) => [
      label,
      [...g.channels].join(', '),
      String(Math.round(g.calls)),
      `${formatMs(g.forwardMs)} (${(g.flops / g.forwardMs / 1e6).toFixed(1)} GFLOP/s)`,
      formatMs(g.backwardMs),
      percent(g.forwardMs + g.backwardMs),
    ]);
  console.log(formatMarkdownTable(['convolution → output channels', 'input channels', 'calls per step', 'forward in the step', 'backward on its own', 'share of step'], convRows));
}

main();
