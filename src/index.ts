// Public API of smml.
export * from './engine/index.ts';
