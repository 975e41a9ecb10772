// SAM-Med3D's prompt encoder: points → sparse embeddings (random-Fourier position + point-type
// embedding), a low-resolution mask → dense embedding.
import { torch, type Tensor } from '../../engine/index.ts';
import { embeddingSize, type SamMed3dConfig } from './config.ts';
import { Embedding, LayerNorm3d } from './layers.ts';

/** Point prompts in input-volume voxel indices along the three tensor axes. */
export interface PointPrompt {
  coords: Tensor /* (B, N, 3) */;
  /** 1 = positive (inside the object), 0 = negative, −1 = not a point. */
  labels: Tensor /* (B, N) */;
}

/**
 * Positional encoding with random spatial frequencies: a point p ∈ [0, 1]^3 maps to
 * [sin(f), cos(f), sin(f)] with f = 2π·(2p − 1)·G, G a fixed (3, F) Gaussian matrix (a buffer).
 */
export class PositionEmbeddingRandom3d extends torch.nn.Module {
  readonly gaussianMatrix: Tensor;

  constructor(readonly frequencies: number) {
    super();
    this.gaussianMatrix = this.registerBuffer('positional_encoding_gaussian_matrix', torch.randn([3, frequencies]));
  }

  /** Encodes points normalised to [0, 1]. */
  encode(unit: Tensor /* (…, 3) */): Tensor /* (…, 3F) */ {
    return torch.tidy(() => {
      const phase = unit.mul(2).sub(1).matmul(this.gaussianMatrix).mul(2 * Math.PI);
      const sin = phase.sin();
      return torch.cat([sin, phase.cos(), sin], -1);
    });
  }

  /**
   * The encoding of every voxel centre of a (X, Y, Z) grid, channels first. As in SAM-Med3D, the first
   * coordinate runs along the grid's second axis (normalised by X) and the second along its first axis
   * (normalised by Y); the trained weights expect exactly this.
   */
  grid(size: [number, number, number]): Tensor /* (3F, X, Y, Z) */ {
    const [x, y, z] = size;
    return torch.tidy(() => {
      const device = this.gaussianMatrix.device;
      const along = (axis: number, length: number) => torch.ones(size, { device }).cumsum(axis).sub(0.5).div(length);
      const coords = torch.stack([along(1, x), along(0, y), along(2, z)], -1);
      return this.encode(coords).permute(3, 0, 1, 2);
    });
  }

  /** Encodes points given in voxel units of a volume of `imageSize`. */
  encodeCoordinates(coords: Tensor /* (B, N, 3) */, imageSize: [number, number, number]): Tensor /* (B, N, 3F) */ {
    return torch.tidy(() => this.encode(coords.to('float32').div(torch.tensor(imageSize, [3], { device: coords.device }))));
  }
}

/** Embeds point prompts (sparse) and a low-resolution mask prompt (dense). */
export class PromptEncoder3d extends torch.nn.Module {
  readonly peLayer: PositionEmbeddingRandom3d;
  readonly pointEmbeddings: torch.nn.ModuleList<Embedding>;
  readonly notAPointEmbed: Embedding;
  readonly maskDownscaling: torch.nn.Sequential;
  readonly noMaskEmbed: Embedding;
  readonly gridSize: number;

  constructor(readonly config: SamMed3dConfig) {
    super();
    const dim = config.promptDim;
    const hidden = config.maskInChannels;
    this.gridSize = embeddingSize(config);
    this.peLayer = this.registerModule('pe_layer', new PositionEmbeddingRandom3d(dim / 3));
    // Negative then positive point type.
    this.pointEmbeddings = this.registerModule('point_embeddings', new torch.nn.ModuleList([new Embedding(1, dim), new Embedding(1, dim)]));
    this.notAPointEmbed = this.registerModule('not_a_point_embed', new Embedding(1, dim));
    this.maskDownscaling = this.registerModule(
      'mask_downscaling',
      new torch.nn.Sequential(
        new torch.nn.Conv3d(1, hidden / 4, 2, { stride: 2 }),
        new LayerNorm3d(hidden / 4),
        new torch.nn.GELU(),
        new torch.nn.Conv3d(hidden / 4, hidden, 2, { stride: 2 }),
        new LayerNorm3d(hidden),
        new torch.nn.GELU(),
        new torch.nn.Conv3d(hidden, dim, 1),
      ),
    );
    this.noMaskEmbed = this.registerModule('no_mask_embed', new Embedding(1, dim));
  }

  /** The positional encoding of the image embedding's grid. */
  densePositionalEncoding(): Tensor /* (1, promptDim, G, G, G) */ {
    const g = this.gridSize;
    return torch.tidy(() => this.peLayer.grid([g, g, g]).unsqueeze(0));
  }

  /**
   * Point embeddings, with one not-a-point entry appended (points are shifted to voxel centres first):
   * positional encoding plus the negative/positive embedding, or the not-a-point embedding alone.
   */
  embedPoints(points: PointPrompt): Tensor /* (B, N + 1, promptDim) */ {
    return torch.tidy(() => {
      const batch = points.labels.size(0);
      const device = points.coords.device;
      const coords = torch.cat([points.coords.to('float32').add(0.5), torch.zeros([batch, 1, 3], { device })], 1);
      const labels = torch.cat([points.labels.to('float32'), torch.full([batch, 1], -1, { device })], 1).unsqueeze(-1);
      const side = this.config.imageSize;
      const encoded = this.peLayer.encodeCoordinates(coords, [side, side, side]);
      const [negative, positive] = [...this.pointEmbeddings].map((embedding) => embedding.weight);
      const typed = encoded.add(labels.eq(0).to('float32').mul(negative)).add(labels.eq(1).to('float32').mul(positive));
      return torch.where(labels.eq(-1), this.notAPointEmbed.weight, typed);
    });
  }

  /** Sparse embeddings of the points and the dense embedding of the mask (or the learnt no-mask embedding). */
  forward(points: PointPrompt, mask: Tensor | null /* (B, 1, L, L, L), L = 4G */): { sparse: Tensor /* (B, N + 1, promptDim) */; dense: Tensor /* (B, promptDim, G, G, G) */ } {
    const low = 4 * this.gridSize;
    if (mask && (mask.ndim !== 5 || mask.size(1) !== 1 || mask.shape.slice(2).some((s) => s !== low))) {
      throw new Error(`SAM-Med3D prompt encoder: expected a mask prompt (B, 1, ${low}, ${low}, ${low}), got [${mask.shape.join(', ')}]`);
    }
    return torch.tidy(() => {
      const sparse = this.embedPoints(points);
      const batch = sparse.size(0);
      const g = this.gridSize;
      const dense = mask
        ? this.maskDownscaling.forward(mask)
        : this.noMaskEmbed.weight.reshape(1, -1, 1, 1, 1).expand(batch, this.config.promptDim, g, g, g).contiguous();
      return { sparse, dense };
    });
  }
}
