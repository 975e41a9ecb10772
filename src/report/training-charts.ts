// Charts of a training run, read from its log (src/training/run-log.ts): the loss per step (raw and smoothed),
// each loss term per branch, the validation Dice per region per epoch and the learning rate.
import { REGIONS } from '../data/regions.ts';
import type { LogRecord } from '../training/run-log.ts';
import { movingAverage, type Chart } from './charts.ts';

interface StepRecord {
  step: number;
  lr: number;
  loss: number;
  /** Per branch: the branch objective's total and its terms by name. */
  branches: Record<string, number>[];
  fc?: number;
}

interface ValidatedEpoch {
  epoch: number;
  validation: { dice: Record<string, number> };
}

const WIDTH = 560;
const STEP_AXIS = { field: 'step', type: 'quantitative', title: 'training step', axis: { tickMinStep: 1, format: 'd' } } as const;
const HEIGHT = 240;

/** Points per moving-average window: a 40th of the run, at least one step. */
export function smoothingWindow(steps: number): number {
  return Math.max(1, Math.round(steps / 40));
}

function stepRecords(records: readonly LogRecord[]): StepRecord[] {
  return records.filter((record) => record.type === 'step') as unknown as StepRecord[];
}

function lossChart(steps: readonly StepRecord[]): Chart {
  const window = smoothingWindow(steps.length);
  const smoothed = movingAverage(steps.map((s) => s.loss), window);
  const smoothedName = `moving average (${window} steps)`;
  const values = steps.flatMap((s, i) => [
    { step: s.step, loss: s.loss, series: 'per step' },
    { step: s.step, loss: smoothed[i], series: smoothedName },
  ]);
  return stepLineChart(
    'loss',
    'Training loss (L1 + L2 − Lfc, the objective the optimiser minimises) per step: raw and a trailing moving average.',
    'Training loss',
    values,
    {
      y: { field: 'loss', type: 'quantitative', title: 'loss (dimensionless)', scale: { zero: false } },
      color: {
        field: 'series',
        type: 'nominal',
        title: 'series',
        scale: { domain: ['per step', smoothedName], range: ['#a6bddb', '#08519c'] },
      },
    },
  );
}

/** A line chart over training steps, with the steps' axis and the report's size. */
function stepLineChart(name: string, caption: string, title: string, values: object[], encoding: Record<string, unknown>): Chart {
  return {
    name,
    caption,
    spec: { title, width: WIDTH, height: HEIGHT, data: { values }, mark: { type: 'line', strokeWidth: 1.5 }, encoding: { x: STEP_AXIS, ...encoding } },
  };
}

function termsChart(steps: readonly StepRecord[]): Chart {
  const window = smoothingWindow(steps.length);
  const series = new Map<string, { term: string; branch: string; points: { step: number; value: number }[] }>();
  const add = (term: string, branch: string, step: number, value: number | undefined) => {
    if (value === undefined || !Number.isFinite(value)) return;
    const key = `${branch}/${term}`;
    if (!series.has(key)) series.set(key, { term, branch, points: [] });
    series.get(key)!.points.push({ step, value });
  };
  for (const s of steps) {
    s.branches.forEach((terms, b) => {
      for (const [term, value] of Object.entries(terms)) if (term !== 'total') add(term, `branch ${b + 1}`, s.step, value);
    });
    add('fc (feature relational, Lfc)', 'both branches', s.step, s.fc);
  }
  const values = [...series.values()].flatMap(({ term, branch, points }) => {
    const smoothed = movingAverage(points.map((p) => p.value), window);
    return points.map((p, i) => ({ step: p.step, value: smoothed[i], term, branch }));
  });
  return stepLineChart(
    'loss-terms',
    `Each loss term per branch, moving average over ${window} steps (names as in the run log; docs/method.md §4 defines them).`,
    'Loss terms',
    values,
    {
      y: { field: 'value', type: 'quantitative', title: 'term value (dimensionless)' },
      color: { field: 'term', type: 'nominal', title: 'term', scale: { scheme: 'tableau10' } },
      strokeDash: { field: 'branch', type: 'nominal', title: 'branch' },
    },
  );
}

function validationChart(epochs: readonly ValidatedEpoch[]): Chart {
  const values = epochs.flatMap((e) => REGIONS.map((region) => ({ epoch: e.epoch + 1, region, dice: 100 * e.validation.dice[region]! })));
  return {
    name: 'validation',
    caption: 'Validation Dice per region after each validated epoch (mean over the 15 subsets and the validation cases that contain the region).',
    spec: {
      title: 'Validation Dice',
      width: WIDTH,
      height: HEIGHT,
      data: { values },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'epoch', type: 'quantitative', title: 'epoch', axis: { tickMinStep: 1, format: 'd' } },
        y: { field: 'dice', type: 'quantitative', title: 'Dice (%)', scale: { domain: [0, 100] } },
        color: { field: 'region', type: 'nominal', title: 'region', sort: [...REGIONS], scale: { domain: [...REGIONS], range: ['#2ca02c', '#d62728', '#e6a800'] } },
      },
    },
  };
}

function learningRateChart(steps: readonly StepRecord[]): Chart {
  return {
    name: 'learning-rate',
    caption: 'Learning rate of each step (the schedule of the training configuration).',
    spec: {
      title: 'Learning rate',
      width: WIDTH,
      height: 160,
      data: { values: steps.map((s) => ({ step: s.step, lr: s.lr })) },
      mark: { type: 'line', interpolate: 'step-after', color: '#6a51a3' },
      encoding: {
        x: STEP_AXIS,
        y: { field: 'lr', type: 'quantitative', title: 'learning rate (per step)', axis: { format: '.1e' } },
      },
    },
  };
}

/** The training charts a run log supports: loss, terms and learning rate once a step ran, validation once one ran. */
export function trainingCharts(records: readonly LogRecord[]): Chart[] {
  const steps = stepRecords(records);
  const validated = records.filter((record) => record.type === 'epoch' && record.validation) as unknown as ValidatedEpoch[];
  const charts: Chart[] = [];
  if (steps.length > 0) charts.push(lossChart(steps), termsChart(steps));
  if (validated.length > 0) charts.push(validationChart(validated));
  if (steps.length > 0) charts.push(learningRateChart(steps));
  return charts;
}
