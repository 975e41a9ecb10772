// Loads the compiled libtorch addon. Everything in the engine goes through `native`.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { availableParallelism } from 'node:os';

/** The opaque handle of an at::Tensor owned by the addon. */
export interface NativeHandle {
  readonly __nativeTensor: unique symbol;
}

// The addon's functions take handles, numbers, strings and arrays; the typed surface is `Tensor`.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type NativeFunction = (...args: any[]) => any;

const addonPath = fileURLToPath(new URL('./native/build/Release/smml_torch.node', import.meta.url));

// OpenMP threads that spin while waiting steal the cores from Node's worker threads (batch loading)
// and from other processes, which slows steps down tenfold or more on a busy machine. Passive waiting
// must be chosen before libgomp initialises, that is before the addon loads.
process.env.OMP_WAIT_POLICY ??= 'PASSIVE';

function loadAddon(): Record<string, NativeFunction> {
  if (!existsSync(addonPath)) {
    throw new Error(`the libtorch addon is not built (${addonPath} is missing): run \`npm run setup\``);
  }
  return createRequire(import.meta.url)(addonPath) as Record<string, NativeFunction>;
}

export const native = loadAddon();

// Inside Node, OpenMP may start with a single thread; use every core unless the user chose.
if (!process.env.OMP_NUM_THREADS) native.setNumThreads(availableParallelism());
