// How well stored priors agree with the ground truth, per class (and BraTS region) and per modality: the Dice of
// {prior > 0.5} against the label, averaged over the cases in which the class (region) occurs — a case without it
// would score 1 for an empty prior and hide how informative a modality is.
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { loadCaseArray } from '../data/cache.ts';
import { MODALITY_LABELS, type Modality } from '../data/modalities.ts';
import { regionClasses, REGIONS } from '../data/regions.ts';
import { dice } from '../evaluation/metrics.ts';
import { markdownTable } from '../evaluation/tables.ts';
import { loadPriors } from './store.ts';

export interface PriorQualityRow {
  /** A class (e.g. 'ET') or a region ('WT', 'TC', 'ET region'). */
  name: string;
  /** Mean Dice per modality over the cases that contain it; NaN when none does. */
  dice: number[];
  /** Cases that contain it. */
  cases: number;
}

export interface PriorQuality {
  /** Cases measured. */
  cases: number;
  /** Providers recorded with the measured priors. */
  providers: string[];
  /** Modality names in the column order of `dice`. */
  modalities: string[];
  /** The tumour classes (background left out). */
  classes: PriorQualityRow[];
  /** WT, TC, ET from summed class priors (4- and 5-class data only). */
  regions: PriorQualityRow[];
}

/** Short names of the classes, background first. */
export function classNames(numClasses: number): string[] {
  if (numClasses === 4) return ['background', 'NCR/NET', 'ED', 'ET'];
  if (numClasses === 5) return ['background', 'necrosis', 'oedema', 'non-enhancing', 'enhancing'];
  return Array.from({ length: numClasses }, (_, c) => `class ${c}`);
}

/** Accumulates Dice per (row, modality) over the cases in which the row's classes occur. */
class DiceTotals {
  readonly sums: number[][];
  readonly counts: number[];

  constructor(rows: number, modalities: number) {
    this.sums = Array.from({ length: rows }, () => new Array<number>(modalities).fill(0));
    this.counts = new Array<number>(rows).fill(0);
  }

  row(name: string, index: number): PriorQualityRow {
    const cases = this.counts[index];
    return { name, cases, dice: this.sums[index].map((sum) => (cases > 0 ? sum / cases : NaN)) };
  }
}

export interface MeasurePriorsOptions {
  cacheDir: string;
  /** Labelled cases with stored priors (normally the training split). */
  ids: readonly string[];
  /** Called after each case. */
  onCase?: (done: number, total: number) => void;
}

/** Measures the stored priors of `ids` (see the module comment). */
export async function measurePriors(options: MeasurePriorsOptions): Promise<PriorQuality> {
  if (options.ids.length === 0) throw new Error('measuring priors needs at least one case');
  let modalities: string[] | undefined;
  let numClasses = 0;
  let classTotals: DiceTotals | undefined;
  let regionTotals: DiceTotals | undefined;
  const providers = new Set<string>();
  for (const [index, id] of options.ids.entries()) {
    const { priors, record, manifest } = loadPriors(options.cacheDir, id);
    if (!('label' in manifest.arrays)) throw new Error(`case "${id}" has no label; prior quality is measured on labelled cases`);
    const label = loadCaseArray(options.cacheDir, manifest, 'label') as Uint8Array;
    if (!modalities) {
      modalities = manifest.modalities;
      numClasses = manifest.numClasses;
      classTotals = new DiceTotals(numClasses - 1, modalities.length);
      regionTotals = new DiceTotals(numClasses === 4 || numClasses === 5 ? REGIONS.length : 0, modalities.length);
    } else if (manifest.modalities.join() !== modalities.join() || manifest.numClasses !== numClasses) {
      throw new Error(`case "${id}": classes or modalities differ from the other measured cases`);
    }
    providers.add(record.provider);
    const K = modalities.length;
    const voxels = label.length;
    const prior = (c: number, k: number) => priors.subarray((c * K + k) * voxels, (c * K + k + 1) * voxels);
    const score = (totals: DiceTotals, row: number, classes: readonly number[]) => {
      const truth = new Uint8Array(voxels);
      for (let v = 0; v < voxels; v++) if (classes.includes(label[v])) truth[v] = 1;
      if (!truth.includes(1)) return;
      totals.counts[row]++;
      for (let k = 0; k < K; k++) {
        const maps = classes.map((c) => prior(c, k));
        const predicted = new Uint8Array(voxels);
        for (let v = 0; v < voxels; v++) {
          let sum = 0;
          for (const map of maps) sum += map[v];
          if (sum > 0.5) predicted[v] = 1;
        }
        totals.sums[row][k] += dice(predicted, truth);
      }
    };
    for (let c = 1; c < numClasses; c++) score(classTotals!, c - 1, [c]);
    if (regionTotals!.counts.length > 0) {
      const regions = regionClasses(numClasses);
      REGIONS.forEach((region, r) => score(regionTotals!, r, regions[region]));
    }
    options.onCase?.(index + 1, options.ids.length);
    await yieldToEventLoop();
  }
  const names = classNames(numClasses);
  return {
    cases: options.ids.length,
    providers: [...providers].sort(),
    modalities: modalities!,
    classes: names.slice(1).map((name, c) => classTotals!.row(name, c)),
    regions: regionTotals!.counts.map((_, r) => regionTotals!.row(`${REGIONS[r]} region`, r)),
  };
}

/** The measurement as a Markdown table: one row per class and region, one column per modality, Dice in %. */
export function priorQualityMarkdown(quality: PriorQuality): string {
  const label = (modality: string) => MODALITY_LABELS[modality as Modality] ?? modality;
  const cell = (value: number) => (Number.isNaN(value) ? '–' : (100 * value).toFixed(1));
  const rows = [...quality.classes, ...quality.regions].map((row) => [row.name, String(row.cases), ...row.dice.map(cell)]);
  const table = markdownTable(['Prior', 'Cases', ...quality.modalities.map(label)], rows, ['l', 'r', ...quality.modalities.map(() => 'r' as const)]);
  return (
    `Dice (%) of prior > 0.5 against the ground truth, per modality, over the cases that contain each class ` +
    `(${quality.cases} cases; priors by ${quality.providers.join(', ')}):\n\n${table}`
  );
}
