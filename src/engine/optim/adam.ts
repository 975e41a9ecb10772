// Adam and AMSGrad (torch.optim.Adam), updating through the addon's fused single-tensor step.
import { native } from '../native.ts';
import type { Tensor } from '../tensor.ts';
import { Optimizer, type BaseHyperparameters, type ParamGroup, type ParamState, type ParamsInput } from './optimizer.ts';

export interface AdamHyperparameters extends BaseHyperparameters {
  /** Decay rates of the first and second moment averages. */
  betas: [number, number];
  eps: number;
  /** L2 penalty: weightDecay·param is added to the gradient (not decoupled as in AdamW). */
  weightDecay: number;
  /** Divide by the running maximum of the second moment (Reddi et al. 2018). */
  amsgrad: boolean;
}

const ADAM_DEFAULTS: AdamHyperparameters = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, amsgrad: false };

/**
 * Per parameter, with g = grad + weightDecay·param and t the step count:
 * m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², v̂ ← max(v̂, v) with amsgrad (else v̂ = v),
 * param ← param − lr/(1−β₁ᵗ) · m / (√v̂/√(1−β₂ᵗ) + eps).
 * State buffers: exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad).
 */
export class Adam extends Optimizer<AdamHyperparameters> {
  constructor(opts: { params: ParamsInput<AdamHyperparameters> } & Partial<AdamHyperparameters>) {
    const { params, ...overrides } = opts;
    super('Adam', params, { ...ADAM_DEFAULTS, ...overrides }, ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq']);
  }

  protected override checkHyperparameters(group: AdamHyperparameters): void {
    const { lr, betas, eps, weightDecay } = group;
    const problems = [
      !(lr >= 0) && `lr ${lr} is negative`,
      !(eps >= 0) && `eps ${eps} is negative`,
      !(betas.length === 2 && betas.every((b) => b >= 0 && b < 1)) && `betas [${betas.join(', ')}] must lie in [0, 1)`,
      !(weightDecay >= 0) && `weightDecay ${weightDecay} is negative`,
    ].filter(Boolean);
    if (problems.length > 0) throw new Error(`Adam: ${problems.join('; ')}`);
  }

  protected override update(param: Tensor, grad: Tensor, state: ParamState, group: ParamGroup<AdamHyperparameters>): void {
    const expAvg = this.buffer(state, 'exp_avg', param);
    const expAvgSq = this.buffer(state, 'exp_avg_sq', param);
    const maxExpAvgSq = group.amsgrad ? this.buffer(state, 'max_exp_avg_sq', param) : null;
    state.step += 1;
    const [beta1, beta2] = group.betas;
    native.adamStep(
      param.handle,
      grad.handle,
      expAvg.handle,
      expAvgSq.handle,
      maxExpAvgSq?.handle ?? null,
      group.lr,
      beta1,
      beta2,
      group.eps,
      group.weightDecay,
      state.step,
    );
  }
}
