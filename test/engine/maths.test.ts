// Element-wise maths, comparisons, type promotion and reductions against hand-computed values.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch } from '../../src/engine/index.ts';
import { assertClose } from './helpers.ts';

const f64 = (data: number[], shape?: number[]) => torch.tensor(data, shape, { dtype: 'float64' });
const int = (data: number[], dtype: 'int32' | 'int64' = 'int64') => torch.tensor(data, undefined, { dtype });

describe('element-wise arithmetic', () => {
  const a = f64([1, -2, 3, 4], [2, 2]);
  const b = f64([2, 4, -1, 0.5], [2, 2]);

  test('+ − × ÷ with tensors, scalars and alpha', () => {
    assert.deepEqual(a.add(b).toArray(), [3, 2, 2, 4.5]);
    assert.deepEqual(a.add(b, 2).toArray(), [5, 6, 1, 5]);
    assert.deepEqual(a.add(1.5).toArray(), [2.5, -0.5, 4.5, 5.5]);
    assert.deepEqual(a.sub(b).toArray(), [-1, -6, 4, 3.5]);
    assert.deepEqual(a.sub(b, 0.5).toArray(), [0, -4, 3.5, 3.75]);
    assert.deepEqual(a.rsub(10).toArray(), [9, 12, 7, 6]);
    assert.deepEqual(a.mul(b).toArray(), [2, -8, -3, 2]);
    assert.deepEqual(a.mul(-2).toArray(), [-2, 4, -6, -8]);
    assert.deepEqual(a.div(b).toArray(), [0.5, -0.5, -3, 8]);
    assert.deepEqual(a.div(4).toArray(), [0.25, -0.5, 0.75, 1]);
    assert.deepEqual(a.rdiv(12).toArray(), [12, -6, 4, 3]);
    assert.deepEqual(f64([7, -7]).div(2, 'trunc').toArray(), [3, -3]);
    assert.deepEqual(f64([7, -7]).div(2, 'floor').toArray(), [3, -4]);
    assert.deepEqual(f64([7, -7]).remainder(3).toArray(), [1, 2]);
  });

  test('broadcasting follows trailing dimensions', () => {
    const row = f64([10, 20]);
    const col = f64([1, 2, 3], [3, 1]);
    assert.deepEqual(col.add(row).shape, [3, 2]);
    assert.deepEqual(col.add(row).toArray(), [11, 21, 12, 22, 13, 23]);
  });

  test('pow with tensor and scalar exponents', () => {
    assert.deepEqual(f64([2, 3, 4]).pow(2).toArray(), [4, 9, 16]);
    assert.deepEqual(f64([4, 9]).pow(0.5).toArray(), [2, 3]);
    assert.deepEqual(f64([2, 2, 3]).pow(f64([0, 3, -1])).toArray(), [1, 8, 1 / 3]);
    assert.deepEqual(int([2, 3]).pow(3).toArray(), [8, 27]);
    assert.equal(int([2, 3]).pow(3).dtype, 'int64');
  });

  test('unary functions', () => {
    const x = f64([0.25, 1, 4]);
    assertClose(x.neg(), [-0.25, -1, -4]);
    assertClose(f64([-1.5, 0, 2]).abs(), [1.5, 0, 2]);
    assertClose(x.exp(), [Math.exp(0.25), Math.E, Math.exp(4)], { rtol: 1e-15 });
    assertClose(x.log(), [Math.log(0.25), 0, Math.log(4)], { rtol: 1e-15 });
    assertClose(x.sqrt(), [0.5, 1, 2]);
    assertClose(x.rsqrt(), [2, 1, 0.5]);
    assertClose(x.square(), [0.0625, 1, 16]);
    assertClose(x.reciprocal(), [4, 1, 0.25]);
    assertClose(x.log1p(), [Math.log1p(0.25), Math.log(2), Math.log(5)], { rtol: 1e-15 });
    assertClose(x.expm1(), [Math.expm1(0.25), Math.E - 1, Math.expm1(4)], { rtol: 1e-14 });
    assertClose(x.log2(), [-2, 0, 2]);
    assertClose(x.tanh(), [Math.tanh(0.25), Math.tanh(1), Math.tanh(4)], { rtol: 1e-14 });
    assertClose(x.sigmoid(), [1 / (1 + Math.exp(-0.25)), 1 / (1 + Math.exp(-1)), 1 / (1 + Math.exp(-4))], { rtol: 1e-14 });
    assertClose(f64([-1, 0.5]).relu(), [0, 0.5]);
    assertClose(f64([0, Math.PI / 2]).sin(), [0, 1], { atol: 1e-15 });
    assertClose(f64([0, Math.PI]).cos(), [1, -1], { atol: 1e-15 });
    assert.deepEqual(f64([-1.5, 1.5, 2.5]).floor().toArray(), [-2, 1, 2]);
    assert.deepEqual(f64([-1.5, 1.5, 2.5]).ceil().toArray(), [-1, 2, 3]);
    assert.deepEqual(f64([-1.5, 1.5, 2.5]).round().toArray(), [-2, 2, 2]); // half to even
    assert.deepEqual(f64([-1.5, 1.5]).trunc().toArray(), [-1, 1]);
    assert.deepEqual(f64([-3, 0, 2]).sign().toArray(), [-1, 0, 1]);
    assert.deepEqual(f64([NaN, 1, Infinity]).isnan().toArray(), [1, 0, 0]);
    assert.deepEqual(f64([NaN, 1, Infinity]).isinf().toArray(), [0, 0, 1]);
    assert.deepEqual(f64([NaN, 1, Infinity]).isfinite().toArray(), [0, 1, 0]);
  });

  test('clamp with numbers, tensors, one side only, and a tensor beside a number', () => {
    const x = f64([-2, 0.5, 3]);
    assert.deepEqual(x.clamp(-1, 1).toArray(), [-1, 0.5, 1]);
    assert.deepEqual(x.clamp(0).toArray(), [0, 0.5, 3]);
    assert.deepEqual(x.clamp(null, 1).toArray(), [-2, 0.5, 1]);
    assert.deepEqual(x.clampMin(0).toArray(), [0, 0.5, 3]);
    assert.deepEqual(x.clampMax(0).toArray(), [-2, 0, 0]);
    assert.deepEqual(x.clamp(f64([-3, 1, 0]), f64([-1, 2, 2])).toArray(), [-2, 1, 2]);
    assert.deepEqual(x.clamp(f64([-1, 1, 0]), 2).toArray(), [-1, 1, 2]);
    assert.deepEqual(x.clamp(-5, f64([-3, 0, 5])).toArray(), [-3, 0, 3]);
  });

  test('minimum and maximum', () => {
    const a = f64([1, 5, -2]);
    const b = f64([3, 4, -2]);
    assert.deepEqual(a.minimum(b).toArray(), [1, 4, -2]);
    assert.deepEqual(torch.maximum(a, b).toArray(), [3, 5, -2]);
    assert.deepEqual(torch.minimum(a, f64([0])).toArray(), [0, 0, -2]);
  });
});

describe('comparisons and logical operations', () => {
  const x = f64([1, 2, 3]);
  test('comparisons with tensors and scalars give bool tensors', () => {
    assert.equal(x.gt(2).dtype, 'bool');
    assert.deepEqual(x.eq(2).toArray(), [0, 1, 0]);
    assert.deepEqual(x.ne(2).toArray(), [1, 0, 1]);
    assert.deepEqual(x.lt(2).toArray(), [1, 0, 0]);
    assert.deepEqual(x.le(2).toArray(), [1, 1, 0]);
    assert.deepEqual(x.gt(2).toArray(), [0, 0, 1]);
    assert.deepEqual(x.ge(2).toArray(), [0, 1, 1]);
    assert.deepEqual(x.ge(f64([0, 3, 3])).toArray(), [1, 0, 1]);
    assert.deepEqual(int([1, 2]).eq(f64([1, 2.5])).toArray(), [1, 0]);
  });
  test('logical and/or/xor/not, all/any, allclose/equal', () => {
    const p = torch.tensor([true, true, false, false]);
    const q = torch.tensor([true, false, true, false]);
    assert.deepEqual(p.logicalAnd(q).toArray(), [1, 0, 0, 0]);
    assert.deepEqual(p.logicalOr(q).toArray(), [1, 1, 1, 0]);
    assert.deepEqual(p.logicalXor(q).toArray(), [0, 1, 1, 0]);
    assert.deepEqual(p.logicalNot().toArray(), [0, 0, 1, 1]);
    assert.deepEqual(f64([0, 2]).logicalNot().toArray(), [1, 0]);
    assert.equal(p.all().item(), 0);
    assert.equal(p.any().item(), 1);
    assert.equal(x.allclose(x.add(1e-9)), true);
    assert.equal(x.allclose(x.add(1e-3)), false);
    assert.equal(x.equal(f64([1, 2, 3])), true);
    assert.equal(x.equal(f64([1, 2])), false);
  });
});

describe('type promotion with JavaScript numbers', () => {
  test('an integral number keeps an integer tensor integral; a fractional one promotes to float32', () => {
    const i32 = int([1, 2], 'int32');
    assert.equal(i32.add(1).dtype, 'int32');
    assert.deepEqual(i32.add(1).toArray(), [2, 3]);
    assert.equal(i32.mul(3).dtype, 'int32');
    assert.equal(i32.add(0.5).dtype, 'float32');
    assert.deepEqual(i32.add(0.5).toArray(), [1.5, 2.5]);
    assert.equal(int([1]).add(1).dtype, 'int64');
    assert.equal(int([1, 2]).div(2).dtype, 'float32'); // true division
    assert.deepEqual(int([1, 2]).div(2).toArray(), [0.5, 1]);
    assert.equal(int([7]).div(2, 'floor').dtype, 'int64');
    assert.equal(torch.tensor([1], undefined, { dtype: 'uint8' }).add(1).dtype, 'uint8');
  });
  test('a number never widens a float tensor; tensors promote by category and size', () => {
    assert.equal(torch.tensor([1]).add(1).dtype, 'float32');
    assert.equal(torch.tensor([1]).mul(1e300).dtype, 'float32');
    assert.equal(torch.tensor([1], undefined, { dtype: 'bfloat16' }).add(2.5).dtype, 'bfloat16');
    assert.equal(torch.tensor([1]).add(f64([1])).dtype, 'float64');
    assert.equal(int([1], 'int32').add(int([1], 'int64')).dtype, 'int64');
    assert.equal(int([1]).add(torch.tensor([1])).dtype, 'float32');
    assert.equal(torch.tensor([true]).add(1).dtype, 'int64');
  });
});

describe('reductions', () => {
  // [[1, 2, 3],
  //  [4, 5, 9]]
  const m = f64([1, 2, 3, 4, 5, 9], [2, 3]);

  test('sum and mean over all elements, one or several dims, with keepdim', () => {
    assert.equal(m.sum().item(), 24);
    assert.deepEqual(m.sum().shape, []);
    assert.deepEqual(m.sum(0).toArray(), [5, 7, 12]);
    assert.deepEqual(m.sum(1).toArray(), [6, 18]);
    assert.deepEqual(m.sum(-1, true).shape, [2, 1]);
    assert.deepEqual(m.sum([0, 1]).toArray(), [24]);
    assert.deepEqual(m.sum([0, 1], true).shape, [1, 1]);
    assert.equal(m.mean().item(), 4);
    assert.deepEqual(m.mean(1).toArray(), [2, 6]);
    assert.deepEqual(m.mean(0, true).toArray(), [2.5, 3.5, 6]);
    assert.deepEqual(m.mean(0, true).shape, [1, 3]);
    assert.equal(int([1, 2]).sum(undefined, false, 'float64').dtype, 'float64');
    assert.equal(int([1, 2]).sum().dtype, 'int64');
    assert.equal(torch.tensor([true, true, false]).sum().item(), 2);
    assert.equal(m.prod().item(), 1080);
    assert.deepEqual(m.prod(1).toArray(), [6, 180]);
    assert.deepEqual(m.cumsum(1).toArray(), [1, 3, 6, 4, 9, 18]);
  });

  test('max, min, amax, amin, argmax, argmin', () => {
    assert.equal(m.max().item(), 9);
    assert.equal(m.min().item(), 1);
    const { values, indices } = m.max(1);
    assert.deepEqual(values.toArray(), [3, 9]);
    assert.deepEqual(indices.toArray(), [2, 2]);
    assert.equal(indices.dtype, 'int64');
    const low = m.min(0, true);
    assert.deepEqual(low.values.shape, [1, 3]);
    assert.deepEqual(low.values.toArray(), [1, 2, 3]);
    assert.deepEqual(low.indices.toArray(), [0, 0, 0]);
    assert.deepEqual(m.amax(0).toArray(), [4, 5, 9]);
    assert.deepEqual(m.amax([0, 1], true).shape, [1, 1]);
    assert.deepEqual(m.amin(1).toArray(), [1, 4]);
    assert.equal(m.argmax().item(), 5);
    assert.deepEqual(m.argmax(0).toArray(), [1, 1, 1]);
    assert.deepEqual(m.argmax(1, true).shape, [2, 1]);
    assert.deepEqual(m.argmin(1).toArray(), [0, 0]);
  });

  test('var with correction 1 (default) and 0, over dims with keepdim', () => {
    // row 0: mean 2, squared deviations 1+0+1 = 2; row 1: mean 6, 4+1+9 = 14
    assertClose(m.var(1), [2 / 2, 14 / 2]);
    assertClose(m.var(1, { correction: 0 }), [2 / 3, 14 / 3]);
    assert.deepEqual(m.var(1, { keepdim: true }).shape, [2, 1]);
    // all six: mean 4, deviations 9+4+1+0+1+25 = 40
    assertClose(m.var(), [40 / 5]);
    assertClose(m.var(undefined, { correction: 0 }), [40 / 6]);
    assertClose(m.var(0), [4.5, 4.5, 18]);
  });

  test('norm: p = 2, 1 and ∞, over dims with keepdim', () => {
    const v = f64([3, -4, 0, 12], [2, 2]);
    assertClose(v.norm(), [13]);
    assertClose(v.norm(2, 1), [5, 12]);
    assertClose(v.norm(1, 1), [7, 12]);
    assertClose(v.norm(1), [19]);
    assertClose(v.norm(Infinity, 0), [3, 12]);
    assert.deepEqual(v.norm(2, 0, true).shape, [1, 2]);
  });

  test('logsumexp matches log Σ exp and stays finite for large values', () => {
    assertClose(f64([0, Math.log(2), Math.log(5)]).logsumexp(0), [Math.log(8)], { rtol: 1e-14 });
    // exp(1000) overflows; logsumexp(1000, 1000) = 1000 + log 2
    const big = torch.tensor([1000, 1000, -1000, 990], [2, 2]);
    assertClose(big.logsumexp(1), [1000 + Math.log(2), 990], { rtol: 1e-6 });
    assert.equal(big.exp().sum(1).log().toArray()[0], Infinity);
    assertClose(big.logsumexp([0, 1]), [1000 + Math.log(2 + Math.exp(-10))], { rtol: 1e-6 });
    assert.deepEqual(big.logsumexp(0, true).shape, [1, 2]);
    assertClose(torch.tensor([-1000, -1000]).logsumexp(0), [-1000 + Math.log(2)], { rtol: 1e-6 });
  });
});

describe('linear algebra', () => {
  test('matmul, bmm, linear and einsum against hand products', () => {
    const a = f64([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = f64([1, 0, 0, 1, 1, 1], [3, 2]);
    assert.deepEqual(a.matmul(b).toArray(), [4, 5, 10, 11]);
    assert.deepEqual(torch.matmul(a, f64([1, 1, 1])).toArray(), [6, 15]);
    const batch = torch.stack([a, a.mul(2)]);
    const out = torch.bmm(batch, torch.stack([b, b]));
    assert.deepEqual(out.toArray(), [4, 5, 10, 11, 8, 10, 20, 22]);
    // linear: x Wᵀ + b
    assert.deepEqual(torch.linear(f64([1, 2], [1, 2]), f64([1, 1, 0, 2, -1, 0], [3, 2]), f64([0, 1, 2])).toArray(), [3, 5, 1]);
    assert.deepEqual(torch.linear(f64([1, 2], [1, 2]), f64([1, 1], [1, 2])).toArray(), [3]);
    assert.deepEqual(torch.einsum('ij,ij->i', a, a).toArray(), [14, 77]);
  });
});
