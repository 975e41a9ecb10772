// smml's tensor engine: libtorch for TypeScript. Self-contained: imports nothing from the rest of smml.
export * as torch from './torch.ts';
export { Tensor, type DType, type Device, type TypedArray } from './tensor.ts';
