// Pieces shared by the loss modules: input checks and the per-voxel KL divergence between softmaxes.
import { torch, type Tensor } from '../engine/index.ts';

/** Throws unless `a` and `b` have identical shapes; `where` names the function, `names` the arguments. */
export function requireSameShape(where: string, names: [string, string], a: Tensor, b: Tensor): void {
  const [shapeA, shapeB] = [a.shape, b.shape];
  if (shapeA.length !== shapeB.length || shapeA.some((n, i) => n !== shapeB[i])) {
    throw new Error(`${where}: ${names[0]} has shape [${shapeA.join(', ')}] but ${names[1]} has shape [${shapeB.join(', ')}]`);
  }
}

/** Throws unless `t` is channels-first with at least one spatial dimension: (B, C, …spatial). */
export function requireChannelsFirst(where: string, name: string, t: Tensor): void {
  if (t.ndim < 3) throw new Error(`${where}: ${name} must be (B, C, …spatial), got shape [${t.shape.join(', ')}]`);
}

/**
 * KL(σ(teacher/τ) ‖ σ(student/τ)) = Σ_c p_c (ln p_c − ln q_c) per voxel, from log-softmax.
 * The teacher is detached: gradient reaches only the student.
 * teacherLogits, studentLogits: (B, C, …spatial) → (B, …spatial).
 */
export function klDivergencePerVoxel(teacherLogits: Tensor, studentLogits: Tensor, temperature = 1): Tensor {
  return torch.tidy(() => {
    const teacherLogProbs = teacherLogits.detach().div(temperature).logSoftmax(1);
    const studentLogProbs = studentLogits.div(temperature).logSoftmax(1);
    return torch.klDiv(studentLogProbs, teacherLogProbs, { reduction: 'none', logTarget: true }).sum(1);
  });
}
