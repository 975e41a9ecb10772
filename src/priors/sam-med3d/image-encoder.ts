// SAM-Med3D's image encoder: a 3D ViT (ViTDet style) with absolute and decomposed relative positions,
// window attention in most blocks, and a convolutional neck to the prompt width.
import { torch, type Tensor } from '../../engine/index.ts';
import { embeddingSize, type SamMed3dConfig } from './config.ts';
import { LayerNorm3d, MlpBlock } from './layers.ts';

type Size3 = [number, number, number];

/**
 * Cuts a token grid into cubic windows, zero-padding each spatial side at its end to a multiple of
 * `window`. Windows are ordered by (batch, d, h, w) of their position, tokens inside by (d, h, w).
 */
export function windowPartition(x: Tensor /* (B, D, H, W, C) */, window: number): { windows: Tensor /* (B·nW, w, w, w, C) */; padded: Size3 } {
  return torch.tidy(() => {
    const [batch, d, h, w, channels] = x.shape;
    const padded = [d, h, w].map((side) => Math.ceil(side / window) * window) as Size3;
    const [dp, hp, wp] = padded;
    const filled = dp > d || hp > h || wp > w ? torch.pad(x, [0, 0, 0, wp - w, 0, hp - h, 0, dp - d]) : x;
    const windows = filled
      .reshape(batch, dp / window, window, hp / window, window, wp / window, window, channels)
      .permute(0, 1, 3, 5, 2, 4, 6, 7)
      .reshape(-1, window, window, window, channels);
    return { windows, padded };
  });
}

/** The inverse of `windowPartition`: reassembles the padded grid and drops the padding. */
export function windowUnpartition(windows: Tensor /* (B·nW, w, w, w, C) */, window: number, padded: Size3, size: Size3): Tensor /* (B, D, H, W, C) */ {
  return torch.tidy(() => {
    const [dp, hp, wp] = padded;
    const [d, h, w] = size;
    const channels = windows.size(-1);
    const batch = windows.size(0) / ((dp * hp * wp) / window ** 3);
    const grid = windows
      .reshape(batch, dp / window, hp / window, wp / window, window, window, window, channels)
      .permute(0, 1, 4, 2, 5, 3, 6, 7)
      .reshape(batch, dp, hp, wp, channels);
    return dp > d || hp > h || wp > w ? grid.slice(1, 0, d).slice(2, 0, h).slice(3, 0, w).contiguous() : grid;
  });
}

/** Rows of a relative-position table for every (query, key) pair along one axis: table[q − k + size − 1]. */
function relativeRows(table: Tensor /* (2·size − 1, c) */, size: number): Tensor /* (size, size, c) */ {
  if (table.size(0) !== 2 * size - 1) {
    throw new Error(`relative position table has ${table.size(0)} rows, an axis of ${size} tokens needs ${2 * size - 1}`);
  }
  const index = Array.from({ length: size * size }, (_, i) => Math.floor(i / size) - (i % size) + size - 1);
  return torch.tidy(() => table.indexSelect(0, torch.tensor(index, [index.length], { dtype: 'int64', device: table.device })).reshape(size, size, -1));
}

/**
 * Queries and keys extended so that one product gives the attention logits with the decomposed relative
 * position bias of MViTv2: query·key = scale·(q·k) + q·Rd[qd − kd] + q·Rh[qh − kh] + q·Rw[qw − kw],
 * where R are the learnt per-axis tables (rows indexed by offset + size − 1). The query gets the three
 * bias vectors q·R (one entry per key coordinate), the key one-hot codes of its coordinates, so no
 * (tokens × tokens) bias tensor is ever built.
 */
export function relativePositionQueryKey(
  q: Tensor /* (B, N, c), N = D·H·W tokens in (d, h, w) order */,
  k: Tensor /* (B, N, c) */,
  tables: [Tensor, Tensor, Tensor] /* (2D − 1, c), (2H − 1, c), (2W − 1, c) */,
  size: Size3,
  scale: number,
): { query: Tensor /* (B, N, c + D + H + W) */; key: Tensor /* (B, N, c + D + H + W) */ } {
  return torch.tidy(() => {
    const [batch, tokens, channels] = q.shape;
    const [d, h, w] = size;
    if (tokens !== d * h * w) throw new Error(`relative positions: ${tokens} tokens do not fill a ${d}×${h}×${w} grid`);
    const grid = q.reshape(batch, d, h, w, channels);
    const [rd, rh, rw] = tables.map((table, axis) => relativeRows(table, size[axis]));
    const biasD = torch.einsum('bdhwc,dkc->bdhwk', grid, rd).reshape(batch, tokens, d);
    const biasH = torch.einsum('bdhwc,hkc->bdhwk', grid, rh).reshape(batch, tokens, h);
    const biasW = torch.einsum('bdhwc,wkc->bdhwk', grid, rw).reshape(batch, tokens, w);
    const position = torch.arange(tokens, undefined, 1, { device: q.device });
    const codes = [
      torch.oneHot(position.div(h * w, 'floor'), d),
      torch.oneHot(position.div(w, 'floor').remainder(h), h),
      torch.oneHot(position.remainder(w), w),
    ];
    const keyCodes = torch.cat(codes, 1).to(q.dtype).unsqueeze(0).expand(batch, tokens, d + h + w);
    return { query: torch.cat([q.mul(scale), biasD, biasH, biasW], 2), key: torch.cat([k, keyCodes], 2) };
  });
}

/** Multi-head self-attention over a (B, D, H, W, C) grid with decomposed relative positions. */
export class GridAttention extends torch.nn.Module {
  readonly qkv: torch.nn.Linear;
  readonly proj: torch.nn.Linear;
  readonly relPosD: Tensor;
  readonly relPosH: Tensor;
  readonly relPosW: Tensor;
  readonly headDim: number;

  constructor(
    readonly dim: number,
    readonly heads: number,
    /** The grid the relative tables are sized for (a window, or the whole token grid). */
    readonly inputSize: Size3,
  ) {
    super();
    this.headDim = dim / heads;
    this.qkv = this.registerModule('qkv', new torch.nn.Linear(dim, 3 * dim));
    this.proj = this.registerModule('proj', new torch.nn.Linear(dim, dim));
    const [relD, relH, relW] = inputSize.map((side) => torch.zeros([2 * side - 1, this.headDim]));
    this.relPosD = this.registerParameter('rel_pos_d', relD);
    this.relPosH = this.registerParameter('rel_pos_h', relH);
    this.relPosW = this.registerParameter('rel_pos_w', relW);
  }

  forward(x: Tensor /* (B, D, H, W, C) */): Tensor /* (B, D, H, W, C) */ {
    return torch.tidy(() => {
      const [batch, d, h, w] = x.shape;
      const tokens = d * h * w;
      // (B, N, 3C) → (3, B·heads, N, headDim)
      const [q, k, v] = this.qkv
        .forward(x)
        .reshape(batch, tokens, 3, this.heads, this.headDim)
        .permute(2, 0, 3, 1, 4)
        .reshape(3, batch * this.heads, tokens, this.headDim)
        .unbind(0);
      const { query, key } = relativePositionQueryKey(q, k, [this.relPosD, this.relPosH, this.relPosW], [d, h, w], this.headDim ** -0.5);
      const attended = torch.scaledDotProductAttention(query, key, v, { scale: 1 });
      const merged = attended.reshape(batch, this.heads, d, h, w, this.headDim).permute(0, 2, 3, 4, 1, 5).reshape(batch, d, h, w, this.dim);
      return this.proj.forward(merged);
    });
  }
}

/** Pre-norm transformer block; attention runs within windows (window > 0) or over the whole grid (window 0). */
export class EncoderBlock extends torch.nn.Module {
  readonly norm1: torch.nn.LayerNorm;
  readonly attn: GridAttention;
  readonly norm2: torch.nn.LayerNorm;
  readonly mlp: MlpBlock;

  constructor(
    dim: number,
    heads: number,
    mlpRatio: number,
    readonly window: number,
    gridSize: number,
  ) {
    super();
    this.norm1 = this.registerModule('norm1', new torch.nn.LayerNorm(dim, { eps: 1e-6 }));
    const attended = window > 0 ? window : gridSize;
    this.attn = this.registerModule('attn', new GridAttention(dim, heads, [attended, attended, attended]));
    this.norm2 = this.registerModule('norm2', new torch.nn.LayerNorm(dim, { eps: 1e-6 }));
    this.mlp = this.registerModule('mlp', new MlpBlock(dim, Math.round(dim * mlpRatio), 'gelu'));
  }

  forward(x: Tensor /* (B, D, H, W, C) */): Tensor /* (B, D, H, W, C) */ {
    return torch.tidy(() => {
      const normed = this.norm1.forward(x);
      let attended: Tensor;
      if (this.window > 0) {
        // The padding is added after the norm, so padded tokens are zero vectors that still act as keys.
        const { windows, padded } = windowPartition(normed, this.window);
        attended = windowUnpartition(this.attn.forward(windows), this.window, padded, [x.size(1), x.size(2), x.size(3)]);
      } else {
        attended = this.attn.forward(normed);
      }
      const residual = x.add(attended);
      return residual.add(this.mlp.forward(this.norm2.forward(residual)));
    });
  }
}

/**
 * Non-overlapping cubic patches → tokens: a Conv3d with kernel = stride = patch (its parameters), computed
 * as a linear map of each flattened patch, which is the same sum and far faster than a 16^3 kernel.
 */
export class PatchEmbed3d extends torch.nn.Module {
  readonly proj: torch.nn.Conv3d;

  constructor(
    readonly patchSize: number,
    embedDim: number,
  ) {
    super();
    this.proj = this.registerModule('proj', new torch.nn.Conv3d(1, embedDim, patchSize, { stride: patchSize }));
  }

  forward(x: Tensor /* (B, 1, S, S, S) */): Tensor /* (B, G, G, G, E) */ {
    return torch.tidy(() => {
      const p = this.patchSize;
      const [batch, , d, h, w] = x.shape;
      const [gd, gh, gw] = [d / p, h / p, w / p];
      const patches = x.reshape(batch, gd, p, gh, p, gw, p).permute(0, 1, 3, 5, 2, 4, 6).reshape(batch, gd, gh, gw, p ** 3);
      return torch.linear(patches, this.proj.weight.reshape(this.proj.outChannels, p ** 3), this.proj.bias);
    });
  }
}

/** The image encoder: (B, 1, S, S, S) → image embedding (B, promptDim, G, G, G), G = S / patch. */
export class ImageEncoder3d extends torch.nn.Module {
  readonly patchEmbed: PatchEmbed3d;
  readonly posEmbed: Tensor;
  readonly blocks: torch.nn.ModuleList<EncoderBlock>;
  readonly neck: torch.nn.Sequential;

  constructor(readonly config: SamMed3dConfig) {
    super();
    const grid = embeddingSize(config);
    this.patchEmbed = this.registerModule('patch_embed', new PatchEmbed3d(config.patchSize, config.embedDim));
    this.posEmbed = this.registerParameter('pos_embed', torch.zeros([1, grid, grid, grid, config.embedDim]));
    const blocks = Array.from({ length: config.depth }, (_, i) => {
      const window = config.globalAttentionIndexes.includes(i) ? 0 : config.windowSize;
      return new EncoderBlock(config.embedDim, config.heads, config.mlpRatio, window, grid);
    });
    this.blocks = this.registerModule('blocks', new torch.nn.ModuleList(blocks));
    this.neck = this.registerModule(
      'neck',
      new torch.nn.Sequential(
        new torch.nn.Conv3d(config.embedDim, config.promptDim, 1, { bias: false }),
        new LayerNorm3d(config.promptDim),
        new torch.nn.Conv3d(config.promptDim, config.promptDim, 3, { padding: 1, bias: false }),
        new LayerNorm3d(config.promptDim),
      ),
    );
  }

  forward(x: Tensor /* (B, 1, S, S, S) */): Tensor /* (B, promptDim, G, G, G) */ {
    const side = this.config.imageSize;
    if (x.ndim !== 5 || x.size(1) !== 1 || x.shape.slice(2).some((s) => s !== side)) {
      throw new Error(`SAM-Med3D image encoder: expected input (B, 1, ${side}, ${side}, ${side}), got [${x.shape.join(', ')}]`);
    }
    return torch.tidy(() => {
      let tokens = this.patchEmbed.forward(x).add(this.posEmbed);
      for (const block of this.blocks) {
        const next = block.forward(tokens);
        tokens.dispose();
        tokens = next;
      }
      return this.neck.forward(tokens.permute(0, 4, 1, 2, 3));
    });
  }
}
