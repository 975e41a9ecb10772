// Deterministic release: dispose, tidy scopes, keep, and a training-like loop with flat memory.
import { strict as assert } from 'node:assert';
import { setImmediate as nextTick } from 'node:timers/promises';
import { describe, test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { torch, type Tensor } from '../../src/engine/index.ts';

const live = () => torch.memoryStats().handles;

describe('dispose', () => {
  test('frees the handle once, reports its bytes to V8 and back, and is idempotent', () => {
    const before = torch.memoryStats();
    const t = torch.zeros([1000], { dtype: 'float64' });
    const during = torch.memoryStats();
    assert.equal(during.handles, before.handles + 1);
    assert.equal(during.reportedBytes, before.reportedBytes + 8000);
    t.dispose();
    t.dispose();
    assert.deepEqual(torch.memoryStats(), before);
    assert.equal(t.isDisposed, true);
  });

  test('a view is counted as a handle but its shared storage is reported once', () => {
    const before = torch.memoryStats();
    const base = torch.zeros([250]);
    const view = base.narrow(0, 0, 10);
    assert.equal(torch.memoryStats().reportedBytes, before.reportedBytes + 1000);
    assert.equal(live(), before.handles + 2);
    torch.dispose([base, { view }]);
    assert.deepEqual(torch.memoryStats(), before);
  });

  test('garbage collection frees tensors that were never disposed', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const before = live();
    (() => {
      for (let i = 0; i < 100; i++) torch.ones([10]).add(1);
    })();
    assert.equal(live(), before + 200);
    for (let round = 0; round < 10 && live() > before; round++) {
      gc();
      await nextTick();
    }
    assert.equal(live(), before);
  });
});

describe('tidy', () => {
  test('disposes intermediates and keeps returned tensors, also inside arrays, objects and Maps', () => {
    const before = live();
    const made: Tensor[] = [];
    const result = torch.tidy(() => {
      const a = torch.ones([2]);
      const b = a.mul(3);
      const c = b.add(1);
      const d = c.sum();
      const e = torch.zeros([1]);
      made.push(a, b, c, d, e);
      return { total: d, nested: [c, { deep: new Map([['e', e]]) }], label: 'x', n: 3 };
    });
    assert.deepEqual(made.map((t) => t.isDisposed), [true, true, false, false, false]);
    assert.equal(result.total.item(), 8);
    assert.deepEqual((result.nested[0] as Tensor).toArray(), [4, 4]);
    assert.equal(live(), before + 3);
    torch.dispose(result);
    assert.equal(live(), before);
  });

  test('nested scopes hand returned tensors to the enclosing scope', () => {
    let inner: Tensor | undefined;
    let innerTemp: Tensor | undefined;
    const outer = torch.tidy(() => {
      inner = torch.tidy(() => {
        innerTemp = torch.ones([1]);
        return innerTemp.add(1);
      });
      assert.equal(innerTemp!.isDisposed, true);
      assert.equal(inner.isDisposed, false);
      return inner.mul(2);
    });
    assert.equal(inner!.isDisposed, true); // not returned by the outer scope
    assert.equal(outer.item(), 4);
    outer.dispose();
  });

  test('keep() makes a tensor outlive every open scope; outside tensors are untouched', () => {
    const outside = torch.ones([1]);
    let kept: Tensor | undefined;
    torch.tidy(() => {
      torch.tidy(() => {
        kept = torch.keep(outside.add(1));
        outside.mul(5);
      });
    });
    assert.equal(kept!.isDisposed, false);
    assert.equal(outside.isDisposed, false);
    assert.equal(kept!.item(), 2);
    torch.dispose([kept, outside]);
  });

  test('returning an input tensor leaves it alone; a throw disposes everything and propagates', () => {
    const input = torch.ones([1]);
    assert.equal(torch.tidy(() => input), input);
    assert.equal(input.isDisposed, false);
    const before = live();
    let temp: Tensor | undefined;
    assert.throws(
      () =>
        torch.tidy(() => {
          temp = torch.ones([3]);
          throw new Error('step failed');
        }),
      /step failed/,
    );
    assert.equal(temp!.isDisposed, true);
    assert.equal(live(), before);
    assert.throws(() => torch.tidy(() => Promise.resolve(torch.ones([1]))), /tidy: the function must be synchronous/);
    assert.equal(live(), before);
    input.dispose();
  });

  test('gradients read inside a scope are released with it', () => {
    const w = torch.ones([3], { requiresGrad: true });
    const before = live();
    torch.tidy(() => {
      w.mul(2).sum().backward();
      assert.deepEqual(w.grad!.toArray(), [2, 2, 2]);
    });
    assert.equal(live(), before);
    assert.deepEqual(w.grad!.toArray(), [2, 2, 2]);
  });
});

describe('a training-like loop', () => {
  test('300 steps inside tidy leave no handles behind and keep resident memory flat', () => {
    torch.manualSeed(0);
    const weight = torch.keep(torch.randn([4, 2, 3, 3, 3]).mul(0.1).requiresGrad_());
    const bias = torch.keep(torch.zeros([4], { requiresGrad: true }));
    const step = () =>
      torch.tidy(() => {
        // about 0.5 MB of tensors per step: keeping them would add over 100 MB across the loop
        const x = torch.randn([1, 2, 16, 16, 16]);
        const y = torch.instanceNorm(torch.conv3d(x, weight, bias, { padding: 1 })).relu();
        const loss = y.sub(x.repeat(1, 2, 1, 1, 1)).square().mean();
        loss.backward();
        torch.noGrad(() => {
          for (const p of [weight, bias]) p.add_(p.grad!, -0.01);
        });
        weight.grad = null;
        bias.grad = null;
        return loss.item();
      });
    for (let i = 0; i < 50; i++) step();
    const handles = live();
    const rss = process.memoryUsage().rss;
    const losses: number[] = [];
    for (let i = 0; i < 300; i++) losses.push(step());
    assert.equal(live(), handles);
    const growthMB = (process.memoryUsage().rss - rss) / 2 ** 20;
    // measured: under 1 MB here; glibc's heap with posix_memalign blocks grew by ~60 MB
    assert.ok(growthMB < 24, `resident memory grew by ${growthMB.toFixed(1)} MB over 300 steps`);
    assert.ok(losses.every(Number.isFinite));
    torch.dispose([weight, bias]);
  });
});

test('tidy keeps tensors returned beside large typed arrays, which it does not walk', () => {
  const values = new Float32Array(4_000_000);
  let inner: Tensor | undefined;
  const result = torch.tidy(() => {
    inner = torch.ones([2]);
    return { values, t: inner };
  });
  assert.equal(result.values, values);
  assert.equal(result.t.isDisposed, false);
  result.t.dispose();
});

test('large blocks (32 MiB and more, mapped on their own) hold their values, are reused by blocks of their size, and are not leaked', () => {
  // 9 Mi float32 values: 36 MiB, above the size from which blocks are mapped rather than taken from malloc's heap; the
  // mapping is 40 MiB (36 MiB and the alignment, rounded up to 2 MiB pages, and a page to align the start).
  const count = 9 * 2 ** 20;
  const mapped = 40 * 2 ** 20;
  const rssAt = () => process.memoryUsage().rss / 2 ** 20;
  const cached = () => torch.memoryStats().cachedLargeBytes;
  const before = rssAt();
  for (let round = 0; round < 12; round++) {
    torch.tidy(() => {
      const filled = torch.full([count], round + 0.5);
      const copy = filled.clone();
      // The first and last elements sit next to the block's bookkeeping and its end.
      assert.equal(copy.narrow(0, 0, 1).item(), round + 0.5);
      assert.equal(copy.narrow(0, count - 1, 1).item(), round + 0.5);
      assert.equal(copy.sum().item(), (round + 0.5) * count);
      // A reused block holds the last values written to it: zeros must still be zeros.
      assert.equal(torch.zeros([count]).abs().sum().item(), 0);
    });
  }
  // Four blocks were alive at once (filled, copy, zeros, abs); freed, they wait for reuse.
  assert.equal(cached(), 4 * mapped);
  const one = torch.empty([count]);
  assert.equal(cached(), 3 * mapped);
  const larger = torch.empty([count + 2 ** 20]);
  assert.equal(cached(), 3 * mapped, 'a block of another size is mapped anew');
  torch.dispose([one, larger]);
  assert.equal(cached(), 4 * mapped + 44 * 2 ** 20);
  // Without freeing, 12 rounds of four 36 MiB blocks would keep about 1.7 GiB.
  const growthMB = rssAt() - before;
  assert.ok(growthMB < 300, `resident memory grew by ${growthMB.toFixed(0)} MB`);
});
