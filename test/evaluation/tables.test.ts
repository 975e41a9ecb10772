import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { RegionScores } from '../../src/evaluation/metrics.ts';
import { SUBSETS } from '../../src/data/modalities.ts';
import {
  ablationCsv,
  ablationRow,
  ablationTableMarkdown,
  diceTableMarkdown,
  hausdorffTableMarkdown,
  perCaseCsv,
  RESULT_FILES,
  resultsCsv,
  resultsJson,
  selectionDice,
  summarise,
  writeResults,
  type EvaluationResult,
} from '../../src/evaluation/tables.ts';

const scores = (dice: [number, number, number], hd: [number, number, number]): RegionScores => ({
  dice: { WT: dice[0], TC: dice[1], ET: dice[2] },
  hausdorff95: { WT: hd[0], TC: hd[1], ET: hd[2] },
});

const T2_ONLY = SUBSETS[0];
const ALL_FOUR = SUBSETS[14];

// Two cases under two subsets. By hand: T2 only → Dice means (0.7, 0.5, 0.3), mean 0.5, HD95 (3, 5, 7), mean 5;
// all four → (0.8, 0.7, 0.6), mean 0.7, HD95 (2, 3, 4), mean 3; average row → (0.75, 0.6, 0.45), 0.6 and (2.5, 4, 5.5), 4.
const result: EvaluationResult = {
  subsets: [T2_ONLY, ALL_FOUR],
  cases: [
    { id: 'A', seconds: 1.5, scores: [scores([0.8, 0.6, 0.4], [2, 4, 6]), scores([0.9, 0.8, 0.7], [1, 2, 3])] },
    { id: 'B', seconds: 2.5, scores: [scores([0.6, 0.4, 0.2], [4, 6, 8]), scores([0.7, 0.6, 0.5], [3, 4, 5])] },
  ],
};

test('summary means over cases per subset and over subsets', () => {
  const summary = summarise(result);
  const close = (actual: Record<string, number>, expected: Record<string, number>) => {
    for (const key of Object.keys(expected)) assert.ok(Math.abs(actual[key] - expected[key]) < 1e-12, `${key}: ${actual[key]} vs ${expected[key]}`);
  };
  assert.deepEqual(summary.subsets.map((row) => row.name), ['T2', 'FLAIR+T1ce+T1+T2']);
  close(summary.subsets[0].dice, { WT: 0.7, TC: 0.5, ET: 0.3, mean: 0.5 });
  close(summary.subsets[0].hausdorff95, { WT: 3, TC: 5, ET: 7, mean: 5 });
  close(summary.subsets[1].dice, { WT: 0.8, TC: 0.7, ET: 0.6, mean: 0.7 });
  close(summary.average.dice, { WT: 0.75, TC: 0.6, ET: 0.45, mean: 0.6 });
  close(summary.average.hausdorff95, { WT: 2.5, TC: 4, ET: 5.5, mean: 4 });
});

test('Dice table in the Table 1 layout, Markdown, exact', () => {
  assert.equal(
    diceTableMarkdown(summarise(result)),
    [
      '|  FLAIR  | T1ce | T1  | T2  |    WT |    TC |    ET |  Mean |',
      '| :-----: | :--: | :-: | :-: | ----: | ----: | ----: | ----: |',
      '|    ○    |  ○   |  ○  |  ●  | 70.00 | 50.00 | 30.00 | 50.00 |',
      '|    ●    |  ●   |  ●  |  ●  | 80.00 | 70.00 | 60.00 | 70.00 |',
      '| Average |      |     |     | 75.00 | 60.00 | 45.00 | 60.00 |',
    ].join('\n'),
  );
});

test('HD95 table in the same layout, millimetres', () => {
  assert.equal(
    hausdorffTableMarkdown(summarise(result)),
    [
      '|  FLAIR  | T1ce | T1  | T2  |   WT |   TC |   ET | Mean |',
      '| :-----: | :--: | :-: | :-: | ---: | ---: | ---: | ---: |',
      '|    ○    |  ○   |  ○  |  ●  | 3.00 | 5.00 | 7.00 | 5.00 |',
      '|    ●    |  ●   |  ●  |  ●  | 2.00 | 3.00 | 4.00 | 3.00 |',
      '| Average |      |     |     | 2.50 | 4.00 | 5.50 | 4.00 |',
    ].join('\n'),
  );
});

test('results CSV and per-case CSV, exact', () => {
  assert.equal(
    resultsCsv(summarise(result)),
    [
      'flair,t1ce,t1,t2,subset,dice_wt,dice_tc,dice_et,dice_mean,hd95_wt,hd95_tc,hd95_et,hd95_mean',
      '0,0,0,1,T2,0.7,0.5,0.3,0.5,3,5,7,5',
      '1,1,1,1,FLAIR+T1ce+T1+T2,0.8,0.7,0.6,0.7,2,3,4,3',
      ',,,,average,0.75,0.6,0.45,0.6,2.5,4,5.5,4',
      '',
    ].join('\n'),
  );
  assert.equal(
    perCaseCsv(result),
    [
      'case,subset,flair,t1ce,t1,t2,dice_wt,dice_tc,dice_et,hd95_wt,hd95_tc,hd95_et',
      'A,T2,0,0,0,1,0.8,0.6,0.4,2,4,6',
      'A,FLAIR+T1ce+T1+T2,1,1,1,1,0.9,0.8,0.7,1,2,3',
      'B,T2,0,0,0,1,0.6,0.4,0.2,4,6,8',
      'B,FLAIR+T1ce+T1+T2,1,1,1,1,0.7,0.6,0.5,3,4,5',
      '',
    ].join('\n'),
  );
});

test('results JSON holds the tables and every case', () => {
  const context = { model: 'run', data: 'root', cases: '2 cases' };
  const document = JSON.parse(resultsJson(result, summarise(result), context));
  assert.equal(document.model, 'run');
  assert.deepEqual(document.subsets[0].modalities, { flair: false, t1ce: false, t1: false, t2: true });
  assert.equal(document.subsets[1].name, 'FLAIR+T1ce+T1+T2');
  assert.ok(Math.abs(document.average.dice.mean - 0.6) < 1e-12);
  assert.deepEqual(document.perCase[1].subsets[0], { name: 'T2', ...result.cases[1].scores[0] });
  assert.equal(document.perCase[0].seconds, 1.5);
});

test('the 15-subset table has one row per subset and the average row', () => {
  const full: EvaluationResult = { subsets: SUBSETS, cases: [{ id: 'A', seconds: 1, scores: SUBSETS.map(() => scores([1, 1, 1], [0, 0, 0])) }] };
  const lines = diceTableMarkdown(summarise(full)).split('\n');
  assert.equal(lines.length, 2 + 15 + 1);
  // Row order of the paper: T2, T1ce, T1, FLAIR alone first, all four last.
  assert.match(lines[2], /^\| +○ +\| +○ +\| +○ +\| +● +\| 100\.00 \|/);
  assert.match(lines[5], /^\| +● +\| +○ +\| +○ +\| +○ +\|/);
  assert.match(lines[16], /^\| +● +\| +● +\| +● +\| +● +\|/);
});

test('mismatched score counts are rejected', () => {
  assert.throws(() => summarise({ subsets: SUBSETS, cases: [{ id: 'X', seconds: 0, scores: [] }] }), /case X has scores for 0 subsets, expected 15/);
  assert.throws(() => summarise({ subsets: SUBSETS, cases: [] }), /no evaluated cases/);
});

test('writeResults writes the four files atomically into a new folder', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
  try {
    const out = path.join(dir, 'nested', 'results');
    writeResults(out, result, { model: 'run', data: 'root', cases: '2 cases', settings: { overlap: 0.5 } });
    assert.deepEqual(fs.readdirSync(out).sort(), [...RESULT_FILES].sort());
    const markdown = fs.readFileSync(path.join(out, 'results.md'), 'utf8');
    assert.ok(markdown.includes(diceTableMarkdown(summarise(result))));
    assert.ok(markdown.includes(hausdorffTableMarkdown(summarise(result))));
    assert.ok(markdown.includes('- overlap: 0.5'));
    assert.equal(fs.readFileSync(path.join(out, 'results.csv'), 'utf8'), resultsCsv(summarise(result)));
    const blocked = path.join(dir, 'a-file');
    fs.writeFileSync(blocked, '');
    assert.throws(() => writeResults(path.join(blocked, 'results'), result, { model: 'm', data: 'd', cases: 'c' }), /cannot create the results folder/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('selection Dice averages each region only over the cases that contain it', () => {
  const present = (WT: boolean, TC: boolean, ET: boolean) => ({ WT, TC, ET });
  // Case B has no ET: its ET Dice (0.2, 0.5) is left out, so ET = mean(0.4, 0.7) = 0.55; WT and TC use both
  // cases: WT = mean(0.7, 0.8) = 0.75, TC = mean(0.5, 0.7) = 0.6; mean = (0.75 + 0.6 + 0.55) / 3 = 0.6333….
  const selected = selectionDice(result, [present(true, true, true), present(true, true, false)]);
  assert.ok(Math.abs(selected.WT - 0.75) < 1e-12 && Math.abs(selected.TC - 0.6) < 1e-12 && Math.abs(selected.ET - 0.55) < 1e-12);
  assert.ok(Math.abs(selected.mean - 1.9 / 3) < 1e-12);
  // No case contains ET: every case counts, as in the plain summary (0.45).
  const none = selectionDice(result, [present(true, true, false), present(true, true, false)]);
  assert.ok(Math.abs(none.ET - 0.45) < 1e-12);
  assert.throws(() => selectionDice(result, [present(true, true, true)]), /1 presence rows for 2 cases/);
});

test('ablation rows: mean ± sample sd over seeds, computed by hand; one seed shows the value alone', () => {
  // WT (0.7, 0.8, 0.9): mean 0.8, sd √((0.01 + 0 + 0.01)/2) = 0.1. TC (0.5, 0.5, 0.8): 0.6, √(0.06/2) = 0.17321.
  // ET (0.2, 0.4, 0.6): 0.4, 0.2. Per-seed means 0.46667, 0.56667, 0.76667: mean 0.6, sd √(0.046667/2) = 0.15275.
  const perSeed = [
    { WT: 0.7, TC: 0.5, ET: 0.2, mean: (0.7 + 0.5 + 0.2) / 3 },
    { WT: 0.8, TC: 0.5, ET: 0.4, mean: (0.8 + 0.5 + 0.4) / 3 },
    { WT: 0.9, TC: 0.8, ET: 0.6, mean: (0.9 + 0.8 + 0.6) / 3 },
  ];
  const seeded = ablationRow('full', 'two branches + PBC + FRC + SRN (SMML)', [1, 2, 3], perSeed);
  const close = (actual: number, expected: number) => assert.ok(Math.abs(actual - expected) < 1e-9, `${actual} ≠ ${expected}`);
  for (const [key, mean, sd] of [['WT', 0.8, 0.1], ['TC', 0.6, Math.sqrt(0.03)], ['ET', 0.4, 0.2], ['mean', 0.6, Math.sqrt(0.07 / 3)]] as const) {
    close(seeded.dice[key], mean);
    close(seeded.sd![key], sd);
  }
  const single = ablationRow('unet', 'plain 3D U-Net with modality dropout', [5], [perSeed[0]]);
  assert.equal(single.sd, null);
  const lines = ablationTableMarkdown([single, seeded]).split('\n');
  assert.match(lines[2], /^\| unet +\| plain 3D U-Net with modality dropout +\| +70\.00 \| +50\.00 \| +20\.00 \| +46\.67 \|$/);
  assert.match(lines[3], /^\| full +\| .* \| 80\.00 ± 10\.00 \| 60\.00 ± 17\.32 \| 40\.00 ± 20\.00 \| 60\.00 ± 15\.28 \|$/);
  const csv = ablationCsv([single, seeded]).trim().split('\n');
  assert.deepEqual(csv[0].split(','), ['variant', 'description', 'seeds', 'dice_wt', 'dice_tc', 'dice_et', 'dice_mean', 'dice_sd_wt', 'dice_sd_tc', 'dice_sd_et', 'dice_sd_mean']);
  assert.equal(csv[1], 'unet,plain 3D U-Net with modality dropout,5,0.7,0.5,0.2,0.466667,,,,');
  assert.equal(csv[2], 'full,two branches + PBC + FRC + SRN (SMML),1 2 3,0.8,0.6,0.4,0.6,0.1,0.173205,0.2,0.152753');
  assert.throws(() => ablationRow('dual', 'two branches', [1, 2], [perSeed[0]]), /ablation row dual: 1 results for 2 seeds/);
});
