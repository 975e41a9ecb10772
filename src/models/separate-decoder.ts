// The separate decoder (docs/method.md §3, training only): one plain U-Net decoder shared by all modalities,
// run on each modality's unmasked encoder maps, giving an auxiliary prediction per modality.
import { torch, type Tensor } from '../engine/index.ts';
import { kaimingConv3d, UpStep } from './blocks.ts';

export class SeparateDecoder extends torch.nn.Module {
  readonly ups: UpStep[];
  readonly classifier: torch.nn.Conv3d;

  constructor(channels: readonly number[] /* per level, finest first */, classes: number) {
    super();
    this.ups = channels.slice(0, -1).map((c, i) => this.registerModule(`up${i + 1}`, new UpStep(channels[i + 1], c)));
    this.classifier = this.registerModule('classifier', kaimingConv3d(channels[0], classes, 1));
  }

  /**
   * `levels[l]` is (B, K, c_l, …): every modality's unmasked encoder maps. The modalities run as one
   * batch of B·K (the decoder is shared and instance norm is per sample, so this equals K separate
   * runs). Returns K softmax predictions (B, C, H, W, D), in modality order.
   */
  forward(levels: Tensor[]): Tensor[] {
    return torch.tidy(() => {
      const [batch, modalities] = levels[0].shape;
      const flat = levels.map((t) => t.flatten(0, 1));
      let decoded = flat[flat.length - 1];
      for (let level = flat.length - 2; level >= 0; level--) decoded = this.ups[level].forward(decoded, flat[level]);
      const probabilities = this.classifier.forward(decoded).softmax(1);
      const perModality = probabilities.reshape(batch, modalities, ...probabilities.shape.slice(1));
      return perModality.unbind(1);
    });
  }
}
