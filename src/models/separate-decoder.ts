// The separate decoder (docs/method.md §3, training only): one plain U-Net decoder shared by all modalities,
// run on each modality's unmasked encoder maps, giving an auxiliary prediction per modality.
import { torch, type Tensor } from '../engine/index.ts';
import { kaimingConv3d, recomputable, UpStep } from './blocks.ts';

export class SeparateDecoder extends torch.nn.Module {
  readonly ups: UpStep[];
  readonly classifier: torch.nn.Conv3d;

  /** `recompute`: each modality's pass through the decoder is recomputed during backward (see `forward`), and within that each up-step. */
  constructor(
    channels: readonly number[] /* per level, finest first */,
    classes: number,
    readonly recompute = false,
  ) {
    super();
    this.ups = channels.slice(0, -1).map((c, i) => this.registerModule(`up${i + 1}`, new UpStep(channels[i + 1], c)));
    this.classifier = this.registerModule('classifier', kaimingConv3d(channels[0], classes, 1));
  }

  /**
   * `levels[l]` is (B, K, c_l, …): every modality's unmasked encoder maps. The modalities run as one
   * batch of B·K (the decoder is shared and instance norm is per sample, so this equals K separate
   * runs). Returns K softmax predictions (B, C, H, W, D), in modality order. With `recompute` the K runs
   * are separate, each recomputed during backward: what backward holds at once is then one modality's
   * activations, not K (the values agree with the batched run to float rounding).
   */
  forward(levels: Tensor[]): Tensor[] {
    return torch.tidy(() => {
      if (this.recompute) {
        return Array.from({ length: levels[0].size(1) }, (_, k) =>
          recomputable(true, this, (...maps) => this.decode(maps), levels.map((t) => t.select(1, k))),
        );
      }
      const [batch, modalities] = levels[0].shape;
      const probabilities = this.decode(levels.map((t) => t.flatten(0, 1)));
      const perModality = probabilities.reshape(batch, modalities, ...probabilities.shape.slice(1));
      return perModality.unbind(1);
    });
  }

  /** Softmax predictions (N, C, H, W, D) from maps `levels[l]` (N, c_l, …). */
  private decode(levels: Tensor[]): Tensor {
    return torch.tidy(() => {
      let decoded = levels[levels.length - 1];
      for (let level = levels.length - 2; level >= 0; level--) {
        const up = this.ups[level];
        decoded = recomputable(this.recompute, up, (below, skip) => up.forward(below, skip), [decoded, levels[level]]);
      }
      return this.classifier.forward(decoded).softmax(1);
    });
  }
}
