// Whole-volume prediction from a patch-based network: overlapping windows, weighted and averaged.
import { torch, type Tensor } from '../engine/index.ts';

export type Shape3 = [number, number, number];
type Shape5 = [number, number, ...Shape3];

export interface SlidingWindowOptions {
  /** Fraction of the patch shared by neighbouring windows (docs/method.md §7: 0.5). */
  overlap?: number;
  /** 'uniform' averages windows equally; 'gaussian' trusts patch centres more than borders. */
  weighting?: 'uniform' | 'gaussian';
  /** Gaussian sigma as a fraction of the patch size. */
  sigmaScale?: number;
  /** Called after each window with (done, total). */
  onWindow?: (done: number, total: number) => void;
}

/** Start offsets along one axis: evenly spaced, the last window flush with the end. */
export function windowStarts(size: number, patch: number, overlap: number): number[] {
  if (size <= patch) return [0];
  const stride = Math.max(1, Math.floor(patch * (1 - overlap)));
  const count = Math.ceil((size - patch) / stride) + 1;
  return Array.from({ length: count }, (_, i) => Math.min(i * stride, size - patch));
}

/** Per-voxel weights of a window (1, 1, px, py, pz), maximum 1 and strictly positive. */
export function importanceMap(patch: Shape3, weighting: 'uniform' | 'gaussian', sigmaScale = 0.125): Tensor {
  const n = patch[0] * patch[1] * patch[2];
  const values = new Float32Array(n).fill(1);
  if (weighting === 'gaussian') {
    const profile = patch.map((p) => {
      const sigma = Math.max(p * sigmaScale, 1e-6);
      const centre = (p - 1) / 2;
      return Float32Array.from({ length: p }, (_, i) => Math.exp(-((i - centre) ** 2) / (2 * sigma * sigma)));
    });
    let i = 0;
    for (let x = 0; x < patch[0]; x++)
      for (let y = 0; y < patch[1]; y++)
        for (let z = 0; z < patch[2]; z++) values[i++] = Math.max(profile[0][x] * profile[1][y] * profile[2][z], 1e-3);
  }
  return torch.tensor(values, [1, 1, ...patch]);
}

/**
 * Runs `predict` on every window of `volume` and blends the outputs over the whole volume: the plain form of
 * `streamWindows`, which the tests and the benchmark compare it with.
 * volume: (B, C, X, Y, Z); predict maps (B, C, px, py, pz) → (B, K, px, py, pz); returns (B, K, X, Y, Z).
 * Axes shorter than the patch are zero-padded at the end for prediction and cropped back.
 */
export function slidingWindowInference(
  volume: Tensor,
  patch: Shape3,
  predict: (window: Tensor) => Tensor,
  opts: SlidingWindowOptions = {},
): Tensor {
  return torch.noGrad(() =>
    torch.tidy(() => {
      const [, , ...size] = volume.shape as Shape5;
      const padded = paddedShape(size, patch);
      const input = padToPatch(volume, size, patch);
      const weights = importanceMap(patch, opts.weighting ?? 'uniform', opts.sigmaScale).to(volume.device);
      const starts = padded.map((s, i) => windowStarts(s, patch[i], opts.overlap ?? 0.5));
      const total = starts[0].length * starts[1].length * starts[2].length;
      let sum: Tensor | null = null;
      const weightSum = torch.zeros([1, 1, ...padded], { device: volume.device });
      let done = 0;
      for (const x of starts[0])
        for (const y of starts[1])
          for (const z of starts[2]) {
            torch.tidy(() => {
              const window = input.narrow(2, x, patch[0]).narrow(3, y, patch[1]).narrow(4, z, patch[2]);
              const output = predict(window);
              sum ??= torch.keep(torch.zeros([output.shape[0], output.shape[1], ...padded], { device: volume.device }));
              sum.narrow(2, x, patch[0]).narrow(3, y, patch[1]).narrow(4, z, patch[2]).add_(output.mul(weights));
              weightSum.narrow(2, x, patch[0]).narrow(3, y, patch[1]).narrow(4, z, patch[2]).add_(weights);
            });
            opts.onWindow?.(++done, total);
          }
      const accumulated = sum as Tensor | null;
      if (!accumulated) throw new Error('slidingWindowInference: no window was predicted');
      const blended = accumulated.div(weightSum);
      accumulated.dispose();
      return blended.narrow(2, 0, size[0]).narrow(3, 0, size[1]).narrow(4, 0, size[2]).contiguous();
    }),
  );
}

/**
 * The network on a batch of windows for S outputs (modality subsets): (S, B, C, px, py, pz) probabilities, where
 * `needed[s][b]` says whether output s of window b will be used (the others may be anything, e.g. zeros).
 */
export type WindowPredictor = (windows: Tensor /* (B, K, px, py, pz) */, needed: readonly (readonly boolean[])[] /* [s][b] */) => Tensor /* (S, B, C, px, py, pz) */;

export interface StreamedWindowOptions extends SlidingWindowOptions {
  /** Windows per call of `predict`; default `defaultWindowBatch(patch)`. */
  batchSize?: number;
}

/**
 * Windows per network call: as many as fit in 2 windows of 32³ voxels (2 at 32³, 1 from 41³ on). Larger batches ran
 * faster per window on an idle two-core machine but much slower on a busy one, where their activations no longer
 * stay in cache (bench/README.md).
 */
export function defaultWindowBatch(patch: Shape3): number {
  return Math.max(1, Math.floor((2 * 32 ** 3) / (patch[0] * patch[1] * patch[2])));
}

/** Spatial shape a volume is predicted at: every axis at least one patch long (shorter ones are zero-padded at the end). */
function paddedShape(size: Shape3, patch: Shape3): Shape3 {
  return size.map((s, i) => Math.max(s, patch[i])) as Shape3;
}

/** A volume (1, K, X, Y, Z) zero-padded at the end to `paddedShape`. */
function padToPatch(volume: Tensor, size: Shape3, patch: Shape3): Tensor {
  const padded = paddedShape(size, patch);
  const pads = [padded[2] - size[2], padded[1] - size[1], padded[0] - size[0]].flatMap((p) => [0, p]);
  return pads.some((p) => p > 0) ? torch.pad(volume, pads) : volume;
}

/** Which of the outputs read a channel that is non-zero in the window at (x, y, z) of `input` (1, K, X, Y, Z). */
function outputsNeeded(input: Tensor, patch: Shape3, x: number, y: number, z: number, outputChannels: readonly (readonly boolean[])[]): boolean[] {
  const nonZero = torch.tidy(() => input.narrow(2, x, patch[0]).narrow(3, y, patch[1]).narrow(4, z, patch[2]).abs().flatten(2).amax(2).toArray());
  return outputChannels.map((channels) => channels.some((reads, k) => reads && nonZero[k] > 0));
}

function checkStreamInput(volume: Tensor, outputChannels: readonly (readonly boolean[])[], what: string): void {
  if (volume.ndim !== 5 || volume.size(0) !== 1) throw new Error(`${what}: expected a volume (1, K, X, Y, Z), got [${volume.shape.join(', ')}]`);
  if (outputChannels.some((channels) => channels.length !== volume.size(1))) throw new Error(`${what}: every output needs one flag per channel (${volume.size(1)})`);
}

/**
 * The window start offsets along x of `volume` (1, K, X, Y, Z) and the work of each window, in the order
 * `accumulateWindows` runs them (x, then y, then z): 1 + the number of outputs predicted there (a batch is encoded
 * once, then fused per output), 0 for a window no output reads. What `splitWindows` balances.
 */
export function windowWork(
  volume: Tensor /* (1, K, X, Y, Z) */,
  patch: Shape3,
  outputChannels: readonly (readonly boolean[])[],
  overlap = 0.5,
): { xStarts: number[]; work: number[] } {
  checkStreamInput(volume, outputChannels, 'windowWork');
  return torch.noGrad(() =>
    torch.tidy(() => {
      const [, , ...size] = volume.shape as Shape5;
      const input = padToPatch(volume, size, patch);
      const starts = paddedShape(size, patch).map((s, i) => windowStarts(s, patch[i], overlap));
      const work: number[] = [];
      for (const x of starts[0])
        for (const y of starts[1])
          for (const z of starts[2]) {
            const used = outputsNeeded(input, patch, x, y, z, outputChannels).filter(Boolean).length;
            work.push(used > 0 ? 1 + used : 0);
          }
      return { xStarts: starts[0], work };
    }),
  );
}

/**
 * Splits consecutive items of the given work into at most `parts` non-empty contiguous runs of about equal work
 * (each run ends where the running total first reaches its share); returns the runs' [first, end) item indices.
 * Without any work the items are split by count.
 */
export function splitWindows(work: readonly number[], parts: number): [number, number][] {
  const count = Math.min(parts, work.length);
  const weights = work.some((w) => w > 0) ? work : work.map(() => 1);
  const total = weights.reduce((a, b) => a + b, 0);
  const runs: [number, number][] = [];
  let first = 0;
  let done = 0;
  for (let part = 1; part <= count; part++) {
    // Leave at least one item for each later part.
    const last = work.length - (count - part);
    let end = first + 1;
    done += weights[first];
    while (end < last && (part === count || done + weights[end] / 2 <= (total * part) / count)) done += weights[end++];
    runs.push([first, end]);
    first = end;
  }
  return runs;
}

/** Blending sums turned into probabilities: sum / weight, and background (class 0) where no window was predicted. */
export function blendSums(sum: Tensor /* (S, C, n, Y, Z) */, weight: Tensor /* (S, 1, n, Y, Z) */): Tensor /* (S, C, n, Y, Z) */ {
  return torch.tidy(() => {
    const empty = weight.eq(0).to(weight.dtype);
    const blended = sum.div(weight.add(empty));
    blended.narrow(1, 0, 1).add_(empty);
    return blended;
  });
}

export interface WindowSumOptions extends StreamedWindowOptions {
  /** Window start offsets along x (`windowStarts` along x, or a part of them); default all of them. */
  xStarts?: readonly number[];
  /** The windows to run, [first, end) in the order x (over `xStarts`), then y, then z; default all. */
  windows?: readonly [number, number];
}

/**
 * The blending sums of `streamWindows` before they are divided: for the windows `opts.windows` at `opts.xStarts`
 * (default all), the weighted sum of the predictions (S, C, n, Y, Z) and of the weights (S, 1, n, Y, Z) of the voxels
 * x in [xStart, xStart + n), handed to `onSums` in x order once no later window adds to them; together the calls cover
 * x from the x start of the first window to the end of the last one. The tensors are valid during the call only.
 */
export function accumulateWindows(
  volume: Tensor /* (1, K, X, Y, Z) */,
  patch: Shape3,
  classes: number,
  outputChannels: readonly (readonly boolean[])[],
  predict: WindowPredictor,
  onSums: (xStart: number, sum: Tensor /* (S, C, n, Y, Z) */, weight: Tensor /* (S, 1, n, Y, Z) */) => void,
  opts: WindowSumOptions = {},
): void {
  const outputs = outputChannels.length;
  checkStreamInput(volume, outputChannels, 'streamWindows');
  const batchSize = opts.batchSize ?? defaultWindowBatch(patch);
  torch.noGrad(() =>
    torch.tidy(() => {
      const [, , ...size] = volume.shape as Shape5;
      const padded = paddedShape(size, patch);
      const input = padToPatch(volume, size, patch);
      const uniform = (opts.weighting ?? 'uniform') === 'uniform';
      const weights = importanceMap(patch, opts.weighting ?? 'uniform', opts.sigmaScale).to(volume.device);
      const starts = padded.map((s, i) => windowStarts(s, patch[i], opts.overlap ?? 0.5));
      const xStarts = opts.xStarts ?? starts[0];
      const perX = starts[1].length * starts[2].length;
      const [firstWindow, endWindow] = opts.windows ?? [0, xStarts.length * perX];
      if (firstWindow < 0 || endWindow > xStarts.length * perX) throw new Error(`streamWindows: windows ${firstWindow}–${endWindow} of ${xStarts.length * perX}`);
      if (endWindow <= firstWindow) return;
      const total = endWindow - firstWindow;
      const span: Shape3 = [patch[0], padded[1], padded[2]];
      const weightSum = torch.zeros([outputs, 1, ...span], { device: volume.device });
      const sum = torch.zeros([outputs, classes, ...span], { device: volume.device });
      let low = xStarts[Math.floor(firstWindow / perX)];
      let done = 0;
      const region = (t: Tensor, x: number, y: number, z: number) => t.narrow(2, x - low, patch[0]).narrow(3, y, patch[1]).narrow(4, z, patch[2]);
      // Hands out x in [low, until) and moves the sums so that they start at `until`.
      const emit = (until: number) => {
        const count = Math.min(until, size[0]) - low;
        if (count > 0) {
          torch.tidy(() => {
            const part = (t: Tensor) => t.narrow(2, 0, count).narrow(3, 0, size[1]).narrow(4, 0, size[2]);
            onSums(low, part(sum), part(weightSum));
          });
        }
        const shift = until - low;
        for (const accumulator of [sum, weightSum]) {
          const kept = patch[0] - shift;
          if (kept > 0) accumulator.narrow(2, 0, kept).copy_(accumulator.narrow(2, shift, kept).clone());
          accumulator.narrow(2, Math.max(kept, 0), Math.min(shift, patch[0])).zero_();
        }
        low = until;
      };
      for (let xIndex = Math.floor(firstWindow / perX); xIndex * perX < endWindow; xIndex++) {
        const x = xStarts[xIndex];
        if (x > low) emit(x);
        const windows: { y: number; z: number; needed: boolean[] }[] = [];
        for (let w = Math.max(firstWindow, xIndex * perX); w < Math.min(endWindow, (xIndex + 1) * perX); w++) {
          const [y, z] = [starts[1][Math.floor((w % perX) / starts[2].length)], starts[2][w % starts[2].length]];
          const needed = outputsNeeded(input, patch, x, y, z, outputChannels);
          if (needed.some(Boolean)) windows.push({ y, z, needed });
          else opts.onWindow?.(++done, total);
        }
        for (let first = 0; first < windows.length; first += batchSize) {
          const batch = windows.slice(first, first + batchSize);
          torch.tidy(() => {
            const stacked = torch.cat(batch.map(({ y, z }) => input.narrow(2, x, patch[0]).narrow(3, y, patch[1]).narrow(4, z, patch[2])), 0);
            const output = predict(stacked, outputChannels.map((_, s) => batch.map((window) => window.needed[s])));
            batch.forEach(({ y, z, needed }, b) => {
              needed.forEach((use, s) => {
                if (!use) return;
                const prediction = output.select(0, s).select(0, b);
                region(sum.narrow(0, s, 1), x, y, z).add_(uniform ? prediction : prediction.mul(weights.squeeze(0)));
                region(weightSum.narrow(0, s, 1), x, y, z).add_(weights.squeeze(0));
              });
            });
          });
          for (let i = 0; i < batch.length; i++) opts.onWindow?.(++done, total);
        }
      }
      emit(low + patch[0]);
    }),
  );
}

/**
 * The windows of `slidingWindowInference`, for S outputs that each read some of the input channels, blended in a
 * bounded amount of memory and handed out slab by slab along x as they become final.
 *
 * - Output s reads the channels `outputChannels[s]` flags; a window whose read channels are all zero is not predicted
 *   for s (it holds no voxel of the object those channels show). Voxels no predicted window covers get probability 1
 *   for class 0 (background).
 * - Windows go to `predict` in batches of up to `batchSize` (B): `predict(windows (B, K, px, py, pz), needed)` returns
 *   (S, B, C, px, py, pz) with C = `classes`, where `needed[s][b]` says whether output s of window b will be used.
 * - Blending sums are kept for one window's extent along x only, (S, C, px, Y, Z): when the windows move on along x,
 *   the voxels they leave behind are final and go to `onSlab(xStart, blended (S, C, n, Y, Z))`, in x order.
 *
 * Up to float rounding (batched convolutions sum in another order) this equals `slidingWindowInference` wherever some
 * read channel is non-zero within a window covering the voxel. Volume: (1, K, X, Y, Z).
 */
export function streamWindows(
  volume: Tensor /* (1, K, X, Y, Z) */,
  patch: Shape3,
  classes: number,
  outputChannels: readonly (readonly boolean[])[],
  predict: WindowPredictor,
  onSlab: (xStart: number, blended: Tensor /* (S, C, n, Y, Z) */) => void,
  opts: StreamedWindowOptions = {},
): void {
  accumulateWindows(volume, patch, classes, outputChannels, predict, (x, sum, weight) => onSlab(x, blendSums(sum, weight)), opts);
}
