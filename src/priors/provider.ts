// The contract between the prior store and whatever makes semantic priors (docs/method.md §4).
import type { CachedCase } from '../data/cache.ts';

/** Cached array that holds a case's semantic priors: (C·K, X, Y, Z), class-major then modality. */
export const PRIORS_ARRAY = 'priors';

/**
 * Makes the per-class, per-modality prior probability maps of one labelled case in its crop frame.
 * Providers may look at the case's own labels only to place prompts (as SAM-Med3D does); they must not
 * copy them into the priors.
 */
export interface PriorProvider {
  /** Recorded with the priors (e.g. `builtin-intensity`, `sam-med3d`). */
  readonly name: string;
  /** JSON-serialisable settings that, with `name`, decide the output; recorded with the priors. */
  readonly settings: Record<string, unknown>;
  /**
   * Priors of one cached case: (C, K, X, Y, Z) in C order (z fastest), probabilities in [0, 1],
   * C = the data set's classes (background first), K = `kase.meta.modalities.length`.
   */
  computeCase(kase: CachedCase & { label: Uint8Array }): Promise<Float32Array>;
}
