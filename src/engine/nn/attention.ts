// Multi-head attention with PyTorch's parameter layout (in_proj_weight, in_proj_bias, out_proj.*).
import { empty, zeros } from '../creation.ts';
import { dropout, linear } from '../functional.ts';
import { tidy, type Tensor } from '../tensor.ts';
import { xavierUniform_ } from './init.ts';
import { Linear } from './linear.ts';
import { Module } from './module.ts';

export interface MultiheadAttentionOptions {
  /** Dropout on the attention weights in training mode (0). */
  dropout?: number;
  /** Biases on the input and output projections (true). */
  bias?: boolean;
  /** Inputs and output are (B, L, E) instead of PyTorch's default (L, B, E). */
  batchFirst?: boolean;
}

export interface AttentionCallOptions {
  /** (B, S), or (S) unbatched: true (or −∞ in a float mask) ignores that key for every query. */
  keyPaddingMask?: Tensor;
  /** (L, S), or (B·heads, L, S): true blocks a query→key pair; a float mask is added to the scores. */
  attnMask?: Tensor;
  /** Also return the attention weights (false: they cost B·heads·L·S values). */
  needWeights?: boolean;
  /** Average the returned weights over heads (true), giving (B, L, S) instead of (B, heads, L, S). */
  averageAttnWeights?: boolean;
}

/** A bool mask becomes 0 / −∞; a float mask is used as it is. */
function additiveMask(mask: Tensor, like: Tensor): Tensor {
  if (mask.dtype !== 'bool') return mask;
  return zeros(mask.shape, { dtype: like.dtype, device: like.device }).maskedFill(mask, -Infinity);
}

/**
 * softmax(Q Kᵀ/√d + mask) V over `numHeads` heads of size embedDim/numHeads, with learnt input
 * projections (in_proj_weight (3E, E) holding W_q, W_k, W_v, in_proj_bias (3E)) and output projection
 * out_proj (Linear E → E). Shapes: query (L, B, E), key/value (S, B, E) — (B, L, E) / (B, S, E) with
 * batchFirst — or unbatched (L, E) / (S, E). Defaults as PyTorch: xavier-uniform in_proj_weight,
 * zero biases, out_proj.weight initialised as a Linear.
 */
export class MultiheadAttention extends Module {
  readonly inProjWeight: Tensor;
  readonly inProjBias: Tensor | null;
  readonly outProj: Linear;
  readonly headDim: number;
  readonly dropout: number;
  readonly batchFirst: boolean;

  constructor(
    readonly embedDim: number,
    readonly numHeads: number,
    opts: MultiheadAttentionOptions = {},
  ) {
    super();
    if (!Number.isInteger(numHeads) || numHeads < 1 || embedDim % numHeads !== 0) {
      throw new Error(`MultiheadAttention: embedDim (${embedDim}) must be divisible by numHeads (${numHeads})`);
    }
    this.headDim = embedDim / numHeads;
    this.dropout = opts.dropout ?? 0;
    this.batchFirst = opts.batchFirst ?? false;
    const bias = opts.bias ?? true;
    this.inProjWeight = this.registerParameter('in_proj_weight', xavierUniform_(empty([3 * embedDim, embedDim])));
    this.inProjBias = bias ? this.registerParameter('in_proj_bias', zeros([3 * embedDim])) : null;
    this.outProj = this.registerModule('out_proj', new Linear(embedDim, embedDim, { bias }));
    this.outProj.bias?.zero_();
  }

  /**
   * Attends from `query` to `key`/`value` (self-attention when they are omitted). Returns the output,
   * shaped like `query`, and the attention weights (B, L, S) or (B, heads, L, S) when asked for.
   */
  forward(query: Tensor, key: Tensor = query, value: Tensor = key, opts: AttentionCallOptions = {}): { output: Tensor; weights: Tensor | null } {
    this.checkInputs(query, key, value);
    return tidy(() => {
      const unbatched = query.ndim === 2;
      const toBatchFirst = (t: Tensor) => (unbatched ? t.unsqueeze(0) : this.batchFirst ? t : t.transpose(0, 1));
      const [q, k, v] = [query, key, value].map(toBatchFirst);
      const [batch, targetLength, sourceLength] = [q.size(0), q.size(1), k.size(1)];
      const [wq, wk, wv] = this.inProjWeight.chunk(3, 0);
      const [bq, bk, bv] = this.inProjBias ? this.inProjBias.chunk(3, 0) : [null, null, null];
      // (B, length, E) → (B, heads, length, headDim)
      const heads = (t: Tensor, length: number) => t.reshape(batch, length, this.numHeads, this.headDim).transpose(1, 2);
      const qh = heads(linear(q, wq, bq), targetLength).mul(1 / Math.sqrt(this.headDim));
      const kh = heads(linear(k, wk, bk), sourceLength);
      const vh = heads(linear(v, wv, bv), sourceLength);
      let scores = qh.matmul(kh.transpose(-2, -1));
      if (opts.attnMask) {
        const mask = additiveMask(opts.attnMask, scores);
        scores = scores.add(mask.ndim === 3 ? mask.reshape(batch, this.numHeads, targetLength, sourceLength) : mask);
      }
      if (opts.keyPaddingMask) {
        scores = scores.add(additiveMask(opts.keyPaddingMask, scores).reshape(batch, 1, 1, sourceLength));
      }
      const weights = dropout(scores.softmax(-1), this.dropout, this.training);
      const merged = weights.matmul(vh).transpose(1, 2).reshape(batch, targetLength, this.embedDim);
      const projected = this.outProj.forward(merged);
      const output = unbatched ? projected.squeeze(0) : this.batchFirst ? projected : projected.transpose(0, 1);
      if (!opts.needWeights) return { output, weights: null };
      const perHead = (opts.averageAttnWeights ?? true) ? weights.mean(1) : weights;
      return { output, weights: unbatched ? perHead.squeeze(0) : perHead };
    });
  }

  private checkInputs(query: Tensor, key: Tensor, value: Tensor): void {
    const describe = () => `query [${query.shape.join(', ')}], key [${key.shape.join(', ')}], value [${value.shape.join(', ')}]`;
    const rank = query.ndim;
    const batchDim = this.batchFirst ? 0 : 1;
    const lengthDim = rank === 2 ? 0 : 1 - batchDim;
    const consistent =
      (rank === 2 || rank === 3) &&
      key.ndim === rank &&
      value.ndim === rank &&
      [query, key, value].every((t) => t.size(-1) === this.embedDim) &&
      key.size(lengthDim) === value.size(lengthDim) &&
      (rank === 2 || (key.size(batchDim) === query.size(batchDim) && value.size(batchDim) === query.size(batchDim)));
    if (!consistent) {
      const layout = this.batchFirst ? '(B, L, E)' : '(L, B, E)';
      throw new Error(`MultiheadAttention: expected ${layout} or (L, E) inputs with E = ${this.embedDim} and equal key/value lengths, got ${describe()}`);
    }
  }
}
