// Tensor creation, conversion, printing, views and shape operations against hand-written values.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type DType, type Tensor } from '../../src/engine/index.ts';
import { assertClose } from './helpers.ts';

const f64 = (data: number[], shape?: number[]) => torch.tensor(data, shape, { dtype: 'float64' });
const i64 = (data: number[], shape?: number[]) => torch.tensor(data, shape, { dtype: 'int64' });

describe('creation from JavaScript data', () => {
  test('nested arrays give their nesting as the shape; flat arrays take an explicit shape', () => {
    const nested = torch.tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    assert.deepEqual(nested.shape, [2, 3]);
    assert.equal(nested.dtype, 'float32');
    assert.deepEqual(nested.toArray(), [1, 2, 3, 4, 5, 6]);
    const flat = torch.tensor([1, 2, 3, 4, 5, 6], [3, 2]);
    assert.deepEqual(flat.shape, [3, 2]);
    assert.deepEqual(flat.select(0, 2).toArray(), [5, 6]);
    const scalar = torch.tensor(2.5 as never);
    assert.deepEqual(scalar.shape, []);
    assert.equal(scalar.item(), 2.5);
    assert.deepEqual(torch.tensor([[[true], [false]]]).shape, [1, 2, 1]);
    assert.equal(torch.tensor([[[true], [false]]]).dtype, 'bool');
    assert.deepEqual(torch.tensor([]).shape, [0]);
  });

  test('ragged nesting, a wrong shape and non-numeric entries are errors', () => {
    assert.throws(() => torch.tensor([[1, 2], [3]]), /ragged/);
    assert.throws(() => torch.tensor([1, 2, 3], [2, 2]), /shape \[2, 2\] holds 4 values but 3 were given/);
    assert.throws(() => torch.tensor([1, 'a' as never]), /expected numbers or booleans, got string/);
    assert.throws(() => torch.tensor('abc' as never), TypeError);
  });

  test('each typed array keeps its dtype, and its values come back exactly', () => {
    const cases: [ArrayLike<number | bigint> & ArrayBufferView, DType, ArrayLike<number | bigint>][] = [
      [new Float32Array([0.1, -2.5]), 'float32', [Math.fround(0.1), -2.5]],
      [new Float64Array([0.1, -2.5]), 'float64', [0.1, -2.5]],
      [new Int32Array([-2147483648, 7]), 'int32', [-2147483648, 7]],
      [new Int16Array([-32768, 5]), 'int16', [-32768, 5]],
      [new Int8Array([-128, 127]), 'int8', [-128, 127]],
      [new Uint8Array([0, 255]), 'uint8', [0, 255]],
      [new Uint16Array([0, 65535]), 'int32', [0, 65535]],
      [new Uint32Array([1, 4000000000]), 'int64', [1n, 4000000000n]],
      [new BigInt64Array([-(2n ** 62n) - 3n, 2n ** 53n + 1n]), 'int64', [-(2n ** 62n) - 3n, 2n ** 53n + 1n]],
    ];
    for (const [data, dtype, expected] of cases) {
      const t = torch.tensor(data as never);
      assert.equal(t.dtype, dtype, data.constructor.name);
      assert.deepEqual(Array.from(t.toTypedArray() as ArrayLike<number | bigint>), Array.from(expected), data.constructor.name);
    }
  });

  test('toTypedArray returns the natural array class of each dtype', () => {
    const classes: [DType, new (n: number) => ArrayBufferView][] = [
      ['float32', Float32Array],
      ['float64', Float64Array],
      ['int64', BigInt64Array],
      ['int32', Int32Array],
      ['int16', Int16Array],
      ['int8', Int8Array],
      ['uint8', Uint8Array],
      ['bool', Uint8Array],
      ['bfloat16', Float32Array],
      ['float16', Float32Array],
    ];
    for (const [dtype, cls] of classes) {
      const t = torch.tensor([0, 1, 1], undefined, { dtype });
      assert.equal(t.dtype, dtype);
      assert.ok(t.toTypedArray() instanceof cls, dtype);
      assert.deepEqual(t.toArray(), [0, 1, 1], dtype);
    }
  });

  test('int64 round trips values beyond 2^53 through BigInt64Array', () => {
    const big = 2n ** 60n + 1n;
    const t = torch.tensor(new BigInt64Array([big, -big]));
    const back = t.add(1).toTypedArray() as BigInt64Array;
    assert.equal(back[0], big + 1n);
    assert.equal(back[1], -big + 1n);
  });

  test('dtype conversion: half types round to their grid; float to int truncates toward zero', () => {
    // bfloat16 keeps 8 significant bits: 1.5 and 3.140625 are on its grid, 1.001 rounds to 1, 257 to 256.
    assertClose(torch.tensor([1.5, 3.140625, 1.001, 257]).to('bfloat16').toTypedArray() as Float32Array, [1.5, 3.140625, 1, 256], { atol: 0, rtol: 0 });
    // float16: 0.1 is 0.0999755859375 (= 1638/16384), 65504 is the largest finite value, 70000 overflows.
    const half = torch.tensor([0.1, 65504, 70000], undefined, { dtype: 'float16' });
    assert.equal(half.dtype, 'float16');
    assert.deepEqual(half.toArray(), [0.0999755859375, 65504, Infinity]);
    assert.deepEqual(half.to('float32').to('bfloat16').to('float64').toArray(), [0.10009765625, 65536, Infinity]);
    assert.deepEqual(torch.tensor([-1.7, 1.7, 2.5]).to('int32').toArray(), [-1, 1, 2]);
    assert.deepEqual(torch.tensor([0, 0.5, -2]).to('bool').toArray(), [0, 1, 1]);
    assert.equal(torch.tensor([0.1]).to('float64').item(), Math.fround(0.1));
    const same = torch.tensor([1, 2]);
    assert.equal(same.to({ dtype: 'float32', device: 'cpu' }).dtype, 'float32');
    assert.equal(same.to('cpu').device, 'cpu');
    assert.equal(same.long().dtype, 'int64');
    assert.equal(i64([3]).float().dtype, 'float32');
  });

  test('item() gives the single value of any dtype and refuses larger tensors', () => {
    assert.equal(torch.tensor([[-3.25]]).item(), -3.25);
    assert.equal(i64([42]).item(), 42);
    assert.equal(torch.tensor([true]).item(), 1);
    assert.equal(torch.tensor([0.5], undefined, { dtype: 'bfloat16' }).item(), 0.5);
    assert.throws(() => torch.tensor([1, 2]).item(), /item: tensor has 2 elements, not 1/);
  });
});

describe('filled, ranged and random tensors', () => {
  test('zeros, ones, full, eye, arange, linspace', () => {
    assert.deepEqual(torch.zeros([2, 2]).toArray(), [0, 0, 0, 0]);
    assert.deepEqual(torch.ones([3], { dtype: 'int32' }).toArray(), [1, 1, 1]);
    assert.equal(torch.ones([3], { dtype: 'int32' }).dtype, 'int32');
    assert.deepEqual(torch.full([2], 7.5).toArray(), [7.5, 7.5]);
    assert.equal(torch.full([2], true).dtype, 'bool');
    assert.deepEqual(torch.eye(2, 3).toArray(), [1, 0, 0, 0, 1, 0]);
    assert.deepEqual(torch.eye(2).shape, [2, 2]);
    const range = torch.arange(4);
    assert.equal(range.dtype, 'int64');
    assert.deepEqual(range.toArray(), [0, 1, 2, 3]);
    assert.deepEqual(torch.arange(1, 2, 0.25).toArray(), [1, 1.25, 1.5, 1.75]);
    assert.equal(torch.arange(1, 2, 0.25).dtype, 'float32');
    assert.deepEqual(torch.arange(5, 0, -2).toArray(), [5, 3, 1]);
    assert.deepEqual(torch.linspace(0, 1, 5).toArray(), [0, 0.25, 0.5, 0.75, 1]);
  });

  test('like-variants copy shape, dtype and device unless told otherwise', () => {
    const base = torch.zeros([2, 3], { dtype: 'float64' });
    for (const t of [torch.zerosLike(base), torch.onesLike(base), torch.fullLike(base, 2), torch.randLike(base), torch.randnLike(base), torch.emptyLike(base)]) {
      assert.deepEqual(t.shape, [2, 3]);
      assert.equal(t.dtype, 'float64');
      assert.equal(t.device, 'cpu');
    }
    assert.deepEqual(torch.onesLike(base).toArray(), [1, 1, 1, 1, 1, 1]);
    assert.deepEqual(torch.fullLike(base, 2).toArray(), [2, 2, 2, 2, 2, 2]);
    assert.equal(torch.zerosLike(base, { dtype: 'int32' }).dtype, 'int32');
    const ints = torch.randintLike(base, 3, 5);
    assert.equal(ints.dtype, 'float64');
    assert.ok(ints.toArray().every((v) => v === 3 || v === 4));
  });

  test('rand is in [0, 1), randint in [low, high) and integral, randn has mean 0 and variance 1', () => {
    torch.manualSeed(1);
    const u = torch.rand([10000]).toArray();
    assert.ok(u.every((v) => v >= 0 && v < 1));
    assert.ok(Math.abs(u.reduce((a, b) => a + b, 0) / u.length - 0.5) < 0.02);
    const r = torch.randint(-2, 3, [1000]);
    assert.equal(r.dtype, 'int64');
    const counts = new Map<number, number>();
    for (const v of r.toArray()) counts.set(v, (counts.get(v) ?? 0) + 1);
    assert.deepEqual([...counts.keys()].sort((a, b) => a - b), [-2, -1, 0, 1, 2]);
    const n = torch.randn([20000], { dtype: 'float64' });
    assert.ok(Math.abs(n.mean().item()) < 0.03);
    assert.ok(Math.abs(n.var().item() - 1) < 0.05);
  });
});

describe('printing', () => {
  test('toString shows a header and indents nested rows like PyTorch', () => {
    const t = torch.tensor([1, -2.5, 3, 4, 5, 6, 7, 8], [2, 2, 2]);
    assert.equal(
      t.toString(),
      [
        'Tensor(shape=[2, 2, 2], dtype=float32, device=cpu)',
        '[[[ 1.0000, -2.5000],',
        '  [ 3.0000,  4.0000]],',
        '',
        ' [[ 5.0000,  6.0000],',
        '  [ 7.0000,  8.0000]]]',
      ].join('\n'),
    );
    assert.equal(torch.tensor([[1, 2], [30, 4]]).toString().split('\n').slice(1).join('\n'), '[[ 1.,  2.],\n [30.,  4.]]');
    assert.equal(i64([3, -10]).toString().split('\n')[1], '[  3, -10]');
    assert.equal(torch.tensor([true, false]).toString().split('\n')[1], '[ true, false]');
    assert.equal(torch.tensor([NaN, Infinity, 0.5]).toString().split('\n')[1], '[   nan,    inf, 0.5000]');
    assert.equal(torch.tensor([1e-6, 2]).toString().split('\n')[1], '[1.0000e-6, 2.0000e+0]');
    assert.equal(torch.tensor([1], undefined, { requiresGrad: true }).toString().split('\n')[0], 'Tensor(shape=[1], dtype=float32, device=cpu, requiresGrad)');
    assert.equal(torch.tensor(4 as never).toString().split('\n')[1], '4.');
  });

  test('large tensors are summarised by their first and last three entries per dimension', () => {
    const text = torch.arange(2000).reshape(2, 1000).toString();
    assert.equal(text.split('\n').slice(1).join('\n'), '[[   0,    1,    2, ...,  997,  998,  999],\n [1000, 1001, 1002, ..., 1997, 1998, 1999]]');
  });
});

describe('views and shape operations', () => {
  const grid = () => torch.arange(6).reshape(2, 3); // [[0,1,2],[3,4,5]]

  test('reshape/view, permute, transpose, squeeze/unsqueeze, flatten', () => {
    const a = grid();
    assert.deepEqual(a.view(3, 2).toArray(), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(a.view([3, -1]).shape, [3, 2]);
    assert.deepEqual(a.transpose(0, 1).toArray(), [0, 3, 1, 4, 2, 5]);
    assert.deepEqual(a.transpose(0, 1).strides, [1, 3]);
    assert.equal(a.transpose(0, 1).isContiguous(), false);
    assert.throws(() => a.transpose(0, 1).view(6), /view/);
    assert.deepEqual(a.transpose(0, 1).reshape(6).toArray(), [0, 3, 1, 4, 2, 5]);
    const cube = torch.arange(24).reshape(2, 3, 4);
    const p = cube.permute(2, 0, 1);
    assert.deepEqual(p.shape, [4, 2, 3]);
    // p[i][j][k] = cube[j][k][i] = 12j + 4k + i
    assert.equal(p.select(0, 3).select(0, 1).select(0, 2).item(), 12 + 8 + 3);
    assert.deepEqual(torch.zeros([1, 3, 1]).squeeze().shape, [3]);
    assert.deepEqual(torch.zeros([1, 3, 1]).squeeze(2).shape, [1, 3]);
    assert.deepEqual(torch.zeros([3]).unsqueeze(0).unsqueeze(-1).shape, [1, 3, 1]);
    assert.deepEqual(cube.flatten(1).shape, [2, 12]);
    assert.deepEqual(cube.flatten().shape, [24]);
    assert.deepEqual(cube.flatten(0, 1).shape, [6, 4]);
    assert.equal(cube.size(-1), 4);
    assert.equal(cube.ndim, 3);
    assert.equal(cube.numel, 24);
    assert.throws(() => cube.size(3), /dimension 3 is out of range/);
  });

  test('a view shares storage with its base', () => {
    const base = torch.zeros([2, 3]);
    base.view(6).narrow(0, 2, 2).fill_(7);
    assert.deepEqual(base.toArray(), [0, 0, 7, 7, 0, 0]);
    base.transpose(0, 1).select(0, 0).fill_(-1);
    assert.deepEqual(base.toArray(), [-1, 0, 7, -1, 0, 0]);
    const copy = base.clone();
    copy.fill_(3);
    assert.equal(base.toArray()[1], 0);
  });

  test('expand broadcasts without copying; repeat tiles', () => {
    const col = torch.tensor([1, 2], [2, 1]);
    const e = col.expand(2, 3);
    assert.deepEqual(e.toArray(), [1, 1, 1, 2, 2, 2]);
    assert.deepEqual(e.strides, [1, 0]);
    assert.deepEqual(col.expand([-1, 2]).shape, [2, 2]);
    assert.deepEqual(torch.tensor([1, 2]).repeat(2, 2).toArray(), [1, 2, 1, 2, 1, 2, 1, 2]);
    assert.deepEqual(torch.tensor([1, 2]).repeat(2, 2).shape, [2, 4]);
    assert.deepEqual(torch.tensor([1, 2]).expandAs(torch.zeros([3, 2])).shape, [3, 2]);
  });

  test('cat, stack, chunk, split, unbind', () => {
    const a = grid();
    const b = torch.arange(6, 9).reshape(1, 3);
    assert.deepEqual(torch.cat([a, b]).toArray(), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(torch.cat([a, a], 1).toArray(), [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]);
    const s = torch.stack([torch.tensor([1, 2]), torch.tensor([3, 4])], 1);
    assert.deepEqual(s.shape, [2, 2]);
    assert.deepEqual(s.toArray(), [1, 3, 2, 4]);
    const chunks = torch.arange(5).chunk(3);
    assert.deepEqual(chunks.map((c) => c.toArray()), [[0, 1], [2, 3], [4]]);
    assert.deepEqual(torch.arange(5).split(2).map((c) => c.toArray()), [[0, 1], [2, 3], [4]]);
    assert.deepEqual(torch.arange(5).split([1, 4]).map((c) => c.toArray()), [[0], [1, 2, 3, 4]]);
    assert.deepEqual(a.split(1, 1).map((c) => c.toArray()), [[0, 3], [1, 4], [2, 5]]);
    assert.deepEqual(a.unbind(1).map((c) => c.toArray()), [[0, 3], [1, 4], [2, 5]]);
  });

  test('narrow, slice (with negative indices and steps), select', () => {
    const r = torch.arange(10);
    assert.deepEqual(r.narrow(0, 3, 4).toArray(), [3, 4, 5, 6]);
    assert.deepEqual(r.slice(0, 2, 9, 3).toArray(), [2, 5, 8]);
    assert.deepEqual(r.slice(0, -3).toArray(), [7, 8, 9]);
    assert.deepEqual(r.slice(0, 1, -7).toArray(), [1, 2]);
    assert.deepEqual(grid().slice(1, 1).toArray(), [1, 2, 4, 5]);
    assert.deepEqual(grid().select(1, -1).toArray(), [2, 5]);
  });

  test('indexSelect, gather, scatter, maskedFill, where, flip', () => {
    const a = grid();
    assert.deepEqual(a.indexSelect(1, i64([2, 0, 2])).toArray(), [2, 0, 2, 5, 3, 5]);
    assert.deepEqual(a.indexSelect(0, torch.tensor([1], undefined, { dtype: 'int32' })).toArray(), [3, 4, 5]);
    // gather along dim 1: out[i][j] = a[i][index[i][j]]
    assert.deepEqual(a.gather(1, i64([2, 1, 0, 0], [2, 2])).toArray(), [2, 1, 3, 3]);
    assert.deepEqual(a.gather(0, torch.tensor([1, 0, 1], [1, 3], { dtype: 'int32' })).toArray(), [3, 1, 5]);
    assert.deepEqual(torch.zeros([2, 3]).scatter(1, i64([2, 0], [2, 1]), 1).toArray(), [0, 0, 1, 1, 0, 0]);
    assert.deepEqual(torch.zeros([3]).scatterAdd(0, i64([0, 0, 2]), torch.tensor([1, 2, 3])).toArray(), [3, 0, 3]);
    const mask = torch.tensor([true, false, true, false, false, true], [2, 3]);
    assert.deepEqual(a.maskedFill(mask, -1).toArray(), [-1, 1, -1, 3, 4, -1]);
    assert.deepEqual(a.maskedSelect(mask).toArray(), [0, 2, 5]);
    assert.deepEqual(torch.where(mask, a, a.neg()).toArray(), [0, -1, 2, -3, -4, 5]);
    assert.deepEqual(torch.where(mask, 1.5, a.to('float32')).toArray(), [1.5, 1, 1.5, 3, 4, 1.5]);
    assert.deepEqual(a.flip(0).toArray(), [3, 4, 5, 0, 1, 2]);
    assert.deepEqual(a.flip(0, 1).toArray(), [5, 4, 3, 2, 1, 0]);
    assert.deepEqual(a.flip([1]).toArray(), [2, 1, 0, 5, 4, 3]);
    assert.deepEqual(a.roll(1, 1).toArray(), [2, 0, 1, 5, 3, 4]);
    assert.deepEqual(torch.tensor([0, 3, 0, 5]).nonzero().toArray(), [1, 3]);
  });

  test('pad: constant, reflect and replicate, hand-computed', () => {
    const x = torch.tensor([1, 2, 3, 4], [1, 1, 4]);
    assert.deepEqual(torch.pad(x, [2, 1], 'constant', 9).toArray(), [9, 9, 1, 2, 3, 4, 9]);
    assert.deepEqual(torch.pad(x, [2, 1]).toArray(), [0, 0, 1, 2, 3, 4, 0]);
    assert.deepEqual(torch.pad(x, [2, 1], 'reflect').toArray(), [3, 2, 1, 2, 3, 4, 3]);
    assert.deepEqual(torch.pad(x, [2, 1], 'replicate').toArray(), [1, 1, 1, 2, 3, 4, 4]);
    assert.deepEqual(torch.pad(x, [2, 1], 'circular').toArray(), [3, 4, 1, 2, 3, 4, 1]);
    // 3-D reflect on (1, 1, D=2, H=2, W=3): pads [w 1 1, h 1 0, d 0 1]
    const v = torch.arange(12, undefined, 1, { dtype: 'float32' }).reshape(1, 1, 2, 2, 3);
    const padded = torch.pad(v, [1, 1, 1, 0, 0, 1], 'reflect');
    assert.deepEqual(padded.shape, [1, 1, 3, 3, 5]);
    const at = (d: number, h: number, w: number) => padded.select(2, d).select(2, h).select(2, w).item();
    const reflect = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
    for (let d = 0; d < 3; d++)
      for (let h = 0; h < 3; h++)
        for (let w = 0; w < 5; w++) {
          const [sd, sh, sw] = [reflect(d, 2), reflect(h - 1, 2), reflect(w - 1, 3)];
          assert.equal(at(d, h, w), sd * 6 + sh * 3 + sw, `(${d}, ${h}, ${w})`);
        }
    assert.deepEqual(torch.pad(x, [-1, -1]).toArray(), [2, 3]);
  });

  test('contiguous copies a strided view into row-major order; channelsLast changes only the strides', () => {
    const t = grid().transpose(0, 1);
    const c = t.contiguous();
    assert.equal(c.isContiguous(), true);
    assert.deepEqual(c.toArray(), t.toArray());
    const v = torch.rand([1, 2, 3, 4, 5]);
    const cl = v.contiguous('channelsLast');
    assert.deepEqual(cl.strides, [120, 1, 40, 10, 2]);
    assert.ok(cl.equal(v));
  });
});

describe('float64 tensors', () => {
  test('keep double precision through arithmetic', () => {
    const t: Tensor = f64([0.1, 0.2]);
    assert.equal(t.sum().item(), 0.1 + 0.2);
  });
});
