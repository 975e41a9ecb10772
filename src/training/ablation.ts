// The ablation of SPEC.md §5/§8 (the paper's Table 4): the same data, seed and budget, different loss switches.
import type { TrainingConfig } from './config.ts';

export interface AblationVariant {
  /** Folder name and table row label. */
  name: string;
  description: string;
  branches: 1 | 2;
  pbc: boolean;
  frc: boolean;
  /** The refinement network with both its terms (task loss and refinement KL). */
  srn: boolean;
}

/** In the order of the paper's Table 4; `baseline+srn` is in the paper's table but not run by default. */
export const ABLATION_VARIANTS: readonly AblationVariant[] = [
  { name: 'baseline', description: 'one branch (mmFormer-style)', branches: 1, pbc: false, frc: false, srn: false },
  { name: 'baseline+srn', description: 'one branch + SRN', branches: 1, pbc: false, frc: false, srn: true },
  { name: 'dual', description: 'two branches, no consistency', branches: 2, pbc: false, frc: false, srn: false },
  { name: 'dual+pbc', description: 'two branches + PBC', branches: 2, pbc: true, frc: false, srn: false },
  { name: 'dual+frc', description: 'two branches + FRC', branches: 2, pbc: false, frc: true, srn: false },
  { name: 'dual+srn', description: 'two branches + SRN', branches: 2, pbc: false, frc: false, srn: true },
  { name: 'full', description: 'two branches + PBC + FRC + SRN (SMML)', branches: 2, pbc: true, frc: true, srn: true },
];

export const DEFAULT_ABLATION = ['baseline', 'dual', 'dual+pbc', 'dual+frc', 'dual+srn', 'full'] as const;

/** The variants named in `names`, in table order; unknown names are an error listing the known ones. */
export function selectVariants(names: readonly string[]): AblationVariant[] {
  const unknown = names.filter((name) => !ABLATION_VARIANTS.some((v) => v.name === name));
  if (unknown.length > 0) {
    throw new Error(`unknown ablation variant(s) ${unknown.map((u) => `'${u}'`).join(', ')}; known: ${ABLATION_VARIANTS.map((v) => v.name).join(', ')}`);
  }
  if (names.length === 0) throw new Error('no ablation variant selected');
  return ABLATION_VARIANTS.filter((variant) => names.includes(variant.name));
}

/** `base` with the variant's branches and loss switches; everything else (data, seed, budget) is shared. */
export function variantConfig(base: TrainingConfig, variant: AblationVariant): TrainingConfig {
  const config = structuredClone(base);
  config.model.branches = variant.branches;
  config.losses.pbc = variant.pbc;
  config.losses.frc = variant.frc;
  config.losses.srn = variant.srn;
  config.losses.refinementKl = variant.srn;
  return config;
}
