// Stochastic gradient descent with momentum, dampening and Nesterov momentum (torch.optim.SGD).
import type { Tensor } from '../tensor.ts';
import { Optimizer, type BaseHyperparameters, type ParamGroup, type ParamState, type ParamsInput } from './optimizer.ts';

export interface SgdHyperparameters extends BaseHyperparameters {
  momentum: number;
  /** Fraction of the gradient left out of the momentum update. */
  dampening: number;
  nesterov: boolean;
  /** L2 penalty: weightDecay·param is added to the gradient. */
  weightDecay: number;
}

const SGD_DEFAULTS: Omit<SgdHyperparameters, 'lr'> = { momentum: 0, dampening: 0, nesterov: false, weightDecay: 0 };

/**
 * Per parameter, with g = grad + weightDecay·param: b ← g on the first step, else
 * b ← momentum·b + (1 − dampening)·g; the step direction is g + momentum·b (Nesterov) or b
 * (g itself without momentum); param ← param − lr·direction. State buffer: momentum_buffer.
 */
export class SGD extends Optimizer<SgdHyperparameters> {
  constructor(opts: { params: ParamsInput<SgdHyperparameters>; lr: number } & Partial<SgdHyperparameters>) {
    const { params, ...overrides } = opts;
    super('SGD', params, { ...SGD_DEFAULTS, ...overrides }, ['momentum_buffer']);
  }

  protected override checkHyperparameters(group: SgdHyperparameters): void {
    const { lr, momentum, dampening, nesterov, weightDecay } = group;
    const problems = [
      !(lr >= 0) && `lr ${lr} is negative`,
      !(momentum >= 0) && `momentum ${momentum} is negative`,
      !(weightDecay >= 0) && `weightDecay ${weightDecay} is negative`,
      nesterov && (momentum <= 0 || dampening !== 0) && 'nesterov needs momentum > 0 and dampening 0',
    ].filter(Boolean);
    if (problems.length > 0) throw new Error(`SGD: ${problems.join('; ')}`);
  }

  protected override update(param: Tensor, grad: Tensor, state: ParamState, group: ParamGroup<SgdHyperparameters>): void {
    const { lr, momentum, dampening, nesterov, weightDecay } = group;
    const decayed = weightDecay !== 0 ? grad.add(param, weightDecay) : grad;
    let direction = decayed;
    if (momentum !== 0) {
      const fresh = !state.buffers.has('momentum_buffer');
      const buffer = this.buffer(state, 'momentum_buffer', param, () => decayed.clone());
      if (!fresh) buffer.mul_(momentum).add_(decayed, 1 - dampening);
      direction = nesterov ? decayed.add(buffer, momentum) : buffer;
    }
    state.step += 1;
    param.add_(direction, -lr);
  }
}
