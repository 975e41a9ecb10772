// Process groups of libtorch's distributed engine (c10d): ranks that meet through a TCPStore on the master
// (rank 0 hosts it) and run collectives over Gloo (CPU tensors) or NCCL (CUDA tensors, where libtorch has it).
//
// Collectives block the calling thread until they finish on this rank. Every wait is bounded by the group's
// timeout: a peer that exited (its connections close) or stopped answering makes the call throw a
// `DistributedError` naming this rank, the operation and what the transport reported, instead of hanging.
import { createServer } from 'node:net';
import { native } from './native.ts';
import type { Tensor } from './tensor.ts';

export type DistributedBackend = 'gloo' | 'nccl';

export interface ProcessGroupOptions {
  /** 'gloo' for CPU tensors, 'nccl' for CUDA tensors (needs a libtorch with CUDA and NCCL). */
  backend: DistributedBackend;
  rank: number;
  worldSize: number;
  /** Address of rank 0, which hosts the rendezvous store. */
  masterAddr: string;
  masterPort: number;
  /** Bound on the rendezvous and on every collective. */
  timeoutSeconds: number;
}

/** A collective or the rendezvous failed: a peer exited, stopped answering within the timeout, or never joined. */
export class DistributedError extends Error {
  override name = 'DistributedError';
}

// The addon prefixes its messages with the native function's name; the operation is named here instead.
const nativeMessage = (error: unknown) => (error instanceof Error ? error.message : String(error)).replace(/^processGroup\w+: /, '');

/** A TCP port of this machine that was free a moment ago (for a rendezvous that only local processes join). */
export async function freeLocalPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The back ends this build of the addon can create. */
export function distributedBackends(): DistributedBackend[] {
  return native.processGroupBackends() as DistributedBackend[];
}

export class ProcessGroup {
  private constructor(
    private readonly handle: unknown,
    readonly options: Readonly<ProcessGroupOptions>,
  ) {}

  /** Joins the group: returns once all `worldSize` ranks have met (or throws after the timeout). */
  static create(options: ProcessGroupOptions): ProcessGroup {
    const { backend, rank, worldSize, masterAddr, masterPort, timeoutSeconds } = options;
    if (!Number.isInteger(worldSize) || worldSize < 1) throw new Error(`process group: worldSize must be a positive integer, got ${worldSize}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new Error(`process group: rank must be an integer in [0, ${worldSize}), got ${rank}`);
    if (!Number.isInteger(masterPort) || masterPort < 1 || masterPort > 65535) throw new Error(`process group: masterPort must be in [1, 65535], got ${masterPort}`);
    if (!(timeoutSeconds > 0)) throw new Error(`process group: timeoutSeconds must be positive, got ${timeoutSeconds}`);
    if (!distributedBackends().includes(backend)) {
      const why =
        backend === 'nccl'
          ? 'it needs a libtorch built with CUDA and NCCL (Debian\'s libtorch-dev is CPU-only): build the addon with LIBTORCH set to a CUDA libtorch, with nccl.h present'
          : 'the gloo headers were missing when the addon was built (install libgloo-dev, then run npm run setup)';
      throw new Error(`process group: this build of the addon has no ${backend} back end; ${why}`);
    }
    try {
      const handle = native.processGroupCreate(backend, rank, worldSize, masterAddr, masterPort, Math.ceil(timeoutSeconds * 1000));
      return new ProcessGroup(handle, { ...options });
    } catch (error) {
      throw new DistributedError(
        `rank ${rank} of ${worldSize}: the ${backend} process group at ${masterAddr}:${masterPort} did not form ` +
          `(every rank must join within ${timeoutSeconds} s): ${nativeMessage(error)}`,
      );
    }
  }

  get rank(): number {
    return this.options.rank;
  }

  get worldSize(): number {
    return this.options.worldSize;
  }

  /** Replaces each tensor, in place, by its sum or mean over the ranks (reduced in flat buckets). */
  allReduce(tensors: Tensor[], op: 'sum' | 'avg' = 'sum'): void {
    this.collective('allReduce', () => native.processGroupAllReduce(this.handle, tensors.map((t) => t.handle), op));
  }

  /** Replaces each tensor, in place, by the one of rank `root`. */
  broadcast(tensors: Tensor[], root = 0): void {
    this.collective('broadcast', () => native.processGroupBroadcast(this.handle, tensors.map((t) => t.handle), root));
  }

  /** Returns once every rank has reached its barrier. */
  barrier(): void {
    this.collective('barrier', () => native.processGroupBarrier(this.handle));
  }

  /** Closes this rank's connections (and, on rank 0, the store); the group cannot be used afterwards. */
  destroy(): void {
    native.processGroupDestroy(this.handle);
  }

  private collective(operation: string, run: () => void): void {
    try {
      run();
    } catch (error) {
      // Bad arguments are the caller's bug, not a communication failure.
      if (error instanceof TypeError || error instanceof RangeError) throw error;
      const message = nativeMessage(error);
      const { rank, worldSize, timeoutSeconds } = this.options;
      // With two ranks the failed peer can only be the other one.
      const peer = worldSize === 2 ? `rank ${1 - rank}` : 'a peer';
      const what = /timed out/i.test(message)
        ? `${peer} did not answer within the ${timeoutSeconds} s timeout`
        : `the connection to ${peer} broke (its process exited or was killed)`;
      throw new DistributedError(`rank ${rank} of ${worldSize}: ${operation} failed: ${what} (${message})`);
    }
  }
}
