// The Tensor class: a JavaScript handle on a libtorch tensor, with memory scopes and autograd.
import { withAutocastOperands } from './autocast.ts';
import { native, type NativeHandle } from './native.ts';

export type { NativeHandle };

export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';
/** 'cpu', 'cuda' or 'cuda:N'. */
export type Device = string;
export type TypedArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigInt64Array;
export type NestedArray = number | boolean | NestedArray[];
export type Scalar = number | boolean;
/** Either a tensor or a number broadcast against it. */
export type TensorOrScalar = Tensor | Scalar;

export interface CreationOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Memory scopes: every tensor created inside `tidy(fn)` is disposed when fn returns, unless it is
// part of the result or was passed to `keep`.

const scopes: Set<Tensor>[] = [];

function track(t: Tensor): Tensor {
  scopes.at(-1)?.add(t);
  return t;
}

/** Removes `t` from every open scope so that it outlives them (parameters, optimiser state, caches). */
export function keep<T extends Tensor>(t: T): T {
  for (const scope of scopes) scope.delete(t);
  return t;
}

function collectTensors(value: unknown, into: Set<Tensor>, seen = new Set<unknown>()): void {
  if (value instanceof Tensor) {
    into.add(value);
  } else if (value !== null && typeof value === 'object' && !ArrayBuffer.isView(value) && !seen.has(value)) {
    // Typed arrays hold numbers only; walking their elements would cost a visit per voxel.
    seen.add(value);
    const items = value instanceof Map ? value.values() : Array.isArray(value) ? value : Object.values(value);
    for (const item of items) collectTensors(item, into, seen);
  }
}

/**
 * Runs `fn` and disposes every tensor it created, except those reachable from its result
 * (tensors, arrays, plain objects and Maps are searched), which move to the enclosing scope.
 * Synchronous only: a promise returned by `fn` is rejected as an error.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw error;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new Error('tidy: the function must be synchronous (it returned a promise)');
  }
  const kept = new Set<Tensor>();
  collectTensors(result, kept);
  const parent = scopes.at(-1);
  for (const t of scope) {
    if (!kept.has(t)) t.dispose();
    else parent?.add(t);
  }
  return result;
}

/** Disposes every tensor found in `value` (a tensor, or arrays/objects holding tensors). */
export function dispose(value: unknown): void {
  const found = new Set<Tensor>();
  collectTensors(value, found);
  for (const t of found) t.dispose();
}

// ---------------------------------------------------------------------------------------------
// Autograd mode.

/** Runs `fn` with gradient recording switched off (like `torch.no_grad()`). */
export function noGrad<T>(fn: () => T): T {
  const previous = native.setGradEnabled(false) as boolean;
  try {
    return fn();
  } finally {
    native.setGradEnabled(previous);
  }
}

/** Runs `fn` with gradient recording switched on, even inside `noGrad`. */
export function enableGrad<T>(fn: () => T): T {
  const previous = native.setGradEnabled(true) as boolean;
  try {
    return fn();
  } finally {
    native.setGradEnabled(previous);
  }
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled() as boolean;
}

// ---------------------------------------------------------------------------------------------

const handleOf = (v: TensorOrScalar): NativeHandle | Scalar => (v instanceof Tensor ? v.handle : v);
const optionalHandle = (t: Tensor | null | undefined): NativeHandle | null => (t ? t.handle : null);

/** Wraps a handle returned by the addon (and registers it with the current scope). */
export function wrap(handle: NativeHandle): Tensor {
  return track(new Tensor(handle));
}

export function wrapList(handles: NativeHandle[]): Tensor[] {
  return handles.map(wrap);
}

const normalizeDims = (dims: number | number[] | undefined): number[] | null =>
  dims === undefined ? null : typeof dims === 'number' ? [dims] : dims;

export class Tensor {
  /** The addon's handle. Prefer the methods; this is for engine internals and extensions. */
  readonly handle: NativeHandle;
  private disposed = false;

  /** Use `torch.tensor`, `torch.zeros`, … to create tensors; this wraps an existing handle. */
  constructor(handle: NativeHandle) {
    this.handle = handle;
  }

  // -- inspection ------------------------------------------------------------------------------
  get shape(): number[] {
    return native.shape(this.handle) as number[];
  }
  get dtype(): DType {
    return native.dtype(this.handle) as DType;
  }
  get device(): Device {
    return native.device(this.handle) as Device;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get numel(): number {
    return native.numel(this.handle) as number;
  }
  get strides(): number[] {
    return native.strides(this.handle) as number[];
  }
  get isDisposed(): boolean {
    return this.disposed;
  }
  isContiguous(): boolean {
    return native.isContiguous(this.handle) as boolean;
  }
  size(dim: number): number {
    const shape = this.shape;
    const index = dim < 0 ? dim + shape.length : dim;
    if (!Number.isInteger(index) || index < 0 || index >= shape.length) {
      throw new RangeError(`size: dimension ${dim} is out of range for a tensor of ${shape.length} dimensions`);
    }
    return shape[index];
  }

  /** Frees this handle now (the storage goes once no other tensor shares it). Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    native.dispose(this.handle);
  }

  // -- conversion --------------------------------------------------------------------------------
  /**
   * A copy of the values in row-major order, as the natural typed array of the dtype: Float32Array,
   * Float64Array, Int32Array, Int16Array, Int8Array, Uint8Array (uint8 and bool) or BigInt64Array (int64).
   * float16 and bfloat16 are widened to Float32Array.
   */
  toTypedArray(): TypedArray {
    const dtype = this.dtype;
    if (dtype === 'float16' || dtype === 'bfloat16') {
      return tidy(() => this.to('float32').toTypedArray());
    }
    const buffer = native.toBuffer(this.handle) as ArrayBuffer;
    switch (dtype) {
      case 'float32':
        return new Float32Array(buffer);
      case 'float64':
        return new Float64Array(buffer);
      case 'int64':
        return new BigInt64Array(buffer);
      case 'int32':
        return new Int32Array(buffer);
      case 'int16':
        return new Int16Array(buffer);
      case 'int8':
        return new Int8Array(buffer);
      default:
        return new Uint8Array(buffer);
    }
  }
  /** The values as plain numbers in row-major order (int64 converted with Number()). */
  toArray(): number[] {
    const values = this.toTypedArray();
    return values instanceof BigInt64Array ? Array.from(values, Number) : Array.from(values);
  }
  /** The value of a one-element tensor. */
  item(): number {
    return Number(native.item(this.handle));
  }
  /** Converts to another dtype and/or device (returns this tensor's data unchanged if nothing changes). */
  to(target: DType | Device | { dtype?: DType; device?: Device }, copy = false): Tensor {
    if (typeof target === 'string' && !isDType(target) && !isDeviceName(target)) {
      throw new TypeError(`to: '${target}' is neither a dtype (${DTYPES.join(', ')}) nor a device ('cpu', 'cuda', 'cuda:N')`);
    }
    const spec = typeof target === 'string' ? (isDType(target) ? { dtype: target } : { device: target }) : target;
    if (spec.device !== undefined) checkDevice(spec.device);
    return wrap(native.to(this.handle, spec.dtype ?? null, spec.device ?? null, copy));
  }
  float(): Tensor {
    return this.to('float32');
  }
  double(): Tensor {
    return this.to('float64');
  }
  long(): Tensor {
    return this.to('int64');
  }
  int(): Tensor {
    return this.to('int32');
  }
  bool(): Tensor {
    return this.to('bool');
  }
  clone(): Tensor {
    return wrap(native.clone(this.handle));
  }
  /** Row-major contiguous copy, or channels-last (NDHWC in memory) with 'channelsLast'. */
  contiguous(format: 'contiguous' | 'channelsLast' = 'contiguous'): Tensor {
    return wrap(native.contiguous(this.handle, format));
  }
  /** A header line (shape, dtype, device) and the values, nested rows indented as PyTorch prints them. */
  toString(): string {
    if (this.disposed) return 'Tensor <disposed>';
    const head = `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
    return `${head}\n${formatValues(this.toArray(), this.shape, this.dtype)}`;
  }
  /** console.log and util.inspect show the values rather than the handle. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  // -- autograd ------------------------------------------------------------------------------------
  get requiresGrad(): boolean {
    return native.requiresGrad(this.handle) as boolean;
  }
  set requiresGrad(value: boolean) {
    native.setRequiresGrad(this.handle, value);
  }
  requiresGrad_(value = true): this {
    native.setRequiresGrad(this.handle, value);
    return this;
  }
  get isLeaf(): boolean {
    return native.isLeaf(this.handle) as boolean;
  }
  /** The accumulated gradient (a new handle on it), or null. */
  get grad(): Tensor | null {
    const g = native.grad(this.handle) as NativeHandle | null;
    return g ? wrap(g) : null;
  }
  set grad(value: Tensor | null) {
    native.setGrad(this.handle, optionalHandle(value));
  }
  /** The name of the autograd node that produced this tensor (e.g. 'MulBackward0'), or null for leaves. */
  get gradFnName(): string | null {
    return native.gradFnName(this.handle) as string | null;
  }
  /** Keeps the gradient of a non-leaf tensor after backward. */
  retainGrad(): this {
    native.retainGrad(this.handle);
    return this;
  }
  /** Accumulates gradients into the leaves. `retainGraph` defaults to `createGraph`, as in PyTorch. */
  backward(gradient?: Tensor, opts: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    native.backward(this.handle, optionalHandle(gradient), opts.retainGraph ?? opts.createGraph ?? false, opts.createGraph ?? false);
  }
  detach(): Tensor {
    return wrap(native.detach(this.handle));
  }

  // -- shape ---------------------------------------------------------------------------------------
  reshape(...shape: number[] | [number[]]): Tensor {
    return wrap(native.reshape(this.handle, flatShape(shape)));
  }
  view(...shape: number[] | [number[]]): Tensor {
    return wrap(native.view(this.handle, flatShape(shape)));
  }
  permute(...dims: number[] | [number[]]): Tensor {
    return wrap(native.permute(this.handle, flatShape(dims)));
  }
  transpose(dim0: number, dim1: number): Tensor {
    return wrap(native.transpose(this.handle, dim0, dim1));
  }
  squeeze(dim?: number): Tensor {
    return wrap(native.squeeze(this.handle, dim ?? null));
  }
  unsqueeze(dim: number): Tensor {
    return wrap(native.unsqueeze(this.handle, dim));
  }
  flatten(startDim = 0, endDim = -1): Tensor {
    return wrap(native.flatten(this.handle, startDim, endDim));
  }
  expand(...shape: number[] | [number[]]): Tensor {
    return wrap(native.expand(this.handle, flatShape(shape)));
  }
  expandAs(other: Tensor): Tensor {
    return this.expand(other.shape);
  }
  repeat(...repeats: number[] | [number[]]): Tensor {
    return wrap(native.repeat(this.handle, flatShape(repeats)));
  }
  chunk(chunks: number, dim = 0): Tensor[] {
    return wrapList(native.chunk(this.handle, chunks, dim));
  }
  /** Splits into pieces of `sizeOrSizes` (one size, or a list of sizes) along `dim`. */
  split(sizeOrSizes: number | number[], dim = 0): Tensor[] {
    return wrapList(native.split(this.handle, sizeOrSizes, dim));
  }
  unbind(dim = 0): Tensor[] {
    return wrapList(native.unbind(this.handle, dim));
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return wrap(native.narrow(this.handle, dim, start, length));
  }
  /** Elements start ≤ i < end (step apart) along `dim`; negative indices count from the end. */
  slice(dim: number, start = 0, end = Number.MAX_SAFE_INTEGER, step = 1): Tensor {
    return wrap(native.slice(this.handle, dim, start, end, step));
  }
  select(dim: number, index: number): Tensor {
    return wrap(native.select(this.handle, dim, index));
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return wrap(native.indexSelect(this.handle, dim, index.handle));
  }
  gather(dim: number, index: Tensor): Tensor {
    return wrap(native.gather(this.handle, dim, index.handle));
  }
  scatter(dim: number, index: Tensor, src: TensorOrScalar): Tensor {
    return wrap(native.scatter(this.handle, dim, index.handle, handleOf(src)));
  }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return wrap(native.scatterAdd(this.handle, dim, index.handle, src.handle));
  }
  maskedFill(mask: Tensor, value: TensorOrScalar): Tensor {
    return wrap(native.maskedFill(this.handle, mask.handle, handleOf(value)));
  }
  maskedSelect(mask: Tensor): Tensor {
    return wrap(native.maskedSelect(this.handle, mask.handle));
  }
  nonzero(): Tensor {
    return wrap(native.nonzero(this.handle));
  }
  flip(...dims: number[] | [number[]]): Tensor {
    return wrap(native.flip(this.handle, flatShape(dims)));
  }
  roll(shifts: number | number[], dims: number | number[]): Tensor {
    return wrap(native.roll(this.handle, shifts, dims));
  }
  tril(diagonal = 0): Tensor {
    return wrap(native.tril(this.handle, diagonal));
  }
  triu(diagonal = 0): Tensor {
    return wrap(native.triu(this.handle, diagonal));
  }

  // -- element-wise maths ----------------------------------------------------------------------
  add(other: TensorOrScalar, alpha?: number): Tensor {
    return wrap(native.add(this.handle, handleOf(other), alpha));
  }
  sub(other: TensorOrScalar, alpha?: number): Tensor {
    return wrap(native.sub(this.handle, handleOf(other), alpha));
  }
  /** other − this. */
  rsub(other: number): Tensor {
    return wrap(native.rsub(this.handle, other));
  }
  mul(other: TensorOrScalar): Tensor {
    return wrap(native.mul(this.handle, handleOf(other)));
  }
  div(other: TensorOrScalar, roundingMode?: 'trunc' | 'floor'): Tensor {
    return wrap(native.div(this.handle, handleOf(other), roundingMode));
  }
  /** other ÷ this. */
  rdiv(other: number): Tensor {
    return wrap(native.rdiv(this.handle, other));
  }
  pow(exponent: TensorOrScalar): Tensor {
    return wrap(native.pow(this.handle, handleOf(exponent)));
  }
  remainder(other: TensorOrScalar): Tensor {
    return wrap(native.remainder(this.handle, handleOf(other)));
  }
  minimum(other: Tensor): Tensor {
    return wrap(native.minimum(this.handle, other.handle));
  }
  maximum(other: Tensor): Tensor {
    return wrap(native.maximum(this.handle, other.handle));
  }
  clamp(min?: TensorOrScalar | null, max?: TensorOrScalar | null): Tensor {
    return wrap(native.clamp(this.handle, min == null ? null : handleOf(min), max == null ? null : handleOf(max)));
  }
  clampMin(min: number): Tensor {
    return this.clamp(min, null);
  }
  clampMax(max: number): Tensor {
    return this.clamp(null, max);
  }
  eq(other: TensorOrScalar): Tensor {
    return wrap(native.eq(this.handle, handleOf(other)));
  }
  ne(other: TensorOrScalar): Tensor {
    return wrap(native.ne(this.handle, handleOf(other)));
  }
  lt(other: TensorOrScalar): Tensor {
    return wrap(native.lt(this.handle, handleOf(other)));
  }
  le(other: TensorOrScalar): Tensor {
    return wrap(native.le(this.handle, handleOf(other)));
  }
  gt(other: TensorOrScalar): Tensor {
    return wrap(native.gt(this.handle, handleOf(other)));
  }
  ge(other: TensorOrScalar): Tensor {
    return wrap(native.ge(this.handle, handleOf(other)));
  }
  logicalAnd(other: Tensor): Tensor {
    return wrap(native.logicalAnd(this.handle, other.handle));
  }
  logicalOr(other: Tensor): Tensor {
    return wrap(native.logicalOr(this.handle, other.handle));
  }
  logicalXor(other: Tensor): Tensor {
    return wrap(native.logicalXor(this.handle, other.handle));
  }
  logicalNot(): Tensor {
    return wrap(native.logicalNot(this.handle));
  }
  /** True when both have the same shape and |a − b| ≤ atol + rtol·|b| everywhere. */
  allclose(other: Tensor, rtol = 1e-5, atol = 1e-8): boolean {
    return native.allclose(this.handle, other.handle, rtol, atol) as boolean;
  }
  /** True when both have the same shape and identical values. */
  equal(other: Tensor): boolean {
    return native.equal(this.handle, other.handle) as boolean;
  }
  neg(): Tensor {
    return wrap(native.neg(this.handle));
  }
  abs(): Tensor {
    return wrap(native.abs(this.handle));
  }
  exp(): Tensor {
    return wrap(native.exp(this.handle));
  }
  expm1(): Tensor {
    return wrap(native.expm1(this.handle));
  }
  log(): Tensor {
    return wrap(native.log(this.handle));
  }
  log1p(): Tensor {
    return wrap(native.log1p(this.handle));
  }
  log2(): Tensor {
    return wrap(native.log2(this.handle));
  }
  sqrt(): Tensor {
    return wrap(native.sqrt(this.handle));
  }
  rsqrt(): Tensor {
    return wrap(native.rsqrt(this.handle));
  }
  square(): Tensor {
    return wrap(native.square(this.handle));
  }
  reciprocal(): Tensor {
    return wrap(native.reciprocal(this.handle));
  }
  sin(): Tensor {
    return wrap(native.sin(this.handle));
  }
  cos(): Tensor {
    return wrap(native.cos(this.handle));
  }
  tanh(): Tensor {
    return wrap(native.tanh(this.handle));
  }
  erf(): Tensor {
    return wrap(native.erf(this.handle));
  }
  sigmoid(): Tensor {
    return wrap(native.sigmoid(this.handle));
  }
  relu(): Tensor {
    return wrap(native.relu(this.handle));
  }
  floor(): Tensor {
    return wrap(native.floor(this.handle));
  }
  ceil(): Tensor {
    return wrap(native.ceil(this.handle));
  }
  round(): Tensor {
    return wrap(native.round(this.handle));
  }
  trunc(): Tensor {
    return wrap(native.trunc(this.handle));
  }
  sign(): Tensor {
    return wrap(native.sign(this.handle));
  }
  isnan(): Tensor {
    return wrap(native.isnan(this.handle));
  }
  isinf(): Tensor {
    return wrap(native.isinf(this.handle));
  }
  isfinite(): Tensor {
    return wrap(native.isfinite(this.handle));
  }
  /** Under autocast, softmax runs in float32 (as the normalisations do). */
  softmax(dim: number): Tensor {
    return wrap(withAutocastOperands('float32', [this], ([x]) => native.softmax(x, dim)));
  }
  logSoftmax(dim: number): Tensor {
    return wrap(withAutocastOperands('float32', [this], ([x]) => native.logSoftmax(x, dim)));
  }

  // -- reductions ----------------------------------------------------------------------------------
  // Without `dims` a reduction runs over every element.
  sum(dims?: number | number[], keepdim = false, dtype?: DType): Tensor {
    return wrap(native.sum(this.handle, normalizeDims(dims), keepdim, dtype ?? null));
  }
  mean(dims?: number | number[], keepdim = false, dtype?: DType): Tensor {
    return wrap(native.mean(this.handle, normalizeDims(dims), keepdim, dtype ?? null));
  }
  prod(dim?: number, keepdim = false): Tensor {
    return wrap(native.prod(this.handle, dim ?? null, keepdim));
  }
  cumsum(dim: number): Tensor {
    return wrap(native.cumsum(this.handle, dim));
  }
  /** Maximum over `dims` (all elements without it), values only. */
  amax(dims?: number | number[], keepdim = false): Tensor {
    return wrap(native.amax(this.handle, normalizeDims(dims), keepdim));
  }
  amin(dims?: number | number[], keepdim = false): Tensor {
    return wrap(native.amin(this.handle, normalizeDims(dims), keepdim));
  }
  /** The largest element (no dim), or values and indices along `dim`. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  max(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return this.amax();
    const [values, indices] = wrapList(native.maxDim(this.handle, dim, keepdim));
    return { values, indices };
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  min(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return this.amin();
    const [values, indices] = wrapList(native.minDim(this.handle, dim, keepdim));
    return { values, indices };
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return wrap(native.argmax(this.handle, dim ?? null, keepdim));
  }
  argmin(dim?: number, keepdim = false): Tensor {
    return wrap(native.argmin(this.handle, dim ?? null, keepdim));
  }
  logsumexp(dims: number | number[], keepdim = false): Tensor {
    return wrap(native.logsumexp(this.handle, normalizeDims(dims), keepdim));
  }
  /** Variance with `correction` (1 = unbiased, 0 = population). */
  var(dims?: number | number[], opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
    return wrap(native.var(this.handle, normalizeDims(dims), opts.correction ?? 1, opts.keepdim ?? false));
  }
  /** p-norm (default 2) over `dims`, or over every element. */
  norm(p = 2, dims?: number | number[], keepdim = false): Tensor {
    return wrap(native.norm(this.handle, p, normalizeDims(dims), keepdim));
  }
  all(): Tensor {
    return wrap(native.all(this.handle));
  }
  any(): Tensor {
    return wrap(native.any(this.handle));
  }

  // -- linear algebra ----------------------------------------------------------------------------
  matmul(other: Tensor): Tensor {
    return wrap(native.matmul(this.handle, other.handle));
  }
  bmm(other: Tensor): Tensor {
    return wrap(native.bmm(this.handle, other.handle));
  }

  // -- in-place updates (no autograd history; for optimisers, buffers and initialisation) ------
  zero_(): this {
    native.zero_(this.handle);
    return this;
  }
  fill_(value: Scalar): this {
    native.fill_(this.handle, value);
    return this;
  }
  copy_(src: Tensor): this {
    native.copy_(this.handle, src.handle);
    return this;
  }
  add_(other: TensorOrScalar, alpha?: number): this {
    native.add_(this.handle, handleOf(other), alpha);
    return this;
  }
  mul_(other: TensorOrScalar): this {
    native.mul_(this.handle, handleOf(other));
    return this;
  }
  uniform_(low = 0, high = 1): this {
    native.uniform_(this.handle, low, high);
    return this;
  }
  normal_(mean = 0, std = 1): this {
    native.normal_(this.handle, mean, std);
    return this;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

const DTYPES: readonly DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

export function isDType(value: string): value is DType {
  return (DTYPES as readonly string[]).includes(value);
}

/** Throws a clear error for a CUDA device when the linked libtorch has none. */
export function checkDevice(device: Device): void {
  if (device.startsWith('cuda') && !(native.cudaIsAvailable() as boolean)) {
    throw new Error(`device '${device}' requested, but the linked libtorch has no usable CUDA (build with LIBTORCH pointing at a CUDA libtorch)`);
  }
}

function flatShape(args: number[] | [number[]]): number[] {
  return Array.isArray(args[0]) ? args[0] : (args as number[]);
}

const DEVICE_NAME = /^(cpu|cuda|meta|mps)(:\d+)?$/;

function isDeviceName(value: string): boolean {
  return DEVICE_NAME.test(value);
}

/** Above this many elements, each long dimension is shown as its first and last few entries. */
const SUMMARY_THRESHOLD = 1000;
const SUMMARY_EDGE = 3;

/** One formatter per tensor, so that all shown entries share a notation. */
function elementFormatter(values: number[], dtype: DType): (v: number) => string {
  if (dtype === 'bool') return (v) => (v ? 'true' : 'false');
  if (!dtype.startsWith('float') && dtype !== 'bfloat16') return (v) => String(v);
  let largest = 0;
  let smallest = Infinity;
  let integral = true;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    const magnitude = Math.abs(v);
    if (magnitude > 0) {
      largest = Math.max(largest, magnitude);
      smallest = Math.min(smallest, magnitude);
    }
    integral &&= Number.isInteger(v);
  }
  const scientific = largest >= 1e8 || smallest < 1e-4 || (largest >= 1e3 && largest / smallest >= 1e3);
  return (v) => {
    if (Number.isNaN(v)) return 'nan';
    if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
    if (scientific) return v.toExponential(4);
    return integral ? `${v}.` : v.toFixed(4);
  };
}

function formatValues(values: number[], shape: number[], dtype: DType): string {
  if (values.length === 0) return '[]';
  const summarise = values.length > SUMMARY_THRESHOLD;
  // Indices shown along a dimension of length n (null marks the elided middle).
  const shownIndices = (n: number): (number | null)[] =>
    summarise && n > 2 * SUMMARY_EDGE
      ? [...Array.from({ length: SUMMARY_EDGE }, (_, i) => i), null, ...Array.from({ length: SUMMARY_EDGE }, (_, i) => n - SUMMARY_EDGE + i)]
      : Array.from({ length: n }, (_, i) => i);
  const strides = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
  const shownValues: number[] = [];
  const collect = (offset: number, dim: number): void => {
    if (dim === shape.length) {
      shownValues.push(values[offset]);
      return;
    }
    for (const i of shownIndices(shape[dim])) if (i !== null) collect(offset + i * strides[dim], dim + 1);
  };
  collect(0, 0);
  const format = elementFormatter(shownValues, dtype);
  if (shape.length === 0) return format(values[0]);
  const width = shownValues.reduce((w, v) => Math.max(w, format(v).length), 0);
  const render = (offset: number, dim: number): string => {
    const shown = shownIndices(shape[dim]);
    if (dim === shape.length - 1) {
      return `[${shown.map((i) => (i === null ? '...' : format(values[offset + i]).padStart(width))).join(', ')}]`;
    }
    // Rows of a matrix are one line apart; blocks of higher dimensions get one blank line per extra level.
    const separator = ',' + '\n'.repeat(shape.length - dim - 1) + ' '.repeat(dim + 1);
    return `[${shown.map((i) => (i === null ? '...' : render(offset + i * strides[dim], dim + 1))).join(separator)}]`;
  };
  return render(0, 0);
}
