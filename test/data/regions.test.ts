import { test } from 'node:test';
import assert from 'node:assert/strict';
import { regionClasses } from '../../src/data/regions.ts';

test('regions follow the BraTS class sets', () => {
  assert.deepEqual(regionClasses(4), { WT: [1, 2, 3], TC: [1, 3], ET: [3] });
  assert.deepEqual(regionClasses(5), { WT: [1, 2, 3, 4], TC: [1, 3, 4], ET: [4] });
  assert.throws(() => regionClasses(3), /4 or 5 classes/);
});
