import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import {
  discoverBrats,
  makeSplit,
  mapBratsLabels,
  readSplit,
  selectCases,
  splitSizes,
  SPLIT_PRESETS,
  stratifiedSplitSizes,
  writeSplit,
} from '../../src/data/brats.ts';
import { createRng } from '../../src/data/random.ts';
import { readVolume, writeVolume } from '../../src/data/volume.ts';

const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
after(() => fs.rmSync(tempDir, { recursive: true, force: true }));
let treeCounter = 0;

/** Creates empty files at the given relative paths under a fresh root; discovery only looks at names. */
function makeTree(relativePaths: string[]): string {
  const root = path.join(tempDir, `tree-${treeCounter++}`);
  for (const relative of relativePaths) {
    fs.mkdirSync(path.dirname(path.join(root, relative)), { recursive: true });
    fs.writeFileSync(path.join(root, relative), '');
  }
  return root;
}

const brats2018Case = (dir: string, id: string, withLabel = true) =>
  ['flair', 't1', 't1ce', 't2', ...(withLabel ? ['seg'] : [])].map((token) => `${dir}${id}/${id}_${token}.nii.gz`);
const brats2023Case = (id: string, withLabel = true) =>
  ['t2f', 't1n', 't1c', 't2w', ...(withLabel ? ['seg'] : [])].map((token) => `${id}/${id}-${token}.nii.gz`);
const brats2015Case = (dir: string, id: string, withLabel = true) =>
  [
    ['VSD.Brain.XX.O.MR_Flair.', 1],
    ['VSD.Brain.XX.O.MR_T1.', 2],
    ['VSD.Brain.XX.O.MR_T1c.', 3],
    ['VSD.Brain.XX.O.MR_T2.', 4],
    ...(withLabel ? [['VSD.Brain_3more.XX.O.OT.', 5]] : []),
  ].map(([prefix, n]) => `${dir}${id}/${prefix}${n}/${prefix}${n}.mha`);

describe('BraTS discovery', () => {
  test('2018 layout under HGG/LGG, with an unlabelled case', () => {
    const root = makeTree([
      ...brats2018Case('HGG/', 'Brats18_2013_2_1'),
      ...brats2018Case('LGG/', 'Brats18_2013_0_1'),
      ...brats2018Case('Validation/', 'Brats18_CBICA_AAM_1', false),
    ]);
    const dataset = discoverBrats(root);
    assert.equal(dataset.layout, 'brats2018');
    assert.equal(dataset.numClasses, 4);
    assert.deepEqual(dataset.labelValues, [0, 1, 2, 4]);
    assert.deepEqual(dataset.cases.map((c) => c.id), ['Brats18_2013_0_1', 'Brats18_2013_2_1', 'Brats18_CBICA_AAM_1']);
    const hgg = dataset.cases[1]!;
    assert.deepEqual(hgg.modalities, {
      flair: path.join(root, 'HGG/Brats18_2013_2_1/Brats18_2013_2_1_flair.nii.gz'),
      t1ce: path.join(root, 'HGG/Brats18_2013_2_1/Brats18_2013_2_1_t1ce.nii.gz'),
      t1: path.join(root, 'HGG/Brats18_2013_2_1/Brats18_2013_2_1_t1.nii.gz'),
      t2: path.join(root, 'HGG/Brats18_2013_2_1/Brats18_2013_2_1_t2.nii.gz'),
    });
    assert.equal(hgg.label, path.join(root, 'HGG/Brats18_2013_2_1/Brats18_2013_2_1_seg.nii.gz'));
    assert.equal(dataset.cases[2]!.label, undefined);
    assert.throws(() => discoverBrats(root, { requireLabels: true }), /Brats18_CBICA_AAM_1 .* has no label file/);
  });

  test('2020 layout with uncompressed .nii and the misnamed "_Segm" label', () => {
    const id = 'BraTS20_Training_355';
    const root = makeTree([
      ...['flair', 't1', 't1ce', 't2'].map((token) => `${id}/${id}_${token}.nii`),
      `${id}/W39_1998.09.19_Segm.nii`,
    ]);
    const [only] = discoverBrats(root).cases;
    assert.equal(only!.label, path.join(root, id, 'W39_1998.09.19_Segm.nii'));
    assert.equal(only!.modalities.t1ce, path.join(root, id, `${id}_t1ce.nii`));
  });

  test('2023 layout maps t2f/t1c/t1n/t2w to FLAIR/T1ce/T1/T2', () => {
    const root = makeTree([...brats2023Case('BraTS-GLI-00000-000'), ...brats2023Case('BraTS-GLI-00002-000', false)]);
    const dataset = discoverBrats(root);
    assert.equal(dataset.layout, 'brats2023');
    assert.equal(dataset.numClasses, 4);
    const first = dataset.cases[0]!;
    assert.equal(first.id, 'BraTS-GLI-00000-000');
    assert.equal(first.modalities.flair, path.join(root, first.id, `${first.id}-t2f.nii.gz`));
    assert.equal(first.modalities.t1ce, path.join(root, first.id, `${first.id}-t1c.nii.gz`));
    assert.equal(first.modalities.t1, path.join(root, first.id, `${first.id}-t1n.nii.gz`));
    assert.equal(first.modalities.t2, path.join(root, first.id, `${first.id}-t2w.nii.gz`));
    assert.equal(first.label, path.join(root, first.id, `${first.id}-seg.nii.gz`));
    assert.equal(dataset.cases[1]!.label, undefined);
  });

  test('2015 layout: VSD folders, MR_T1 not confused with MR_T1c, OT label', () => {
    const root = makeTree([
      ...brats2015Case('HGG/', 'brats_2013_pat0001_1'),
      ...brats2015Case('LGG/', 'brats_tcia_pat101_0001'),
      ...brats2015Case('Testing/HGG_LGG/', 'brats_2013_pat0103_1', false),
    ]);
    const dataset = discoverBrats(root);
    assert.equal(dataset.layout, 'brats2015');
    assert.equal(dataset.numClasses, 5);
    assert.deepEqual(dataset.cases.map((c) => c.id), ['brats_2013_pat0001_1', 'brats_2013_pat0103_1', 'brats_tcia_pat101_0001']);
    const dir = path.join(root, 'HGG/brats_2013_pat0001_1');
    const first = dataset.cases[0]!;
    assert.equal(first.modalities.flair, path.join(dir, 'VSD.Brain.XX.O.MR_Flair.1/VSD.Brain.XX.O.MR_Flair.1.mha'));
    assert.equal(first.modalities.t1, path.join(dir, 'VSD.Brain.XX.O.MR_T1.2/VSD.Brain.XX.O.MR_T1.2.mha'));
    assert.equal(first.modalities.t1ce, path.join(dir, 'VSD.Brain.XX.O.MR_T1c.3/VSD.Brain.XX.O.MR_T1c.3.mha'));
    assert.equal(first.modalities.t2, path.join(dir, 'VSD.Brain.XX.O.MR_T2.4/VSD.Brain.XX.O.MR_T2.4.mha'));
    assert.equal(first.label, path.join(dir, 'VSD.Brain_3more.XX.O.OT.5/VSD.Brain_3more.XX.O.OT.5.mha'));
    assert.equal(dataset.cases[1]!.label, undefined);
  });

  test('a missing modality names the case and the modality', () => {
    const root = makeTree(brats2018Case('', 'Brats18_TCIA01_131_1').filter((file) => !file.endsWith('_t1ce.nii.gz')));
    assert.throws(() => discoverBrats(root), /BraTS case Brats18_TCIA01_131_1 .* is missing its t1ce volume/);
    const root2015 = makeTree(brats2015Case('', 'brats_2013_pat0002_1').filter((file) => !file.includes('MR_Flair')));
    assert.throws(() => discoverBrats(root2015), /BraTS case brats_2013_pat0002_1 .* is missing its flair volume/);
  });

  test('mixed layouts, duplicate ids and empty roots are errors; the layout option picks one', () => {
    const mixed = makeTree([...brats2018Case('', 'Brats18_A'), ...brats2023Case('BraTS-GLI-00001-000')]);
    assert.throws(() => discoverBrats(mixed), /several BraTS layouts/);
    assert.deepEqual(discoverBrats(mixed, { layout: 'brats2023' }).cases.map((c) => c.id), ['BraTS-GLI-00001-000']);

    const duplicate = makeTree([...brats2018Case('HGG/', 'Brats18_X'), ...brats2018Case('LGG/', 'Brats18_X')]);
    assert.throws(() => discoverBrats(duplicate), /two cases share the id Brats18_X/);

    assert.throws(() => discoverBrats(makeTree(['notes/readme.txt'])), /no BraTS cases found/);
    assert.throws(() => discoverBrats(path.join(tempDir, 'does-not-exist')), /root folder not found/);
  });
});

describe('BraTS labels', () => {
  test('2018-2021: {0,1,2,4} → {0,1,2,3}; float-stored labels are accepted', () => {
    assert.deepEqual(Array.from(mapBratsLabels('brats2018', new Uint8Array([0, 1, 2, 4, 4, 0]))), [0, 1, 2, 3, 3, 0]);
    assert.deepEqual(Array.from(mapBratsLabels('brats2018', new Float32Array([4, 2, 0]))), [3, 2, 0]);
  });

  test('2023 and 2015 values are kept', () => {
    assert.deepEqual(Array.from(mapBratsLabels('brats2023', new Uint8Array([0, 1, 2, 3]))), [0, 1, 2, 3]);
    assert.deepEqual(Array.from(mapBratsLabels('brats2015', new Int16Array([0, 1, 2, 3, 4]))), [0, 1, 2, 3, 4]);
  });

  test('values outside the set name the file and the value', () => {
    assert.throws(
      () => mapBratsLabels('brats2018', new Uint8Array([0, 1, 3]), 'case_seg.nii.gz'),
      (error: Error) =>
        error.message === 'case_seg.nii.gz: label value 3 at voxel 2 is not a BraTS 2018-2021 label (expected one of 0, 1, 2, 4)',
    );
    assert.throws(() => mapBratsLabels('brats2015', new Uint8Array([5])), /label value 5 .* BraTS 2015/);
    assert.throws(() => mapBratsLabels('brats2023', new Float32Array([1.5])), /label value 1\.5/);
  });

  test('end to end: a discovered label file read and mapped', () => {
    const root = path.join(tempDir, 'e2e');
    const id = 'Brats18_E2E_1';
    fs.mkdirSync(path.join(root, id), { recursive: true });
    const image = new Float32Array(8).fill(1);
    for (const token of ['flair', 't1', 't1ce', 't2']) writeVolume(path.join(root, id, `${id}_${token}.nii.gz`), image, [2, 2, 2]);
    writeVolume(path.join(root, id, `${id}_seg.nii.gz`), new Uint8Array([0, 0, 1, 2, 4, 4, 0, 2]), [2, 2, 2]);
    const dataset = discoverBrats(root);
    const labelPath = dataset.cases[0]!.label!;
    assert.deepEqual(Array.from(dataset.mapLabels(readVolume(labelPath).data, labelPath)), [0, 0, 1, 2, 3, 3, 0, 2]);
  });
});

describe('splits', () => {
  const ids = (count: number) => Array.from({ length: count }, (_, i) => `case_${String(i).padStart(3, '0')}`);

  test('readSplit skips comments and blank lines; duplicates are errors; writeSplit round-trips', () => {
    const file = path.join(tempDir, 'split.txt');
    fs.writeFileSync(file, '# training cases\r\ncase_a\n\n  case_b  # inline comment\ncase_c\n');
    assert.deepEqual(readSplit(file), ['case_a', 'case_b', 'case_c']);
    fs.writeFileSync(file, 'case_a\ncase_b\ncase_a\n');
    assert.throws(() => readSplit(file), /split\.txt:3: case id case_a listed twice/);
    writeSplit(file, ['x', 'y'], 'seed 1024\nbrats2018');
    assert.equal(fs.readFileSync(file, 'utf8'), '# seed 1024\n# brats2018\nx\ny\n');
    assert.deepEqual(readSplit(file), ['x', 'y']);
  });

  test('splitSizes: exact counts, proportional scaling by largest remainder', () => {
    assert.deepEqual(splitSizes(285, SPLIT_PRESETS.brats2018), [199, 29, 57]);
    assert.deepEqual(splitSizes(369, SPLIT_PRESETS.brats2020), [219, 50, 100]);
    assert.deepEqual(splitSizes(274, SPLIT_PRESETS.brats2015), [242, 12, 20]);
    // 100 · (199, 29, 57) / 285 = (69.82, 10.18, 20): floors (69, 10, 20), the leftover goes to train.
    assert.deepEqual(splitSizes(100, SPLIT_PRESETS.brats2018), [70, 10, 20]);
    assert.deepEqual(splitSizes(10, [0.6, 0.2, 0.2]), [6, 2, 2]);
    assert.throws(() => splitSizes(10, [0, 0, 0]), /positive sum/);
  });

  test('makeSplit is a deterministic, seed-dependent partition independent of input order', () => {
    const all = ids(285);
    const split = makeSplit(all, 1024, 'brats2018');
    assert.deepEqual([split.train.length, split.val.length, split.test.length], [199, 29, 57]);
    assert.deepEqual([...split.train, ...split.val, ...split.test].sort(), all);
    assert.deepEqual(makeSplit([...all].reverse(), 1024, 'brats2018'), split);
    const other = makeSplit(all, 1025, 'brats2018');
    assert.notDeepEqual(other.test, split.test);
    assert.throws(() => makeSplit(['a', 'a'], 1, [1, 0, 0]), /unique/);
  });

  test('stratifiedSplitSizes splits each stratum in the proportions and keeps the unstratified part sizes', () => {
    // 24 and 6 cases at 0.7 / 0.1 / 0.2: shares (16.8, 2.4, 4.8) and (4.2, 0.6, 1.2), floors (16, 2, 4) and (4, 0, 1);
    // the parts need (21, 3, 6) - (20, 2, 5) = one more each; the largest remainders are 0.8 (first stratum's train and
    // test: it has two left) and then 0.6 (second stratum's val).
    assert.deepEqual(stratifiedSplitSizes([24, 6], [0.7, 0.1, 0.2]), [
      [17, 2, 5],
      [4, 1, 1],
    ]);
    // BraTS 2018's 210 HGG and 75 LGG into the paper's 199 / 29 / 57: shares (146.63, 21.37, 42) and (52.37, 7.63, 15).
    assert.deepEqual(stratifiedSplitSizes([210, 75], SPLIT_PRESETS.brats2018), [
      [147, 21, 42],
      [52, 8, 15],
    ]);
    // Any strata: every stratum's sizes add up to it, every part keeps its unstratified size, and every cell is the
    // floor or the ceiling of its exact share (the greedy choice alone breaks this for about 2 % of such draws).
    const rng = createRng(7);
    for (let draw = 0; draw < 3000; draw++) {
      const strata = Array.from({ length: 1 + Math.floor(rng() * 5) }, () => Math.floor(rng() * 40));
      const total = strata.reduce((acc, value) => acc + value, 0);
      if (total === 0) continue;
      const proportions = [rng(), 0.3 * rng(), 0.5 * rng()];
      const scale = proportions.reduce((acc, value) => acc + value, 0);
      const sizes = stratifiedSplitSizes(strata, proportions);
      const where = `strata ${strata.join(', ')}, proportions ${proportions.join(', ')}`;
      assert.deepEqual(sizes.map((row) => row.reduce((acc, value) => acc + value, 0)), strata, where);
      assert.deepEqual([0, 1, 2].map((part) => sizes.reduce((acc, row) => acc + row[part]!, 0)), splitSizes(total, proportions), where);
      sizes.forEach((row, s) =>
        row.forEach((size, part) => {
          const share = (proportions[part]! * strata[s]!) / scale;
          assert.ok(size >= Math.floor(share) && size <= Math.ceil(share), `${where}: stratum ${s} part ${part} gets ${size} for ${share}`);
        }),
      );
    }
  });

  test('makeSplit with strata puts each kind of case into every part in proportion', () => {
    const all = ids(30);
    // Every fifth case is rare, as the synthetic data's low-grade tumours are.
    const stratumOf = (id: string) => (all.indexOf(id) % 5 === 4 ? 'rare' : 'common');
    const split = makeSplit(all, 1, [0.7, 0.1, 0.2], stratumOf);
    const rare = (part: string[]) => part.filter((id) => stratumOf(id) === 'rare').length;
    assert.deepEqual([split.train.length, split.val.length, split.test.length], [21, 3, 6]);
    assert.deepEqual([rare(split.train), rare(split.val), rare(split.test)], [4, 1, 1]);
    assert.deepEqual([...split.train, ...split.val, ...split.test].sort(), all);
    assert.deepEqual(makeSplit([...all].reverse(), 1, [0.7, 0.1, 0.2], stratumOf), split);
    assert.notDeepEqual(makeSplit(all, 2, [0.7, 0.1, 0.2], stratumOf).test, split.test);
  });

  test('selectCases keeps the given order and names unknown ids', () => {
    const root = makeTree([...brats2023Case('BraTS-GLI-00003-000'), ...brats2023Case('BraTS-GLI-00004-000')]);
    const dataset = discoverBrats(root);
    assert.deepEqual(selectCases(dataset, ['BraTS-GLI-00004-000', 'BraTS-GLI-00003-000']).map((c) => c.id), [
      'BraTS-GLI-00004-000',
      'BraTS-GLI-00003-000',
    ]);
    assert.throws(() => selectCases(dataset, ['nope'], 'val.txt'), /val\.txt: 1 case id\(s\) not in .*: nope/);
  });
});
