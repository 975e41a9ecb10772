// The BraTS tumour regions and the label classes that form them: whole tumour, tumour core, enhancing tumour.

export type Region = 'WT' | 'TC' | 'ET';
export const REGIONS: readonly Region[] = ['WT', 'TC', 'ET'];

/** Classes that make up each region, for 4-class (BraTS 2018–2021/2023) and 5-class (BraTS 2015) labels. */
export function regionClasses(numClasses: number): Record<Region, number[]> {
  if (numClasses === 4) return { WT: [1, 2, 3], TC: [1, 3], ET: [3] };
  if (numClasses === 5) return { WT: [1, 2, 3, 4], TC: [1, 3, 4], ET: [4] };
  throw new Error(`BraTS regions are defined for 4 or 5 classes, not ${numClasses}`);
}
