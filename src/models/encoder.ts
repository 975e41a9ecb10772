// The modality encoder (docs/method.md §3): one per modality, five levels of widths b, 2b, 4b, 8b, 16b.
import { torch, type Tensor } from '../engine/index.ts';
import { kaimingConv3d, PreNormConv, recomputable, ResidualPair } from './blocks.ts';

/**
 * Level 1: a 3x3x3 conv 1→b (reflect padding) and a residual pair; levels 2–5: a stride-2 pre-norm
 * conv doubling the width, then a residual pair. Returns the five maps, finest first.
 */
export class ModalityEncoder extends torch.nn.Module {
  readonly stem: torch.nn.Conv3d;
  readonly downs: PreNormConv[];
  readonly pairs: ResidualPair[];

  /** `recompute`: each level is recomputed during backward (its output, the next level's input, is kept). */
  constructor(
    readonly channels: readonly number[] /* per level, finest first */,
    readonly recompute = false,
  ) {
    super();
    this.stem = this.registerModule('stem', kaimingConv3d(1, channels[0], 3, { paddingMode: 'reflect' }));
    this.downs = channels.slice(1).map((c, i) => this.registerModule(`down${i + 2}`, new PreNormConv(channels[i], c, { stride: 2 })));
    this.pairs = channels.map((c, i) => this.registerModule(`pair${i + 1}`, new ResidualPair(c)));
  }

  forward(image: Tensor /* (B, 1, H, W, D) */): Tensor[] /* level l: (B, b·2^(l−1), H/2^(l−1), …) */ {
    return torch.tidy(() => {
      const levels = [this.level(0, image)];
      for (let l = 1; l < this.channels.length; l++) levels.push(this.level(l, levels[l - 1]));
      return levels;
    });
  }

  /** Level l ∈ 0..4 (index) from the image (l = 0) or from level l − 1's map. */
  level(l: number, input: Tensor /* (B, 1 or c_(l−1), …) */): Tensor /* (B, c_l, …) */ {
    return recomputable(this.recompute, this, (x) => this.pairs[l].forward(l === 0 ? this.stem.forward(x) : this.downs[l - 1].forward(x)), [input]);
  }
}
