// Module: the base of every layer and network, holding named parameters, buffers and children.
import { native } from '../native.ts';
import { keep, noGrad, type DType, type Device, type Tensor } from '../tensor.ts';

export type StateDict = Map<string, Tensor>;

export abstract class Module {
  /** Training mode switches dropout on and makes batch norm use (and update) batch statistics. */
  training = true;
  private readonly parameterMap = new Map<string, Tensor>();
  private readonly bufferMap = new Map<string, Tensor>();
  private readonly childMap = new Map<string, Module>();

  /** Registers a trainable tensor under `name`; it requires grad and survives every `tidy` scope. */
  protected registerParameter<T extends Tensor>(name: string, tensor: T): T {
    this.checkName(name);
    keep(tensor);
    if (!tensor.requiresGrad) tensor.requiresGrad_(true);
    this.parameterMap.set(name, tensor);
    return tensor;
  }

  /** Registers persistent state that is saved but not trained (running statistics). */
  protected registerBuffer<T extends Tensor>(name: string, tensor: T): T {
    this.checkName(name);
    keep(tensor);
    this.bufferMap.set(name, tensor);
    return tensor;
  }

  /** Registers a child module; its parameters appear as `name.<child's names>`. */
  protected registerModule<M extends Module>(name: string, module: M): M {
    this.checkName(name);
    this.childMap.set(name, module);
    return module;
  }

  private checkName(name: string): void {
    if (name === '' || name.includes('.')) throw new Error(`invalid module entry name '${name}'`);
    if (this.parameterMap.has(name) || this.bufferMap.has(name) || this.childMap.has(name)) {
      throw new Error(`module entry '${name}' is registered twice`);
    }
  }

  /** Parameters of this module and its descendants, with dotted names, in registration order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, p] of this.parameterMap) out.push([prefix + name, p]);
    for (const [name, child] of this.childMap) out.push(...child.namedParameters(`${prefix}${name}.`));
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }
  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, b] of this.bufferMap) out.push([prefix + name, b]);
    for (const [name, child] of this.childMap) out.push(...child.namedBuffers(`${prefix}${name}.`));
    return out;
  }
  namedChildren(): [string, Module][] {
    return [...this.childMap];
  }
  /** This module and all descendants, depth first. */
  modules(): Module[] {
    return [this, ...[...this.childMap.values()].flatMap((child) => child.modules())];
  }
  /** Number of trainable scalars. */
  parameterCount(): number {
    return this.parameters().reduce((n, p) => n + p.numel, 0);
  }

  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /** Clears every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  /** Parameters and buffers by dotted name; the tensors are the module's own (not copies). */
  stateDict(): StateDict {
    return new Map([...this.namedParameters(), ...this.namedBuffers()]);
  }

  /**
   * Copies values from `state` into this module's parameters and buffers (in place, keeping
   * identities, converting dtype and device). Strict mode (default) rejects missing and
   * unexpected entries; a shape mismatch is always an error. Errors name the entries.
   */
  loadStateDict(state: StateDict, opts: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !state.has(k));
    const unexpected = [...state.keys()].filter((k) => !own.has(k));
    if ((opts.strict ?? true) && (missing.length > 0 || unexpected.length > 0)) {
      const parts = [];
      if (missing.length) parts.push(`missing: ${missing.join(', ')}`);
      if (unexpected.length) parts.push(`unexpected: ${unexpected.join(', ')}`);
      throw new Error(`loadStateDict: state does not match the module (${parts.join('; ')})`);
    }
    for (const [name, target] of own) {
      const source = state.get(name);
      if (!source) continue;
      const [want, got] = [target.shape, source.shape];
      if (want.length !== got.length || want.some((d, i) => d !== got[i])) {
        throw new Error(`loadStateDict: '${name}' has shape [${got.join(', ')}], the module expects [${want.join(', ')}]`);
      }
    }
    noGrad(() => {
      for (const [name, target] of own) {
        const source = state.get(name);
        if (source) target.copy_(source);
      }
    });
    return { missing, unexpected };
  }

  /** Moves or converts every parameter and buffer in place (floating-point tensors only change dtype). */
  to(target: { dtype?: DType; device?: Device }): this {
    noGrad(() => {
      for (const [, t] of [...this.namedParameters(), ...this.namedBuffers()]) {
        const floating = t.dtype.startsWith('float') || t.dtype === 'bfloat16';
        const converted = t.to({ device: target.device, dtype: floating ? target.dtype : undefined });
        native.setData(t.handle, converted.handle);
        converted.dispose();
      }
    });
    return this;
  }

  /** Frees every parameter and buffer now. */
  dispose(): void {
    for (const [, t] of [...this.namedParameters(), ...this.namedBuffers()]) t.dispose();
  }
}
