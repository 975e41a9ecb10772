// The ablation of docs/method.md §5, §8 (the paper's Table 4): the same data, seed and budget, different loss switches,
// and the plain U-Net with modality dropout that SMML is measured against.
import { MODEL_PRESETS, type SmmlPresetName, type UNetPresetName } from '../models/index.ts';
import type { TrainingConfig } from './config.ts';

export interface AblationVariant {
  /** Folder name and table row label. */
  name: string;
  description: string;
  /** `smml`: a setting of SMML's switches; `unet`: the plain U-Net, a network of its own. */
  family: 'smml' | 'unet';
  /** Branches trained (the U-Net is one network). */
  branches: 1 | 2;
  pbc: boolean;
  frc: boolean;
  /** The refinement network with both its terms (task loss and refinement KL). */
  srn: boolean;
}

/** The U-Net first, then the paper's Table 4 order; `baseline+srn` is in the paper's table but not run by default. */
export const ABLATION_VARIANTS: readonly AblationVariant[] = [
  { name: 'unet', description: 'plain 3D U-Net with modality dropout', family: 'unet', branches: 1, pbc: false, frc: false, srn: false },
  { name: 'baseline', description: 'one branch (mmFormer-style)', family: 'smml', branches: 1, pbc: false, frc: false, srn: false },
  { name: 'baseline+srn', description: 'one branch + SRN', family: 'smml', branches: 1, pbc: false, frc: false, srn: true },
  { name: 'dual', description: 'two branches, no consistency', family: 'smml', branches: 2, pbc: false, frc: false, srn: false },
  { name: 'dual+pbc', description: 'two branches + PBC', family: 'smml', branches: 2, pbc: true, frc: false, srn: false },
  { name: 'dual+frc', description: 'two branches + FRC', family: 'smml', branches: 2, pbc: false, frc: true, srn: false },
  { name: 'dual+srn', description: 'two branches + SRN', family: 'smml', branches: 2, pbc: false, frc: false, srn: true },
  { name: 'full', description: 'two branches + PBC + FRC + SRN (SMML)', family: 'smml', branches: 2, pbc: true, frc: true, srn: true },
];

export const DEFAULT_ABLATION = ['unet', 'baseline', 'dual', 'dual+pbc', 'dual+frc', 'dual+srn', 'full'] as const;

/** The U-Net preset of the same scale as an SMML preset. */
const UNET_COUNTERPART: Record<SmmlPresetName, UNetPresetName> = {
  paper: 'unet-paper',
  'cpu-medium': 'unet-cpu',
  'cpu-small': 'unet-cpu',
  tiny: 'unet-tiny',
};

/** The variants named in `names`, in table order; unknown names are an error listing the known ones. */
export function selectVariants(names: readonly string[]): AblationVariant[] {
  const unknown = names.filter((name) => !ABLATION_VARIANTS.some((v) => v.name === name));
  if (unknown.length > 0) {
    throw new Error(`unknown ablation variant(s) ${unknown.map((u) => `'${u}'`).join(', ')}; known: ${ABLATION_VARIANTS.map((v) => v.name).join(', ')}`);
  }
  if (names.length === 0) throw new Error('no ablation variant selected');
  return ABLATION_VARIANTS.filter((variant) => names.includes(variant.name));
}

/** Choices of an ablation beyond the variants' switches. */
export interface AblationOptions {
  /** Initial learning rate of the `unet` variant (default: the base's); the SMML variants keep the base's. */
  unetLr?: number;
}

/**
 * `base` (an SMML configuration) with the variant's network and loss switches; everything else (data, seed,
 * batch, schedule) is shared, but for the U-Net's own learning rate where `options.unetLr` sets one. The `unet`
 * variant takes the U-Net preset of the base preset's scale on the base's patch; SMML's own network fields do not
 * carry over.
 */
export function variantConfig(base: TrainingConfig, variant: AblationVariant, options: AblationOptions = {}): TrainingConfig {
  const { family, preset, ...overrides } = base.model;
  if (family !== 'smml') throw new Error(`the ablation compares against SMML: the base network must be an SMML preset, not '${preset}'`);
  const config = structuredClone(base);
  if (variant.family === 'unet') {
    config.model = { family: 'unet', preset: UNET_COUNTERPART[preset as SmmlPresetName], patch: overrides.patch ?? MODEL_PRESETS[preset].patch };
    if (overrides.classes !== undefined) config.model.classes = overrides.classes;
    if (options.unetLr !== undefined) config.training.lr = options.unetLr;
  } else {
    config.model.branches = variant.branches;
  }
  config.losses.pbc = variant.pbc;
  config.losses.frc = variant.frc;
  config.losses.srn = variant.srn;
  config.losses.refinementKl = variant.srn;
  return config;
}
