// A plain 3D U-Net in nnU-Net's style, trained with modality dropout: the standard approach SMML is compared
// with. The K modality images are its K input channels; a missing modality's channel is zeroed, per sample.
import { torch, type Tensor } from '../engine/index.ts';
import { checkModalityMask, ConvNormAct, kaimingConv3d, maskModalities } from './blocks.ts';
import { parseModelConfigOf, unetDownsampling, type UNetModelConfig } from './config.ts';
import type { SegmentationModel, SegmentationOutput, TrainingInputs } from './segmentation-model.ts';

/** nnU-Net's block: instance norm with affine parameters, LeakyReLU(0.01). */
const NORM_ACT = { norm: 'instance', negativeSlope: 0.01 } as const;

/** One resolution level: two ConvNormAct, the first optionally stride 2 (the encoder's downsampling). */
export class ConvStage extends torch.nn.Module {
  readonly first: ConvNormAct;
  readonly second: ConvNormAct;

  constructor(inChannels: number, outChannels: number, opts: { stride?: number } = {}) {
    super();
    this.first = this.registerModule('first', new ConvNormAct(inChannels, outChannels, { ...NORM_ACT, stride: opts.stride }));
    this.second = this.registerModule('second', new ConvNormAct(outChannels, outChannels, NORM_ACT));
  }

  forward(x: Tensor): Tensor {
    return torch.tidy(() => this.second.forward(this.first.forward(x)));
  }
}

/** What `UNetModel.encode` keeps: the U-Net's first convolution already mixes the modalities, so only the images. */
export interface UNetEncoding {
  images: Tensor;
}

const shapeText = (t: Tensor) => `[${t.shape.join(', ')}]`;

/**
 * Levels l = 0..L−1 with channels[l] (L = channels.length). Encoder level 0 keeps the resolution, each deeper
 * level starts with a stride-2 conv. Decoder level l < L−1: 2x2x2 stride-2 transposed conv from level l+1,
 * concatenation [upsampled, skip], a ConvStage 2·c_l → c_l. A 1x1x1 conv to C logits at level 0. No deep
 * supervision: the objective's head weights are SMML's four fusion-decoder levels.
 *
 * The whole network is its one "branch": it is trained by one optimiser.
 */
export class UNetModel extends torch.nn.Module implements SegmentationModel<UNetEncoding> {
  readonly config: UNetModelConfig;
  readonly branches: readonly torch.nn.Module[] = [this];
  readonly encoders: ConvStage[];
  /** Index l: the transposed conv from level l+1 to level l. */
  readonly upsamplers: torch.nn.ConvTranspose3d[];
  /** Index l: the decoder stage of level l. */
  readonly decoders: ConvStage[];
  readonly classifier: torch.nn.Conv3d;

  /** `config` is validated here as well. */
  constructor(config: UNetModelConfig) {
    super();
    this.config = parseModelConfigOf('unet', config);
    const { modalities, classes, channels } = this.config;
    this.encoders = channels.map((c, l) =>
      this.registerModule(`encoder${l}`, new ConvStage(l === 0 ? modalities : channels[l - 1], c, { stride: l === 0 ? 1 : 2 })),
    );
    const decoded = channels.slice(0, -1);
    this.upsamplers = decoded.map((c, l) => this.registerModule(`up${l}`, new torch.nn.ConvTranspose3d(channels[l + 1], c, 2, { stride: 2 })));
    this.decoders = decoded.map((c, l) => this.registerModule(`decoder${l}`, new ConvStage(2 * c, c)));
    this.classifier = this.registerModule('classifier', kaimingConv3d(channels[0], classes, 1));
  }

  private checkInputs(images: Tensor, mask: Tensor): void {
    const { modalities } = this.config;
    const downsampling = unetDownsampling(this.config);
    const [, k, ...spatial] = images.shape;
    if (images.ndim !== 5 || k !== modalities || spatial.some((s) => s % downsampling !== 0)) {
      throw new Error(`expected images (B, ${modalities}, H, W, D) with sides divisible by ${downsampling}, got ${shapeText(images)}`);
    }
    checkModalityMask(mask, images.size(0), modalities);
  }

  /** Logits (B, C, H, W, D) of `images` with the channels of the modalities absent in `mask` (B, K) zeroed. */
  logits(images: Tensor /* (B, K, H, W, D) */, mask: Tensor /* (B, K) */): Tensor {
    this.checkInputs(images, mask);
    return torch.tidy(() => {
      const skips: Tensor[] = [];
      let x = maskModalities(images, mask);
      for (const encoder of this.encoders) {
        x = encoder.forward(x);
        skips.push(x);
      }
      for (let l = this.decoders.length - 1; l >= 0; l--) {
        x = this.decoders[l].forward(torch.cat([this.upsamplers[l].forward(x), skips[l]], 1));
      }
      return this.classifier.forward(x);
    });
  }

  /** Training forward: one mask (B, K), as the U-Net has one branch; returns its one output. */
  forward(images: Tensor /* (B, K, H, W, D) */, masks: readonly Tensor[] /* [(B, K)] */, inputs: TrainingInputs = {}): SegmentationOutput[] {
    if (masks.length !== 1) throw new Error(`expected 1 modality mask (the U-Net has one branch), got ${masks.length}`);
    if (inputs.priors) throw new Error('the U-Net has no refinement network: it takes no semantic priors');
    return [{ logits: this.logits(images, masks[0]) }];
  }

  /** The U-Net is one branch (index 0). */
  forwardBranch(index: number, images: Tensor /* (B, K, H, W, D) */, mask: Tensor /* (B, K) */, inputs: TrainingInputs = {}): SegmentationOutput {
    if (index !== 0) throw new Error(`no branch ${index}: the U-Net has one`);
    return this.forward(images, [mask], inputs)[0];
  }

  /** Inference: softmax of the logits, (B, C, H, W, D). */
  predictProbabilities(images: Tensor /* (B, K, H, W, D) */, mask: Tensor /* (B, K) */): Tensor {
    return torch.tidy(() => this.logits(images, mask).softmax(1));
  }

  /** Nothing of the U-Net is independent of the subset: the encoding is the images. */
  encode(images: Tensor /* (B, K, H, W, D) */): UNetEncoding {
    return { images };
  }

  /** `predictProbabilities` on the encoded images: the whole network runs per subset. */
  fuseProbabilities(encoding: UNetEncoding, mask: Tensor /* (B, K) */): Tensor {
    return this.predictProbabilities(encoding.images, mask);
  }
}
