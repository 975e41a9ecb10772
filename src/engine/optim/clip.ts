// Gradient clipping.
import { stack } from '../functional.ts';
import { noGrad, tidy, type Tensor } from '../tensor.ts';

/**
 * Scales the gradients of `params` in place so that their joint `normType`-norm (Infinity for the
 * largest magnitude) is at most `maxNorm`, as torch.nn.utils.clip_grad_norm_: the factor
 * maxNorm/(total + 1e-6) is applied when it is below 1. Returns the total norm before clipping
 * (0 when no parameter has a gradient).
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number, normType = 2): number {
  const grads = [...params].map((p) => p.grad).filter((g): g is Tensor => g !== null);
  try {
    if (grads.length === 0) return 0;
    return noGrad(() =>
      tidy(() => {
        const norms = stack(grads.map((g) => (normType === Infinity ? g.abs().amax() : g.norm(normType))));
        const total = (normType === Infinity ? norms.amax() : norms.norm(normType)).item();
        const factor = maxNorm / (total + 1e-6);
        if (factor < 1) for (const g of grads) g.mul_(factor);
        return total;
      }),
    );
  } finally {
    for (const g of grads) g.dispose();
  }
}
