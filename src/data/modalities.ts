// The four MRI sequences and the 15 non-empty subsets of them, in the row order of the paper's Table 1.

/** The modality order used everywhere: image channels, cache manifests, priors, masks, tables. */
export const MODALITIES = ['flair', 't1ce', 't1', 't2'] as const;
export type Modality = (typeof MODALITIES)[number];
export const MODALITY_LABELS: Record<Modality, string> = { flair: 'FLAIR', t1ce: 'T1ce', t1: 'T1', t2: 'T2' };

/** A subset as presence flags in MODALITIES order. */
export type ModalityMask = readonly [boolean, boolean, boolean, boolean];

const m = (flair: number, t1ce: number, t1: number, t2: number): ModalityMask => [!!flair, !!t1ce, !!t1, !!t2];

/** Singles, pairs, triples, then all four, as the mmFormer/RFNet tables list them. */
export const SUBSETS: readonly ModalityMask[] = [
  m(0, 0, 0, 1), m(0, 1, 0, 0), m(0, 0, 1, 0), m(1, 0, 0, 0),
  m(0, 1, 0, 1), m(0, 1, 1, 0), m(1, 0, 1, 0), m(0, 0, 1, 1), m(1, 0, 0, 1), m(1, 1, 0, 0),
  m(1, 1, 1, 0), m(1, 0, 1, 1), m(1, 1, 0, 1), m(0, 1, 1, 1),
  m(1, 1, 1, 1),
];

/** Every modality present. */
export const ALL_MODALITIES: ModalityMask = m(1, 1, 1, 1);

/** "FLAIR+T1ce" style name of a subset. */
export function subsetName(mask: ModalityMask): string {
  const names = MODALITIES.filter((_, i) => mask[i]).map((mod) => MODALITY_LABELS[mod]);
  if (names.length === 0) throw new Error('a modality subset must contain at least one modality');
  return names.join('+');
}

/** Parses "flair,t1ce" (case-insensitive, any order) into a mask. */
export function parseSubset(text: string): ModalityMask {
  const wanted = text.split(/[,+\s]+/).filter(Boolean).map((s) => s.toLowerCase());
  for (const w of wanted) if (!(MODALITIES as readonly string[]).includes(w)) throw new Error(`unknown modality '${w}' (expected ${MODALITIES.join(', ')})`);
  const mask = MODALITIES.map((mod) => wanted.includes(mod)) as unknown as ModalityMask;
  if (!mask.some(Boolean)) throw new Error('a modality subset must contain at least one modality');
  return mask;
}
