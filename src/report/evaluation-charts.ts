// Charts of an evaluation over the 15 modality subsets: Dice and HD95 as heat maps (subsets × regions, the
// layout of docs/method.md's Table 1) and the per-case Dice of every subset as a strip plot; the ablation's
// mean Dice per variant as grouped bars.
import { subsetName } from '../data/modalities.ts';
import { REGIONS } from '../data/regions.ts';
import type { AblationRow, EvaluationResult, EvaluationSummary } from '../evaluation/tables.ts';
import type { Chart } from './charts.ts';

const REGION_COLOURS = { domain: [...REGIONS], range: ['#2ca02c', '#d62728', '#e6a800'] };
const CELL = 26;

function heatMap(summary: EvaluationSummary, metric: 'dice' | 'hausdorff95'): Chart {
  const dice = metric === 'dice';
  const columns = [...REGIONS, 'mean'] as const;
  const subsetOrder = summary.subsets.map((row) => row.name);
  const values = summary.subsets.flatMap((row) =>
    columns.map((column) => ({ subset: row.name, region: column, value: dice ? 100 * row.dice[column] : row.hausdorff95[column] })),
  );
  const title = dice ? 'Dice (%)' : 'HD95 (mm)';
  // Cell text turns white over the darker half of the colour scale.
  const darkFrom = dice ? 50 : Math.max(...values.map((v) => v.value)) / 2;
  const cellTitle = dice ? 'mean Dice over cases (%)' : 'mean HD95 over cases (mm)';
  return {
    name: dice ? 'dice-heatmap' : 'hd95-heatmap',
    caption: dice
      ? 'Mean Dice (%) over the evaluated cases per modality subset and region; darker is better.'
      : 'Mean 95 % Hausdorff distance (mm) over the evaluated cases per modality subset and region; lighter is better.',
    spec: {
      title: `${title} per modality subset`,
      config: { axis: { grid: false } },
      data: { values },
      width: CELL * 4 * 2,
      height: CELL * subsetOrder.length,
      encoding: {
        x: { field: 'region', type: 'nominal', title: 'region', sort: [...columns], axis: { labelAngle: 0, orient: 'top' } },
        y: { field: 'subset', type: 'nominal', title: 'available sequences', sort: subsetOrder },
      },
      layer: [
        {
          mark: 'rect',
          encoding: {
            color: {
              field: 'value',
              type: 'quantitative',
              title: cellTitle,
              scale: dice ? { scheme: 'blues', domain: [0, 100] } : { scheme: 'orangered', zero: true },
            },
          },
        },
        {
          mark: { type: 'text', fontSize: 11 },
          encoding: {
            text: { field: 'value', type: 'quantitative', format: '.1f' },
            color: {
              condition: { test: `datum.value > ${darkFrom}`, value: 'white' },
              value: 'black',
            },
          },
        },
      ],
    } as Chart['spec'],
  };
}

/** Dice and HD95 of the 15 subsets as heat maps. */
export function subsetHeatMaps(summary: EvaluationSummary): Chart[] {
  return [heatMap(summary, 'dice'), heatMap(summary, 'hausdorff95')];
}

/** Every case's Dice per subset and region, one row per subset, regions offset within the row. */
export function perCaseDiceChart(result: EvaluationResult): Chart {
  const subsetOrder = result.subsets.map(subsetName);
  const values = result.cases.flatMap((entry) =>
    result.subsets.flatMap((subset, s) => REGIONS.map((region) => ({ subset: subsetName(subset), region, dice: 100 * entry.scores[s]!.dice[region] }))),
  );
  return {
    name: 'per-case-dice',
    caption: `Dice (%) of each of the ${result.cases.length} evaluated cases per subset (one point per case and region); the bar marks the mean.`,
    spec: {
      title: 'Per-case Dice per modality subset',
      data: { values },
      width: 420,
      height: 36 * subsetOrder.length,
      encoding: {
        y: { field: 'subset', type: 'nominal', title: 'available sequences', sort: subsetOrder },
        yOffset: { field: 'region', type: 'nominal', sort: [...REGIONS] },
        color: { field: 'region', type: 'nominal', title: 'region', scale: REGION_COLOURS },
      },
      layer: [
        {
          mark: { type: 'point', filled: true, size: 28, opacity: 0.7 },
          encoding: {
            x: { field: 'dice', type: 'quantitative', title: 'Dice (%)', scale: { domain: [0, 100] } },
          },
        },
        {
          mark: { type: 'tick', thickness: 2, size: 9 },
          encoding: { x: { aggregate: 'mean', field: 'dice', type: 'quantitative' } },
        },
      ],
    } as Chart['spec'],
  };
}

/** Mean Dice over the 15 subsets per ablation variant and region, with ± one sd over seeds when there are several. */
export function ablationChart(rows: readonly AblationRow[]): Chart {
  const variants = rows.map((row) => row.variant);
  const values = rows.flatMap((row) =>
    REGIONS.map((region) => {
      const dice = 100 * row.dice[region];
      const sd = row.sd ? 100 * row.sd[region] : 0;
      return { variant: row.variant, region, dice, low: dice - sd, high: dice + sd };
    }),
  );
  const seeded = rows.some((row) => row.sd);
  return {
    name: 'ablation',
    caption: `Mean Dice (%) over the 15 modality subsets on the test split per variant and region${seeded ? '; whiskers: ± one sample sd over seeds' : ''}.`,
    spec: {
      title: 'Ablation: mean Dice over the 15 subsets',
      data: { values },
      width: { step: 22 },
      height: 260,
      encoding: {
        x: { field: 'variant', type: 'nominal', title: 'variant', sort: variants, axis: { labelAngle: -30 } },
        xOffset: { field: 'region', type: 'nominal', sort: [...REGIONS] },
        color: { field: 'region', type: 'nominal', title: 'region', scale: REGION_COLOURS },
      },
      layer: [
        { mark: 'bar', encoding: { y: { field: 'dice', type: 'quantitative', title: 'Dice (%)', scale: { domain: [0, 100] } } } },
        ...(seeded
          ? [{ mark: { type: 'rule' as const, color: 'black' }, encoding: { y: { field: 'low', type: 'quantitative' as const }, y2: { field: 'high' } } }]
          : []),
      ],
    } as Chart['spec'],
  };
}
