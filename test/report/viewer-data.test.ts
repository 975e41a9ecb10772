// The viewer's data: where the crosshair starts, the label legend, subset file names.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { SUBSETS } from '../../src/data/modalities.ts';
import { labelCentre, labelLegend, subsetSlug } from '../../src/report/viewer-data.ts';

it('the crosshair starts at the centre of the labelled voxels, as grid fractions', () => {
  const shape: [number, number, number] = [4, 5, 2];
  const labels = new Uint8Array(40);
  // Voxels (1, 2, 0) and (3, 4, 1): centre (2, 3, 0.5), i.e. ((2 + 0.5) / 4, (3 + 0.5) / 5, (0.5 + 0.5) / 2).
  labels[1 + 4 * 2] = 2;
  labels[3 + 4 * 4 + 20] = 4;
  assert.deepEqual(labelCentre(labels, shape), [2.5 / 4, 3.5 / 5, 1 / 2]);
  assert.equal(labelCentre(new Uint8Array(40), shape), undefined);
});

it('legends follow the data set\'s label values; subsets name their files', () => {
  assert.deepEqual(labelLegend('brats2018').map((label) => label.value), [1, 2, 4]);
  assert.deepEqual(labelLegend('brats2023').map((label) => label.value), [1, 2, 3]);
  assert.deepEqual(labelLegend('brats2018')[2]!.colour, [255, 220, 0]);
  assert.equal(subsetSlug(SUBSETS[14]!), 'flair-t1ce-t1-t2');
  assert.equal(new Set(SUBSETS.map(subsetSlug)).size, 15);
});
