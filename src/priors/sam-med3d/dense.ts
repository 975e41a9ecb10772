// Matrix products of the network on the CPU. The libtorch we link multiplies matrices with the reference
// BLAS (about 1 GFLOP/s) while its convolutions run on oneDNN (20–30× faster), so on the CPU a linear layer
// runs as a 1x1 convolution over the tokens, and attention as two 1x1 convolutions per head. Elsewhere
// (CUDA, other dtypes) the plain operations run.
import { torch, type Tensor } from '../../engine/index.ts';

const onOneDnn = (t: Tensor) => t.device === 'cpu' && t.dtype === 'float32';

/** y = x Wᵀ + b: x (…, in), weight (out, in), bias (out). */
export function denseLinear(x: Tensor /* (…, in) */, weight: Tensor, bias: Tensor | null): Tensor /* (…, out) */ {
  if (!onOneDnn(x)) return torch.linear(x, weight, bias);
  return torch.tidy(() => {
    const [outFeatures, inFeatures] = weight.shape;
    const leading = x.shape.slice(0, -1);
    const tokens = x.numel / inFeatures;
    const input = x.reshape(1, tokens, 1, inFeatures).permute(0, 3, 1, 2);
    const output = torch.conv2d(input, weight.reshape(outFeatures, inFeatures, 1, 1), bias);
    return output.reshape(outFeatures, tokens).transpose(0, 1).reshape(...leading, outFeatures);
  });
}

/** torch.nn.Linear whose product runs through `denseLinear`. */
export class DenseLinear extends torch.nn.Linear {
  override forward(x: Tensor /* (…, in) */): Tensor /* (…, out) */ {
    if (x.ndim === 0 || x.size(-1) !== this.inFeatures) {
      throw new Error(`Linear: expected input (…, ${this.inFeatures}), got [${x.shape.join(', ')}]`);
    }
    return denseLinear(x, this.weight, this.bias);
  }
}

/** softmax(q kᵀ) v over the last two dimensions; `q` carries any scaling. */
export function denseAttention(q: Tensor /* (B, Nq, c) */, k: Tensor /* (B, Nk, c) */, v: Tensor /* (B, Nk, dv) */): Tensor /* (B, Nq, dv) */ {
  if (!onOneDnn(q)) return torch.scaledDotProductAttention(q, k, v, { scale: 1 });
  const [batch, queries, channels] = q.shape;
  const [, keys, valueChannels] = v.shape;
  const outputs: Tensor[] = [];
  try {
    for (let b = 0; b < batch; b++) {
      // Per (batch, head) item: the scores are (1, Nk, Nq, 1), keys along the channels, so the
      // softmax runs over dimension 1 and the value product is a second 1x1 convolution.
      outputs.push(
        torch.tidy(() => {
          const scores = torch.conv2d(q.select(0, b).transpose(0, 1).reshape(1, channels, queries, 1), k.select(0, b).reshape(keys, channels, 1, 1));
          const weights = scores.softmax(1);
          scores.dispose();
          const values = torch.conv2d(weights, v.select(0, b).transpose(0, 1).reshape(valueChannels, keys, 1, 1));
          return values.reshape(valueChannels, queries).transpose(0, 1);
        }),
      );
    }
    return torch.stack(outputs, 0);
  } finally {
    torch.dispose(outputs);
  }
}
