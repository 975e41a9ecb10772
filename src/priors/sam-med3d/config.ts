// Sizes of the SAM-Med3D network. The default is the published `vit_b_ori` model; small values keep tests fast.
import { z } from 'zod';

const positive = z.number().int().positive();

const configSchema = z
  .object({
    /** Side of the cubic input volume (voxels). */
    imageSize: positive,
    /** Side of a cubic patch of the image encoder; the image embedding is imageSize/patchSize per side. */
    patchSize: positive,
    /** Token width of the image encoder. */
    embedDim: positive,
    /** Transformer blocks of the image encoder. */
    depth: positive,
    heads: positive,
    /** MLP hidden width = embedDim · mlpRatio. */
    mlpRatio: z.number().positive(),
    /** Blocks (0-based) that attend over the whole volume; the others attend within windows. */
    globalAttentionIndexes: z.array(z.number().int().nonnegative()),
    /** Side of a window of tokens (the token grid is zero-padded to a multiple of it). */
    windowSize: positive,
    /** Width of prompt embeddings, of the image embedding after the neck, and of the mask decoder. */
    promptDim: positive,
    /** Channels of the dense mask prompt's downscaling convolutions (a quarter of it, then all). */
    maskInChannels: positive,
    decoderDepth: positive,
    decoderHeads: positive,
    decoderMlpDim: positive,
    /** The decoder's cross attentions project to promptDim / this. */
    attentionDownsampleRate: positive,
    /** Masks predicted in multimask mode (one more mask token is used for single-mask output). */
    multimaskOutputs: positive,
    iouHeadDepth: positive,
    iouHeadHidden: positive,
  })
  .strict()
  .superRefine((c, ctx) => {
    const fail = (message: string) => ctx.addIssue({ code: 'custom', message });
    if (c.imageSize % c.patchSize !== 0) fail(`imageSize (${c.imageSize}) must be a multiple of patchSize (${c.patchSize})`);
    if (c.embedDim % c.heads !== 0) fail(`embedDim (${c.embedDim}) must be divisible by heads (${c.heads})`);
    if (!Number.isInteger(c.embedDim * c.mlpRatio)) fail(`embedDim · mlpRatio (${c.embedDim * c.mlpRatio}) must be an integer`);
    // The random-Fourier encoding makes promptDim/3 frequencies and concatenates sin, cos, sin.
    if (c.promptDim % 3 !== 0) fail(`promptDim (${c.promptDim}) must be divisible by 3`);
    if (c.promptDim % 8 !== 0) fail(`promptDim (${c.promptDim}) must be divisible by 8 (the upscaling halves it twice after a quarter)`);
    if (c.maskInChannels % 4 !== 0) fail(`maskInChannels (${c.maskInChannels}) must be divisible by 4`);
    const internal = c.promptDim / c.attentionDownsampleRate;
    if (!Number.isInteger(internal) || internal % c.decoderHeads !== 0 || c.promptDim % c.decoderHeads !== 0) {
      fail(`promptDim (${c.promptDim}) and promptDim / attentionDownsampleRate must be divisible by decoderHeads (${c.decoderHeads})`);
    }
    const outside = c.globalAttentionIndexes.filter((i) => i >= c.depth);
    if (outside.length > 0) fail(`globalAttentionIndexes [${outside.join(', ')}] are not blocks of a depth-${c.depth} encoder`);
  });

export type SamMed3dConfig = z.infer<typeof configSchema>;

/** `vit_b_ori`: 128^3 input, 16^3 patches, ViT-B encoder with windows of 14 and global attention in blocks 2, 5, 8, 11. */
export const VIT_B_ORI: Readonly<SamMed3dConfig> = Object.freeze({
  imageSize: 128,
  patchSize: 16,
  embedDim: 768,
  depth: 12,
  heads: 12,
  mlpRatio: 4,
  globalAttentionIndexes: [2, 5, 8, 11],
  windowSize: 14,
  promptDim: 384,
  maskInChannels: 16,
  decoderDepth: 2,
  decoderHeads: 8,
  decoderMlpDim: 2048,
  attentionDownsampleRate: 2,
  multimaskOutputs: 3,
  iouHeadDepth: 3,
  iouHeadHidden: 256,
});

/** Validates a configuration (e.g. read from a weights file); errors name `source`. */
export function parseSamMed3dConfig(value: unknown, source = 'SAM-Med3D configuration'): SamMed3dConfig {
  const parsed = configSchema.safeParse(value);
  if (!parsed.success) throw new Error(`${source}: invalid SAM-Med3D configuration\n${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** Side of the image embedding's token grid. */
export function embeddingSize(config: SamMed3dConfig): number {
  return config.imageSize / config.patchSize;
}

/** Side of the decoder's low-resolution masks (the embedding upscaled twice by 2), which is also the mask prompt's size. */
export function lowResolutionSize(config: SamMed3dConfig): number {
  return 4 * embeddingSize(config);
}
