// Process-wide settings: seeding and generator state, threads, version, devices.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { torch } from '../../src/engine/index.ts';

/** One draw from every random source the engine offers. */
function draws(): number[][] {
  const ones = torch.ones([64]);
  return [
    torch.rand([8]).toArray(),
    torch.randn([8], { dtype: 'float64' }).toArray(),
    torch.randint(0, 1000, [8]).toArray(),
    torch.randperm(8).toArray(),
    torch.dropout(ones, 0.5, true).toArray(),
    torch.bernoulli(torch.full([16], 0.5)).toArray(),
    torch.empty([8]).uniform_(-2, 2).toArray(),
    torch.empty([8]).normal_(3, 0.5).toArray(),
  ];
}

describe('random number generation', () => {
  test('the same seed gives identical rand, randn, randint, randperm, dropout, bernoulli and in-place fills', () => {
    torch.manualSeed(1234);
    const first = draws();
    torch.manualSeed(1234);
    assert.deepEqual(draws(), first);
    torch.manualSeed(1235);
    const other = draws();
    first.forEach((values, i) => assert.notDeepEqual(other[i], values, `source ${i} ignores the seed`));
  });

  test('libtorch’s documented stream: manualSeed(0) then rand', () => {
    // the first values of torch.rand(3) after torch.manual_seed(0) (mt19937-based CPU generator)
    torch.manualSeed(0);
    const values = torch.rand([3]).toArray();
    [0.49625658988952637, 0.7682217955589294, 0.08847743272781372].forEach((v, i) => assert.ok(Math.abs(values[i] - v) < 1e-7, `${values[i]} vs ${v}`));
  });

  test('getRngState/setRngState resume the stream exactly', () => {
    torch.manualSeed(7);
    torch.rand([5]);
    const state = torch.getRngState();
    assert.equal(state.dtype, 'uint8');
    const expected = draws();
    draws(); // advance further
    torch.setRngState(state);
    assert.deepEqual(draws(), expected);
    // the state is a snapshot: drawing does not change a saved state tensor
    const snapshot = state.toArray();
    torch.rand([100]);
    assert.deepEqual(state.toArray(), snapshot);
  });
});

describe('threads, version, devices', () => {
  test('setNumThreads/getNumThreads', () => {
    const original = torch.getNumThreads();
    assert.ok(original >= 1);
    try {
      torch.setNumThreads(1);
      assert.equal(torch.getNumThreads(), 1);
      // results do not depend on the thread count
      torch.manualSeed(3);
      const x = torch.randn([1, 2, 6, 6, 6]);
      const w = torch.randn([3, 2, 3, 3, 3]);
      const single = torch.conv3d(x, w, null, { padding: 1 });
      torch.setNumThreads(2);
      assert.equal(torch.getNumThreads(), 2);
      assert.ok(torch.conv3d(x, w, null, { padding: 1 }).allclose(single, 1e-5, 1e-5));
    } finally {
      torch.setNumThreads(original);
    }
    assert.throws(() => torch.setNumThreads(1.5), /positive integer/);
    assert.match(torch.parallelInfo(), /ATen\/Parallel/);
  });

  test('version is libtorch’s semantic version', () => {
    assert.match(torch.version(), /^\d+\.\d+\.\d+/);
  });

  test('CUDA is reported absent and synchronize is a no-op', () => {
    assert.equal(torch.cuda.isAvailable(), false);
    assert.equal(torch.cuda.deviceCount(), 0);
    assert.doesNotThrow(() => torch.cuda.synchronize());
    assert.equal(torch.zeros([1]).device, 'cpu');
    assert.equal(torch.zeros([1], { device: 'cpu' }).to('cpu').device, 'cpu');
  });

  test('memoryStats counts handles', () => {
    const before = torch.memoryStats();
    const t = torch.zeros([4]);
    assert.equal(torch.memoryStats().handles, before.handles + 1);
    t.dispose();
    assert.equal(torch.memoryStats().handles, before.handles);
  });
});
