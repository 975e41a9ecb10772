// smml's tensor engine: libtorch for TypeScript. Self-contained: imports nothing from the rest of smml.
export * as torch from './torch.ts';
export { Tensor, type DType, type Device, type TypedArray } from './tensor.ts';
export { ProcessGroup, DistributedError, distributedBackends, freeLocalPort, type DistributedBackend, type ProcessGroupOptions } from './distributed.ts';
export { loadTorchCheckpoint, saveTorchCheckpoint, stateDictOf, NumpyArray } from './torch-checkpoint.ts';
export {
  readPickle,
  writePickle,
  pythonGlobals,
  SET_STATE,
  PickleCall,
  PickleGlobal,
  PicklePersistentId,
  PickleTuple,
  type PickleGlobals,
  type ReadPickleOptions,
  type WritePickleOptions,
} from './pickle.ts';
