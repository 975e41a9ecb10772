// Engine benchmarks: 3D convolution throughput, a small 3D U-Net training step (both beside the same
// workloads in PyTorch driven from Python, see engine_reference.py) and resident memory over many
// training steps.
import { fileURLToPath } from 'node:url';
import { torch, type Tensor } from '../src/engine/index.ts';
import {
  describeTiming,
  formatMs,
  PythonReference,
  memoryMiB,
  summarise,
  timeAlternating,
  type BenchContext,
  type Section,
  type Timing,
} from './harness.ts';
import type { BenchRow } from './table.ts';

const REFERENCE_SCRIPT = fileURLToPath(new URL('./engine_reference.py', import.meta.url));

function repetitions(ctx: BenchContext): { warmup: number; runs: number } {
  return ctx.quick ? { warmup: 1, runs: 3 } : { warmup: 2, runs: 7 };
}

/** A row comparing our timing with the reference's, with throughput when the work is known. */
function comparisonRow(benchmark: string, ours: Timing, reference: Timing | undefined, flops?: number): BenchRow {
  const cell = (t: Timing) => (flops ? `${formatMs(t.medianMs)} (${(flops / t.medianMs / 1e6).toFixed(1)} GFLOP/s)` : formatMs(t.medianMs));
  return {
    benchmark,
    ours: cell(ours),
    python: reference && cell(reference),
    ratio: reference && ours.medianMs / reference.medianMs,
  };
}

function logComparison(ctx: BenchContext, what: string, ours: Timing, reference: Timing | undefined): void {
  ctx.log(`${what}: ours ${describeTiming(ours)}`);
  if (reference) ctx.log(`${what}: PyTorch (Python) ${describeTiming(reference)}`);
}

/** Runs `body` with a Python reference process when an interpreter with torch was found. */
async function withReference<T>(ctx: BenchContext, body: (reference: PythonReference | undefined) => Promise<T>): Promise<T> {
  const reference = ctx.python ? PythonReference.start(ctx.python, REFERENCE_SCRIPT) : undefined;
  try {
    return await body(reference);
  } finally {
    reference?.close();
  }
}

// -- conv3d ------------------------------------------------------------------------------------------

/** A k×k×k convolution (k odd, padded to keep the size) with as many output as input channels over a cube. */
interface ConvCase {
  batch: number;
  channels: number;
  size: number;
  kernel: 1 | 3;
}

const CONV_CASES: ConvCase[] = [
  { batch: 1, channels: 16, size: 64, kernel: 3 },
  { batch: 2, channels: 16, size: 64, kernel: 3 },
  // Batch 1 with B·C·D·H ≤ 20480: libtorch 1.13 runs its slow reference kernel; our engine routes it to oneDNN.
  { batch: 1, channels: 16, size: 32, kernel: 3 },
  // Thin layers (as in the SMML networks on the CPU): oneDNN reaches a few GFLOP/s there; the engine's direct kernels run them.
  { batch: 2, channels: 4, size: 32, kernel: 3 },
  { batch: 8, channels: 4, size: 32, kernel: 3 },
  // The 1×1×1 convolutions of those networks: memory-bound; the engine's direct kernels read each operand once.
  { batch: 2, channels: 4, size: 32, kernel: 1 },
  { batch: 8, channels: 4, size: 32, kernel: 1 },
];

/** Floating-point operations of the forward pass: 2·B·Cout·Cin·k³ per output voxel (same padding). */
function convForwardFlops(c: ConvCase): number {
  return 2 * c.batch * c.channels * c.channels * c.kernel ** 3 * c.size ** 3;
}

/** Times forward (without autograd) and forward+backward (input and weight gradients), alternating with the reference. */
async function compareConv(ctx: BenchContext, c: ConvCase, reference: PythonReference | undefined): Promise<BenchRow[]> {
  const { warmup, runs } = repetitions(ctx);
  const name = `conv3d ${c.size}³ C${c.channels}→${c.channels} B${c.batch} k${c.kernel}`;
  const padding = (c.kernel - 1) / 2;
  const x = torch.randn([c.batch, c.channels, c.size, c.size, c.size], { requiresGrad: true });
  const w = torch.randn([c.channels, c.channels, c.kernel, c.kernel, c.kernel], { requiresGrad: true });
  const gradOutput = torch.randn([c.batch, c.channels, c.size, c.size, c.size]);
  const forward = () => torch.tidy(() => void torch.noGrad(() => torch.conv3d(x, w, null, { padding })));
  const forwardBackward = () =>
    torch.tidy(() => {
      torch.conv3d(x, w, null, { padding }).backward(gradOutput);
      x.grad = null;
      w.grad = null;
    });
  const flops = convForwardFlops(c);
  // The backward computes the input and the weight gradients, each as much work as the forward.
  const passes = [
    { pass: 'forward', workload: 'conv3d_forward', ours: forward, flops },
    { pass: 'forward+backward', workload: 'conv3d_forward_backward', ours: forwardBackward, flops: 3 * flops },
  ];
  const rows: BenchRow[] = [];
  try {
    for (const p of passes) {
      await reference?.setup({ workload: p.workload, ...c, threads: ctx.threads });
      const timing = await timeAlternating(p.ours, reference, warmup, runs);
      logComparison(ctx, `${name} ${p.pass}`, timing.ours, timing.reference);
      rows.push(comparisonRow(`${name} ${p.pass}`, timing.ours, timing.reference, p.flops));
    }
  } finally {
    torch.dispose([x, w, gradOutput]);
  }
  return rows;
}

function runConvSection(ctx: BenchContext): Promise<BenchRow[]> {
  return withReference(ctx, async (reference) => {
    const rows: BenchRow[] = [];
    for (const c of CONV_CASES) rows.push(...(await compareConv(ctx, c, reference)));
    return rows;
  });
}

// -- U-Net training step -------------------------------------------------------------------------------

/** A two-level 3D U-Net on cubes of `size` (even), trained with softmax cross-entropy and plain SGD (no momentum). */
interface UNetCase {
  batch: number;
  size: number;
  /** Feature channels of the full-resolution and the half-resolution level. */
  channels: [number, number];
  inChannels: number;
  classes: number;
  learningRate: number;
}

const UNET_CASES: UNetCase[] = [
  { batch: 1, size: 64, channels: [16, 32], inChannels: 1, classes: 4, learningRate: 0.01 },
  { batch: 2, size: 48, channels: [16, 32], inChannels: 1, classes: 4, learningRate: 0.01 },
];

/** Small enough that 1,000 steps take well under a minute on two cores (25–35 ms a step). */
const MEMORY_CASE: UNetCase = { batch: 1, size: 16, channels: [8, 16], inChannels: 1, classes: 4, learningRate: 0.01 };

function describeUNet(u: UNetCase): string {
  return `U-Net ${u.channels.join('/')} step B${u.batch}×${u.inChannels}×${u.size}³`;
}

/** 3×3×3 convolution (with bias), InstanceNorm with affine parameters, LeakyReLU(0.01). */
function convNormAct(inChannels: number, outChannels: number): torch.nn.Sequential {
  return new torch.nn.Sequential(
    new torch.nn.Conv3d(inChannels, outChannels, 3, { padding: 1 }),
    new torch.nn.InstanceNorm3d(outChannels, { affine: true }),
    new torch.nn.LeakyReLU(0.01),
  );
}

/**
 * Encoder: two blocks at full resolution, max-pool, two blocks at half resolution; decoder: transposed
 * convolution (kernel 2, stride 2) back up, concatenation with the skip, two blocks, 1×1×1 head.
 * engine_reference.py builds the same layers in the same order, so one seed gives both the same weights.
 */
class UNet extends torch.nn.Module {
  private readonly encoder: torch.nn.Sequential;
  private readonly bottom: torch.nn.Sequential;
  private readonly up: torch.nn.ConvTranspose3d;
  private readonly decoder: torch.nn.Sequential;
  private readonly head: torch.nn.Conv3d;

  constructor(u: UNetCase) {
    super();
    const [c1, c2] = u.channels;
    this.encoder = this.registerModule('encoder', new torch.nn.Sequential(convNormAct(u.inChannels, c1), convNormAct(c1, c1)));
    this.bottom = this.registerModule('bottom', new torch.nn.Sequential(convNormAct(c1, c2), convNormAct(c2, c2)));
    this.up = this.registerModule('up', new torch.nn.ConvTranspose3d(c2, c1, 2, { stride: 2 }));
    this.decoder = this.registerModule('decoder', new torch.nn.Sequential(convNormAct(2 * c1, c1), convNormAct(c1, c1)));
    this.head = this.registerModule('head', new torch.nn.Conv3d(c1, u.classes, 1));
  }

  /** x (B, inChannels, S, S, S) → logits (B, classes, S, S, S). */
  forward(x: Tensor): Tensor {
    const skip = this.encoder.forward(x);
    const low = this.bottom.forward(torch.maxPool3d(skip, 2));
    return this.head.forward(this.decoder.forward(torch.cat([skip, this.up.forward(low)], 1)));
  }
}

/** A network, its SGD optimiser and a fixed random batch: input (B, inChannels, S³), labels (B, S³). */
interface UNetWorkload {
  net: UNet;
  optimizer: torch.optim.SGD;
  x: Tensor;
  target: Tensor;
}

function unetWorkload(u: UNetCase): UNetWorkload {
  torch.manualSeed(0);
  const net = new UNet(u);
  return {
    net,
    optimizer: new torch.optim.SGD({ params: net.parameters(), lr: u.learningRate }),
    x: torch.keep(torch.randn([u.batch, u.inChannels, u.size, u.size, u.size])),
    target: torch.keep(torch.randint(0, u.classes, [u.batch, u.size, u.size, u.size])),
  };
}

function disposeWorkload(w: UNetWorkload): void {
  torch.dispose([w.net.parameters(), w.x, w.target]);
}

/** One forward, backward and SGD update; returns the loss before the update. */
function trainingStep(w: UNetWorkload): number {
  return torch.tidy(() => {
    w.optimizer.zeroGrad();
    const loss = torch.crossEntropy(w.net.forward(w.x), w.target);
    loss.backward();
    w.optimizer.step();
    return loss.item();
  });
}

function runUNetSection(ctx: BenchContext): Promise<BenchRow[]> {
  const { warmup, runs } = repetitions(ctx);
  return withReference(ctx, async (reference) => {
    const rows: BenchRow[] = [];
    for (const u of UNET_CASES) {
      const name = describeUNet(u);
      const work = unetWorkload(u);
      try {
        await reference?.setup({ workload: 'unet_step', ...u, threads: ctx.threads });
        const timing = await timeAlternating(() => trainingStep(work), reference, warmup, runs);
        // Both sides start from the same seed, so equal losses show that they do the same computation,
        // and a falling loss that the step really trains (a timing would not notice a broken update).
        const losses = (values: unknown[]) => `${Number(values[0]).toFixed(4)} → ${Number(values.at(-1)).toFixed(4)}`;
        ctx.log(`${name}: loss ${losses(timing.ourValues)}` + (reference ? `; Python ${losses(timing.referenceValues)}` : ''));
        logComparison(ctx, name, timing.ours, timing.reference);
        rows.push(comparisonRow(name, timing.ours, timing.reference));
      } finally {
        disposeWorkload(work);
      }
    }
    return rows;
  });
}

// -- resident memory ---------------------------------------------------------------------------------

function runMemorySection(ctx: BenchContext): BenchRow[] {
  const u = MEMORY_CASE;
  const steps = ctx.quick ? 200 : 1000;
  const checkpoints = [0, 1, 2, 3, 4].map((i) => (i * steps) / 4);
  const work = unetWorkload(u);
  const memory = new Map<number, { rss: number; jsHeap: number; handles: number }>();
  const stepMs: number[] = [];
  try {
    for (let i = 0; i < 20; i++) trainingStep(work);
    for (let step = 0; step <= steps; step++) {
      if (checkpoints.includes(step)) {
        const m = { ...memoryMiB(), handles: torch.memoryStats().handles };
        memory.set(step, m);
        ctx.log(`memory: step ${step}/${steps}, RSS ${m.rss.toFixed(1)} MiB, JS heap ${m.jsHeap.toFixed(1)} MiB, ${m.handles} live tensor handles`);
      }
      if (step === steps) break;
      const start = performance.now();
      trainingStep(work);
      stepMs.push(performance.now() - start);
    }
  } finally {
    disposeWorkload(work);
  }
  const name = `memory: ${describeUNet(u)}`;
  const rows: BenchRow[] = [{ benchmark: `${name}, time per step`, ours: formatMs(summarise(stepMs).medianMs) }];
  for (const step of checkpoints) {
    const label = step === 0 ? 'RSS at step 0 (after 20 warm-up steps)' : `RSS at step ${step}`;
    const m = memory.get(step)!;
    rows.push({ benchmark: `${name}, ${label}`, ours: `${m.rss.toFixed(1)} MiB (JS heap ${m.jsHeap.toFixed(1)} MiB)` });
  }
  const first = memory.get(0)!;
  const last = memory.get(steps)!;
  const growth = last.rss - first.rss;
  rows.push({
    benchmark: `${name}, RSS growth over ${steps} steps`,
    ours: `${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB (${((growth * 1024) / steps).toFixed(2)} KiB/step)`,
  });
  // Live handles separate tensors kept by mistake (handles grow) from memory the allocator keeps.
  rows.push({ benchmark: `${name}, live tensor handles at step 0 → ${steps}`, ours: `${first.handles} → ${last.handles}` });
  return rows;
}

export const engineSections: Section[] = [
  { name: 'conv3d', description: 'conv3d forward and forward+backward throughput', run: runConvSection },
  { name: 'unet', description: 'small 3D U-Net training step (forward, backward, SGD)', run: runUNetSection },
  { name: 'memory', description: 'resident memory over many training steps', run: runMemorySection },
];
