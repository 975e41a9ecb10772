// SAM-Med3D's mask decoder: a two-way transformer between prompt tokens and image tokens, then mask
// tokens turned by hypernetwork MLPs into weights over the upscaled image embedding.
import { torch, type Tensor } from '../../engine/index.ts';
import type { SamMed3dConfig } from './config.ts';
import { Embedding, LayerNorm3d, Mlp, MlpBlock } from './layers.ts';

/** Multi-head attention whose projections may narrow the width to dim / downsampleRate. */
export class TokenAttention extends torch.nn.Module {
  readonly qProj: torch.nn.Linear;
  readonly kProj: torch.nn.Linear;
  readonly vProj: torch.nn.Linear;
  readonly outProj: torch.nn.Linear;
  readonly internalDim: number;

  constructor(
    dim: number,
    readonly heads: number,
    downsampleRate = 1,
  ) {
    super();
    this.internalDim = dim / downsampleRate;
    this.qProj = this.registerModule('q_proj', new torch.nn.Linear(dim, this.internalDim));
    this.kProj = this.registerModule('k_proj', new torch.nn.Linear(dim, this.internalDim));
    this.vProj = this.registerModule('v_proj', new torch.nn.Linear(dim, this.internalDim));
    this.outProj = this.registerModule('out_proj', new torch.nn.Linear(this.internalDim, dim));
  }

  forward(q: Tensor /* (B, Nq, dim) */, k: Tensor /* (B, Nk, dim) */, v: Tensor /* (B, Nk, dim) */): Tensor /* (B, Nq, dim) */ {
    return torch.tidy(() => {
      const headDim = this.internalDim / this.heads;
      const [batch, queries] = q.shape;
      // (B, N, heads·headDim) → (B·heads, N, headDim)
      const heads = (t: Tensor) => t.reshape(batch, t.size(1), this.heads, headDim).transpose(1, 2).reshape(batch * this.heads, t.size(1), headDim);
      const attended = torch.scaledDotProductAttention(heads(this.qProj.forward(q)).mul(headDim ** -0.5), heads(this.kProj.forward(k)), heads(this.vProj.forward(v)), { scale: 1 });
      return this.outProj.forward(attended.reshape(batch, this.heads, queries, headDim).transpose(1, 2).reshape(batch, queries, this.internalDim));
    });
  }
}

/**
 * One two-way block: token self-attention, tokens → image cross-attention, token MLP, image → tokens
 * cross-attention, each followed by a residual sum and a LayerNorm. Position encodings are added to
 * queries and keys (not values); the first block's self-attention uses none.
 */
export class TwoWayAttentionBlock extends torch.nn.Module {
  readonly selfAttn: TokenAttention;
  readonly norm1: torch.nn.LayerNorm;
  readonly crossAttnTokenToImage: TokenAttention;
  readonly norm2: torch.nn.LayerNorm;
  readonly mlp: MlpBlock;
  readonly norm3: torch.nn.LayerNorm;
  readonly norm4: torch.nn.LayerNorm;
  readonly crossAttnImageToToken: TokenAttention;

  constructor(
    dim: number,
    heads: number,
    mlpDim: number,
    downsampleRate: number,
    readonly skipFirstLayerPe: boolean,
  ) {
    super();
    this.selfAttn = this.registerModule('self_attn', new TokenAttention(dim, heads));
    this.norm1 = this.registerModule('norm1', new torch.nn.LayerNorm(dim));
    this.crossAttnTokenToImage = this.registerModule('cross_attn_token_to_image', new TokenAttention(dim, heads, downsampleRate));
    this.norm2 = this.registerModule('norm2', new torch.nn.LayerNorm(dim));
    this.mlp = this.registerModule('mlp', new MlpBlock(dim, mlpDim, 'relu'));
    this.norm3 = this.registerModule('norm3', new torch.nn.LayerNorm(dim));
    this.norm4 = this.registerModule('norm4', new torch.nn.LayerNorm(dim));
    this.crossAttnImageToToken = this.registerModule('cross_attn_image_to_token', new TokenAttention(dim, heads, downsampleRate));
  }

  forward(
    queries: Tensor /* (B, T, dim) */,
    keys: Tensor /* (B, N, dim) */,
    queryPe: Tensor /* (B, T, dim) */,
    keyPe: Tensor /* (B, N, dim) */,
  ): { queries: Tensor; keys: Tensor } {
    return torch.tidy(() => {
      let tokens: Tensor;
      if (this.skipFirstLayerPe) {
        tokens = this.norm1.forward(this.selfAttn.forward(queries, queries, queries));
      } else {
        const q = queries.add(queryPe);
        tokens = this.norm1.forward(queries.add(this.selfAttn.forward(q, q, queries)));
      }
      const keysWithPe = keys.add(keyPe);
      tokens = this.norm2.forward(tokens.add(this.crossAttnTokenToImage.forward(tokens.add(queryPe), keysWithPe, keys)));
      tokens = this.norm3.forward(tokens.add(this.mlp.forward(tokens)));
      const image = this.norm4.forward(keys.add(this.crossAttnImageToToken.forward(keysWithPe, tokens.add(queryPe), tokens)));
      return { queries: tokens, keys: image };
    });
  }
}

/** The two-way transformer: `depth` blocks, a final tokens → image attention and LayerNorm. */
export class TwoWayTransformer extends torch.nn.Module {
  readonly layers: torch.nn.ModuleList<TwoWayAttentionBlock>;
  readonly finalAttnTokenToImage: TokenAttention;
  readonly normFinalAttn: torch.nn.LayerNorm;

  constructor(depth: number, dim: number, heads: number, mlpDim: number, downsampleRate: number) {
    super();
    const blocks = Array.from({ length: depth }, (_, i) => new TwoWayAttentionBlock(dim, heads, mlpDim, downsampleRate, i === 0));
    this.layers = this.registerModule('layers', new torch.nn.ModuleList(blocks));
    this.finalAttnTokenToImage = this.registerModule('final_attn_token_to_image', new TokenAttention(dim, heads, downsampleRate));
    this.normFinalAttn = this.registerModule('norm_final_attn', new torch.nn.LayerNorm(dim));
  }

  forward(
    image: Tensor /* (B, dim, G, G, G) */,
    imagePe: Tensor /* (B, dim, G, G, G) */,
    pointEmbedding: Tensor /* (B, T, dim) */,
  ): { queries: Tensor /* (B, T, dim) */; keys: Tensor /* (B, G^3, dim) */ } {
    return torch.tidy(() => {
      const keyPe = imagePe.flatten(2).transpose(1, 2);
      let state = { queries: pointEmbedding, keys: image.flatten(2).transpose(1, 2) };
      for (const layer of this.layers) state = layer.forward(state.queries, state.keys, pointEmbedding, keyPe);
      const attended = this.finalAttnTokenToImage.forward(state.queries.add(pointEmbedding), state.keys.add(keyPe), state.keys);
      return { queries: this.normFinalAttn.forward(state.queries.add(attended)), keys: state.keys };
    });
  }
}

/** Predicts mask logits at 4× the embedding resolution and their IoU scores from prompt and image embeddings. */
export class MaskDecoder3d extends torch.nn.Module {
  readonly transformer: TwoWayTransformer;
  readonly iouToken: Embedding;
  readonly maskTokens: Embedding;
  readonly outputUpscaling: torch.nn.Sequential;
  readonly outputHypernetworksMlps: torch.nn.ModuleList<Mlp>;
  readonly iouPredictionHead: Mlp;
  readonly maskTokenCount: number;

  constructor(readonly config: SamMed3dConfig) {
    super();
    const dim = config.promptDim;
    this.maskTokenCount = config.multimaskOutputs + 1;
    this.transformer = this.registerModule(
      'transformer',
      new TwoWayTransformer(config.decoderDepth, dim, config.decoderHeads, config.decoderMlpDim, config.attentionDownsampleRate),
    );
    this.iouToken = this.registerModule('iou_token', new Embedding(1, dim));
    this.maskTokens = this.registerModule('mask_tokens', new Embedding(this.maskTokenCount, dim));
    this.outputUpscaling = this.registerModule(
      'output_upscaling',
      new torch.nn.Sequential(
        new torch.nn.ConvTranspose3d(dim, dim / 4, 2, { stride: 2 }),
        new LayerNorm3d(dim / 4),
        new torch.nn.GELU(),
        new torch.nn.ConvTranspose3d(dim / 4, dim / 8, 2, { stride: 2 }),
        new torch.nn.GELU(),
      ),
    );
    const hypernetworks = Array.from({ length: this.maskTokenCount }, () => new Mlp(dim, dim, dim / 8, 3));
    this.outputHypernetworksMlps = this.registerModule('output_hypernetworks_mlps', new torch.nn.ModuleList(hypernetworks));
    this.iouPredictionHead = this.registerModule('iou_prediction_head', new Mlp(dim, config.iouHeadHidden, this.maskTokenCount, config.iouHeadDepth));
  }

  /**
   * Mask logits and IoU predictions: the first mask token's in single-mask mode, the other
   * `multimaskOutputs` tokens' in multimask mode.
   */
  forward(
    imageEmbedding: Tensor /* (B or 1, dim, G, G, G) */,
    imagePe: Tensor /* (1, dim, G, G, G) */,
    sparse: Tensor /* (B, T, dim) */,
    dense: Tensor /* (B, dim, G, G, G) */,
    multimask = false,
  ): { masks: Tensor /* (B, M, 4G, 4G, 4G) */; iou: Tensor /* (B, M) */ } {
    return torch.tidy(() => {
      const batch = sparse.size(0);
      if (imageEmbedding.size(0) !== batch && imageEmbedding.size(0) !== 1) {
        throw new Error(`SAM-Med3D mask decoder: ${imageEmbedding.size(0)} image embeddings for ${batch} prompts`);
      }
      const [, dim, x, y, z] = dense.shape;
      const outputTokens = torch.cat([this.iouToken.weight, this.maskTokens.weight], 0).unsqueeze(0).expand(batch, this.maskTokenCount + 1, dim);
      const tokens = torch.cat([outputTokens, sparse], 1);
      const source = imageEmbedding.expand(batch, dim, x, y, z).add(dense);
      const position = imagePe.expand(batch, dim, x, y, z);
      const { queries, keys } = this.transformer.forward(source, position, tokens);
      const upscaled = this.outputUpscaling.forward(keys.transpose(1, 2).reshape(batch, dim, x, y, z));
      const hyper = torch.stack(
        this.outputHypernetworksMlps.map((mlp, i) => mlp.forward(queries.select(1, i + 1))),
        1,
      );
      const [, channels, ux, uy, uz] = upscaled.shape;
      const masks = hyper.matmul(upscaled.reshape(batch, channels, ux * uy * uz)).reshape(batch, this.maskTokenCount, ux, uy, uz);
      const iou = this.iouPredictionHead.forward(queries.select(1, 0));
      const [first, count] = multimask ? [1, this.maskTokenCount - 1] : [0, 1];
      return { masks: masks.narrow(1, first, count), iou: iou.narrow(1, first, count) };
    });
  }
}
