// Assembly of the branch objectives L_1, L_2 from the individual losses, with a switch per term and the
// warm-up that holds back the two distillation (KL) terms.
import { torch, type Tensor } from '../engine/index.ts';
import { featureRelationalLoss } from './feature-relational.ts';
import { pixelBidirectionalLoss } from './pixel-bidirectional.ts';
import { refinementConsistencyLoss } from './refinement.ts';
import { taskLoss, type BatchSum, type CrossEntropyClassWeights } from './task.ts';

/** What one branch produced for a batch. All full-resolution maps are (B, C, H, W, D). */
export interface BranchPredictions {
  /** The initial prediction Ŷ_i (logits). */
  logits: Tensor;
  /** Deep-supervision heads, as probabilities (softmax applied) upsampled to full size. */
  deepSupervisionProbs: Tensor[];
  /** Separate-decoder predictions, one per modality, as probabilities. */
  separateProbs: Tensor[];
  /** The SRN's refined prediction Ŷ_i^ref (logits); required while the srn or refinementKl term is on. */
  refinedLogits?: Tensor;
  /** The fused bottleneck features F_i, (B, d, P, P, P); required for FRC in dual-branch mode. */
  bottleneck?: Tensor;
}

export interface LossSwitches {
  /** Task(σ(Ŷ_i)). */
  task: boolean;
  /** Task on every deep-supervision head and every separate-decoder prediction. */
  aux: boolean;
  /** Task(σ(Ŷ_i^ref)). */
  srn: boolean;
  /** L_i^pc (after warm-up, dual-branch only). */
  pbc: boolean;
  /** L_fc (dual-branch only). */
  frc: boolean;
  /** L_i^ref = KL(σ(Ŷ_i^ref) ‖ σ(Ŷ_i)) (after warm-up). */
  refinementKl: boolean;
}

export interface ObjectiveConfig {
  /** The KL terms (pbc, refinementKl) count from epoch `warmupEpochs` on (epochs counted from 0). */
  warmupEpochs: number;
  switches: LossSwitches;
  /** PBC softmax temperature. */
  tau: number;
  /** Multiply PBC by τ². */
  scaleByTauSquared: boolean;
  /**
   * Weight of each deep-supervision head's task loss, coarsest first (levels 5, 4, 3, 2 of the fusion decoder).
   * The paper's code weights every head 1; a zero weight drops that head.
   */
  deepSupervisionWeights: readonly number[];
  /** Weight of each separate-decoder (single-modality) task loss; the paper's code uses 1. */
  separateWeight: number;
  /** Weight of the refinement KL L_i^ref; the paper's: 1. */
  refinementKlWeight: number;
  /** The class weights of every task loss's cross-entropy; the paper's: 'one-minus-fraction'. */
  crossEntropyClassWeights: CrossEntropyClassWeights;
  /** Completes the Dice terms' batch-wide sums (data-parallel training: over every process's samples); default: this batch alone. */
  batchSum?: BatchSum;
}

export const DEFAULT_OBJECTIVE_CONFIG: ObjectiveConfig = {
  warmupEpochs: 100,
  switches: { task: true, aux: true, srn: true, pbc: true, frc: true, refinementKl: true },
  tau: 6,
  scaleByTauSquared: false,
  deepSupervisionWeights: [1, 1, 1, 1],
  separateWeight: 1,
  refinementKlWeight: 1,
  crossEntropyClassWeights: 'one-minus-fraction',
};

export interface ObjectiveInputs {
  branch1: BranchPredictions;
  /** Absent in single-branch (baseline) mode: then only branch 1's own terms count, no PBC and no FRC. */
  branch2?: BranchPredictions;
  /** Float one-hot ground truth, (B, C, H, W, D). */
  onehot: Tensor;
  /** Integer class indices, (B, H, W, D). */
  labels: Tensor;
  /** The current epoch, counted from 0. */
  epoch: number;
}

/** The terms of one branch; a term that is switched off (or still in warm-up) is absent. */
export interface BranchTerms {
  task?: Tensor;
  /** Σ Task over the deep-supervision heads. */
  deepSupervision?: Tensor;
  /** Σ Task over the separate-decoder predictions. */
  separate?: Tensor;
  /** Task(σ(Ŷ_i^ref)). */
  refinedTask?: Tensor;
  pbc?: Tensor;
  refinementKl?: Tensor;
}

export interface BranchObjective {
  /** L_i: this branch's terms plus the shared L_fc. */
  total: Tensor;
  terms: BranchTerms;
}

export interface Objective {
  /**
   * L_1 + L_2 − L_fc (L_fc counted once). Every cross term is detached on its teacher side, so one backward
   * pass gives each branch's parameters the gradient of its own L_i.
   */
  total: Tensor;
  branch1: BranchObjective;
  branch2?: BranchObjective;
  /** The shared L_fc, when active. */
  fc?: Tensor;
}

/** Every tensor is a scalar; an empty list sums to a zero of `like`'s dtype and device. */
function sumScalars(values: Tensor[], like: Tensor): Tensor {
  return values.reduce<Tensor>((sum, value) => sum.add(value), torch.zeros([], { dtype: like.dtype, device: like.device }));
}

function requireInput<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`branchObjectives: ${what} is required by the switched-on terms but was not given`);
  return value;
}

/** The terms that belong to one branch alone (everything except PBC and L_fc). */
function ownTerms(branch: BranchPredictions, name: string, onehot: Tensor, distilling: boolean, config: ObjectiveConfig): BranchTerms {
  const { switches } = config;
  const task = (probs: Tensor): Tensor => taskLoss(probs, onehot, config.batchSum, config.crossEntropyClassWeights);
  const terms: BranchTerms = {};
  if (switches.task) terms.task = task(branch.logits.softmax(1));
  if (switches.aux && branch.deepSupervisionProbs.length > 0) {
    const weights = config.deepSupervisionWeights;
    if (weights.length !== branch.deepSupervisionProbs.length) {
      throw new Error(`branchObjectives: ${weights.length} deep-supervision weights for ${branch.deepSupervisionProbs.length} heads (${name})`);
    }
    const weighted = branch.deepSupervisionProbs.flatMap((probs, head) => (weights[head] === 0 ? [] : [task(probs).mul(weights[head])]));
    terms.deepSupervision = sumScalars(weighted, branch.logits);
  }
  if (switches.aux && branch.separateProbs.length > 0 && config.separateWeight > 0) {
    terms.separate = sumScalars(branch.separateProbs.map(task), branch.logits).mul(config.separateWeight);
  }
  if (switches.srn) {
    terms.refinedTask = task(requireInput(branch.refinedLogits, `${name}.refinedLogits`).softmax(1));
  }
  if (switches.refinementKl && distilling && config.refinementKlWeight > 0) {
    terms.refinementKl = refinementConsistencyLoss(branch.logits, requireInput(branch.refinedLogits, `${name}.refinedLogits`)).mul(config.refinementKlWeight);
  }
  return terms;
}

const termSum = (terms: BranchTerms, like: Tensor): Tensor => sumScalars(Object.values(terms) as Tensor[], like);

/**
 * L_i = Task(σ(Ŷ_i)) + Σ aux + Task(σ(Ŷ_i^ref)) + L_fc + [epoch ≥ warmupEpochs] (L_i^pc + L_i^ref), each term
 * behind its switch, for one or two branches; see `Objective` for how `total` combines them.
 */
export function branchObjectives(inputs: ObjectiveInputs, config: ObjectiveConfig = DEFAULT_OBJECTIVE_CONFIG): Objective {
  const { branch1, branch2, onehot, labels, epoch } = inputs;
  const distilling = epoch >= config.warmupEpochs;
  return torch.tidy(() => {
    const terms1 = ownTerms(branch1, 'branch1', onehot, distilling, config);
    if (!branch2) {
      const total = termSum(terms1, branch1.logits);
      return { total, branch1: { total, terms: terms1 } };
    }
    const terms2 = ownTerms(branch2, 'branch2', onehot, distilling, config);
    const { pbc, fc } = crossTerms(branch1, branch2, onehot, labels, distilling, config);
    if (pbc) [terms1.pbc, terms2.pbc] = pbc;
    const own1 = termSum(terms1, branch1.logits);
    const own2 = termSum(terms2, branch2.logits);
    if (!fc) return { total: own1.add(own2), branch1: { total: own1, terms: terms1 }, branch2: { total: own2, terms: terms2 } };
    return {
      total: own1.add(own2).add(fc),
      branch1: { total: own1.add(fc), terms: terms1 },
      branch2: { total: own2.add(fc), terms: terms2 },
      fc,
    };
  });
}

/** What a branch contributes to the cross terms; from a branch trained in another process, constants here. */
export interface PeerPredictions {
  logits: Tensor;
  bottleneck?: Tensor;
}

/**
 * L_i alone, for a process that trains branch i (`index` 0 or 1) while another process trains the other branch,
 * whose logits and bottleneck arrive as constants. Its gradient with respect to branch i's parameters is that of
 * the joint objective (L_1 + L_2 − L_fc): the other branch's own terms do not depend on branch i, and every
 * cross term is detached on its teacher side.
 */
export function ownBranchObjective(
  inputs: { own: BranchPredictions; peer: PeerPredictions; index: 0 | 1; onehot: Tensor; labels: Tensor; epoch: number },
  config: ObjectiveConfig = DEFAULT_OBJECTIVE_CONFIG,
): BranchObjective & { fc?: Tensor } {
  const { own, peer, index, onehot, labels, epoch } = inputs;
  const distilling = epoch >= config.warmupEpochs;
  return torch.tidy(() => {
    const terms = ownTerms(own, `branch${index + 1}`, onehot, distilling, config);
    const [branch1, branch2] = index === 0 ? [own, peer] : [peer, own];
    const { pbc, fc } = crossTerms(branch1, branch2, onehot, labels, distilling, config);
    if (pbc) terms.pbc = pbc[index];
    const total = termSum(terms, own.logits);
    return fc ? { total: total.add(fc), terms, fc } : { total, terms };
  });
}

/** PBC of each branch (after warm-up) and the shared L_fc, each when switched on. */
function crossTerms(
  branch1: PeerPredictions,
  branch2: PeerPredictions,
  onehot: Tensor,
  labels: Tensor,
  distilling: boolean,
  config: ObjectiveConfig,
): { pbc?: [Tensor, Tensor]; fc?: Tensor } {
  const { switches } = config;
  const terms: { pbc?: [Tensor, Tensor]; fc?: Tensor } = {};
  if (switches.pbc && distilling) {
    const pbc = pixelBidirectionalLoss(branch1.logits, branch2.logits, onehot, { tau: config.tau, scaleByTauSquared: config.scaleByTauSquared });
    terms.pbc = [pbc.branch1, pbc.branch2];
  }
  if (switches.frc) {
    terms.fc = featureRelationalLoss(
      requireInput(branch1.bottleneck, 'branch1.bottleneck'),
      requireInput(branch2.bottleneck, 'branch2.bottleneck'),
      branch1.logits,
      branch2.logits,
      labels,
    );
  }
  return terms;
}
