// Layers and networks built from parameters (torch.nn).
export { Module, type StateDict } from './module.ts';
export { Conv3d, ConvTranspose3d, type Conv3dOptions, type ConvTranspose3dOptions } from './conv.ts';
export { InstanceNorm3d, BatchNorm3d, LayerNorm, type NormLayerOptions } from './norm.ts';
export { Linear, Dropout } from './linear.ts';
export { ReLU, LeakyReLU, GELU } from './activation.ts';
export { Sequential, ModuleList, type TensorModule } from './container.ts';
export { MultiheadAttention, type MultiheadAttentionOptions, type AttentionCallOptions } from './attention.ts';
export { checkpoint } from './checkpoint.ts';
export * as init from './init.ts';
