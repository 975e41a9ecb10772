// The SMML model (SPEC.md §3, §7): two independent branches of identical architecture (or one, for
// the single-branch baseline); inference averages the branches' softmax.
import { torch, type Tensor } from '../engine/index.ts';
import { Branch, type BranchEncoding, type BranchOutput, type TrainingInputs } from './branch.ts';
import { modelConfig, resolveModelConfig, withOverrides, type ModelConfig, type ModelConfigOverrides, type ModelPresetName } from './config.ts';

export class SmmlModel extends torch.nn.Module {
  readonly config: ModelConfig;
  readonly branches: Branch[];

  /** `config` is validated here as well. */
  constructor(config: ModelConfig) {
    super();
    this.config = resolveModelConfig(config);
    this.branches = Array.from({ length: this.config.branches }, (_, i) => this.registerModule(`branch${i + 1}`, new Branch(this.config)));
  }

  /**
   * Training forward: branch i sees the same images under its own modality mask `masks[i]` (B, K).
   * Returns one BranchOutput per branch.
   */
  forward(images: Tensor /* (B, K, H, W, D) */, masks: readonly Tensor[] /* one (B, K) per branch */, inputs: TrainingInputs = {}): BranchOutput[] {
    if (masks.length !== this.branches.length) {
      throw new Error(`expected ${this.branches.length} modality masks (one per branch), got ${masks.length}`);
    }
    return this.branches.map((branch, i) => branch.forward(images, masks[i], inputs));
  }

  /** Inference: the mean over branches of softmax(initial logits), (B, C, H, W, D). Nothing else is computed. */
  predictProbabilities(images: Tensor /* (B, K, H, W, D) */, mask: Tensor /* (B, K) */): Tensor {
    return torch.tidy(() => averageSoftmax(this.branches.map((branch) => branch.predict(images, mask))));
  }

  /** The subset-independent part of every branch (see `fuseProbabilities`). */
  encode(images: Tensor /* (B, K, H, W, D) */): BranchEncoding[] {
    return this.branches.map((branch) => branch.encode(images));
  }

  /** `predictProbabilities` for one subset from `encode`'s result: encode once, fuse for many subsets. */
  fuseProbabilities(encodings: readonly BranchEncoding[], mask: Tensor /* (B, K) */): Tensor {
    if (encodings.length !== this.branches.length) {
      throw new Error(`expected ${this.branches.length} branch encodings, got ${encodings.length}`);
    }
    return torch.tidy(() => averageSoftmax(this.branches.map((branch, i) => branch.fuse(encodings[i], mask))));
  }
}

function averageSoftmax(logits: Tensor[]): Tensor {
  return torch.stack(logits.map((l) => l.softmax(1))).mean(0);
}

/** A model from a preset name (with optional overrides) or a full configuration. */
export function createModel(spec: ModelPresetName | ModelConfig, overrides?: ModelConfigOverrides): SmmlModel {
  return new SmmlModel(typeof spec === 'string' ? modelConfig(spec, overrides) : withOverrides(spec, overrides ?? {}));
}

/** A (B, K) boolean modality mask from per-sample presence flags, e.g. [[true, true, false, true]]. */
export function modalityMask(rows: readonly (readonly boolean[])[]): Tensor {
  if (rows.length === 0) throw new Error('modalityMask: no samples');
  const width = rows[0].length;
  if (rows.some((r) => r.length !== width)) throw new Error('modalityMask: every sample needs the same number of modalities');
  if (rows.some((r) => !r.some(Boolean))) throw new Error('modalityMask: every sample needs at least one modality');
  return torch.tensor(rows.flat().map((v) => (v ? 1 : 0)), [rows.length, width], { dtype: 'bool' });
}
