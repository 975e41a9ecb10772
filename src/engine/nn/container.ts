// Containers: Sequential chains single-input layers, ModuleList holds an indexed list of modules.
import { tidy, type Tensor } from '../tensor.ts';
import { Module } from './module.ts';

/** A module that maps one tensor to one tensor (a layer that can sit in a Sequential). */
export type TensorModule = Module & { forward(x: Tensor): Tensor };

/** Applies its layers in order; they are named '0', '1', … as in PyTorch. */
export class Sequential extends Module {
  private readonly layers: TensorModule[];

  constructor(...layers: TensorModule[]) {
    super();
    this.layers = layers;
    layers.forEach((layer, i) => this.registerModule(String(i), layer));
  }

  get length(): number {
    return this.layers.length;
  }
  at(index: number): TensorModule {
    const layer = this.layers.at(index);
    if (!layer) throw new RangeError(`Sequential: no layer ${index} in ${this.layers.length}`);
    return layer;
  }
  [Symbol.iterator](): Iterator<TensorModule> {
    return this.layers[Symbol.iterator]();
  }

  /** Intermediate results are freed as soon as the chain is done. */
  forward(x: Tensor): Tensor {
    return tidy(() => this.layers.reduce((value, layer) => layer.forward(value), x));
  }
}

/** An indexed list of modules, registered as '0', '1', … so their parameters are found. */
export class ModuleList<M extends Module = Module> extends Module {
  private readonly items: M[] = [];

  constructor(modules: Iterable<M> = []) {
    super();
    for (const module of modules) this.append(module);
  }

  append(module: M): this {
    this.registerModule(String(this.items.length), module);
    this.items.push(module);
    return this;
  }
  get length(): number {
    return this.items.length;
  }
  at(index: number): M {
    const module = this.items.at(index);
    if (!module) throw new RangeError(`ModuleList: no module ${index} in ${this.items.length}`);
    return module;
  }
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
  map<R>(fn: (module: M, index: number) => R): R[] {
    return this.items.map(fn);
  }
}
