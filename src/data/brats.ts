/**
 * BraTS data-set discovery (the 2015, 2018–2021 and 2023 folder layouts),
 * label mapping to class indices, and train/val/test splits.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './files.ts';
import { MODALITIES, type Modality } from './modalities.ts';
import { createRng, shuffle } from './random.ts';

/** 'brats2018' covers the 2018, 2019, 2020 and 2021 releases, which share one layout and label set. */
export type BratsLayout = 'brats2018' | 'brats2023' | 'brats2015';

export interface BratsCase {
  id: string;
  /** Folder holding the case. */
  dir: string;
  /** Volume path per modality. */
  modalities: Record<Modality, string>;
  /** Segmentation path; undefined for unlabelled (inference-only) cases. */
  label?: string;
}

export interface BratsDataset {
  root: string;
  layout: BratsLayout;
  /** Sorted by id. */
  cases: BratsCase[];
  numClasses: number;
  /** labelValues[c] = raw value stored in the label files for class c. */
  labelValues: readonly number[];
  /** Raw label voxels → class indices 0..numClasses-1; `source` names the file in errors. */
  mapLabels(raw: ArrayLike<number>, source?: string): Uint8Array;
}

export interface DiscoverOptions {
  /** Only look for this layout (otherwise detected; mixing layouts is an error). */
  layout?: BratsLayout;
  /** Fail when a case has no label file. */
  requireLabels?: boolean;
  /** How many folder levels below the root to search for cases (default 4). */
  maxDepth?: number;
}

/**
 * Raw label values per layout, indexed by class. 2018–2021: 0 background,
 * 1 NCR/NET, 2 edema, 4 ET (→ class 3). 2023 glioma: 0, 1 NCR, 2 edema,
 * 3 ET, already contiguous. 2015: 0 background, 1 necrosis, 2 edema,
 * 3 non-enhancing, 4 enhancing, used as is.
 */
export const BRATS_LABEL_VALUES: Record<BratsLayout, readonly number[]> = {
  brats2018: [0, 1, 2, 4],
  brats2023: [0, 1, 2, 3],
  brats2015: [0, 1, 2, 3, 4],
};

const LAYOUT_NAMES: Record<BratsLayout, string> = {
  brats2018: 'BraTS 2018-2021',
  brats2023: 'BraTS 2023',
  brats2015: 'BraTS 2015',
};

/** Maps raw label voxels of a layout to class indices; throws naming `source` and the first unknown value. */
export function mapBratsLabels(layout: BratsLayout, raw: ArrayLike<number>, source = 'label volume'): Uint8Array {
  const labelValues = BRATS_LABEL_VALUES[layout];
  const largest = Math.max(...labelValues);
  const classOfValue = new Int16Array(largest + 1).fill(-1);
  labelValues.forEach((value, classIndex) => (classOfValue[value] = classIndex));
  const classes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const value = raw[i]!;
    const classIndex = Number.isInteger(value) && value >= 0 && value <= largest ? classOfValue[value]! : -1;
    if (classIndex < 0) {
      throw new Error(
        `${source}: label value ${value} at voxel ${i} is not a ${LAYOUT_NAMES[layout]} label ` +
          `(expected one of ${labelValues.join(', ')})`,
      );
    }
    classes[i] = classIndex;
  }
  return classes;
}

/** File-name token of each modality and of the label, per NIfTI layout. */
const NIFTI_LAYOUT_TOKENS: Record<'brats2018' | 'brats2023', Record<Modality | 'seg', string>> = {
  brats2018: { flair: 'flair', t1ce: 't1ce', t1: 't1', t2: 't2', seg: 'seg' },
  brats2023: { flair: 't2f', t1ce: 't1c', t1: 't1n', t2: 't2w', seg: 'seg' },
};
const NIFTI_LAYOUT_SEPARATOR = { brats2018: '_', brats2023: '-' } as const;
const NIFTI_EXTENSION = /\.nii(\.gz)?$/i;

/** 2015 modality tokens as they appear in the VSD names, e.g. VSD.Brain.XX.O.MR_Flair.54512. */
const BRATS2015_TOKENS: Record<Modality, string> = { flair: 'MR_Flair', t1ce: 'MR_T1c', t1: 'MR_T1', t2: 'MR_T2' };
/** A dot-delimited token of a VSD name, so MR_T1 does not match MR_T1c. */
const vsdToken = (token: string) => new RegExp(`\\.${token}\\.`, 'i');
const BRATS2015_MODALITY_PATTERNS = MODALITIES.map((modality) => ({
  modality,
  pattern: vsdToken(BRATS2015_TOKENS[modality]),
}));
const BRATS2015_LABEL = vsdToken('OT');
const isBrats2015Name = (name: string) =>
  BRATS2015_LABEL.test(name) || BRATS2015_MODALITY_PATTERNS.some(({ pattern }) => pattern.test(name));

const compareText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

interface CaseFiles {
  layout: BratsLayout;
  /** Role ('flair', ..., 'seg') → path, for the files found. */
  byRole: Map<Modality | 'seg', string>;
  /** What a missing modality's file name looks like, for error messages. */
  expectedName: (role: Modality) => string;
}

function listDir(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => compareText(a.name, b.name));
  } catch (error) {
    throw new Error(`${dir}: cannot list folder (${(error as Error).message})`);
  }
}

function assignRole(files: CaseFiles, role: Modality | 'seg', filePath: string, dir: string): void {
  const previous = files.byRole.get(role);
  if (previous) throw new Error(`BraTS case folder ${dir} has two ${role} files: ${previous} and ${filePath}`);
  files.byRole.set(role, filePath);
}

/** Recognises a 2018–2021 or 2023 case folder from its NIfTI file names. */
function niftiCaseFiles(dir: string, entries: fs.Dirent[], layout: 'brats2018' | 'brats2023'): CaseFiles | undefined {
  const tokens = NIFTI_LAYOUT_TOKENS[layout];
  const separator = NIFTI_LAYOUT_SEPARATOR[layout];
  const caseName = path.basename(dir);
  const files: CaseFiles = {
    layout,
    byRole: new Map(),
    expectedName: (role) => `${caseName}${separator}${tokens[role]}.nii.gz`,
  };
  const unassigned: string[] = [];
  for (const entry of entries) {
    if (!entry.isFile() || !NIFTI_EXTENSION.test(entry.name)) continue;
    const stem = entry.name.replace(NIFTI_EXTENSION, '').toLowerCase();
    const role = (Object.keys(tokens) as (Modality | 'seg')[]).find((candidate) =>
      stem.endsWith(`${separator}${tokens[candidate]}`),
    );
    if (role) assignRole(files, role, path.join(dir, entry.name), dir);
    else unassigned.push(entry.name);
  }
  if (!MODALITIES.some((modality) => files.byRole.has(modality))) return undefined;
  // BraTS 2020 names one segmentation "W39_1998.09.19_Segm.nii"; accept a single "*Segm" file.
  const segLike = unassigned.filter((name) => /segm$/i.test(name.replace(NIFTI_EXTENSION, '')));
  if (!files.byRole.has('seg') && segLike.length === 1) files.byRole.set('seg', path.join(dir, segLike[0]!));
  return files;
}

/** Recognises a 2015 case folder: VSD-named .mha files, each usually inside a VSD-named subfolder. */
function brats2015CaseFiles(dir: string, entries: fs.Dirent[]): CaseFiles | undefined {
  const volumePaths: string[] = [];
  for (const entry of entries) {
    if (!isBrats2015Name(entry.name)) continue;
    const entryPath = path.join(dir, entry.name);
    if (entry.isFile() && /\.mha$/i.test(entry.name)) volumePaths.push(entryPath);
    if (entry.isDirectory()) {
      const inner = listDir(entryPath).filter((child) => child.isFile() && /\.(mha|mhd)$/i.test(child.name));
      if (inner.length !== 1) {
        throw new Error(`${entryPath}: expected exactly one .mha/.mhd volume, found ${inner.length}`);
      }
      volumePaths.push(path.join(entryPath, inner[0]!.name));
    }
  }
  if (volumePaths.length === 0) return undefined;
  const files: CaseFiles = {
    layout: 'brats2015',
    byRole: new Map(),
    expectedName: (role) => `VSD.Brain.XX.O.${BRATS2015_TOKENS[role]}.<n>/….mha`,
  };
  for (const volumePath of volumePaths) {
    const name = path.basename(volumePath);
    const role = BRATS2015_LABEL.test(name)
      ? 'seg'
      : BRATS2015_MODALITY_PATTERNS.find(({ pattern }) => pattern.test(name))?.modality;
    if (role) assignRole(files, role, volumePath, dir);
  }
  return files;
}

function caseFilesOf(dir: string, entries: fs.Dirent[], wanted: BratsLayout | undefined): CaseFiles | undefined {
  const found: CaseFiles[] = [];
  for (const layout of ['brats2018', 'brats2023'] as const) {
    if (wanted && wanted !== layout) continue;
    const files = niftiCaseFiles(dir, entries, layout);
    if (files) found.push(files);
  }
  if (!wanted || wanted === 'brats2015') {
    const files = brats2015CaseFiles(dir, entries);
    if (files) found.push(files);
  }
  if (found.length > 1) {
    throw new Error(`${dir}: files match several BraTS layouts (${found.map((files) => files.layout).join(', ')})`);
  }
  return found[0];
}

function toCase(dir: string, files: CaseFiles): BratsCase {
  const id = path.basename(dir);
  const modalities = {} as Record<Modality, string>;
  for (const modality of MODALITIES) {
    const filePath = files.byRole.get(modality);
    if (!filePath) {
      throw new Error(`BraTS case ${id} (${dir}) is missing its ${modality} volume (expected ${files.expectedName(modality)})`);
    }
    modalities[modality] = filePath;
  }
  const label = files.byRole.get('seg');
  return label ? { id, dir, modalities, label } : { id, dir, modalities };
}

/** Case folders under `root` (the root itself included) and the one layout they share. */
function findCaseFolders(root: string, options: DiscoverOptions): { layout: BratsLayout; found: { dir: string; files: CaseFiles }[] } {
  const maxDepth = options.maxDepth ?? 4;
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) throw new Error(`${root}: BraTS root folder not found`);
  const found: { dir: string; files: CaseFiles }[] = [];
  const visit = (dir: string, depth: number): void => {
    const entries = listDir(dir);
    const files = caseFilesOf(dir, entries, options.layout);
    if (files) {
      found.push({ dir, files });
      return;
    }
    if (depth >= maxDepth) return;
    for (const entry of entries) if (entry.isDirectory()) visit(path.join(dir, entry.name), depth + 1);
  };
  visit(root, 0);
  if (found.length === 0) throw new Error(`${root}: no BraTS cases found (searched ${maxDepth} folder levels)`);
  const layouts = [...new Set(found.map(({ files }) => files.layout))];
  if (layouts.length > 1) {
    throw new Error(`${root}: cases of several BraTS layouts found (${layouts.join(', ')}); pass the layout option to pick one`);
  }
  return { layout: layouts[0]!, found };
}

/** Sorts cases by id; two cases with one id are an error naming both folders. */
function sortedUnique<T extends { id: string; dir: string }>(root: string, cases: T[]): T[] {
  cases.sort((a, b) => compareText(a.id, b.id));
  cases.forEach((entry, index) => {
    const next = cases[index + 1];
    if (next && next.id === entry.id) throw new Error(`${root}: two cases share the id ${entry.id}: ${entry.dir} and ${next.dir}`);
  });
  return cases;
}

/**
 * Finds BraTS cases under `root` (searched recursively, so HGG/LGG or
 * Training/Validation subfolders are fine). Layouts:
 * - brats2018 (2018–2021): `<case>/<case>_{flair,t1,t1ce,t2,seg}.nii(.gz)`
 * - brats2023: `<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz`
 * - brats2015: `<case>/VSD.Brain.XX.O.MR_<Flair|T1c|T1|T2>.<n>/…mha` and `…OT…` labels
 * A case's id is its folder name. Cases without a label are kept (label undefined).
 */
export function discoverBrats(root: string, options: DiscoverOptions = {}): BratsDataset {
  const { layout, found } = findCaseFolders(root, options);
  const cases = sortedUnique(
    root,
    found.map(({ dir, files }) => toCase(dir, files)),
  );
  if (options.requireLabels) {
    const unlabelled = cases.find((entry) => !entry.label);
    if (unlabelled) throw new Error(`BraTS case ${unlabelled.id} (${unlabelled.dir}) has no label file`);
  }
  const labelValues = BRATS_LABEL_VALUES[layout];
  return {
    root,
    layout,
    cases,
    numClasses: labelValues.length,
    labelValues,
    mapLabels: (raw, source) => mapBratsLabels(layout, raw, source),
  };
}

/** Volume files that sit directly in a folder. */
const VOLUME_FILE = /\.(nii\.gz|nii|mha|mhd)$/i;

/** The volume files directly in `dir` (`.nii.gz`, `.nii`, `.mha`, `.mhd`) by name without extension. */
export function volumeFilesByStem(dir: string): Map<string, string> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: folder not found`);
  const files = new Map<string, string>();
  for (const entry of listDir(dir)) {
    if (!entry.isFile() || !VOLUME_FILE.test(entry.name)) continue;
    const stem = entry.name.replace(VOLUME_FILE, '');
    const previous = files.get(stem);
    if (previous) throw new Error(`${dir}: two volumes are named ${stem}: ${path.basename(previous)} and ${entry.name}`);
    files.set(stem, path.join(dir, entry.name));
  }
  return files;
}

/** A case to segment: whatever sequences it has. */
export interface InputCase {
  id: string;
  /** Folder holding the case's files. */
  dir: string;
  /** The files found, per modality (at least one). */
  modalities: Partial<Record<Modality, string>>;
}

/** The BraTS layouts, or nnU-Net's flat folder of `<case>_<XXXX>.nii.gz` channel files. */
export type InputLayout = BratsLayout | 'nnunet';

export interface InputCases {
  layout: InputLayout;
  /** Sorted by id. */
  cases: InputCase[];
}

/**
 * The modality of nnU-Net channel files `<case>_0000` … `<case>_0003` by default: the order used everywhere in smml
 * (MODALITIES: FLAIR, T1ce, T1, T2). Other conversions of BraTS to nnU-Net order the channels differently; callers pass
 * theirs.
 */
export const DEFAULT_CHANNEL_ORDER: readonly Modality[] = MODALITIES;

const NNUNET_CHANNEL = /^(.+)_(\d{4})$/;

/**
 * Cases to segment under `root`: nnU-Net's flat layout when `root` holds `<case>_<XXXX>` volume files (channel XXXX is
 * `channelOrder[XXXX]`), otherwise BraTS case folders of any layout, each with whatever sequences it has. Labels are
 * ignored.
 */
export function discoverInputCases(root: string, options: { channelOrder?: readonly Modality[] } = {}): InputCases {
  const channelOrder = options.channelOrder ?? DEFAULT_CHANNEL_ORDER;
  const flat = [...volumeFilesByStem(root)].filter(([stem]) => NNUNET_CHANNEL.test(stem));
  if (flat.length > 0) {
    const byId = new Map<string, InputCase>();
    for (const [stem, file] of flat) {
      const [, id, channelText] = NNUNET_CHANNEL.exec(stem)!;
      const modality = channelOrder[Number(channelText)];
      if (!modality) throw new Error(`${file}: channel ${channelText} has no modality (the channel order is ${channelOrder.join(', ')})`);
      const entry = byId.get(id!) ?? { id: id!, dir: root, modalities: {} };
      entry.modalities[modality] = file;
      byId.set(id!, entry);
    }
    return { layout: 'nnunet', cases: sortedUnique(root, [...byId.values()]) };
  }
  const { layout, found } = findCaseFolders(root, {});
  const cases = found.map(({ dir, files }) => ({
    id: path.basename(dir),
    dir,
    modalities: Object.fromEntries(MODALITIES.flatMap((modality) => (files.byRole.has(modality) ? [[modality, files.byRole.get(modality)!]] : []))),
  }));
  return { layout, cases: sortedUnique(root, cases) };
}

/** The cases with the given ids, in the order given; throws listing unknown ids. */
export function selectCases(dataset: BratsDataset, ids: readonly string[], source = 'split'): BratsCase[] {
  const byId = new Map(dataset.cases.map((entry) => [entry.id, entry]));
  const unknown = ids.filter((id) => !byId.has(id));
  if (unknown.length > 0) {
    throw new Error(`${source}: ${unknown.length} case id(s) not in ${dataset.root}: ${unknown.slice(0, 10).join(', ')}`);
  }
  return ids.map((id) => byId.get(id)!);
}

/** Reads a split file: one case id per line; '#' starts a comment; blank lines ignored; duplicates are an error. */
export function readSplit(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`${file}: cannot read split file (${(error as Error).message})`);
  }
  const ids: string[] = [];
  const seen = new Set<string>();
  text.split(/\r?\n/).forEach((line, index) => {
    const id = line.replace(/#.*$/, '').trim();
    if (id === '') return;
    if (seen.has(id)) throw new Error(`${file}:${index + 1}: case id ${id} listed twice`);
    seen.add(id);
    ids.push(id);
  });
  return ids;
}

/** Writes ids one per line (atomically), optionally preceded by '#' comment lines. */
export function writeSplit(file: string, ids: readonly string[], comment?: string): void {
  const header = comment ? comment.split('\n').map((line) => `# ${line}\n`).join('') : '';
  writeFileAtomic(file, `${header}${ids.map((id) => `${id}\n`).join('')}`);
}

/** The paper's train/val/test case counts. */
export const SPLIT_PRESETS = {
  brats2015: [242, 12, 20],
  brats2018: [199, 29, 57],
  brats2020: [219, 50, 100],
} as const satisfies Record<string, readonly [number, number, number]>;
export type SplitPreset = keyof typeof SPLIT_PRESETS;

export interface Split {
  train: string[];
  val: string[];
  test: string[];
}

/**
 * Part sizes for `total` items in the given proportions: exact when the
 * proportions already sum to `total`, otherwise scaled, rounding down and
 * giving the leftover items to the largest remainders (earlier parts win ties).
 */
export function splitSizes(total: number, proportions: readonly number[]): number[] {
  const sum = proportions.reduce((acc, value) => acc + value, 0);
  if (proportions.some((value) => !(value >= 0)) || !(sum > 0)) {
    throw new Error(`split proportions must be non-negative with a positive sum, got [${proportions.join(', ')}]`);
  }
  const exact = proportions.map((value) => (value * total) / sum);
  const sizes = exact.map(Math.floor);
  const order = exact.map((value, index) => ({ remainder: value - Math.floor(value), index }));
  order.sort((a, b) => b.remainder - a.remainder || a.index - b.index);
  let leftover = total - sizes.reduce((acc, value) => acc + value, 0);
  for (const { index } of order) {
    if (leftover <= 0) break;
    sizes[index]!++;
    leftover--;
  }
  return sizes;
}

/**
 * Part sizes of each stratum such that every stratum is split as nearly in `proportions` as whole cases allow and the
 * parts keep the sizes of an unstratified split (`splitSizes` of all cases): each stratum gets the whole cases of its
 * exact share, and the cases left over go to the (stratum, part) cells with the largest fractional shares (strata in
 * the given order, then parts, breaking ties), moved between cells along augmenting paths where that greedy choice
 * would leave a stratum's case without a part that still takes one.
 */
export function stratifiedSplitSizes(strataSizes: readonly number[], proportions: readonly number[]): number[][] {
  const total = strataSizes.reduce((acc, value) => acc + value, 0);
  const partSizes = splitSizes(total, proportions);
  const sum = proportions.reduce((acc, value) => acc + value, 0);
  const exact = strataSizes.map((size) => proportions.map((value) => (value * size) / sum));
  const sizes = exact.map((row) => row.map(Math.floor));
  const remainder = exact.map((row) => row.map((value) => value - Math.floor(value)));
  const extra = exact.map((row) => row.map(() => false));
  const stratumLeft = strataSizes.map((size, s) => size - sizes[s]!.reduce((acc, value) => acc + value, 0));
  const partLeft = partSizes.map((size, p) => size - sizes.reduce((acc, row) => acc + row[p]!, 0));
  const cells = remainder.flatMap((row, s) => row.map((value, p) => ({ s, p, value })));
  cells.sort((a, b) => b.value - a.value || a.s - b.s || a.p - b.p);
  for (const { s, p, value } of cells) {
    if (value > 0 && stratumLeft[s]! > 0 && partLeft[p]! > 0) {
      extra[s]![p] = true;
      stratumLeft[s]!--;
      partLeft[p]!--;
    }
  }
  for (let s = 0; s < strataSizes.length; s++) {
    // Prefer paths through cells with a fractional share (every cell stays at the floor or ceiling of its share);
    // a cell without one takes a case only where no such path exists.
    while (stratumLeft[s]! > 0) {
      if (!augmentExtraCases(s, extra, remainder, partLeft, true) && !augmentExtraCases(s, extra, remainder, partLeft, false)) {
        throw new Error(`stratifiedSplitSizes: cannot place the cases of stratum ${s} (sizes ${strataSizes.join(', ')})`);
      }
      stratumLeft[s]!--;
    }
  }
  return sizes.map((row, s) => row.map((size, p) => size + (extra[s]![p] ? 1 : 0)));
}

/**
 * One augmenting path of the (stratum, part) assignment of left-over cases, breadth first from stratum `from` to a
 * part that still takes a case: it gives `from` an extra case in some part and moves extra cases between other strata
 * along the way. Returns false if there is none.
 */
function augmentExtraCases(from: number, extra: boolean[][], remainder: number[][], partLeft: number[], fractionalOnly: boolean): boolean {
  const usable = (s: number, p: number) => !fractionalOnly || remainder[s]![p]! > 0;
  const reachedFrom = new Map<number, { stratum: number; part: number } | null>([[from, null]]);
  const queue = [from];
  while (queue.length > 0) {
    const stratum = queue.shift()!;
    for (let part = 0; part < partLeft.length; part++) {
      if (extra[stratum]![part] || !usable(stratum, part)) continue;
      if (partLeft[part]! > 0) {
        partLeft[part]!--;
        let step: { stratum: number; part: number } | null = { stratum, part };
        while (step) {
          extra[step.stratum]![step.part] = true;
          const previous: { stratum: number; part: number } | null = reachedFrom.get(step.stratum)!;
          // The stratum reached through `previous.part` gives that part's extra case back to the one before it.
          if (previous) extra[step.stratum]![previous.part] = false;
          step = previous;
        }
        return true;
      }
      for (let other = 0; other < extra.length; other++) {
        if (extra[other]![part] && !reachedFrom.has(other)) {
          reachedFrom.set(other, { stratum, part });
          queue.push(other);
        }
      }
    }
  }
  return false;
}

/**
 * Deterministic seeded train/val/test split. Ids are sorted first, so the
 * result depends only on the set of ids and the seed, not on listing order.
 * `proportions` is a preset name or [train, val, test] counts or fractions,
 * scaled to the number of ids. With `stratumOf`, each stratum (e.g. tumours
 * with and without much enhancement) is shuffled and split on its own in the
 * same proportions, so that a rare kind of case reaches every part it can.
 */
export function makeSplit(
  ids: readonly string[],
  seed: number,
  proportions: SplitPreset | readonly [number, number, number],
  stratumOf?: (id: string) => string,
): Split {
  if (new Set(ids).size !== ids.length) throw new Error('makeSplit: case ids must be unique');
  const parts = typeof proportions === 'string' ? SPLIT_PRESETS[proportions] : proportions;
  const rng = createRng(seed);
  const strata = new Map<string, string[]>();
  for (const id of [...ids].sort(compareText)) {
    // Without strata, all cases form one: the parts are splitSizes of all of them.
    const stratum = stratumOf?.(id) ?? '';
    const group = strata.get(stratum);
    if (group) group.push(id);
    else strata.set(stratum, [id]);
  }
  const members = [...strata.keys()].sort(compareText).map((stratum) => shuffle(rng, strata.get(stratum)!));
  const sizes = stratifiedSplitSizes(members.map((group) => group.length), parts);
  const split: Split = { train: [], val: [], test: [] };
  members.forEach((group, s) => {
    const [trainSize, valSize] = sizes[s]! as [number, number, number];
    split.train.push(...group.slice(0, trainSize));
    split.val.push(...group.slice(trainSize, trainSize + valSize));
    split.test.push(...group.slice(trainSize + valSize));
  });
  return split;
}
