// The per-voxel arg-max over classes that turns blended probabilities into labels, against a plain loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { torch } from '../../src/engine/index.ts';
import { argmaxLabels } from '../../src/inference/predict.ts';

/** The first class of largest value at each voxel of (S, C, V) values, subset by subset. */
function loopArgmax(values: Float32Array, [S, C, V]: [number, number, number]): Uint8Array[] {
  return Array.from({ length: S }, (_, s) => {
    const labels = new Uint8Array(V);
    for (let v = 0; v < V; v++) {
      for (let c = 1; c < C; c++) if (values[(s * C + c) * V + v] > values[(s * C + labels[v]) * V + v]) labels[v] = c;
    }
    return labels;
  });
}

test('argmaxLabels gives each voxel the first class of largest probability, per subset', () => {
  const [S, C, X, Y, Z] = [3, 4, 5, 3, 7];
  // Values on a grid of eighths, so that many voxels have ties between classes.
  const values = Float32Array.from({ length: S * C * X * Y * Z }, (_, i) => ((i * 37 + 11) % 9) / 8);
  const probabilities = torch.tensor(values, [S, C, X, Y, Z]);
  const labels = argmaxLabels(probabilities);
  const expected = loopArgmax(values, [S, C, X * Y * Z]);
  assert.equal(labels.length, S);
  labels.forEach((subsetLabels, s) => assert.deepEqual(subsetLabels, expected[s]));
  let ties = 0;
  for (let v = 0; v < X * Y * Z; v++) {
    const column = [0, 1, 2, 3].map((c) => values[c * X * Y * Z + v]);
    if (column.filter((value) => value === Math.max(...column)).length > 1) ties++;
  }
  assert.ok(ties > 10, `the values should have ties between classes (${ties})`);
  probabilities.dispose();
});

test('argmaxLabels of a single class is all zeros, and of a strided slab equals that of its copy', () => {
  const one = torch.rand([2, 1, 2, 3, 4]);
  assert.deepEqual(argmaxLabels(one), [new Uint8Array(24), new Uint8Array(24)]);
  const whole = torch.rand([1, 3, 6, 4, 5]);
  const slab = whole.narrow(2, 2, 3);
  assert.deepEqual(argmaxLabels(slab), argmaxLabels(slab.contiguous()));
  assert.deepEqual(argmaxLabels(slab), loopArgmax(slab.contiguous().toTypedArray() as Float32Array, [1, 3, 60]));
  for (const tensor of [one, whole, slab]) tensor.dispose();
});
