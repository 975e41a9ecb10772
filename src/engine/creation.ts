// Creating tensors: from JavaScript data, filled, ranges and random.
import { native } from './native.ts';
import { checkDevice, wrap, type CreationOptions, type DType, type NestedArray, type Scalar, type Tensor, type TypedArray } from './tensor.ts';

type StorageArray = Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array | BigInt64Array;

/** The dtype a typed array becomes by default; unsigned 16/32-bit values widen to the next signed type. */
function nativeDType(data: TypedArray): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array || data instanceof Uint16Array) return 'int32';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof BigInt64Array || data instanceof Uint32Array) return 'int64';
  throw new TypeError(`tensor: unsupported array type ${Object.prototype.toString.call(data).slice(8, -1)}`);
}

/** Whether the bytes of `data` are already the storage of `dtype` (so they can be copied as they are). */
function storesAs(data: TypedArray, dtype: DType): data is StorageArray {
  return !(data instanceof Uint16Array || data instanceof Uint32Array) && nativeDType(data) === dtype;
}

/** Copies numbers into the typed array that holds `dtype` (half types go through float32). */
function storageFor(values: ArrayLike<number | bigint | boolean>, dtype: DType): { array: StorageArray; dtype: DType } {
  const n = values.length;
  const num = (i: number) => Number(values[i]);
  switch (dtype) {
    case 'float64':
      return { array: Float64Array.from({ length: n }, (_, i) => num(i)), dtype };
    case 'int64':
      return { array: BigInt64Array.from({ length: n }, (_, i) => BigInt(Math.trunc(num(i)))), dtype };
    case 'int32':
      return { array: Int32Array.from({ length: n }, (_, i) => num(i)), dtype };
    case 'int16':
      return { array: Int16Array.from({ length: n }, (_, i) => num(i)), dtype };
    case 'int8':
      return { array: Int8Array.from({ length: n }, (_, i) => num(i)), dtype };
    case 'uint8':
      return { array: Uint8Array.from({ length: n }, (_, i) => num(i)), dtype };
    case 'bool':
      return { array: Uint8Array.from({ length: n }, (_, i) => (num(i) ? 1 : 0)), dtype };
    default:
      return { array: Float32Array.from({ length: n }, (_, i) => num(i)), dtype: 'float32' };
  }
}

function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let level: NestedArray = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  return shape;
}

function flattenNested(data: NestedArray, shape: number[], dim = 0, out: (number | boolean)[] = []): (number | boolean)[] {
  if (dim === shape.length) {
    if (Array.isArray(data)) throw new Error('tensor: nested array is ragged');
    if (typeof data !== 'number' && typeof data !== 'boolean') {
      throw new TypeError(`tensor: expected numbers or booleans, got ${typeof data} (${String(data)})`);
    }
    out.push(data);
    return out;
  }
  if (!Array.isArray(data) || data.length !== shape[dim]) throw new Error('tensor: nested array is ragged');
  for (const item of data) flattenNested(item, shape, dim + 1, out);
  return out;
}

/**
 * A tensor holding a copy of `data`.
 * - a typed array keeps its own dtype unless `opts.dtype` says otherwise (Uint16Array → int32,
 *   Uint32Array → int64);
 * - plain or nested number arrays default to float32, all-boolean arrays to bool.
 * `shape` defaults to the nesting of `data` (or to [length] for a flat array).
 */
export function tensor(data: NestedArray | TypedArray, shape?: number[], opts: CreationOptions = {}): Tensor {
  if (opts.device) checkDevice(opts.device);
  let values: ArrayLike<number | bigint | boolean>;
  let sourceDType: DType;
  if (ArrayBuffer.isView(data)) {
    values = data;
    sourceDType = nativeDType(data);
    shape ??= [data.length];
  } else {
    const inferred = inferShape(data);
    const flat = flattenNested(data, inferred);
    values = flat;
    sourceDType = flat.length > 0 && flat.every((v) => typeof v === 'boolean') ? 'bool' : 'float32';
    shape ??= inferred;
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== values.length) {
    throw new Error(`tensor: shape [${shape.join(', ')}] holds ${count} values but ${values.length} were given`);
  }
  const dtype = opts.dtype ?? sourceDType;
  const storage = ArrayBuffer.isView(data) && storesAs(data, dtype) ? { array: data, dtype } : storageFor(values, dtype);
  let result = wrap(native.fromBuffer(storage.array, shape, storage.dtype));
  if (storage.dtype !== dtype || (opts.device && opts.device !== 'cpu')) {
    const moved = result.to({ dtype, device: opts.device });
    result.dispose();
    result = moved;
  }
  if (opts.requiresGrad) result.requiresGrad_(true);
  return result;
}

/** A zero-dimensional tensor holding `value`. */
export function scalarTensor(value: number, opts: CreationOptions = {}): Tensor {
  return tensor([value], [], opts);
}

function created(handle: unknown, opts: CreationOptions): Tensor {
  const t = wrap(handle as never);
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

function dtypeAndDevice(opts: CreationOptions, dtype: DType = 'float32'): [DType, string] {
  const device = opts.device ?? 'cpu';
  checkDevice(device);
  return [opts.dtype ?? dtype, device];
}

export function empty(shape: number[], opts: CreationOptions = {}): Tensor {
  return created(native.empty(shape, ...dtypeAndDevice(opts)), opts);
}
export function zeros(shape: number[], opts: CreationOptions = {}): Tensor {
  return created(native.zeros(shape, ...dtypeAndDevice(opts)), opts);
}
export function ones(shape: number[], opts: CreationOptions = {}): Tensor {
  return created(native.ones(shape, ...dtypeAndDevice(opts)), opts);
}
export function full(shape: number[], value: Scalar, opts: CreationOptions = {}): Tensor {
  return created(native.full(shape, value, ...dtypeAndDevice(opts, typeof value === 'boolean' ? 'bool' : 'float32')), opts);
}
/** Values start, start+step, … below end. `arange(n)` is 0 … n−1. Integers default to int64. */
export function arange(start: number, end?: number, step = 1, opts: CreationOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  const integral = [start, end, step].every(Number.isInteger);
  return created(native.arange(start, end, step, ...dtypeAndDevice(opts, integral ? 'int64' : 'float32')), opts);
}
export function linspace(start: number, end: number, steps: number, opts: CreationOptions = {}): Tensor {
  return created(native.linspace(start, end, steps, ...dtypeAndDevice(opts)), opts);
}
export function eye(n: number, m = n, opts: CreationOptions = {}): Tensor {
  return created(native.eye(n, m, ...dtypeAndDevice(opts)), opts);
}
/** Uniform on [0, 1). */
export function rand(shape: number[], opts: CreationOptions = {}): Tensor {
  return created(native.rand(shape, ...dtypeAndDevice(opts)), opts);
}
/** Standard normal. */
export function randn(shape: number[], opts: CreationOptions = {}): Tensor {
  return created(native.randn(shape, ...dtypeAndDevice(opts)), opts);
}
/** Integers uniform on [low, high). */
export function randint(low: number, high: number, shape: number[], opts: CreationOptions = {}): Tensor {
  return created(native.randint(low, high, shape, ...dtypeAndDevice(opts, 'int64')), opts);
}
export function randperm(n: number, opts: CreationOptions = {}): Tensor {
  return created(native.randperm(n, ...dtypeAndDevice(opts, 'int64')), opts);
}

const likeOptions = (t: Tensor, opts: CreationOptions): CreationOptions => ({ dtype: t.dtype, device: t.device, ...opts });
export const zerosLike = (t: Tensor, opts: CreationOptions = {}) => zeros(t.shape, likeOptions(t, opts));
export const onesLike = (t: Tensor, opts: CreationOptions = {}) => ones(t.shape, likeOptions(t, opts));
export const emptyLike = (t: Tensor, opts: CreationOptions = {}) => empty(t.shape, likeOptions(t, opts));
export const fullLike = (t: Tensor, value: Scalar, opts: CreationOptions = {}) => full(t.shape, value, likeOptions(t, opts));
export const randLike = (t: Tensor, opts: CreationOptions = {}) => rand(t.shape, likeOptions(t, opts));
export const randnLike = (t: Tensor, opts: CreationOptions = {}) => randn(t.shape, likeOptions(t, opts));
export const randintLike = (t: Tensor, low: number, high: number, opts: CreationOptions = {}) =>
  randint(low, high, t.shape, likeOptions(t, opts));
