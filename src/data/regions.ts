// The BraTS tumour regions and the label classes that form them: whole tumour, tumour core, enhancing tumour.

export type Region = 'WT' | 'TC' | 'ET';
export const REGIONS: readonly Region[] = ['WT', 'TC', 'ET'];

/** Classes that make up each region, for 4-class (BraTS 2018–2021/2023) and 5-class (BraTS 2015) labels. */
export function regionClasses(numClasses: number): Record<Region, number[]> {
  if (numClasses === 4) return { WT: [1, 2, 3], TC: [1, 3], ET: [3] };
  if (numClasses === 5) return { WT: [1, 2, 3, 4], TC: [1, 3, 4], ET: [4] };
  throw new Error(`BraTS regions are defined for 4 or 5 classes, not ${numClasses}`);
}

/** Enhancing tumour below this share of the tumour core makes a case one with little enhancement. */
export const LITTLE_ENHANCEMENT_SHARE = 0.1;

/**
 * Whether a case's tumour core mostly enhances (as high-grade gliomas do) or hardly (most low-grade ones, and cases
 * without a core): the strata of a split that should hold both kinds in every part.
 */
export function enhancementStratum(label: Uint8Array /* class indices */, numClasses: number): 'enhancing' | 'little-enhancement' {
  const classes = regionClasses(numClasses);
  const counts = new Float64Array(numClasses);
  for (const value of label) counts[value]!++;
  const sum = (region: Region) => classes[region].reduce((acc, index) => acc + counts[index]!, 0);
  return sum('ET') >= LITTLE_ENHANCEMENT_SHARE * sum('TC') && sum('ET') > 0 ? 'enhancing' : 'little-enhancement';
}
