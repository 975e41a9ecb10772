import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { createRng, randInt, shuffle, uniform } from '../../src/data/random.ts';

test('same seed, same sequence; different seeds differ', () => {
  const draw = (seed: number) => Array.from({ length: 20 }, createRng(seed));
  assert.deepEqual(draw(1024), draw(1024));
  assert.notDeepEqual(draw(1024), draw(1025));
});

test('numbers lie in [0, 1) with mean and variance of a uniform distribution', () => {
  const rng = createRng(7);
  const samples = Array.from({ length: 20000 }, rng);
  assert.ok(samples.every((x) => x >= 0 && x < 1));
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  const variance = samples.reduce((a, b) => a + (b - mean) ** 2, 0) / samples.length;
  // Standard error of the mean is sqrt(1/12 / 20000) ≈ 0.002.
  assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1 / 12) < 0.005, `variance ${variance}`);
});

test('randInt covers [low, high) and nothing else; uniform respects its bounds', () => {
  const rng = createRng(3);
  const counts = new Map<number, number>();
  for (let i = 0; i < 6000; i++) {
    const value = randInt(rng, -2, 4);
    counts.set(value, (counts.get(value) ?? 0) + 1);
  }
  assert.deepEqual([...counts.keys()].sort((a, b) => a - b), [-2, -1, 0, 1, 2, 3]);
  for (const count of counts.values()) assert.ok(count > 850 && count < 1150, `count ${count}`);
  assert.throws(() => randInt(rng, 3, 3), /empty range/);
  for (let i = 0; i < 1000; i++) {
    const value = uniform(rng, -0.1, 0.1);
    assert.ok(value >= -0.1 && value < 0.1);
  }
});

test('shuffle permutes in place and is reproducible', () => {
  const items = Array.from({ length: 50 }, (_, i) => i);
  const shuffled = shuffle(createRng(11), [...items]);
  assert.notDeepEqual(shuffled, items);
  assert.deepEqual([...shuffled].sort((a, b) => a - b), items);
  assert.deepEqual(shuffle(createRng(11), [...items]), shuffled);
});
