// Small layers shared by SAM-Med3D's encoders and decoder, with PyTorch's parameter names.
import { torch, type Tensor } from '../../engine/index.ts';

/** A table of learnt vectors (torch.nn.Embedding): weight (count, dim), initialised N(0, 1). */
export class Embedding extends torch.nn.Module {
  readonly weight: Tensor;

  constructor(count: number, dim: number) {
    super();
    this.weight = this.registerParameter('weight', torch.randn([count, dim]));
  }
}

/**
 * Layer normalisation over the channels of a (B, C, D, H, W) map at each voxel (biased variance,
 * eps inside the square root), then a per-channel scale and shift.
 */
export class LayerNorm3d extends torch.nn.Module {
  readonly weight: Tensor;
  readonly bias: Tensor;

  constructor(
    readonly channels: number,
    readonly eps = 1e-6,
  ) {
    super();
    this.weight = this.registerParameter('weight', torch.ones([channels]));
    this.bias = this.registerParameter('bias', torch.zeros([channels]));
  }

  forward(x: Tensor /* (B, C, D, H, W) */): Tensor /* (B, C, D, H, W) */ {
    if (x.ndim !== 5 || x.size(1) !== this.channels) {
      throw new Error(`LayerNorm3d: expected input (B, ${this.channels}, D, H, W), got [${x.shape.join(', ')}]`);
    }
    return torch.tidy(() => torch.layerNorm(x.permute(0, 2, 3, 4, 1), [this.channels], this.weight, this.bias, this.eps).permute(0, 4, 1, 2, 3));
  }
}

/** lin2(act(lin1(x))): the transformer feed-forward block. */
export class MlpBlock extends torch.nn.Module {
  readonly lin1: torch.nn.Linear;
  readonly lin2: torch.nn.Linear;

  constructor(
    dim: number,
    hidden: number,
    readonly activation: 'gelu' | 'relu',
  ) {
    super();
    this.lin1 = this.registerModule('lin1', new torch.nn.Linear(dim, hidden));
    this.lin2 = this.registerModule('lin2', new torch.nn.Linear(hidden, dim));
  }

  forward(x: Tensor /* (…, dim) */): Tensor /* (…, dim) */ {
    return torch.tidy(() => {
      const hidden = this.lin1.forward(x);
      return this.lin2.forward(this.activation === 'gelu' ? torch.gelu(hidden) : hidden.relu());
    });
  }
}

/** `depth` linear layers (in → hidden → … → out) with ReLU between them, stored as `layers.N`. */
export class Mlp extends torch.nn.Module {
  readonly layers: torch.nn.ModuleList<torch.nn.Linear>;

  constructor(input: number, hidden: number, output: number, depth: number) {
    super();
    const widths = [input, ...Array<number>(depth - 1).fill(hidden), output];
    this.layers = this.registerModule('layers', new torch.nn.ModuleList(widths.slice(1).map((width, i) => new torch.nn.Linear(widths[i], width))));
  }

  forward(x: Tensor /* (…, input) */): Tensor /* (…, output) */ {
    const last = this.layers.length - 1;
    return torch.tidy(() => [...this.layers].reduce((value, layer, i) => (i < last ? layer.forward(value).relu() : layer.forward(value)), x));
  }
}
