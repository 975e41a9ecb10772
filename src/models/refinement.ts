// The semantic-guided refinement network (SRN, docs/method.md §3; training only): re-weights each class's
// per-modality prior maps by how well they cover that class's ground-truth region, then refines the
// branch's initial prediction with a 3D U-Net.
//
// Prior channel order (as the prior store keeps them): class-major, then modality — channel c·K + k
// holds class c's prior from modality k.
import { torch, type Tensor } from '../engine/index.ts';
import { ConvNormAct, kaimingConv3d, recomputable } from './blocks.ts';

const LEAKY_SLOPE = 0.2;

/**
 * Per sample and class c, with Y_c the ground-truth region of c, N the voxels and f_c = |Y_c|/N:
 * for each modality k the mean of the prior over the volume restricted to Y_c divided by f_c (that is,
 * the mean prior inside Y_c; 0 for an absent class), plus f_c itself — K + 1 numbers. Returns them as
 * (B, K + 1, C): modalities first, the fraction last.
 */
export function regionStatistics(
  priors: Tensor /* (B, C·K, H, W, D) */,
  onehot: Tensor /* (B, C, H, W, D) float */,
): Tensor /* (B, K + 1, C) */ {
  return torch.tidy(() => {
    const [batch, classes] = onehot.shape;
    const modalities = priors.size(1) / classes;
    const region = onehot.flatten(2); // (B, C, N)
    const voxels = region.size(2);
    const counts = region.sum(2); // (B, C)
    const inside = priors.reshape(batch, classes, modalities, voxels).mul(region.unsqueeze(2)).sum(3); // (B, C, K)
    const meanInside = inside.div(counts.clampMin(1).unsqueeze(2));
    const fraction = counts.div(voxels).unsqueeze(2);
    return torch.cat([meanInside, fraction], 2).transpose(1, 2);
  });
}

/** The refinement U-Net's block: conv → batch norm → ReLU. */
const convBnRelu = (inChannels: number, outChannels: number, stride = 1) => new ConvNormAct(inChannels, outChannels, { norm: 'batch', negativeSlope: 0, stride });

/**
 * Class-wise modality re-weighting: an MLP of 1x1x1 convs (K+1 → hidden… → K, LeakyReLU 0.2 between)
 * on the region statistics of each class, sigmoid → one weight per (class, modality) that scales that
 * class's prior from that modality. The MLP is shared by all classes (they lie along a spatial axis).
 */
export class ModalityReweighting extends torch.nn.Module {
  readonly layers: torch.nn.Conv3d[];

  constructor(modalities: number, hidden: readonly number[]) {
    super();
    const widths = [modalities + 1, ...hidden, modalities];
    this.layers = widths.slice(1).map((w, i) => this.registerModule(`layer${i + 1}`, kaimingConv3d(widths[i], w, 1)));
  }

  /** Weights (B, C, K) in (0, 1). */
  weights(statistics: Tensor /* (B, K + 1, C) */): Tensor {
    return torch.tidy(() => {
      let x = statistics.reshape(...statistics.shape, 1, 1);
      this.layers.forEach((layer, i) => {
        x = layer.forward(x);
        if (i < this.layers.length - 1) x = torch.leakyRelu(x, LEAKY_SLOPE);
      });
      return x.sigmoid().reshape(statistics.size(0), -1, statistics.size(2)).transpose(1, 2);
    });
  }

  /** The priors with each class's modality maps scaled by their weights, same layout. */
  forward(priors: Tensor /* (B, C·K, H, W, D) */, onehot: Tensor /* (B, C, H, W, D) */): Tensor {
    return torch.tidy(() => {
      const [batch, classes, ...spatial] = onehot.shape;
      const weights = this.weights(regionStatistics(priors, onehot)); // (B, C, K)
      const modalities = weights.size(2);
      const scaled = priors.reshape(batch, classes, modalities, -1).mul(weights.unsqueeze(3));
      return scaled.reshape(batch, classes * modalities, ...spatial);
    });
  }
}

/**
 * 3D U-Net with `filters` per level (finest first): level 1 two conv–BN–ReLU blocks, each deeper
 * level a stride-2 conv–BN–ReLU then one more; going up a 2x2x2 transposed conv (stride 2),
 * concatenation with the skip (skip first) and two conv–BN–ReLU blocks; a 1x1x1 conv to the classes.
 */
export class RefinementUNet extends torch.nn.Module {
  readonly down: ConvNormAct[][];
  readonly up: torch.nn.ConvTranspose3d[];
  readonly merge: ConvNormAct[][];
  readonly classifier: torch.nn.Conv3d;

  /** `recompute`: each conv–BN–ReLU (with the concatenation before the first of a level going up) is recomputed during backward. */
  constructor(
    inChannels: number,
    filters: readonly number[],
    classes: number,
    readonly recompute = false,
  ) {
    super();
    this.down = filters.map((f, l) => {
      const first = l === 0 ? convBnRelu(inChannels, f) : convBnRelu(filters[l - 1], f, 2);
      return [this.registerModule(`down${l + 1}a`, first), this.registerModule(`down${l + 1}b`, convBnRelu(f, f))];
    });
    this.up = filters.slice(0, -1).map((f, l) =>
      this.registerModule(`up${l + 1}`, new torch.nn.ConvTranspose3d(filters[l + 1], f, 2, { stride: 2 })),
    );
    this.merge = filters.slice(0, -1).map((f, l) => [
      this.registerModule(`merge${l + 1}a`, convBnRelu(2 * f, f)),
      this.registerModule(`merge${l + 1}b`, convBnRelu(f, f)),
    ]);
    this.classifier = this.registerModule('classifier', kaimingConv3d(filters[0], classes, 1));
  }

  forward(x: Tensor /* (B, in, H, W, D) */): Tensor /* (B, C, H, W, D) logits */ {
    return torch.tidy(() => {
      const block = (layer: ConvNormAct, input: Tensor) => recomputable(this.recompute, layer, (h) => layer.forward(h), [input]);
      // Maps are freed as soon as nothing reads them: without gradients (a recomputed forward) that is all that
      // holds them, and the full-resolution maps here are the widest of the branch.
      const skips: Tensor[] = [];
      let h = x;
      for (const [a, b] of this.down) {
        const input = h;
        h = torch.tidy(() => block(b, block(a, input)));
        skips.push(h);
      }
      for (let l = this.up.length - 1; l >= 0; l--) {
        const [a, b] = this.merge[l];
        const below = h;
        h = torch.tidy(() => {
          const merged = recomputable(this.recompute, a, (skip, up) => a.forward(torch.cat([skip, up], 1)), [skips[l], this.up[l].forward(below)]);
          return block(b, merged);
        });
        below.dispose();
        skips[l].dispose();
      }
      return this.classifier.forward(h);
    });
  }
}

export class RefinementNetwork extends torch.nn.Module {
  readonly reweighting: ModalityReweighting;
  readonly unet: RefinementUNet;

  constructor(
    readonly modalities: number,
    readonly classes: number,
    filters: readonly number[],
    reweightHidden: readonly number[],
    /** The network is recomputed during backward, and within that its re-weighting and every U-Net block. */
    readonly recompute = false,
  ) {
    super();
    this.reweighting = this.registerModule('reweighting', new ModalityReweighting(modalities, reweightHidden));
    this.unet = this.registerModule('unet', new RefinementUNet(classes * modalities + classes, filters, classes, recompute));
  }

  /**
   * Refined logits from the priors (the missing modalities' priors are zeroed here with `mask`),
   * the ground truth and the branch's initial logits (only their detached softmax is used).
   */
  forward(
    priors: Tensor /* (B, C·K, H, W, D), class-major then modality */,
    mask: Tensor /* (B, K) bool */,
    onehot: Tensor /* (B, C, H, W, D) float */,
    initialLogits: Tensor /* (B, C, H, W, D) */,
  ): Tensor /* (B, C, H, W, D) logits */ {
    return torch.tidy(() => {
      const batch = priors.size(0);
      const present = mask.to({ dtype: priors.dtype, device: priors.device }).reshape(batch, 1, this.modalities, 1);
      const initial = initialLogits.detach().softmax(1);
      // Recomputed as a whole, and block by block inside: during forward only the input and the logits are kept, and
      // the U-Net's block outputs exist during this network's own backward only.
      const run = (maps: Tensor, presence: Tensor, truth: Tensor, probabilities: Tensor) =>
        torch.tidy(() => {
          const input = recomputable(
            this.recompute,
            this.reweighting,
            (m, p, t, i) => torch.cat([this.reweighting.forward(m.reshape(batch, this.classes, this.modalities, -1).mul(p).reshape(m.shape), t), i], 1),
            [maps, presence, truth, probabilities],
          );
          return this.unet.forward(input);
        });
      return recomputable(this.recompute, this, run, [priors, present, onehot, initial]);
    });
  }
}
