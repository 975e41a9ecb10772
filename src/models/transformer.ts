// The transformers of mmFormer (docs/method.md §3): one pre-LN block type, used per modality (intra-modal)
// and over all modalities' tokens together (inter-modal).
import { torch, type Tensor } from '../engine/index.ts';
import { kaimingConv3d, recomputable } from './blocks.ts';

/** Multi-head self-attention: qkv projection without bias, attention-weight dropout, output projection. */
export class SelfAttention extends torch.nn.Module {
  readonly qkv: torch.nn.Linear;
  readonly proj: torch.nn.Linear;

  constructor(
    readonly dim: number,
    readonly heads: number,
    readonly dropout: number,
  ) {
    super();
    this.qkv = this.registerModule('qkv', new torch.nn.Linear(dim, 3 * dim, { bias: false }));
    this.proj = this.registerModule('proj', new torch.nn.Linear(dim, dim));
  }

  forward(x: Tensor /* (B, N, E) */): Tensor /* (B, N, E) */ {
    return torch.tidy(() => {
      const [batch, tokens] = x.shape;
      const headDim = this.dim / this.heads;
      // (B, N, 3E) → (3, B, heads, N, headDim)
      const [q, k, v] = this.qkv.forward(x).reshape(batch, tokens, 3, this.heads, headDim).permute(2, 0, 3, 1, 4).unbind(0);
      const attended = torch.scaledDotProductAttention(q, k, v, { dropout: this.dropout, training: this.training });
      return this.proj.forward(attended.transpose(1, 2).reshape(batch, tokens, this.dim));
    });
  }
}

/**
 * One pre-LN block: x ← x + pos; x ← x + Dropout(MHSA(LN(x))); x ← x + FFN(LN(x)) with
 * FFN = Linear → GELU → Dropout → Linear → Dropout.
 */
export class TransformerBlock extends torch.nn.Module {
  readonly attentionNorm: torch.nn.LayerNorm;
  readonly attention: SelfAttention;
  readonly ffnNorm: torch.nn.LayerNorm;
  readonly ffnIn: torch.nn.Linear;
  readonly ffnOut: torch.nn.Linear;

  constructor(
    dim: number,
    heads: number,
    ffnHidden: number,
    readonly dropout: number,
  ) {
    super();
    this.attentionNorm = this.registerModule('attentionNorm', new torch.nn.LayerNorm(dim));
    this.attention = this.registerModule('attention', new SelfAttention(dim, heads, dropout));
    this.ffnNorm = this.registerModule('ffnNorm', new torch.nn.LayerNorm(dim));
    this.ffnIn = this.registerModule('ffnIn', new torch.nn.Linear(dim, ffnHidden));
    this.ffnOut = this.registerModule('ffnOut', new torch.nn.Linear(ffnHidden, dim));
  }

  forward(tokens: Tensor /* (B, N, E) */, position: Tensor /* (1, N, E) */): Tensor /* (B, N, E) */ {
    return torch.tidy(() => {
      const drop = (t: Tensor) => torch.dropout(t, this.dropout, this.training);
      const x = tokens.add(position);
      const attended = x.add(drop(this.attention.forward(this.attentionNorm.forward(x))));
      const hidden = drop(torch.gelu(this.ffnIn.forward(this.ffnNorm.forward(attended))));
      return attended.add(drop(this.ffnOut.forward(hidden)));
    });
  }
}

/** (B, E, P, P, P) ↔ (B, P^3, E): tokens in row-major voxel order. */
export function mapToTokens(map: Tensor): Tensor {
  return torch.tidy(() => map.flatten(2).transpose(1, 2));
}

/**
 * The intra-modal transformer of one modality: 1x1x1 conv 16b→E on level 5, P^3 tokens, a learnable
 * position embedding (zeros at init), one block. Its position embedding is also this modality's
 * share of the inter-modal transformer's.
 */
export class IntraModalTransformer extends torch.nn.Module {
  readonly embed: torch.nn.Conv3d;
  readonly position: Tensor;
  readonly block: TransformerBlock;

  /** `recompute`: the whole transformer is recomputed during backward. */
  constructor(inChannels: number, dim: number, tokens: number, heads: number, ffnHidden: number, dropout: number, readonly recompute = false) {
    super();
    this.embed = this.registerModule('embed', kaimingConv3d(inChannels, dim, 1));
    this.position = this.registerParameter('position', torch.zeros([1, tokens, dim]));
    this.block = this.registerModule('block', new TransformerBlock(dim, heads, ffnHidden, dropout));
  }

  forward(level5: Tensor /* (B, 16b, P, P, P) */): Tensor /* (B, P^3, E) */ {
    return recomputable(this.recompute, this, (x) => torch.tidy(() => this.block.forward(mapToTokens(this.embed.forward(x)), this.position)), [level5]);
  }
}

/**
 * The inter-modal transformer: one block over the K modalities' masked tokens (K·P^3 tokens, with
 * the K position embeddings), reshaped to (B, K·E, P, P, P) — modality-major, each modality's E
 * channels together — and a 1x1x1 conv K·E → K·16b.
 */
export class InterModalTransformer extends torch.nn.Module {
  readonly block: TransformerBlock;
  readonly project: torch.nn.Conv3d;

  constructor(
    readonly modalities: number,
    readonly dim: number,
    outChannels: number,
    heads: number,
    ffnHidden: number,
    dropout: number,
    /** The whole transformer is recomputed during backward. */
    readonly recompute = false,
  ) {
    super();
    this.block = this.registerModule('block', new TransformerBlock(dim, heads, ffnHidden, dropout));
    this.project = this.registerModule('project', kaimingConv3d(modalities * dim, outChannels, 1));
  }

  forward(tokens: Tensor /* (B, K, P^3, E), masked */, positions: Tensor[] /* K × (1, P^3, E) */): Tensor /* (B, K·16b, P, P, P) */ {
    const run = (input: Tensor, ...embeddings: Tensor[]) =>
      torch.tidy(() => {
        const [batch, modalities, count, dim] = input.shape;
        const grid = Math.round(Math.cbrt(count));
        const mixed = this.block.forward(input.reshape(batch, modalities * count, dim), torch.cat(embeddings, 1));
        const map = mixed.reshape(batch, modalities, count, dim).transpose(2, 3).reshape(batch, modalities * dim, grid, grid, grid);
        return this.project.forward(map);
      });
    return recomputable(this.recompute, this, run, [tokens, ...positions]);
  }
}
