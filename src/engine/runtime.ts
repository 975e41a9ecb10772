// Process-wide libtorch settings: random seed and state, threads, devices.
import { native } from './native.ts';
import { wrap, type Tensor } from './tensor.ts';

/** Seeds every libtorch generator: the same seed gives the same random tensors and dropout masks. */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}
/** The CPU generator's state (a uint8 tensor), for checkpoints that resume bit-exactly. */
export function getRngState(): Tensor {
  return wrap(native.getRngState());
}
export function setRngState(state: Tensor): void {
  native.setRngState(state.handle);
}
/** Threads libtorch uses inside one operation (intra-op parallelism). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new Error(`setNumThreads: expected a positive integer, got ${n}`);
  native.setNumThreads(n);
}
export function getNumThreads(): number {
  return native.getNumThreads() as number;
}
/** The linked libtorch's version, e.g. "1.13.1". */
export function version(): string {
  return native.version() as string;
}
/** What `memoryStats` reports. */
export interface MemoryStats {
  /** Tensor handles alive in this process (neither disposed nor garbage-collected). */
  handles: number;
  /** Bytes of CPU storage those handles report to V8. */
  reportedBytes: number;
  /** Bytes of freed CPU blocks of 32 MiB and more kept for reuse (src/engine/README.md, "Large blocks"). */
  cachedLargeBytes: number;
}

/** The engine's memory: a loop that frees what it makes returns handles and reported bytes to where they started. */
export function memoryStats(): MemoryStats {
  return native.memoryStats() as MemoryStats;
}
/** libtorch's description of its parallel back end and thread settings. */
export function parallelInfo(): string {
  return native.parallelInfo() as string;
}
/** Routes CPU convolutions through oneDNN (default on) or through libtorch's own selection. */
export function setMkldnnEnabled(enabled: boolean): void {
  native.setMkldnnEnabled(enabled);
}

export const cuda = {
  isAvailable: (): boolean => native.cudaIsAvailable() as boolean,
  deviceCount: (): number => native.cudaDeviceCount() as number,
  /** Waits for queued CUDA work (for timing); a no-op without CUDA. */
  synchronize: (): void => void native.cudaSynchronize(),
};
