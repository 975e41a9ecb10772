// Whole-volume prediction from a patch-based network: overlapping windows, weighted and averaged.
import { torch, type Tensor } from '../engine/index.ts';

export type Shape3 = [number, number, number];

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
 * Runs `predict` on every window of `volume` and blends the outputs.
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
      const [, , ...size] = volume.shape as [number, number, number, number, number];
      const padded = size.map((s, i) => Math.max(s, patch[i])) as Shape3;
      const pads = [padded[2] - size[2], padded[1] - size[1], padded[0] - size[0]].flatMap((p) => [0, p]);
      const input = pads.some((p) => p > 0) ? torch.pad(volume, pads) : volume;
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
