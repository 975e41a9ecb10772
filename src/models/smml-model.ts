// The SMML model (docs/method.md §3, §7): two independent branches of identical architecture (or one, for
// the single-branch baseline); inference averages the branches' softmax.
import { torch, type Tensor } from '../engine/index.ts';
import { Branch, type BranchEncoding, type BranchOutput } from './branch.ts';
import { parseModelConfigOf, type SmmlModelConfig } from './config.ts';
import type { SegmentationModel, TrainingInputs } from './segmentation-model.ts';

export class SmmlModel extends torch.nn.Module implements SegmentationModel<BranchEncoding[]> {
  readonly config: SmmlModelConfig;
  readonly branches: Branch[];

  /** `config` is validated here as well. */
  constructor(config: SmmlModelConfig) {
    super();
    this.config = parseModelConfigOf('smml', config);
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
    return this.branches.map((_, i) => this.forwardBranch(i, images, masks[i], inputs));
  }

  /** Branch `index` alone (a process that trains one branch while another process trains the other). */
  forwardBranch(index: number, images: Tensor /* (B, K, H, W, D) */, mask: Tensor /* (B, K) */, inputs: TrainingInputs = {}): BranchOutput {
    const branch = this.branches[index];
    if (!branch) throw new Error(`no branch ${index}: this model has ${this.branches.length}`);
    return branch.forward(images, mask, inputs);
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
