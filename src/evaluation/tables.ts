// Evaluation results in the layout of the paper's Table 1 (one row per modality subset with ●/○
// marks, then WT, TC, ET and their mean; last row the average over subsets), as Markdown, CSV and
// JSON, plus a Hausdorff 95 % table and per-case scores.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../data/files.ts';
import { MODALITIES, MODALITY_LABELS, subsetName, type ModalityMask } from '../data/modalities.ts';
import { REGIONS, type Region } from '../data/regions.ts';
import type { RegionScores } from './metrics.ts';

/** One case's scores, one entry per evaluated subset (parallel to `EvaluationResult.subsets`). */
export interface CaseResult {
  id: string;
  scores: RegionScores[];
  /** Wall time spent on the case, seconds. */
  seconds: number;
}

export interface EvaluationResult {
  subsets: readonly ModalityMask[];
  cases: CaseResult[];
}

/** Per-region values with their mean over the three regions. */
export type RegionValues = Record<Region, number> & { mean: number };

export interface SubsetSummary {
  subset: ModalityMask;
  name: string;
  /** Mean Dice over cases, as a fraction. */
  dice: RegionValues;
  /** Mean HD95 over cases, millimetres. */
  hausdorff95: RegionValues;
}

export interface EvaluationSummary {
  subsets: SubsetSummary[];
  /** The mean of the subset rows. */
  average: { dice: RegionValues; hausdorff95: RegionValues };
}

export const meanOf = (values: readonly number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;

export function withMean(values: Record<Region, number>): RegionValues {
  return { ...values, mean: meanOf(REGIONS.map((region) => values[region])) };
}

function averageRows(rows: readonly RegionValues[]): RegionValues {
  return withMean(Object.fromEntries(REGIONS.map((region) => [region, meanOf(rows.map((row) => row[region]))])) as Record<Region, number>);
}

/**
 * The score a training run selects its model by: per region, the mean over subsets of the mean Dice over the
 * cases whose ground truth contains that region, so that a case without (say) enhancing tumour cannot reward
 * a model that never predicts it; a region no case contains is averaged over every case.
 */
export function selectionDice(result: EvaluationResult, regionPresent: readonly Record<Region, boolean>[]): RegionValues {
  if (regionPresent.length !== result.cases.length) throw new Error(`selectionDice: ${regionPresent.length} presence rows for ${result.cases.length} cases`);
  const perRegion = REGIONS.map((region) => {
    const withRegion = result.cases.filter((_, c) => regionPresent[c][region]);
    const scored = withRegion.length > 0 ? withRegion : result.cases;
    return [region, meanOf(result.subsets.map((_, s) => meanOf(scored.map((entry) => entry.scores[s].dice[region]))))];
  });
  return withMean(Object.fromEntries(perRegion) as Record<Region, number>);
}

/** Means over cases per subset, and over subsets. */
export function summarise(result: EvaluationResult): EvaluationSummary {
  if (result.cases.length === 0) throw new Error('no evaluated cases to summarise');
  for (const entry of result.cases) {
    if (entry.scores.length !== result.subsets.length) {
      throw new Error(`case ${entry.id} has scores for ${entry.scores.length} subsets, expected ${result.subsets.length}`);
    }
  }
  const subsets = result.subsets.map((subset, s): SubsetSummary => {
    const mean = (metric: keyof RegionScores) =>
      withMean(Object.fromEntries(REGIONS.map((region) => [region, meanOf(result.cases.map((entry) => entry.scores[s][metric][region]))])) as Record<Region, number>);
    return { subset, name: subsetName(subset), dice: mean('dice'), hausdorff95: mean('hausdorff95') };
  });
  return {
    subsets,
    average: { dice: averageRows(subsets.map((row) => row.dice)), hausdorff95: averageRows(subsets.map((row) => row.hausdorff95)) },
  };
}

/** A Markdown table with columns padded to equal width; `align` per column ('l', 'c' or 'r'). */
export function markdownTable(headers: readonly string[], rows: readonly string[][], align: readonly ('l' | 'c' | 'r')[]): string {
  const widths = headers.map((header, c) => Math.max(3, header.length, ...rows.map((row) => row[c].length)));
  const pad = (text: string, c: number) => {
    if (align[c] === 'r') return text.padStart(widths[c]);
    if (align[c] === 'c') return text.padStart(text.length + Math.floor((widths[c] - text.length) / 2)).padEnd(widths[c]);
    return text.padEnd(widths[c]);
  };
  const line = (cells: readonly string[]) => `| ${cells.map(pad).join(' | ')} |`;
  const rule = widths.map((width, c) => {
    const dashes = '-'.repeat(width);
    if (align[c] === 'c') return `:${dashes.slice(2)}:`;
    if (align[c] === 'r') return `${dashes.slice(1)}:`;
    return dashes;
  });
  return [line(headers), `| ${rule.join(' | ')} |`, ...rows.map(line)].join('\n');
}

const PRESENT = '●';
const ABSENT = '○';

function subsetTable(summary: EvaluationSummary, metric: 'dice' | 'hausdorff95'): string {
  const format = metric === 'dice' ? (value: number) => (100 * value).toFixed(2) : (value: number) => value.toFixed(2);
  const values = (row: RegionValues) => [...REGIONS.map((region) => format(row[region])), format(row.mean)];
  const rows = summary.subsets.map((row) => [...row.subset.map((present) => (present ? PRESENT : ABSENT)), ...values(row[metric])]);
  rows.push(['Average', '', '', '', ...values(summary.average[metric])]);
  const headers = [...MODALITIES.map((modality) => MODALITY_LABELS[modality]), ...REGIONS, 'Mean'];
  return markdownTable(headers, rows, ['c', 'c', 'c', 'c', 'r', 'r', 'r', 'r']);
}

/** Table 1 layout: mean Dice (%) per subset. */
export function diceTableMarkdown(summary: EvaluationSummary): string {
  return subsetTable(summary, 'dice');
}

/** The same layout for the mean 95 % Hausdorff distance (mm). */
export function hausdorffTableMarkdown(summary: EvaluationSummary): string {
  return subsetTable(summary, 'hausdorff95');
}

/** What `results.md` and `results.json` say about where the numbers came from. */
export interface ResultsContext {
  /** Model (run folder) evaluated. */
  model: string;
  /** Data set root. */
  data: string;
  /** How the cases were chosen, e.g. "test split (57 cases)". */
  cases: string;
  /** Free-form settings shown in the report (overlap, weighting, ...). */
  settings?: Record<string, string | number | boolean>;
}

/** results.md: both tables with a header naming the model and data. */
export function resultsMarkdown(summary: EvaluationSummary, context: ResultsContext): string {
  const settings = Object.entries(context.settings ?? {}).map(([key, value]) => `- ${key}: ${value}`);
  return [
    '# Evaluation over the 15 modality subsets',
    '',
    `- model: ${context.model}`,
    `- data: ${context.data}`,
    `- cases: ${context.cases}`,
    ...settings,
    '',
    '## Dice (%)',
    '',
    '● present, ○ missing. WT = whole tumour, TC = tumour core, ET = enhancing tumour.',
    '',
    diceTableMarkdown(summary),
    '',
    '## Hausdorff distance, 95th percentile (mm)',
    '',
    hausdorffTableMarkdown(summary),
    '',
  ].join('\n');
}

export const csvNumber = (value: number) => String(Number(value.toFixed(6)));
const csvField = (text: string) => (/[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);
export const csvLines = (rows: readonly (readonly string[])[]) => `${rows.map((row) => row.map(csvField).join(',')).join('\n')}\n`;

const REGION_COLUMNS = (prefix: string) => [...REGIONS.map((region) => `${prefix}_${region.toLowerCase()}`), `${prefix}_mean`];

const VALUE_KEYS = [...REGIONS, 'mean'] as const;

/** One row of the ablation table: a training variant, its Dice averaged over the 15 subsets per seed, and their mean and spread. */
export interface AblationRow {
  variant: string;
  /** What the variant trains, e.g. "two branches + PBC". */
  description: string;
  /** Training seeds, one run each. */
  seeds: number[];
  /** Per seed (parallel to `seeds`): the mean Dice over the 15 subsets. */
  perSeed: RegionValues[];
  /** The mean over seeds. */
  dice: RegionValues;
  /** The sample standard deviation over seeds (n − 1 in the denominator); null with one seed. */
  sd: RegionValues | null;
}

function sampleSd(values: readonly number[]): number {
  const mean = meanOf(values);
  return Math.sqrt(values.reduce((sum, value) => sum + (value - mean) ** 2, 0) / (values.length - 1));
}

/** A row from the per-seed results (parallel to `seeds`). */
export function ablationRow(variant: string, description: string, seeds: readonly number[], perSeed: readonly RegionValues[]): AblationRow {
  if (perSeed.length === 0 || perSeed.length !== seeds.length) throw new Error(`ablation row ${variant}: ${perSeed.length} results for ${seeds.length} seeds`);
  const over = (statistic: (values: readonly number[]) => number) =>
    Object.fromEntries(VALUE_KEYS.map((key) => [key, statistic(perSeed.map((values) => values[key]))])) as RegionValues;
  return { variant, description, seeds: [...seeds], perSeed: [...perSeed], dice: over(meanOf), sd: perSeed.length > 1 ? over(sampleSd) : null };
}

const percent = (value: number) => (100 * value).toFixed(2);

/** The paper's Table 4 layout: mean Dice (%) over the 15 subsets per variant, "mean ± sd" over several seeds. */
export function ablationTableMarkdown(rows: readonly AblationRow[]): string {
  const cells = rows.map((row) => [
    row.variant,
    row.description,
    ...VALUE_KEYS.map((key) => (row.sd ? `${percent(row.dice[key])} ± ${percent(row.sd[key])}` : percent(row.dice[key]))),
  ]);
  return markdownTable(['Variant', 'Trains', ...REGIONS, 'Mean'], cells, ['l', 'l', 'r', 'r', 'r', 'r']);
}

/** ablation.csv: Dice as fractions, the mean over seeds and the sample sd (empty with one seed); seeds space-separated. */
export function ablationCsv(rows: readonly AblationRow[]): string {
  const header = ['variant', 'description', 'seeds', ...REGION_COLUMNS('dice'), ...REGION_COLUMNS('dice_sd')];
  const line = (row: AblationRow) => [
    row.variant,
    row.description,
    row.seeds.join(' '),
    ...VALUE_KEYS.map((key) => csvNumber(row.dice[key])),
    ...VALUE_KEYS.map((key) => (row.sd ? csvNumber(row.sd[key]) : '')),
  ];
  return csvLines([header, ...rows.map(line)]);
}

/**
 * results.csv: one row per subset (presence flags 1/0, name, Dice as a fraction, HD95 in mm), then
 * the average row with subset "average" and empty flags.
 */
export function resultsCsv(summary: EvaluationSummary): string {
  const header = [...MODALITIES, 'subset', ...REGION_COLUMNS('dice'), ...REGION_COLUMNS('hd95')];
  const values = (row: { dice: RegionValues; hausdorff95: RegionValues }) =>
    [row.dice, row.hausdorff95].flatMap((v) => [...REGIONS.map((region) => csvNumber(v[region])), csvNumber(v.mean)]);
  const rows = summary.subsets.map((row) => [...row.subset.map((present) => (present ? '1' : '0')), row.name, ...values(row)]);
  rows.push(['', '', '', '', 'average', ...values(summary.average)]);
  return csvLines([header, ...rows]);
}

/** per-case.csv: one row per (case, subset) with Dice (fraction) and HD95 (mm) per region. */
export function perCaseCsv(result: EvaluationResult): string {
  const header = ['case', 'subset', ...MODALITIES, ...REGIONS.map((r) => `dice_${r.toLowerCase()}`), ...REGIONS.map((r) => `hd95_${r.toLowerCase()}`)];
  const rows = result.cases.flatMap((entry) =>
    result.subsets.map((subset, s) => [
      entry.id,
      subsetName(subset),
      ...subset.map((present) => (present ? '1' : '0')),
      ...REGIONS.map((region) => csvNumber(entry.scores[s].dice[region])),
      ...REGIONS.map((region) => csvNumber(entry.scores[s].hausdorff95[region])),
    ]),
  );
  return csvLines([header, ...rows]);
}

const presence = (subset: ModalityMask) => Object.fromEntries(MODALITIES.map((modality, k) => [modality, subset[k]]));

/** results.json: context, the summary tables and every case's scores (Dice as fractions, HD95 in mm). */
export function resultsJson(result: EvaluationResult, summary: EvaluationSummary, context: ResultsContext): string {
  const document = {
    ...context,
    regions: REGIONS,
    subsets: summary.subsets.map((row) => ({ name: row.name, modalities: presence(row.subset), dice: row.dice, hausdorff95: row.hausdorff95 })),
    average: summary.average,
    perCase: result.cases.map((entry) => ({
      id: entry.id,
      seconds: entry.seconds,
      subsets: result.subsets.map((subset, s) => ({ name: subsetName(subset), ...entry.scores[s] })),
    })),
  };
  return `${JSON.stringify(document, null, 1)}\n`;
}

export const RESULT_FILES = ['results.md', 'results.csv', 'results.json', 'per-case.csv'] as const;

/** Writes results.md, results.csv, results.json and per-case.csv into `outDir`, each atomically. */
export function writeResults(outDir: string, result: EvaluationResult, context: ResultsContext): EvaluationSummary {
  const summary = summarise(result);
  try {
    fs.mkdirSync(outDir, { recursive: true });
  } catch (error) {
    throw new Error(`${outDir}: cannot create the results folder (${(error as Error).message})`);
  }
  const contents: Record<(typeof RESULT_FILES)[number], string> = {
    'results.md': resultsMarkdown(summary, context),
    'results.csv': resultsCsv(summary),
    'results.json': resultsJson(result, summary, context),
    'per-case.csv': perCaseCsv(result),
  };
  for (const name of RESULT_FILES) {
    const file = path.join(outDir, name);
    try {
      writeFileAtomic(file, contents[name]);
    } catch (error) {
      throw new Error(`${file}: cannot write results (${(error as Error).message})`);
    }
  }
  return summary;
}
