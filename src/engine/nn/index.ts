// Layers and networks built from parameters (torch.nn).
export { Module, type StateDict } from './module.ts';
