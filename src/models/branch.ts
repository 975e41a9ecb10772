// One branch of SMML (docs/method.md §3): modality encoders, intra-modal transformers, feature masking, the
// inter-modal transformer, the fusion decoder, and — in training only — the separate decoder and the
// semantic-guided refinement network.
import { torch, type Tensor } from '../engine/index.ts';
import { checkModalityMask, maskModalities, maskRows } from './blocks.ts';
import { levelChannels, parseModelConfigOf, tokenGrid, type SmmlModelConfig } from './config.ts';
import { ModalityEncoder } from './encoder.ts';
import { FusionDecoder } from './fusion-decoder.ts';
import { RefinementNetwork } from './refinement.ts';
import type { TrainingInputs } from './segmentation-model.ts';
import { SeparateDecoder } from './separate-decoder.ts';
import { InterModalTransformer, IntraModalTransformer } from './transformer.ts';

/** What the subset-independent part of a branch computes from the images (nothing here is masked). */
export interface BranchEncoding {
  /** Level l = 1..5 (index l − 1): (B, K, c_l, H/2^(l−1), W/2^(l−1), D/2^(l−1)), every modality's encoder maps. */
  levels: Tensor[];
  /** (B, K, P^3, E): every modality's intra-modal transformer output. */
  tokens: Tensor;
}

export interface BranchOutput {
  /** Ŷ: the initial prediction's logits (B, C, H, W, D). */
  logits: Tensor;
  /** Softmax probabilities of the deep-supervision heads at levels 5, 4, 3, 2, upsampled to (B, C, H, W, D). */
  deepSupervision: Tensor[];
  /**
   * Softmax probabilities (B, C, H, W, D) of the separate decoder on the unmasked encoder maps: one per modality in
   * modality order, or a single one holding each sample's chosen modality when `separateModalities` was given.
   */
  separate: Tensor[];
  /** F: the fused bottleneck (B, d_f, P, P, P), d_f = K·16b — the inter-modal transformer's output after its 1x1x1 conv. */
  bottleneck: Tensor;
  /** Ŷ^ref: the refinement network's logits (B, C, H, W, D); present when the SRN is enabled and priors were given. */
  refined?: Tensor;
}

const shapeText = (t: Tensor) => `[${t.shape.join(', ')}]`;

/** (B, K, c, …) → (B, 1, c, …): sample b keeps modality `modalities[b]`. */
function pickModalities(level: Tensor, modalities: readonly number[]): Tensor {
  return torch.tidy(() => {
    const count = level.size(1);
    const rows = torch.tensor(modalities.map((k, b) => b * count + k), [modalities.length], { dtype: 'int64', device: level.device });
    return level.flatten(0, 1).indexSelect(0, rows).unsqueeze(1);
  });
}

export class Branch extends torch.nn.Module {
  readonly encoders: ModalityEncoder[];
  readonly intraModal: IntraModalTransformer[];
  readonly interModal: InterModalTransformer;
  readonly fusionDecoder: FusionDecoder;
  readonly separateDecoder: SeparateDecoder;
  /** Null when the configuration switches the SRN off. */
  readonly refinement: RefinementNetwork | null;

  readonly config: SmmlModelConfig;

  /** `config` is validated here (a preset's or `parseModelConfig`'s result passes unchanged). */
  constructor(config: SmmlModelConfig) {
    super();
    this.config = parseModelConfigOf('smml', config);
    const { modalities, classes, embedDim, heads, ffnHidden, dropout } = this.config;
    const recompute = new Set(this.config.recompute);
    const channels = levelChannels(this.config);
    const top = channels[channels.length - 1];
    const tokens = tokenGrid(this.config) ** 3;
    this.encoders = Array.from({ length: modalities }, (_, k) => this.registerModule(`encoder${k}`, new ModalityEncoder(channels, recompute.has('encoders'))));
    this.intraModal = Array.from({ length: modalities }, (_, k) =>
      this.registerModule(`intraModal${k}`, new IntraModalTransformer(top, embedDim, tokens, heads, ffnHidden, dropout, recompute.has('transformers'))),
    );
    this.interModal = this.registerModule('interModal', new InterModalTransformer(modalities, embedDim, modalities * top, heads, ffnHidden, dropout, recompute.has('transformers')));
    this.fusionDecoder = this.registerModule('fusionDecoder', new FusionDecoder(modalities, channels, classes, recompute.has('fusionDecoder')));
    this.separateDecoder = this.registerModule('separateDecoder', new SeparateDecoder(channels, classes, recompute.has('separateDecoder')));
    const { enabled, filters, reweightHidden } = this.config.refinement;
    this.refinement = enabled ? this.registerModule('refinement', new RefinementNetwork(modalities, classes, filters, reweightHidden, recompute.has('refinement'))) : null;
  }

  private checkImages(images: Tensor): void {
    const { modalities, patch } = this.config;
    const [, k, ...spatial] = images.shape;
    if (images.ndim !== 5 || k !== modalities || spatial.some((s) => s !== patch)) {
      throw new Error(`expected images (B, ${modalities}, ${patch}, ${patch}, ${patch}), got ${shapeText(images)}`);
    }
  }

  private checkMask(mask: Tensor, batch: number): void {
    checkModalityMask(mask, batch, this.config.modalities);
  }

  /**
   * Runs the encoders and intra-modal transformers; nothing here depends on the modality subset, so
   * one encoding serves every subset (see `fuse`). With `needed` ([B][K]), modality k of sample b is only
   * computed where needed[b][k] is true; the others' maps are zeros, which is what masking would make of them
   * anyway. Every layer here works on each sample alone (instance norm), so computing a subset of the samples
   * changes nothing in the ones computed.
   */
  encode(images: Tensor /* (B, K, H, W, D) */, needed?: readonly (readonly boolean[])[] /* [B][K] */): BranchEncoding {
    this.checkImages(images);
    const batch = images.size(0);
    if (needed && (needed.length !== batch || needed.some((row) => row.length !== this.config.modalities))) {
      throw new Error(`encode: expected which modalities to compute as ${batch} rows of ${this.config.modalities} flags`);
    }
    // The samples each modality is computed for; null: every sample.
    const samplesOf = this.encoders.map((_, k) => {
      const samples = needed?.flatMap((row, b) => (row[k] ? [b] : []));
      return samples && samples.length < batch ? samples : null;
    });
    const computed = samplesOf.map((samples) => samples === null || samples.length > 0);
    const first = computed.indexOf(true);
    if (first < 0) throw new Error('encode: no modality is present');
    return torch.tidy(() => {
      const indices = samplesOf.map((samples) => samples && torch.tensor(samples, [samples.length], { dtype: 'int64', device: images.device }));
      // Modality k's input: the rows of its samples.
      const ownRows = (map: Tensor, k: number) => (indices[k] ? map.indexSelect(0, indices[k]) : map);
      // A map computed for modality k's samples, as the whole batch: zeros in the other rows.
      const wholeBatch = (map: Tensor, k: number): Tensor => {
        const samples = samplesOf[k];
        if (!samples) return map;
        const whole = torch.tidy(() => {
          const zeroRow = torch.zeros([1, ...map.shape.slice(1)], { dtype: map.dtype, device: map.device });
          return torch.cat(
            Array.from({ length: batch }, (_, b) => {
              const row = samples.indexOf(b);
              return row >= 0 ? map.narrow(0, row, 1) : zeroRow;
            }),
            0,
          );
        });
        map.dispose();
        return whole;
      };
      // Stacks one map of every modality along dim 1 (zeros for the skipped ones) and frees the parts.
      const gather = (parts: (Tensor | null)[]) => {
        const like = parts[first]!;
        const stacked = torch.stack(parts.map((p) => p ?? torch.zeros(like.shape, { dtype: like.dtype, device: like.device })), 1);
        for (const p of parts) p?.dispose();
        return stacked;
      };
      // Level by level, every modality at once: the next level reads its input from the stacked maps, so that no
      // map is held twice (once on its own and once in the stack) until backward.
      const levels: Tensor[] = [];
      let inputs = images.unbind(1).map((image) => image.unsqueeze(1));
      for (let l = 0; l < levelChannels(this.config).length; l++) {
        levels.push(gather(this.encoders.map((encoder, k) => (computed[k] ? wholeBatch(encoder.level(l, ownRows(inputs[k], k)), k) : null))));
        inputs = levels[l].unbind(1);
      }
      return { levels, tokens: gather(this.intraModal.map((transformer, k) => (computed[k] ? wholeBatch(transformer.forward(ownRows(inputs[k], k)), k) : null))) };
    });
  }

  /** Masks an encoding with `mask` and runs the inter-modal transformer and the fusion decoder. */
  private decode(encoding: BranchEncoding, mask: Tensor, deepSupervision: boolean): { logits: Tensor; deepSupervision: Tensor[]; bottleneck: Tensor } {
    this.checkMask(mask, encoding.tokens.size(0));
    return torch.tidy(() => {
      const positions = this.intraModal.map((t) => t.position);
      const bottleneck = this.interModal.forward(maskModalities(encoding.tokens, mask), positions);
      const decoded = this.fusionDecoder.forward(encoding.levels.slice(0, -1), bottleneck, mask, { deepSupervision });
      return { ...decoded, bottleneck };
    });
  }

  /** Initial logits (B, C, H, W, D) for one modality subset from an encoding made by `encode`. */
  fuse(encoding: BranchEncoding, mask: Tensor /* (B, K) */): Tensor {
    return torch.tidy(() => this.decode(encoding, mask, false).logits);
  }

  /**
   * Inference: the initial logits only (no deep supervision, separate decoder or SRN). The encoders of
   * the modalities a sample lacks are skipped for it.
   */
  predict(images: Tensor /* (B, K, H, W, D) */, mask: Tensor /* (B, K) */): Tensor /* (B, C, H, W, D) */ {
    this.checkImages(images);
    this.checkMask(mask, images.size(0));
    return torch.tidy(() => this.fuse(this.encode(images, maskRows(mask)), mask));
  }

  /** Training: every output of the branch (see BranchOutput). */
  forward(images: Tensor /* (B, K, H, W, D) */, mask: Tensor /* (B, K) */, inputs: TrainingInputs = {}): BranchOutput {
    this.checkImages(images);
    this.checkMask(mask, images.size(0));
    if (inputs.separateModalities) this.checkSeparateModalities(inputs.separateModalities, images.size(0));
    const refinement =
      this.refinement && inputs.priors
        ? { network: this.refinement, priors: inputs.priors, labels: this.checkRefinementInputs(inputs.priors, inputs.labels, images.size(0)) }
        : null;
    return torch.tidy(() => {
      // The separate decoder reads the unmasked maps: of every modality, or of each sample's drawn one.
      const separate = inputs.separateModalities;
      const encoding = this.encode(images, separate && maskRows(mask).map((row, b) => row.map((present, k) => present || separate[b] === k)));
      const { logits, deepSupervision, bottleneck } = this.decode(encoding, mask, true);
      const output: BranchOutput = {
        logits,
        deepSupervision,
        separate: this.separateDecoder.forward(separate ? encoding.levels.map((level) => pickModalities(level, separate)) : encoding.levels),
        bottleneck,
      };
      if (refinement) {
        const onehot = torch.oneHot(refinement.labels.to('int64'), this.config.classes).permute(0, 4, 1, 2, 3).to(refinement.priors.dtype);
        output.refined = refinement.network.forward(refinement.priors, mask, onehot, logits);
      }
      return output;
    });
  }

  private checkSeparateModalities(modalities: readonly number[], batch: number): void {
    const { modalities: count } = this.config;
    if (modalities.length !== batch || modalities.some((k) => !Number.isInteger(k) || k < 0 || k >= count)) {
      throw new Error(`expected one separate-decoder modality in 0..${count - 1} per sample (${batch}), got [${modalities.join(', ')}]`);
    }
  }

  /** Checks the SRN's inputs before any work is done and returns the labels. */
  private checkRefinementInputs(priors: Tensor, labels: Tensor | undefined, batch: number): Tensor {
    const { classes, modalities, patch } = this.config;
    const expectedPriors = [batch, classes * modalities, patch, patch, patch];
    if (priors.ndim !== 5 || priors.shape.some((s, i) => s !== expectedPriors[i])) {
      throw new Error(`expected priors (${expectedPriors.join(', ')}) (class-major, then modality), got ${shapeText(priors)}`);
    }
    if (!labels) throw new Error('the refinement network needs the labels with the priors');
    if (labels.ndim !== 4 || labels.size(0) !== batch || labels.shape.slice(1).some((s) => s !== patch)) {
      throw new Error(`expected labels (${batch}, ${patch}, ${patch}, ${patch}) of class indices, got ${shapeText(labels)}`);
    }
    return labels;
  }
}
