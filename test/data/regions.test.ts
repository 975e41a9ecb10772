import { test } from 'node:test';
import assert from 'node:assert/strict';
import { enhancementStratum, regionClasses } from '../../src/data/regions.ts';

test('regions follow the BraTS class sets', () => {
  assert.deepEqual(regionClasses(4), { WT: [1, 2, 3], TC: [1, 3], ET: [3] });
  assert.deepEqual(regionClasses(5), { WT: [1, 2, 3, 4], TC: [1, 3, 4], ET: [4] });
  assert.throws(() => regionClasses(3), /4 or 5 classes/);
});

test('a case has little enhancement when its enhancing tumour is under a tenth of the core', () => {
  const label = (counts: Record<number, number>) => Uint8Array.from(Object.entries(counts).flatMap(([value, count]) => Array<number>(count).fill(Number(value))));
  // 4 classes: core = necrosis (1) + enhancing (3); oedema (2) does not count.
  assert.equal(enhancementStratum(label({ 0: 50, 1: 9, 2: 40, 3: 1 }), 4), 'enhancing'); // 1 / 10 of the core
  assert.equal(enhancementStratum(label({ 0: 50, 1: 10, 2: 40, 3: 1 }), 4), 'little-enhancement'); // 1 / 11
  assert.equal(enhancementStratum(label({ 0: 50, 1: 10, 2: 40 }), 4), 'little-enhancement');
  assert.equal(enhancementStratum(label({ 0: 50, 2: 40 }), 4), 'little-enhancement'); // no core at all
  assert.equal(enhancementStratum(label({ 0: 50, 3: 2 }), 4), 'enhancing');
  // 5 classes (BraTS 2015): core = 1 + 3 + 4, enhancing = 4.
  assert.equal(enhancementStratum(label({ 1: 5, 3: 4, 4: 1 }), 5), 'enhancing');
  assert.equal(enhancementStratum(label({ 1: 5, 3: 5, 4: 1 }), 5), 'little-enhancement');
});
