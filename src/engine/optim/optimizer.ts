// The optimiser base: parameter groups with their own hyperparameters, per-parameter state, and a
// state dict that splits into tensors plus JSON (so it can be stored in a safetensors file).
import { zerosLike } from '../creation.ts';
import { keep, noGrad, tidy, type Tensor } from '../tensor.ts';

/** Hyperparameters every optimiser has. */
export interface BaseHyperparameters {
  lr: number;
}

/** A group of parameters sharing hyperparameters. `initialLr` is set by learning-rate schedules. */
export type ParamGroup<H extends BaseHyperparameters> = H & { params: Tensor[]; initialLr?: number };

/** Constructor input: the parameters alone, or groups that override some defaults. */
export type ParamsInput<H extends BaseHyperparameters> = Tensor[] | ({ params: Tensor[] } & Partial<H>)[];

/** What an optimiser keeps for one parameter. */
export interface ParamState {
  /** Updates applied to the parameter so far. */
  step: number;
  /** Running tensors (exp_avg, momentum_buffer, …) shaped like the parameter. */
  buffers: Map<string, Tensor>;
}

/** JSON-serialisable part of an optimiser's state dict. */
export interface OptimizerMeta {
  /** The optimiser class ('Adam', 'SGD'). */
  kind: string;
  /** Each group's hyperparameters and the indices of its parameters (numbered over all groups in order). */
  groups: (Record<string, unknown> & { params: number[] })[];
  /** Step count by parameter index (only parameters that have state). */
  steps: Record<string, number>;
}

export interface OptimizerStateDict {
  /** State tensors named `<parameter index>.<buffer name>`, e.g. `0.exp_avg`. They are the optimiser's own. */
  tensors: Map<string, Tensor>;
  meta: OptimizerMeta;
}

const sameShape = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

export abstract class Optimizer<H extends BaseHyperparameters> {
  readonly paramGroups: ParamGroup<H>[] = [];
  protected readonly state = new Map<Tensor, ParamState>();

  protected constructor(
    /** The name stored in state dicts; loading checks it. */
    readonly kind: string,
    params: ParamsInput<H>,
    readonly defaults: H,
    /** The buffers this optimiser may keep per parameter. */
    private readonly bufferNames: readonly string[],
  ) {
    type GroupInput = { params: Tensor[] } & Partial<H>;
    const groups = params.length > 0 && !('params' in params[0]) ? [{ params: params as Tensor[] } as GroupInput] : (params as GroupInput[]);
    if (groups.length === 0) throw new Error(`${kind}: no parameters to optimise`);
    for (const group of groups) this.addParamGroup(group);
  }

  /** Adds parameters with their own hyperparameters (missing ones come from the defaults). */
  addParamGroup(group: { params: Tensor[] } & Partial<H>): void {
    const seen = new Set(this.paramGroups.flatMap((g) => g.params));
    for (const p of group.params) {
      if (seen.has(p)) throw new Error(`${this.kind}: a parameter appears more than once in the parameter groups`);
      if (!p.isLeaf) throw new Error(`${this.kind}: can only optimise leaf tensors (parameters), got a computed tensor`);
      seen.add(p);
    }
    const full = { ...this.defaults, ...group, params: [...group.params] } as ParamGroup<H>;
    this.checkHyperparameters(full);
    this.paramGroups.push(full);
  }

  /** Throws a clear error for an out-of-range hyperparameter. */
  protected abstract checkHyperparameters(group: H): void;

  /** Applies one update to `param` given its gradient (runs without autograd, inside a memory scope). */
  protected abstract update(param: Tensor, grad: Tensor, state: ParamState, group: ParamGroup<H>): void;

  /** One optimisation step over every parameter that has a gradient. */
  step(): void {
    noGrad(() => {
      for (const group of this.paramGroups) {
        for (const param of group.params) {
          const grad = param.grad;
          if (!grad) continue;
          try {
            tidy(() => this.update(param, grad, this.stateOf(param), group));
          } finally {
            grad.dispose();
          }
        }
      }
    });
  }

  /** Clears the gradients: removes them (default), or zeroes them in place with setToNone = false. */
  zeroGrad(setToNone = true): void {
    for (const group of this.paramGroups) {
      for (const param of group.params) {
        if (setToNone) {
          param.grad = null;
          continue;
        }
        const grad = param.grad;
        grad?.zero_();
        grad?.dispose();
      }
    }
  }

  protected stateOf(param: Tensor): ParamState {
    let state = this.state.get(param);
    if (!state) {
      state = { step: 0, buffers: new Map() };
      this.state.set(param, state);
    }
    return state;
  }

  /** The named buffer of a parameter's state, created by `init` (zeros by default) on first use. */
  protected buffer(state: ParamState, name: string, param: Tensor, init: () => Tensor = () => zerosLike(param)): Tensor {
    let buffer = state.buffers.get(name);
    if (!buffer) {
      buffer = keep(init());
      state.buffers.set(name, buffer);
    }
    return buffer;
  }

  private allParams(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /** The state as tensors (the optimiser's own, not copies) plus JSON-serialisable metadata. */
  stateDict(): OptimizerStateDict {
    const tensors = new Map<string, Tensor>();
    const steps: Record<string, number> = {};
    this.allParams().forEach((param, index) => {
      const state = this.state.get(param);
      if (!state) return;
      steps[index] = state.step;
      for (const [name, buffer] of state.buffers) tensors.set(`${index}.${name}`, buffer);
    });
    let next = 0;
    const groups = this.paramGroups.map(({ params, ...hyperparameters }) => ({
      ...structuredClone(hyperparameters),
      params: params.map(() => next++),
    }));
    return { tensors, meta: { kind: this.kind, groups, steps } };
  }

  /**
   * Restores state and hyperparameters saved by `stateDict` from an optimiser over parameters of the
   * same shapes in the same groups. Tensors are copied (to each parameter's dtype and device).
   */
  loadStateDict(dict: OptimizerStateDict): void {
    const { meta } = dict;
    if (meta.kind !== this.kind) this.fail(`the state belongs to a ${meta.kind} optimiser`);
    if (meta.groups.length !== this.paramGroups.length) {
      this.fail(`the state has ${meta.groups.length} parameter groups, this optimiser ${this.paramGroups.length}`);
    }
    const updatedGroups = meta.groups.map(({ params: indices, ...hyperparameters }, g) => {
      const group = this.paramGroups[g];
      if (indices.length !== group.params.length) {
        this.fail(`group ${g} has ${indices.length} parameters in the state, ${group.params.length} here`);
      }
      const unknown = Object.keys(hyperparameters).filter((key) => key !== 'initialLr' && !(key in this.defaults));
      if (unknown.length > 0) this.fail(`group ${g} has unknown hyperparameters: ${unknown.join(', ')}`);
      const updated = { ...group, ...structuredClone(hyperparameters) } as ParamGroup<H>;
      this.checkHyperparameters(updated);
      return updated;
    });
    const restored = this.restoreParamStates(dict);
    updatedGroups.forEach((updated, g) => Object.assign(this.paramGroups[g], updated));
    this.disposeState();
    for (const [param, state] of restored) this.state.set(param, state);
  }

  private restoreParamStates({ tensors, meta }: OptimizerStateDict): Map<Tensor, ParamState> {
    const params = this.allParams();
    const restored = new Map<Tensor, ParamState>();
    const stateAt = (index: number): ParamState => {
      const param = params[index];
      if (!param) this.fail(`state for parameter ${index}, but there are ${params.length}`);
      let state = restored.get(param);
      if (!state) {
        state = { step: meta.steps[index] ?? 0, buffers: new Map() };
        restored.set(param, state);
      }
      return state;
    };
    try {
      for (const [index, step] of Object.entries(meta.steps)) {
        if (!Number.isInteger(step) || step < 0) this.fail(`parameter ${index} has step count ${step}`);
        stateAt(Number(index));
      }
      for (const [key, source] of tensors) {
        const match = /^(\d+)\.(.+)$/.exec(key);
        if (!match || !this.bufferNames.includes(match[2])) this.fail(`unexpected state tensor '${key}'`);
        const index = Number(match[1]);
        const state = stateAt(index);
        const param = params[index];
        if (!sameShape(source.shape, param.shape)) {
          this.fail(`'${key}' has shape [${source.shape.join(', ')}], its parameter [${param.shape.join(', ')}]`);
        }
        state.buffers.set(match[2], keep(source.to({ dtype: param.dtype, device: param.device }, true)));
      }
    } catch (error) {
      for (const state of restored.values()) for (const buffer of state.buffers.values()) buffer.dispose();
      throw error;
    }
    return restored;
  }

  /** Frees every state tensor and forgets all state. */
  disposeState(): void {
    for (const state of this.state.values()) for (const buffer of state.buffers.values()) buffer.dispose();
    this.state.clear();
  }

  private fail(problem: string): never {
    throw new Error(`${this.kind}.loadStateDict: ${problem}`);
  }
}
