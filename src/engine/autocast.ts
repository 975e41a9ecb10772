// Mixed precision: libtorch's autocast in scopes, and the casts of the engine's own operations under it.
import { native, type NativeHandle } from './native.ts';
import type { Device, Tensor } from './tensor.ts';

/** The dtype of an autocast scope: 'bfloat16' runs convolutions and matrix products in bfloat16, 'float32' switches autocast off. */
export type AutocastDtype = 'bfloat16' | 'float32';
type AutocastDevice = 'cpu' | 'cuda';

export interface AutocastState {
  enabled: boolean;
  /** The lower-precision dtype autocast casts to. */
  dtype: string;
  /** Whether weight casts are cached within the scope. */
  cache: boolean;
}

// Whether a scope of `autocast` switched autocast on, per device type: the engine's operations ask the addon for
// casts only then, so that float32 work makes no extra call.
const enabled: Record<AutocastDevice, boolean> = { cpu: false, cuda: false };

const deviceTypeOf = (device: Device): AutocastDevice => (device.startsWith('cuda') ? 'cuda' : 'cpu');

/**
 * Runs `fn` with autocast on `device` set to `dtype`, like `with torch.autocast(device, dtype)` in PyTorch: with
 * 'bfloat16' convolutions and matrix products run in bfloat16 (weights cast once per outermost scope), while
 * normalisations, softmax, resizing and losses run in float32 (thin convolutions stay on the engine's float32
 * kernels); 'float32' switches autocast off inside an enclosing scope. The previous state comes back when `fn`
 * returns or throws. Parameters and their gradients keep their dtype; call `backward` outside the scope.
 * Synchronous only: a promise returned by `fn` is rejected as an error.
 */
export function autocast<T>(dtype: AutocastDtype, fn: () => T, device: Device = 'cpu'): T {
  if (dtype !== 'bfloat16' && dtype !== 'float32') throw new TypeError(`autocast: expected 'bfloat16' or 'float32', got '${String(dtype)}'`);
  const type = deviceTypeOf(device);
  const on = dtype === 'bfloat16';
  const previous = native.autocastEnter(type, on, 'bfloat16') as AutocastState;
  const wasOn = enabled[type];
  enabled[type] = on;
  try {
    const result = fn();
    if (result instanceof Promise) throw new Error('autocast: the function must be synchronous (it returned a promise)');
    return result;
  } finally {
    enabled[type] = wasOn;
    native.autocastExit(type, previous);
  }
}

/** libtorch's autocast state on a device type (of the calling thread). */
export function autocastState(device: Device = 'cpu'): AutocastState {
  return native.autocastState(deviceTypeOf(device)) as AutocastState;
}

/**
 * How an operation's operands are cast under autocast: 'lower' to the autocast dtype, 'float32' to float32, or, for
 * a convolution, by whether one of the engine's float32 kernels computes it (its arguments are given).
 */
export type CastPolicy =
  | 'lower'
  | 'float32'
  | { convolution: { stride: number[]; padding: number[]; dilation: number[]; groups: number; paddingMode: string } };

/**
 * Calls `op` with the handles of `operands` (null for absent ones), cast by `policy` while autocast is on for the
 * first operand's device; the casts are released when `op` returns.
 */
export function withAutocastOperands(policy: CastPolicy, operands: (Tensor | null | undefined)[], op: (handles: (NativeHandle | null)[]) => NativeHandle): NativeHandle {
  const handles = operands.map((t) => (t ? t.handle : null));
  if (!enabled.cpu && !enabled.cuda) return op(handles);
  const cast = (
    typeof policy === 'string'
      ? native.autocastCast(policy, handles)
      : native.autocastConvolutionOperands(handles, policy.convolution.stride, policy.convolution.padding, policy.convolution.dilation, policy.convolution.groups, policy.convolution.paddingMode)
  ) as (NativeHandle | null)[] | null;
  if (!cast) return op(handles);
  try {
    return op(handles.map((handle, i) => cast[i] ?? handle));
  } finally {
    for (const handle of cast) if (handle) native.dispose(handle);
  }
}
