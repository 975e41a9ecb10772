// The fusion decoder (RFNet-style, docs/method.md §3): merges the K masked encoder maps level by level and
// decodes them into the branch's initial prediction, with deep-supervision heads at levels 5..2.
import { torch, type Tensor } from '../engine/index.ts';
import { kaimingConv3d, maskModalities, PreNormConv, recomputable, sharedModalities, UpStep, upsample } from './blocks.ts';

/** Pre-norm 1x1x1 conv K·c→c, pre-norm 3x3x3 conv, pre-norm 1x1x1 conv. */
export class FusionUnit extends torch.nn.Module {
  readonly reduce: PreNormConv;
  readonly mix: PreNormConv;
  readonly project: PreNormConv;

  constructor(modalities: number, channels: number) {
    super();
    this.reduce = this.registerModule('reduce', new PreNormConv(modalities * channels, channels, { kernel: 1 }));
    this.mix = this.registerModule('mix', new PreNormConv(channels, channels));
    this.project = this.registerModule('project', new PreNormConv(channels, channels, { kernel: 1 }));
  }

  /**
   * With `modalities` (their indices), `stacked` holds only those modalities' maps and the others count as masked:
   * their zero maps would add nothing to `reduce` (see `PreNormConv.forward`), so they are not read at all.
   */
  forward(stacked: Tensor /* (B, K·c or |modalities|·c, …), modality-major */, modalities?: readonly number[]): Tensor /* (B, c, …) */ {
    return torch.tidy(() => {
      const channels = this.mix.conv.inChannels;
      const inputChannels = modalities && torch.tensor(modalities.flatMap((k) => Array.from({ length: channels }, (_, i) => k * channels + i)), [modalities.length * channels], { dtype: 'int64', device: stacked.device });
      return this.project.forward(this.mix.forward(this.reduce.forward(stacked, inputChannels)));
    });
  }
}

export interface FusionDecoderOutput {
  logits: Tensor /* (B, C, H, W, D) */;
  /** Softmax of the heads at levels 5, 4, 3, 2 (in that order), each upsampled to (B, C, H, W, D). */
  deepSupervision: Tensor[];
}

export class FusionDecoder extends torch.nn.Module {
  readonly fusion: FusionUnit[];
  readonly ups: UpStep[];
  /** 1x1x1 conv heads on levels 5..2 (index 0 = level 5). */
  readonly heads: torch.nn.Conv3d[];
  readonly classifier: torch.nn.Conv3d;

  constructor(
    modalities: number,
    readonly channels: readonly number[] /* per level, finest first */,
    classes: number,
    /** The decoder is recomputed during backward, and within that each fusion unit (masking included) and up-step. */
    readonly recompute = false,
  ) {
    super();
    const levels = channels.length;
    this.fusion = channels.map((c, i) => this.registerModule(`fusion${i + 1}`, new FusionUnit(modalities, c)));
    this.ups = channels.slice(0, -1).map((c, i) => this.registerModule(`up${i + 1}`, new UpStep(channels[i + 1], c)));
    this.heads = [];
    for (let l = levels; l >= 2; l--) this.heads.push(this.registerModule(`head${l}`, kaimingConv3d(channels[l - 1], classes, 1)));
    this.classifier = this.registerModule('classifier', kaimingConv3d(channels[0], classes, 1));
  }

  /**
   * `encoderLevels[l]` is (B, K, c_l, …): every modality's encoder maps of levels 1–4, masked here with `mask`
   * (B, K); `bottleneck` (B, K·c_5, …) is the inter-modal output at level 5. Without `deepSupervision` the
   * auxiliary heads are not evaluated.
   */
  forward(encoderLevels: Tensor[], bottleneck: Tensor, mask: Tensor, opts: { deepSupervision: boolean }): FusionDecoderOutput {
    // Recomputed as a whole (its inputs are kept anyway), and unit by unit inside: the units' outputs exist during
    // this decoder's own backward only.
    const run = (...inputs: Tensor[]) => {
      const { logits, deepSupervision } = this.decode(inputs.slice(0, -2), inputs.at(-2)!, inputs.at(-1)!, opts);
      return [logits, ...deepSupervision];
    };
    const [logits, ...deepSupervision] = recomputable(this.recompute, this, run, [...encoderLevels, bottleneck, mask]);
    return { logits, deepSupervision };
  }

  private decode(encoderLevels: Tensor[], bottleneck: Tensor, mask: Tensor, opts: { deepSupervision: boolean }): FusionDecoderOutput {
    return torch.tidy(() => {
      const top = encoderLevels.length;
      const deepSupervision: Tensor[] = [];
      const supervise = (decoded: Tensor, level: number) => {
        if (!opts.deepSupervision) return;
        const probabilities = this.heads[top - level].forward(decoded).softmax(1);
        deepSupervision.push(upsample(probabilities, 2 ** level));
      };
      // When every sample has the same modalities (always so in inference), the fusion units read only theirs
      // instead of masking the others to zeros: the same sums, without the zeros' share of the work.
      const shared = sharedModalities(mask);
      const fuseMasked = (maps: Tensor, present: Tensor, unit: FusionUnit) => {
        if (!shared) return unit.forward(maskModalities(maps, present).flatten(1, 2));
        if (shared.length === maps.size(1)) return unit.forward(maps.flatten(1, 2));
        const kept = torch.tensor(shared, [shared.length], { dtype: 'int64', device: maps.device });
        return unit.forward(maps.indexSelect(1, kept).flatten(1, 2), shared);
      };
      const fuse = (level: number) =>
        recomputable(this.recompute, this.fusion[level], (maps, present) => fuseMasked(maps, present, this.fusion[level]), [encoderLevels[level], mask]);
      let decoded = this.fusion[top].forward(bottleneck);
      supervise(decoded, top);
      for (let level = top - 1; level >= 0; level--) {
        decoded = recomputable(this.recompute, this.ups[level], (below, skip) => this.ups[level].forward(below, skip), [decoded, fuse(level)]);
        if (level > 0) supervise(decoded, level);
      }
      return { logits: this.classifier.forward(decoded), deepSupervision };
    });
  }
}
