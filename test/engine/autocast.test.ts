// Autocast scopes: the state they set and restore, and what runs in which dtype inside them, against float64
// references computed from the bfloat16-rounded operands.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { assertClose, seededTensor } from './helpers.ts';

/** bfloat16 keeps 8 significant bits: one rounding errs by at most 2^-8 relative. */
const BF16_ROUNDING = 2 ** -8;

const bf16Rounded = (t: Tensor) => t.to('bfloat16').to('float64');
const maxAbs = (t: Tensor) => Math.max(...t.abs().toArray());

describe('autocast scopes', () => {
  test('switch autocast on inside and restore the previous state after', () => {
    assert.deepEqual(torch.autocastState(), { enabled: false, dtype: 'bfloat16', cache: true });
    const inside = torch.autocast('bfloat16', () => {
      const outer = torch.autocastState();
      const nested = torch.autocast('float32', () => torch.autocastState());
      return { outer, nested, after: torch.autocastState() };
    });
    assert.equal(inside.outer.enabled, true);
    assert.equal(inside.outer.dtype, 'bfloat16');
    assert.equal(inside.nested.enabled, false, "a 'float32' scope switches autocast off");
    assert.equal(inside.after.enabled, true, 'the nested scope restores the outer one');
    assert.equal(torch.autocastState().enabled, false);
  });

  test('restore the state when the function throws or returns a promise', () => {
    assert.throws(
      () =>
        torch.autocast('bfloat16', () => {
          throw new Error('inside');
        }),
      /inside/,
    );
    assert.equal(torch.autocastState().enabled, false);
    assert.throws(() => torch.autocast('bfloat16', () => Promise.resolve(1)), /must be synchronous/);
    assert.equal(torch.autocastState().enabled, false);
    const x = torch.ones([1, 20, 3, 3, 3]);
    const w = torch.ones([20, 20, 1, 1, 1]);
    assert.equal(torch.conv3d(x, w).dtype, 'float32', 'no autocast after the scopes');
  });

  test('reject an unknown dtype', () => {
    assert.throws(() => torch.autocast('float16' as 'bfloat16', () => 0), /expected 'bfloat16' or 'float32'/);
  });
});

describe('operations under autocast', () => {
  // 40 channels: no direct float32 kernel takes it, so it runs in bfloat16.
  const x = seededTensor([2, 40, 5, 6, 7], 1);
  const w = seededTensor([24, 40, 3, 3, 3], 2, { low: -0.2, high: 0.2 });
  const b = seededTensor([24], 3);

  test('a wide convolution returns bfloat16: the float64 convolution of the rounded operands, rounded twice', () => {
    const y = torch.autocast('bfloat16', () => torch.conv3d(x.float(), w.float(), b.float(), { padding: 1 }));
    assert.equal(y.dtype, 'bfloat16');
    const withoutBias = torch.conv3d(bf16Rounded(x), bf16Rounded(w), null, { padding: 1 }).toArray();
    const reference = torch.conv3d(bf16Rounded(x), bf16Rounded(w), bf16Rounded(b), { padding: 1 }).toArray();
    // Products are exact in float32 and sums of 1080 of them err far less than a bfloat16 rounding; the sum is
    // rounded to bfloat16, then again once the bias is added.
    const got = y.to('float64').toArray();
    got.forEach((value, i) => {
      const bound = BF16_ROUNDING * (Math.abs(withoutBias[i]) + Math.abs(reference[i])) * 1.01 + 1e-6;
      assert.ok(Math.abs(value - reference[i]) <= bound, `element ${i}: got ${value}, expected ${reference[i]} within ${bound}`);
    });
    const fp32 = torch.conv3d(x.float(), w.float(), b.float(), { padding: 1 });
    const deviation = maxAbs(y.float().sub(fp32)) / maxAbs(fp32);
    assert.ok(deviation < 1e-2, `relative deviation from float32 ${deviation}`);
  });

  // Stride 2 on odd sizes: the weight gradient, a forward convolution dilated by the stride, is cut to the kernel.
  for (const [stride, batch] of [[1, 2], [2, 2], [2, 1]]) {
    test(`gradients at stride ${stride}, batch ${batch}: float32 for the float32 weight and input, close to float32's`, () => {
      const input = x.narrow(0, 0, batch).float().detach().requiresGrad_();
      const weight = w.float().detach().requiresGrad_();
      const y = torch.autocast('bfloat16', () => torch.conv3d(input, weight, null, { padding: 1, stride }));
      assert.equal(y.dtype, 'bfloat16');
      y.float().square().sum().backward();
      assert.equal(weight.dtype, 'float32');
      assert.equal(weight.grad?.dtype, 'float32');
      assert.equal(input.grad?.dtype, 'float32');
      const [referenceInput, referenceWeight] = [x.narrow(0, 0, batch).float(), w.float()].map((t) => t.detach().requiresGrad_());
      torch.conv3d(referenceInput, referenceWeight, null, { padding: 1, stride }).square().sum().backward();
      for (const [name, got, expected] of [['weight', weight.grad!, referenceWeight.grad!], ['input', input.grad!, referenceInput.grad!]] as const) {
        const deviation = maxAbs(got.sub(expected)) / maxAbs(expected);
        assert.ok(deviation < 2e-2, `relative deviation of the ${name} gradient ${deviation}`);
      }
    });
  }

  test('a thin convolution stays on the float32 kernel, even with bfloat16 input', () => {
    const thinX = seededTensor([1, 4, 6, 6, 6], 4);
    const thinW = seededTensor([4, 4, 3, 3, 3], 5);
    const fp32 = torch.conv3d(thinX.to('bfloat16').float(), thinW.float(), null, { padding: 1, paddingMode: 'reflect' });
    const y = torch.autocast('bfloat16', () => torch.conv3d(thinX.to('bfloat16'), thinW.float(), null, { padding: 1, paddingMode: 'reflect' }));
    assert.equal(y.dtype, 'float32');
    assert.deepEqual(y.toArray(), fp32.toArray());
  });

  test('matrix products run in bfloat16; softmax and normalisations in float32', () => {
    const a = seededTensor([3, 5], 6).float();
    const m = seededTensor([5, 4], 7).float();
    const logits = seededTensor([2, 3, 4, 4, 4], 8).to('bfloat16');
    const [product, probabilities, normed] = torch.autocast('bfloat16', () => [a.matmul(m), logits.softmax(1), torch.instanceNormLeakyRelu(logits, 0.2)]);
    assert.equal(product.dtype, 'bfloat16');
    // libtorch's small bfloat16 products may round each of the 5 partial sums: at most 6 roundings of Σ|a||m|
    const bound = 6 * BF16_ROUNDING * maxAbs(bf16Rounded(a).abs().matmul(bf16Rounded(m).abs()));
    assertClose(product.to('float64'), bf16Rounded(a).matmul(bf16Rounded(m)).toArray(), { rtol: 0, atol: bound });
    assert.equal(probabilities.dtype, 'float32');
    assertClose(probabilities, logits.to('float64').softmax(1).toArray(), { rtol: 1e-6 });
    assert.equal(normed.dtype, 'float32');
    assertClose(normed, torch.instanceNormLeakyRelu(logits.float(), 0.2).toArray(), { rtol: 1e-6, atol: 1e-6 });
  });

  test('a transposed convolution runs in float32 (libtorch 1.13 has no bfloat16 one on the CPU), even with bfloat16 input', () => {
    const input = seededTensor([1, 16, 3, 3, 3], 9).to('bfloat16');
    const weight = seededTensor([16, 8, 2, 2, 2], 10).float();
    const y = torch.autocast('bfloat16', () => torch.convTranspose3d(input, weight, null, { stride: 2 }));
    assert.equal(y.dtype, 'float32');
    assert.deepEqual(y.toArray(), torch.convTranspose3d(input.float(), weight, null, { stride: 2 }).toArray());
  });

  test('weights cast in one scope are cast again in the next (the cache is cleared on leaving)', () => {
    const weight = w.float().detach().requiresGrad_();
    const first = torch.autocast('bfloat16', () => torch.conv3d(x.float(), weight, null, { padding: 1 }));
    torch.noGrad(() => weight.mul_(2));
    const second = torch.autocast('bfloat16', () => torch.conv3d(x.float(), weight, null, { padding: 1 }));
    // doubling is exact in bfloat16
    assert.deepEqual(second.toArray(), first.mul(2).toArray());
  });
});
