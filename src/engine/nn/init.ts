// Parameter initialisation (torch.nn.init): every function fills its tensor in place, without
// recording autograd history, and returns it.
import { where } from '../functional.ts';
import { noGrad, tidy, type Tensor } from '../tensor.ts';

export type Nonlinearity = 'linear' | 'conv3d' | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu' | 'selu';
export type FanMode = 'fanIn' | 'fanOut';

/**
 * The recommended gain for a nonlinearity (torch.nn.init.calculate_gain). `param` is the
 * negative slope of leaky_relu (0.01 when omitted).
 */
export function calculateGain(nonlinearity: Nonlinearity, param?: number): number {
  switch (nonlinearity) {
    case 'linear':
    case 'conv3d':
    case 'sigmoid':
      return 1;
    case 'tanh':
      return 5 / 3;
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu': {
      const slope = param ?? 0.01;
      return Math.sqrt(2 / (1 + slope * slope));
    }
    case 'selu':
      return 3 / 4;
  }
}

/**
 * fan_in and fan_out of a weight shaped (out, in, k…): in·∏k and out·∏k. For a convolution with
 * groups the second dimension already is in/groups; for a transposed convolution (in, out/groups, k…)
 * the roles follow the tensor's layout, as in PyTorch.
 */
export function fanInAndFanOut(shape: number[]): { fanIn: number; fanOut: number } {
  if (shape.length < 2) {
    throw new Error(`fan in and fan out need a tensor with at least 2 dimensions, got shape [${shape.join(', ')}]`);
  }
  const receptiveField = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: shape[1] * receptiveField, fanOut: shape[0] * receptiveField };
}

export interface KaimingOptions {
  /** Negative slope of the leaky_relu that follows (0 by default, as PyTorch). */
  a?: number;
  mode?: FanMode;
  nonlinearity?: Nonlinearity;
}

function kaimingStd(t: Tensor, opts: KaimingOptions): number {
  const { fanIn, fanOut } = fanInAndFanOut(t.shape);
  const fan = (opts.mode ?? 'fanIn') === 'fanIn' ? fanIn : fanOut;
  if (fan === 0) throw new Error(`kaiming initialisation of a tensor shaped [${t.shape.join(', ')}]: its fan is 0`);
  return calculateGain(opts.nonlinearity ?? 'leaky_relu', opts.a ?? 0) / Math.sqrt(fan);
}

/** U(−b, b) with b = gain·√(3/fan) (He et al. 2015). */
export function kaimingUniform_(t: Tensor, opts: KaimingOptions = {}): Tensor {
  const bound = Math.sqrt(3) * kaimingStd(t, opts);
  return t.uniform_(-bound, bound);
}

/** N(0, std²) with std = gain/√fan (He et al. 2015). */
export function kaimingNormal_(t: Tensor, opts: KaimingOptions = {}): Tensor {
  return t.normal_(0, kaimingStd(t, opts));
}

function xavierStd(t: Tensor, gain: number): number {
  const { fanIn, fanOut } = fanInAndFanOut(t.shape);
  return gain * Math.sqrt(2 / (fanIn + fanOut));
}

/** U(−b, b) with b = gain·√(6/(fan_in + fan_out)) (Glorot and Bengio 2010). */
export function xavierUniform_(t: Tensor, gain = 1): Tensor {
  const bound = Math.sqrt(3) * xavierStd(t, gain);
  return t.uniform_(-bound, bound);
}

/** N(0, std²) with std = gain·√(2/(fan_in + fan_out)). */
export function xavierNormal_(t: Tensor, gain = 1): Tensor {
  return t.normal_(0, xavierStd(t, gain));
}

/**
 * PyTorch's default for convolution and linear layers: weight kaiming_uniform_(a = √5), which is
 * U(±1/√fan_in), and bias U(±1/√fan_in), fan_in taken from the weight's layout.
 */
export function defaultLayerInit_(weight: Tensor, bias: Tensor | null): void {
  kaimingUniform_(weight, { a: Math.sqrt(5) });
  if (bias) {
    const { fanIn } = fanInAndFanOut(weight.shape);
    const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
    bias.uniform_(-bound, bound);
  }
}

export function uniform_(t: Tensor, low = 0, high = 1): Tensor {
  return t.uniform_(low, high);
}

export function normal_(t: Tensor, mean = 0, std = 1): Tensor {
  return t.normal_(mean, std);
}

export function constant_(t: Tensor, value: number): Tensor {
  return t.fill_(value);
}

export function zeros_(t: Tensor): Tensor {
  return t.zero_();
}

export function ones_(t: Tensor): Tensor {
  return t.fill_(1);
}

// Rejection sampling redraws the values outside [low, high]; each round keeps a fraction equal to the
// interval's probability, so an interval holding almost no mass would never finish.
const TRUNCATED_NORMAL_ROUNDS = 1000;

/** N(mean, std²) restricted to [low, high] (values outside are redrawn). */
export function truncNormal_(t: Tensor, opts: { mean?: number; std?: number; low?: number; high?: number } = {}): Tensor {
  const { mean = 0, std = 1, low = -2, high = 2 } = opts;
  if (!(low < high)) throw new Error(`truncNormal_: the interval [${low}, ${high}] is empty`);
  noGrad(() =>
    tidy(() => {
      t.normal_(mean, std);
      for (let round = 0; round < TRUNCATED_NORMAL_ROUNDS; round++) {
        const outside = t.lt(low).logicalOr(t.gt(high));
        if (!outside.any().item()) return;
        const redrawn = t.clone().normal_(mean, std);
        t.copy_(where(outside, redrawn, t));
      }
      throw new Error(`truncNormal_: [${low}, ${high}] holds too little of N(${mean}, ${std}²) to sample from`);
    }),
  );
  return t;
}
