// Report sections shared by the demo, `smml evaluate` and `smml ablate`: Markdown with its figures.
import { diceTableMarkdown, hausdorffTableMarkdown, type EvaluationResult, type EvaluationSummary } from '../evaluation/tables.ts';
import type { LogRecord } from '../training/run-log.ts';
import { perCaseDiceChart, subsetHeatMaps } from './evaluation-charts.ts';
import { renderCharts, type ReportFigure } from './report.ts';
import { trainingCharts } from './training-charts.ts';

export interface ReportSection {
  markdown: string;
  figures: ReportFigure[];
}

/** Joins sections in order. */
export function joinSections(sections: readonly ReportSection[]): ReportSection {
  return { markdown: sections.map((section) => section.markdown).join('\n'), figures: sections.flatMap((section) => section.figures) };
}

/** A section of text alone. */
export function textSection(lines: readonly string[]): ReportSection {
  return { markdown: `${lines.join('\n')}\n`, figures: [] };
}

/** The 15-subset tables (Dice, HD95) with their heat maps and the per-case Dice per subset. */
export async function evaluationSection(result: EvaluationResult, summary: EvaluationSummary, diceIntro = ''): Promise<ReportSection> {
  const [diceMap, hausdorffMap] = subsetHeatMaps(summary);
  const heat = await renderCharts([diceMap!]);
  const hd = await renderCharts([hausdorffMap!]);
  const perCase = await renderCharts([perCaseDiceChart(result)]);
  const markdown = [
    '## Dice (%) per modality subset',
    '',
    ...(diceIntro ? [diceIntro, ''] : []),
    '● present, ○ missing. WT = whole tumour, TC = tumour core, ET = enhancing tumour.',
    '',
    diceTableMarkdown(summary),
    '',
    heat.markdown,
    perCase.markdown,
    '## 95 % Hausdorff distance (mm) per modality subset',
    '',
    hausdorffTableMarkdown(summary),
    '',
    hd.markdown,
  ].join('\n');
  return { markdown, figures: [...heat.figures, ...perCase.figures, ...hd.figures] };
}

/** Loss, loss terms, validation Dice and learning rate of a run, from its log; empty when the log has no step. */
export async function trainingSection(records: readonly LogRecord[]): Promise<ReportSection> {
  const charts = trainingCharts(records);
  if (charts.length === 0) return { markdown: '', figures: [] };
  const rendered = await renderCharts(charts);
  return { markdown: `## Training\n\n${rendered.markdown}`, figures: rendered.figures };
}
