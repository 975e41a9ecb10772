// SamMed3d: the image encoder, prompt encoder and mask decoder under the checkpoint's top-level names.
import { torch, type Tensor } from '../../engine/index.ts';
import { embeddingSize, lowResolutionSize, parseSamMed3dConfig, VIT_B_ORI, type SamMed3dConfig } from './config.ts';
import { ImageEncoder3d } from './image-encoder.ts';
import { MaskDecoder3d } from './mask-decoder.ts';
import { PromptEncoder3d, type PointPrompt } from './prompt-encoder.ts';

export interface MaskPrediction {
  /** Mask logits at the decoder's resolution; fed back as the next mask prompt. */
  lowResLogits: Tensor /* (B, M, L, L, L) */;
  /** Predicted IoU of each mask. */
  iou: Tensor /* (B, M) */;
}

/**
 * SAM-Med3D. Encode a volume once with `embedImage`, then prompt it any number of times with
 * `predictMasks`; `upscaleLogits` brings low-resolution logits to the input size.
 */
export class SamMed3d extends torch.nn.Module {
  readonly config: SamMed3dConfig;
  readonly imageEncoder: ImageEncoder3d;
  readonly promptEncoder: PromptEncoder3d;
  readonly maskDecoder: MaskDecoder3d;

  constructor(config: SamMed3dConfig = VIT_B_ORI) {
    super();
    this.config = parseSamMed3dConfig(config);
    this.imageEncoder = this.registerModule('image_encoder', new ImageEncoder3d(this.config));
    this.promptEncoder = this.registerModule('prompt_encoder', new PromptEncoder3d(this.config));
    this.maskDecoder = this.registerModule('mask_decoder', new MaskDecoder3d(this.config));
    this.eval();
  }

  /** Side of the image embedding grid (G) and of the low-resolution masks (L = 4G). */
  get sizes(): { image: number; embedding: number; lowRes: number } {
    return { image: this.config.imageSize, embedding: embeddingSize(this.config), lowRes: lowResolutionSize(this.config) };
  }

  embedImage(volume: Tensor /* (B, 1, S, S, S), normalised intensities */): Tensor /* (B, promptDim, G, G, G) */ {
    return this.imageEncoder.forward(volume);
  }

  /** Masks for point prompts (and the previous low-resolution logits as the mask prompt, or none). */
  predictMasks(
    embedding: Tensor /* (B or 1, promptDim, G, G, G) */,
    points: PointPrompt,
    maskPrompt: Tensor | null /* (B, 1, L, L, L) */,
    multimask = false,
  ): MaskPrediction {
    return torch.tidy(() => {
      const { sparse, dense } = this.promptEncoder.forward(points, maskPrompt);
      const { masks, iou } = this.maskDecoder.forward(embedding, this.promptEncoder.densePositionalEncoding(), sparse, dense, multimask);
      return { lowResLogits: masks, iou };
    });
  }

  /** Trilinear (half-pixel centres) upsampling of low-resolution logits to the input size. */
  upscaleLogits(lowResLogits: Tensor /* (B, M, L, L, L) */): Tensor /* (B, M, S, S, S) */ {
    const side = this.config.imageSize;
    return torch.interpolate(lowResLogits, [side, side, side], 'trilinear', false);
  }
}
