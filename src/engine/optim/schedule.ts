// Learning-rate schedules.

/** The poly policy: lr0·(1 − epoch/maxEpochs)^power, for 0 ≤ epoch ≤ maxEpochs. */
export function polyLearningRate(lr0: number, epoch: number, maxEpochs: number, power = 0.9): number {
  if (!(maxEpochs > 0)) throw new RangeError(`polyLearningRate: maxEpochs must be positive, got ${maxEpochs}`);
  if (!(epoch >= 0 && epoch <= maxEpochs)) throw new RangeError(`polyLearningRate: epoch ${epoch} is outside [0, ${maxEpochs}]`);
  return lr0 * Math.pow(1 - epoch / maxEpochs, power);
}

/** What a schedule needs of an optimiser: groups whose learning rate it can set. */
export interface ScheduledOptimizer {
  paramGroups: { lr: number; initialLr?: number }[];
}

/**
 * Sets every group's lr to polyLearningRate(initialLr, epoch, maxEpochs, power). Each group's
 * starting rate is remembered as `initialLr` in the group (so it is saved with the optimiser state);
 * construction applies epoch 0.
 */
export class PolyLRScheduler {
  private currentEpoch = 0;

  constructor(
    readonly optimizer: ScheduledOptimizer,
    readonly maxEpochs: number,
    readonly power = 0.9,
  ) {
    for (const group of optimizer.paramGroups) group.initialLr ??= group.lr;
    this.setEpoch(0);
  }

  get epoch(): number {
    return this.currentEpoch;
  }

  /** Sets the learning rates for `epoch` (e.g. when resuming). */
  setEpoch(epoch: number): void {
    for (const group of this.optimizer.paramGroups) {
      group.lr = polyLearningRate(group.initialLr ?? group.lr, epoch, this.maxEpochs, this.power);
    }
    this.currentEpoch = epoch;
  }

  /** Moves to the next epoch. */
  step(): void {
    this.setEpoch(this.currentEpoch + 1);
  }

  /** The learning rate of each group now. */
  get lastLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }
}
