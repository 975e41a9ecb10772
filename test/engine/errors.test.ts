// Bad input surfaces as a JavaScript error that names the call and the problem; the process keeps running.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch } from '../../src/engine/index.ts';
import { native } from '../../src/engine/native.ts';

/** Asserts that `fn` throws an instance of `kind` whose message matches `pattern`. */
function throwsWith(fn: () => unknown, kind: ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor, pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof kind, `expected a ${kind.name}, got ${String(error)}`);
    assert.match((error as Error).message, pattern);
    return true;
  });
}

describe('libtorch errors become JavaScript errors carrying libtorch’s message', () => {
  test('shape mismatches', () => {
    throwsWith(() => torch.zeros([2]).add(torch.zeros([3])), Error, /^add: The size of tensor a \(2\) must match the size of tensor b \(3\) at non-singleton dimension 0/);
    throwsWith(() => torch.zeros([2, 3]).matmul(torch.zeros([2, 3])), Error, /^matmul: .*cannot be multiplied \(2x3 and 2x3\)/);
    throwsWith(() => torch.cat([torch.zeros([2, 3]), torch.zeros([2, 4])]), Error, /^cat: Sizes of tensors must match except in dimension 0/);
    throwsWith(() => torch.zeros([6]).view(4, 2), Error, /^view: shape '\[4, 2\]' is invalid for input of size 6/);
    throwsWith(
      () => torch.conv3d(torch.zeros([1, 2, 3, 3, 3]), torch.zeros([1, 3, 1, 1, 1])),
      Error,
      /^convolution: Given groups=1, weight of size \[1, 3, 1, 1, 1\], expected input\[1, 2, 3, 3, 3\] to have 3 channels, but got 2 channels instead/,
    );
    throwsWith(() => torch.crossEntropy(torch.zeros([2, 3]), torch.tensor([0, 5], undefined, { dtype: 'int64' })), Error, /^crossEntropy: Target 5 is out of bounds/);
  });

  test('indices out of range', () => {
    throwsWith(() => torch.zeros([2, 3]).select(0, 5), Error, /^select: .*index 5 out of range for tensor of size \[2, 3\] at dimension 0/);
    throwsWith(() => torch.zeros([2]).transpose(0, 3), Error, /^transpose: Dimension out of range/);
    throwsWith(() => torch.zeros([3]).gather(0, torch.tensor([7], undefined, { dtype: 'int64' })), Error, /^gather: index 7 is out of bounds/);
    throwsWith(() => torch.zeros([2]).size(2), RangeError, /^size: dimension 2 is out of range for a tensor of 1 dimensions/);
  });

  test('values and state that libtorch refuses', () => {
    throwsWith(() => torch.tensor([1, 2]).item(), Error, /^item: tensor has 2 elements, not 1$/);
    throwsWith(() => torch.randint(3, 3, [2]), Error, /^randint: random_ expects 'from' to be less than 'to'/);
    throwsWith(() => torch.zeros([1]).backward(), Error, /^backward: element 0 of tensors does not require grad/);
    // 4 PiB is beyond any address space: the allocation fails and says so
    throwsWith(() => torch.empty([2 ** 50]), Error, /^empty: out of CPU memory allocating 4503599627370496 bytes/);
  });
});

describe('argument errors name the call', () => {
  test('bad dtype strings', () => {
    throwsWith(() => torch.zeros([2], { dtype: 'float' as never }), TypeError, /^zeros: unknown dtype 'float' \(known: float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool\)/);
    throwsWith(() => torch.ones([1]).sum(0, false, 'double' as never), TypeError, /^sum: unknown dtype 'double'/);
    throwsWith(() => torch.ones([1]).to('floaty' as never), TypeError, /^to: 'floaty' is neither a dtype \(float32, .*\) nor a device/);
    throwsWith(() => torch.arange(3, undefined, 1, { dtype: 'f32' as never }), TypeError, /^arange: unknown dtype 'f32'/);
  });

  test('wrong argument types and fractional sizes', () => {
    throwsWith(() => torch.tensor([1]).add('a' as never), TypeError, /^add: expected a number, got a$/);
    throwsWith(() => torch.tensor([1, 2]).reshape(1.5 as number), TypeError, /^reshape: expected an integer, got 1.5$/);
    throwsWith(() => torch.tensor([1, 2]).reshape('2' as never), TypeError, /^reshape: expected an integer, got 2$/);
    throwsWith(() => torch.zeros([2.5]), TypeError, /^zeros: expected an integer, got 2.5$/);
    throwsWith(() => torch.conv3d(torch.zeros([1, 1, 2, 2, 2]), [1, 2] as never), TypeError, /^convolution: expected a tensor$/);
    throwsWith(() => torch.cat([torch.zeros([1]), 3 as never]), TypeError, /^cat: expected a tensor$/);
    throwsWith(() => torch.cat(torch.zeros([1]) as never), TypeError, /^cat: expected an array of tensors$/);
    throwsWith(() => torch.tensor([1, 'x' as never]), TypeError, /^tensor: expected numbers or booleans, got string/);
    throwsWith(() => native.fromBuffer([1, 2], [2], 'float32'), TypeError, /^fromBuffer: expected a typed array$/);
    throwsWith(() => native.fromBuffer(new Float32Array(3), [2], 'float32'), RangeError, /^fromBuffer: 12 bytes given for a tensor of 8 bytes$/);
    throwsWith(() => torch.pad(torch.zeros([1, 1, 3]), [1, 1], 'mirror' as never), TypeError, /^pad: unknown padding mode 'mirror'/);
    throwsWith(() => torch.interpolate(torch.zeros([1, 1, 2, 2, 2]), [3, 3, 3], 'cubic' as never), TypeError, /^interpolate: unknown interpolation mode 'cubic'/);
    throwsWith(() => torch.mseLoss(torch.zeros([1]), torch.zeros([1]), 'avg' as never), TypeError, /^mseLoss: unknown reduction 'avg'/);
    throwsWith(() => torch.setNumThreads(0), Error, /setNumThreads: expected a positive integer, got 0/);
  });

  test('using a disposed tensor', () => {
    const t = torch.ones([2]);
    t.dispose();
    t.dispose();
    assert.equal(t.isDisposed, true);
    throwsWith(() => t.add(1), Error, /^add: a disposed tensor was used/);
    throwsWith(() => t.toArray(), Error, /^(dtype|toBuffer): a disposed tensor was used/);
    throwsWith(() => t.shape, Error, /^shape: a disposed tensor was used/);
    throwsWith(() => torch.ones([2]).mul(t), Error, /^mul: a disposed tensor was used/);
    assert.equal(t.toString(), 'Tensor <disposed>');
    // a view made before disposal keeps the storage alive
    const base = torch.arange(4);
    const view = base.narrow(0, 1, 2);
    base.dispose();
    assert.deepEqual(view.toArray(), [1, 2]);
  });

  test('a CUDA device without CUDA is a clear error', () => {
    assert.equal(torch.cuda.isAvailable(), false);
    const message = /device 'cuda(:0)?' requested, but the linked libtorch has no usable CUDA/;
    throwsWith(() => torch.zeros([2], { device: 'cuda' }), Error, message);
    throwsWith(() => torch.tensor([1], undefined, { device: 'cuda:0' }), Error, message);
    throwsWith(() => torch.ones([1]).to('cuda'), Error, message);
    throwsWith(() => torch.ones([1]).to({ device: 'cuda:0', dtype: 'float64' }), Error, message);
    throwsWith(() => native.zeros([1], 'float32', 'cuda'), Error, /^zeros: device 'cuda' requested/);
    throwsWith(() => native.zeros([1], 'float32', 'gpu'), Error, /^zeros: .*device type at start of device string: gpu/);
  });

  test('the process keeps working after every kind of error', () => {
    for (let i = 0; i < 50; i++) {
      assert.throws(() => torch.zeros([2]).add(torch.zeros([3])));
      assert.throws(() => torch.zeros([2], { dtype: 'nope' as never }));
    }
    assert.deepEqual(torch.tensor([1, 2]).add(1).toArray(), [2, 3]);
  });
});
