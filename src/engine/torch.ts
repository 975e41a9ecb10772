// The engine namespace: `import { torch } from 'smml'`.
export * from './tensor.ts';
export * from './creation.ts';
export * from './functional.ts';
export * from './runtime.ts';
export { autocast, autocastState, type AutocastDtype, type AutocastState } from './autocast.ts';
export * as nn from './nn/index.ts';
export * as optim from './optim/index.ts';
export * from './safetensors.ts';
