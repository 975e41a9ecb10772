// Training in several processes. Data-parallel: identical replicas of the model, one per process, each stepping on
// its own share of the batch; rank 0's weights are sent to all at the start, and after every backward pass the
// gradients are averaged over the ranks, so every replica applies the same update. Branch-parallel (the trainer's
// `ownBranch`): each process trains one branch and the ranks exchange outputs, weights and states through the
// same group.
//
// The processes find each other through torchrun's environment variables (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), whether `smml train --nproc-per-node` set them or a cluster
// launcher did.
import { availableParallelism } from 'node:os';
import { ProcessGroup, torch, type Tensor } from '../engine/index.ts';

/** Where this process stands among the training processes. */
export interface WorkerPlacement {
  rank: number;
  worldSize: number;
  /** Rank among the processes of this machine (its GPU, with CUDA). */
  localRank: number;
  /** Training processes on this machine (they share its cores). */
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
}

/** The replicas of a model being trained together, and what they agree on. */
export interface Replicas {
  readonly placement: WorkerPlacement;
  /** Rank 0 writes the run folder (checkpoints, log, model) and reports progress. */
  readonly isMain: boolean;
  /** Replaces each parameter's gradient by its mean over the ranks (absent only where it is absent on every rank). */
  averageGradients(parameters: Tensor[]): void;
  /**
   * A sum over this rank's samples completed with the other ranks' (the batch-wide Dice sums): its value is
   * the whole step's sum; its gradient flows into this rank's part, times the world size, because the ranks'
   * gradients are averaged. The whole step's loss then has the same gradient as in one process.
   */
  batchSum(sums: Tensor): Tensor;
  /** Each number's mean over the ranks (a non-finite one anywhere makes the mean non-finite). */
  meanOf(values: number[]): number[];
  /** Whether `flag` is true on any rank. */
  anyRank(flag: boolean): boolean;
  /** Every rank's copy of `tensor` (same shape and dtype on every rank), in rank order; this rank's is `tensor` itself. */
  gather(tensor: Tensor): Tensor[];
  /** Replaces every rank's `tensors` by those of rank `root`. */
  broadcastFrom(tensors: Tensor[], root: number): void;
  /** Rank `root`'s `bytes` (the others pass null). */
  broadcastBytes(bytes: Uint8Array | null, root: number): Uint8Array;
  /** Returns once every rank got here. */
  barrier(): void;
  close(): void;
}

const SINGLE_PLACEMENT: WorkerPlacement = { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: '127.0.0.1', masterPort: 0 };

/** One process training alone: every agreement is its own. */
export const singleProcess: Replicas = {
  placement: SINGLE_PLACEMENT,
  isMain: true,
  averageGradients: () => undefined,
  batchSum: (sums) => sums,
  meanOf: (values) => values,
  anyRank: (flag) => flag,
  gather: (tensor) => [tensor],
  broadcastFrom: () => undefined,
  broadcastBytes: (bytes) => bytes!,
  barrier: () => undefined,
  close: () => undefined,
};

const PLACEMENT_VARIABLES = ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'] as const;

/**
 * The placement given by torchrun's environment variables, or null when WORLD_SIZE is not set (a process on
 * its own). LOCAL_WORLD_SIZE defaults to WORLD_SIZE (one machine).
 */
export function placementFromEnvironment(env: NodeJS.ProcessEnv = process.env): WorkerPlacement | null {
  if (env.WORLD_SIZE === undefined) return null;
  const missing = PLACEMENT_VARIABLES.filter((name) => !env[name]);
  if (missing.length > 0) throw new Error(`WORLD_SIZE is set, so this is one of several training processes, but ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not`);
  const integer = (name: string, low: number, high: number) => {
    const value = Number(env[name]);
    if (!Number.isInteger(value) || value < low || value > high) throw new Error(`environment variable ${name}=${env[name]}: expected an integer in [${low}, ${high}]`);
    return value;
  };
  const worldSize = integer('WORLD_SIZE', 1, 65536);
  const localWorldSize = env.LOCAL_WORLD_SIZE ? integer('LOCAL_WORLD_SIZE', 1, worldSize) : worldSize;
  return {
    rank: integer('RANK', 0, worldSize - 1),
    worldSize,
    localRank: integer('LOCAL_RANK', 0, localWorldSize - 1),
    localWorldSize,
    masterAddr: env.MASTER_ADDR!,
    masterPort: integer('MASTER_PORT', 1, 65535),
  };
}

/** The environment of the processes a launcher starts: torchrun's variables. */
export function placementEnvironment(placement: WorkerPlacement): Record<string, string> {
  return {
    RANK: String(placement.rank),
    WORLD_SIZE: String(placement.worldSize),
    LOCAL_RANK: String(placement.localRank),
    LOCAL_WORLD_SIZE: String(placement.localWorldSize),
    MASTER_ADDR: placement.masterAddr,
    MASTER_PORT: String(placement.masterPort),
  };
}

/** libtorch threads of one process: the machine's cores shared among its training processes. */
export function threadsPerProcess(placement: WorkerPlacement): number {
  return Math.max(1, Math.floor(availableParallelism() / placement.localWorldSize));
}

/** A training device of the configuration as this process uses it: plain 'cuda' becomes this process's GPU. */
export function deviceOfProcess(device: string, placement: WorkerPlacement): string {
  return device === 'cuda' && placement.worldSize > 1 ? `cuda:${placement.localRank}` : device;
}

/**
 * Joins the other training processes (Gloo on the CPU, NCCL with CUDA). Returns once all have joined;
 * throws after `timeoutSeconds`, which also bounds every later collective.
 */
export function joinReplicas(placement: WorkerPlacement, device: string, timeoutSeconds: number): Replicas {
  const { rank, worldSize, masterAddr, masterPort } = placement;
  const backend = device.startsWith('cuda') ? 'nccl' : 'gloo';
  const group = ProcessGroup.create({ backend, rank, worldSize, masterAddr, masterPort, timeoutSeconds });
  const onDevice = (values: number[]) => torch.tensor(values, [values.length], { dtype: 'float64', device });
  return {
    placement,
    isMain: rank === 0,
    averageGradients(parameters) {
      torch.tidy(() => {
        // A parameter that took no part in this rank's loss has no gradient; count the ranks where it has one.
        const present = onDevice(parameters.map((p) => (p.grad ? 1 : 0)));
        const gradients = parameters.map((p) => {
          const gradient = p.grad ?? torch.zerosLike(p);
          p.grad = gradient;
          return gradient;
        });
        group.allReduce([...gradients, present], 'sum');
        const counts = present.toArray();
        parameters.forEach((p, i) => {
          if (counts[i] === 0) p.grad = null;
          else gradients[i].mul_(1 / worldSize);
        });
      });
    },
    batchSum(sums) {
      const local = sums.detach();
      const total = local.clone();
      group.allReduce([total], 'sum');
      return sums.sub(local).mul(worldSize).add(total);
    },
    meanOf(values) {
      return torch.tidy(() => {
        const summed = onDevice(values);
        group.allReduce([summed], 'sum');
        return summed.toArray().map((sum) => sum / worldSize);
      });
    },
    anyRank(flag) {
      return this.meanOf([flag ? 1 : 0])[0] > 0;
    },
    gather(tensor) {
      return torch.tidy(() => {
        // Each rank fills its own slot of a zeroed stack; the sum over the ranks is then every rank's tensor.
        const slots = torch.zeros([worldSize, ...tensor.shape], { dtype: tensor.dtype, device: tensor.device });
        slots.select(0, rank).copy_(tensor.detach());
        group.allReduce([slots], 'sum');
        return slots.unbind(0).map((copy, r) => (r === rank ? tensor : copy));
      });
    },
    broadcastFrom: (tensors, root) => group.broadcast(tensors, root),
    broadcastBytes(bytes, root) {
      return torch.tidy(() => {
        const length = onDevice([bytes?.length ?? 0]);
        group.broadcast([length], root);
        const buffer = rank === root ? torch.tensor(bytes!, [bytes!.length], { dtype: 'uint8', device }) : torch.zeros([length.item()], { dtype: 'uint8', device });
        group.broadcast([buffer], root);
        return rank === root ? bytes! : (buffer.to('cpu').toTypedArray() as Uint8Array);
      });
    },
    barrier: () => group.barrier(),
    close: () => group.destroy(),
  };
}
