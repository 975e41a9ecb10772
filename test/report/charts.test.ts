// Report charts: what the training log becomes, and that the rendered SVG and PNG carry titled axes and ticks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PNG } from 'pngjs';
import { chartSvg, movingAverage, svgToPng } from '../../src/report/charts.ts';
import { subsetHeatMaps } from '../../src/report/evaluation-charts.ts';
import { smoothingWindow, trainingCharts } from '../../src/report/training-charts.ts';
import { SUBSETS, subsetName } from '../../src/data/modalities.ts';
import type { EvaluationSummary } from '../../src/evaluation/tables.ts';

/** A log of 80 steps over two epochs with a validation after each. */
function runLog() {
  const steps = Array.from({ length: 80 }, (_, i) => ({
    type: 'step',
    step: i + 1,
    lr: i < 40 ? 1e-3 : 5e-4,
    loss: 2 - i / 80,
    branches: [{ total: 1, task: 0.5, pbc: 0.1 }, { total: 1, task: 0.6 }],
    fc: 0.05,
  }));
  const epochs = [0, 1].map((epoch) => ({ type: 'epoch', epoch, validation: { dice: { WT: 0.5 + epoch / 10, TC: 0.4, ET: 0.3 }, mean: 0.4 } }));
  return [...steps.slice(0, 40), epochs[0]!, ...steps.slice(40), epochs[1]!];
}

describe('training charts', () => {
  it('moving average: the mean of the last window values, fewer at the start', () => {
    assert.deepEqual(movingAverage([1, 2, 3, 4, 5], 2), [1, 1.5, 2.5, 3.5, 4.5]);
    assert.deepEqual(movingAverage([3, 6, 9], 5), [3, 4.5, 6]);
    assert.equal(smoothingWindow(80), 2);
    assert.equal(smoothingWindow(10), 1);
  });

  it('loss raw and smoothed, each term per branch, validation per region, learning rate', () => {
    const charts = trainingCharts(runLog());
    assert.deepEqual(charts.map((chart) => chart.name), ['loss', 'loss-terms', 'validation', 'learning-rate']);
    const values = (index: number) => (charts[index]!.spec.data as { values: Record<string, unknown>[] }).values;
    // Window 2: the smoothed loss at step 2 is the mean of steps 1 and 2.
    const smoothed = values(0).filter((v) => v.series === 'moving average (2 steps)');
    assert.equal(smoothed.length, 80);
    assert.ok(Math.abs((smoothed[1]!.loss as number) - (2 + (2 - 1 / 80)) / 2) < 1e-12);
    const terms = new Set(values(1).map((v) => `${v.branch}/${v.term}`));
    assert.deepEqual([...terms].sort(), ['both branches/fc (feature relational, Lfc)', 'branch 1/pbc', 'branch 1/task', 'branch 2/task']);
    assert.deepEqual(values(2).filter((v) => v.region === 'WT').map((v) => [v.epoch, v.dice]), [[1, 50], [2, 60]]);
    assert.deepEqual([values(3)[0]!.lr, values(3)[79]!.lr], [1e-3, 5e-4]);
    assert.deepEqual(trainingCharts([]), []);
  });

  it('renders SVG with axis titles, tick labels and legend, and a PNG twice its size', async () => {
    const chart = trainingCharts(runLog())[0]!;
    const svg = await chartSvg(chart.spec);
    for (const text of ['training step', 'loss (dimensionless)', 'Training loss', 'per step', 'moving average (2 steps)']) {
      assert.ok(svg.includes(`>${text}</text>`), text);
    }
    // Tick labels of the step axis (80 steps: 0, 10, …, 80).
    assert.ok(svg.includes('>40</text>'));
    const width = Number(/<svg[^>]* width="(\d+)"/.exec(svg)![1]);
    const height = Number(/<svg[^>]* height="(\d+)"/.exec(svg)![1]);
    const png = PNG.sync.read(svgToPng(svg));
    assert.deepEqual([png.width, png.height], [2 * width, 2 * height]);
    // Text and lines are drawn: far from every pixel is white.
    let dark = 0;
    for (let i = 0; i < png.data.length; i += 4) if (png.data[i]! < 128) dark++;
    assert.ok(dark > 1000, `${dark} dark pixels`);
  });

  it('heat maps of the 15 subsets hold each subset and region with its value', async () => {
    const row = (s: number) => ({ WT: s / 20, TC: s / 30, ET: 0, mean: (s / 20 + s / 30) / 3 });
    const summary = {
      subsets: SUBSETS.map((subset, s) => ({ subset, name: subsetName(subset), dice: row(s), hausdorff95: { WT: s, TC: 2 * s, ET: 3, mean: s + 1 } })),
      average: { dice: row(7), hausdorff95: { WT: 1, TC: 1, ET: 1, mean: 1 } },
    } as EvaluationSummary;
    const [dice, hd] = subsetHeatMaps(summary);
    const svg = await chartSvg(dice!.spec);
    for (const subset of SUBSETS) assert.ok(svg.includes(`>${subsetName(subset)}</text>`), subsetName(subset));
    // Subset 14 (all four): WT 14/20 = 70.0 %.
    assert.ok(svg.includes('>70.0</text>'));
    assert.ok((await chartSvg(hd!.spec)).includes('>HD95 (mm) per modality subset</text>'));
  });
});
