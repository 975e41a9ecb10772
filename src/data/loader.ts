/**
 * Background batch loader for training: reads cached cases (cache.ts), cuts
 * and augments patches (augment.ts) and stacks them into batches, in worker
 * threads so the next batches are ready while the current one trains.
 *
 * Determinism: the case order of epoch e is a shuffle seeded from
 * (seed, e), and the sample at position p of that order is augmented with an
 * rng seeded from (seed, e, p). A batch therefore depends only on the seed,
 * the epoch and its index, never on the number of workers or on timing, and
 * batches are handed out in order.
 *
 * Data-parallel training shards each step: with `shard` { rank, count }, step b covers the positions
 * b·B·count … (b + 1)·B·count − 1 of the epoch's order, and rank r builds the B of them from b·B·count + r·B
 * on. The ranks together therefore see exactly the samples (and augmentations) that one process with batch
 * B·count would, and no two ranks draw the same sample.
 *
 * Workers run the TypeScript sources through tsx: Node 20 ignores `--import`
 * in a worker's execArgv, so each worker starts from a small JavaScript
 * bootstrap that registers tsx's ESM hooks (resolved from this package, so
 * the cwd does not matter) and then imports loader-worker.ts. Worker buffers
 * are transferred, not copied. Idle workers do not keep the process alive, so a loader that is not
 * closed cannot hang a program at exit; `close()` still ends them promptly.
 */
import { Worker } from 'node:worker_threads';
import { CROP_ONLY, DEFAULT_AUGMENTATION, augmentSample, type AugmentOptions } from './augment.ts';
import { loadCase } from './cache.ts';
import type { Shape3 } from './preprocess.ts';
import { dequantizeProbabilities } from './quantize.ts';
import { createRng, shuffle } from './random.ts';

/** One training batch; arrays are C-order with the last axis fastest. */
export interface Batch {
  epoch: number;
  /** Position of the batch within its epoch. */
  index: number;
  ids: string[];
  /** The cases of the whole step: `ids` and, in data-parallel training, the other processes' (in rank order). */
  stepIds: string[];
  /** (B, M, PX, PY, PZ): M modalities in cache order (FLAIR, T1ce, T1, T2). */
  images: Float32Array;
  /** (B, PX, PY, PZ) class indices. */
  labels: Uint8Array;
  /** Per requested cached array: (B, N, PX, PY, PZ), transformed exactly like the images (no intensity change). */
  extras: Record<string, Float32Array>;
  /** Channel count of `images` and of each extra. */
  channels: { images: number; extras: Record<string, number> };
}

export interface BatchLoaderOptions {
  cacheDir: string;
  /** Cases to draw from (each once per epoch). */
  ids: string[];
  batchSize: number;
  patchSize: Shape3;
  seed: number;
  /** true: the paper's augmentation; false: random crop only; or explicit options. */
  augment: boolean | AugmentOptions;
  /** Overrides the augmentation's `foregroundProbability` (chance of a tumour-centred crop). */
  foregroundProbability?: number;
  /** Worker threads; 0 builds batches in the calling thread (same results). */
  workers: number;
  /** Batches prepared ahead of the consumer; default 2 per worker. Without workers batches are built on demand. */
  prefetch?: number;
  /** Shuffle the case order every epoch (default true). */
  shuffle?: boolean;
  /** Drop a last step smaller than batchSize × shard count (default false). */
  dropLast?: boolean;
  /** This process's part of each step in data-parallel training (default: the whole step). */
  shard?: { rank: number; count: number };
  /** Further cached arrays to crop alongside, e.g. ['priors']; uint8 ones are read as probabilities q/255. */
  extraArrays?: string[];
  /** Decoded cases each worker (or the calling thread) keeps for later epochs (`CaseMemory`); default DEFAULT_CASE_MEMORY_BYTES, 0: none. */
  caseMemoryBytes?: number;
}

export interface BatchLoader {
  readonly batchesPerEpoch: number;
  /** The batches of one epoch, in order; breaking out early cancels what was queued. */
  epoch(epoch: number): AsyncGenerator<Batch, void, undefined>;
  /** Stops the workers; the loader cannot be used afterwards. */
  close(): Promise<void>;
}

/** Everything a worker needs to build one batch (structured-cloneable). */
export interface BatchRequest {
  cacheDir: string;
  ids: string[];
  /** Rng seed per sample. */
  seeds: number[];
  patchSize: Shape3;
  augment: AugmentOptions;
  extraArrays: string[];
}

export type BatchData = Pick<Batch, 'ids' | 'images' | 'labels' | 'extras' | 'channels'>;

function mix32(value: number): number {
  let h = value >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A 32-bit seed derived from a sequence of integers (order matters), for independent rng streams. */
export function deriveSeed(...parts: number[]): number {
  let hash = 0x2545f491;
  for (const part of parts) {
    if (!Number.isInteger(part)) throw new Error(`deriveSeed: ${part} is not an integer`);
    hash = mix32(Math.imul(hash, 31) ^ mix32(part));
  }
  return hash;
}

/** Seed stream tag of the per-epoch shuffle (sample positions are >= 0). */
const SHUFFLE_STREAM = -1;

function channelsOf(array: Float32Array | Uint8Array, voxels: number, what: string): Float32Array[] {
  const count = array.length / voxels;
  if (!Number.isInteger(count) || count < 1) throw new Error(`${what}: ${array.length} values are not whole (X, Y, Z) channels`);
  // Arrays stored as uint8 hold probabilities quantised to q/255 (semantic priors saved with --quantize uint8).
  const floats = array instanceof Float32Array ? array : dequantizeProbabilities(array);
  return Array.from({ length: count }, (_, c) => floats.subarray(c * voxels, (c + 1) * voxels));
}

/** A case as batches read it: image and extra channels as floats (views into one array each), the label. */
interface SampleSource {
  shape: Shape3;
  images: Float32Array[];
  /** Per requested extra array, its channels. */
  extras: Float32Array[][];
  label: Uint8Array;
  /** Memory held by the arrays. */
  bytes: number;
}

function loadSampleSource(cacheDir: string, id: string, extraArrays: readonly string[]): SampleSource {
  const loaded = loadCase(cacheDir, id, { extraArrays: [...extraArrays] });
  if (!loaded.label) throw new Error(`case "${id}" in ${cacheDir} has no label; training batches need labelled cases`);
  const voxels = loaded.shape[0] * loaded.shape[1] * loaded.shape[2];
  const images = channelsOf(loaded.images, voxels, `case "${id}" images`);
  const extras = extraArrays.map((name) => channelsOf(loaded.extras[name], voxels, `case "${id}" ${name}`));
  const floats = images.length + extras.reduce((sum, channels) => sum + channels.length, 0);
  return { shape: loaded.shape, images, extras, label: loaded.label, bytes: floats * voxels * 4 + voxels };
}

/**
 * Decoded cases kept for the batches of later epochs, until `budget` bytes are held; further cases are then decoded
 * at every use and nothing is evicted (in a shuffled epoch order an evicted case would rarely be met again before
 * its own eviction). For the demo's cases, reading and decoding (float16 priors above all) cost as much as cutting
 * and augmenting the patch. Cases are read only, never written.
 */
export class CaseMemory {
  private readonly sources = new Map<string, SampleSource>();
  private held = 0;

  constructor(readonly budget: number) {}

  /** Bytes held. */
  get bytes(): number {
    return this.held;
  }

  source(cacheDir: string, id: string, extraArrays: readonly string[]): SampleSource {
    const key = JSON.stringify([cacheDir, id, extraArrays]);
    const kept = this.sources.get(key);
    if (kept) return kept;
    const source = loadSampleSource(cacheDir, id, extraArrays);
    if (this.held + source.bytes <= this.budget) {
      this.sources.set(key, source);
      this.held += source.bytes;
    }
    return source;
  }
}

/** Default of `BatchLoaderOptions.caseMemoryBytes`: the demo's 21 training cases with priors take about 300 MB. */
export const DEFAULT_CASE_MEMORY_BYTES = 512 * 2 ** 20;

/** Loads (or takes from `memory`), crops and augments the samples of one batch into freshly allocated buffers. */
export function buildBatch(request: BatchRequest, memory = new CaseMemory(0)): BatchData {
  const [PX, PY, PZ] = request.patchSize;
  const patchVoxels = PX * PY * PZ;
  const batchSize = request.ids.length;
  let batch: BatchData | undefined;
  request.ids.forEach((id, sample) => {
    const { shape, images, extras, label } = memory.source(request.cacheDir, id, request.extraArrays);
    const counts = { images: images.length, extras: Object.fromEntries(request.extraArrays.map((name, i) => [name, extras[i].length])) };
    if (!batch) {
      batch = {
        ids: request.ids,
        images: new Float32Array(batchSize * counts.images * patchVoxels),
        labels: new Uint8Array(batchSize * patchVoxels),
        extras: Object.fromEntries(
          request.extraArrays.map((name) => [name, new Float32Array(batchSize * counts.extras[name] * patchVoxels)]),
        ),
        channels: counts,
      };
    } else if (JSON.stringify(counts) !== JSON.stringify(batch.channels)) {
      throw new Error(`case "${id}" has channels ${JSON.stringify(counts)}, unlike ${JSON.stringify(batch.channels)} in the same batch`);
    }
    const target = batch;
    const view = (array: Float32Array, count: number, c: number) =>
      array.subarray((sample * count + c) * patchVoxels, (sample * count + c + 1) * patchVoxels);
    augmentSample(
      { shape, images, extras: extras.flat(), label },
      request.patchSize,
      createRng(request.seeds[sample]),
      request.augment,
      {
        images: images.map((_, c) => view(target.images, counts.images, c)),
        extras: request.extraArrays.flatMap((name, e) =>
          extras[e].map((_, c) => view(target.extras[name], counts.extras[name], c)),
        ),
        label: target.labels.subarray(sample * patchVoxels, (sample + 1) * patchVoxels),
      },
    );
  });
  if (!batch) throw new Error('buildBatch: empty batch');
  return batch;
}

/** The buffers a worker hands over without copying. */
export function transferablesOf(batch: BatchData): ArrayBuffer[] {
  return [batch.images.buffer, batch.labels.buffer, ...Object.values(batch.extras).map((array) => array.buffer)] as ArrayBuffer[];
}

interface Task {
  request: BatchRequest;
  /** Which epoch iteration queued it, so an abandoned one can drop its tasks. */
  owner: object;
  resolve(batch: BatchData): void;
  reject(error: Error): void;
}

interface WorkerReply {
  taskId: number;
  batch?: BatchData;
  error?: string;
}

/** CommonJS source of each worker: register tsx, then load the TypeScript worker module. */
const WORKER_BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
import(workerData.tsxApi).then(({ register }) => {
  register();
  return import(workerData.entry);
});
`;

/** Fixed set of batch-building threads taking tasks first come, first served. */
class WorkerPool {
  private readonly idle: Worker[] = [];
  private readonly running = new Map<Worker, { taskId: number; task: Task }>();
  private readonly queue: Task[] = [];
  private failure: Error | undefined;
  private nextTaskId = 0;
  private readonly all: Worker[];

  constructor(count: number, caseMemoryBytes: number) {
    const workerData = {
      tsxApi: import.meta.resolve('tsx/esm/api'),
      entry: new URL('./loader-worker.ts', import.meta.url).href,
      caseMemoryBytes,
    };
    this.all = Array.from({ length: count }, () => {
      const worker = new Worker(WORKER_BOOTSTRAP, { eval: true, execArgv: [], workerData });
      worker.unref();
      worker.on('message', (reply: WorkerReply) => this.finish(worker, reply));
      worker.on('error', (error) => this.fail(new Error(`batch loader worker failed: ${error.message}`)));
      worker.on('exit', (code) => {
        if (!this.failure) this.fail(new Error(`batch loader worker exited unexpectedly (code ${code})`));
      });
      this.idle.push(worker);
      return worker;
    });
  }

  run(request: BatchRequest, owner: object): Promise<BatchData> {
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.queue.push({ request, owner, resolve, reject });
      this.dispatch();
    });
  }

  /** Drops the not yet started tasks of `owner`; their promises never settle. */
  cancel(owner: object): void {
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i].owner === owner) this.queue.splice(i, 1);
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop()!;
      const task = this.queue.shift()!;
      const taskId = this.nextTaskId++;
      this.running.set(worker, { taskId, task });
      worker.ref();
      worker.postMessage({ taskId, request: task.request });
    }
  }

  private finish(worker: Worker, reply: WorkerReply): void {
    const current = this.running.get(worker);
    if (!current || current.taskId !== reply.taskId) return;
    this.running.delete(worker);
    worker.unref();
    this.idle.push(worker);
    if (reply.batch) current.task.resolve(reply.batch);
    else current.task.reject(new Error(reply.error ?? 'batch loader worker sent an empty reply'));
    this.dispatch();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const { task } of this.running.values()) task.reject(error);
    for (const task of this.queue) task.reject(error);
    this.running.clear();
    this.queue.length = 0;
  }

  async close(): Promise<void> {
    this.failure ??= new Error('batch loader is closed');
    this.fail(this.failure);
    await Promise.all(this.all.map((worker) => worker.terminate()));
  }
}

function resolveAugmentation(augment: boolean | AugmentOptions): AugmentOptions {
  if (augment === true) return { ...DEFAULT_AUGMENTATION };
  if (augment === false) return { ...CROP_ONLY };
  return { ...augment };
}

function checkOptions(options: BatchLoaderOptions): void {
  const positiveInteger = (value: number) => Number.isInteger(value) && value > 0;
  if (options.ids.length === 0) throw new Error('batch loader: no case ids');
  if (!Number.isInteger(options.seed)) throw new Error(`batch loader: seed must be an integer, got ${options.seed}`);
  if (!positiveInteger(options.batchSize)) throw new Error(`batch loader: batchSize must be a positive integer, got ${options.batchSize}`);
  if (options.patchSize.length !== 3 || !options.patchSize.every(positiveInteger)) {
    throw new Error(`batch loader: patchSize must be three positive integers, got [${options.patchSize.join(', ')}]`);
  }
  if (!Number.isInteger(options.workers) || options.workers < 0) {
    throw new Error(`batch loader: workers must be a non-negative integer, got ${options.workers}`);
  }
  const memoryBytes = options.caseMemoryBytes;
  if (memoryBytes !== undefined && !(memoryBytes >= 0)) throw new Error(`batch loader: caseMemoryBytes must be a non-negative number, got ${memoryBytes}`);
  const fg = options.foregroundProbability;
  if (fg !== undefined && !(fg >= 0 && fg <= 1)) throw new Error(`batch loader: foregroundProbability must be in [0, 1], got ${fg}`);
  if (options.prefetch !== undefined && !positiveInteger(options.prefetch)) {
    throw new Error(`batch loader: prefetch must be a positive integer, got ${options.prefetch}`);
  }
  const { rank, count } = options.shard ?? { rank: 0, count: 1 };
  if (!positiveInteger(count) || !Number.isInteger(rank) || rank < 0 || rank >= count) {
    throw new Error(`batch loader: shard rank must be an integer in [0, count), got rank ${rank} of ${count}`);
  }
  if (options.dropLast && options.ids.length < options.batchSize * count) {
    const step = count > 1 ? `step of ${count} processes × batch ${options.batchSize}` : `batch of ${options.batchSize}`;
    throw new Error(`batch loader: ${options.ids.length} cases make no full ${step} (dropLast)`);
  }
}

/** Creates the loader; see the module comment for the guarantees. */
export function createBatchLoader(options: BatchLoaderOptions): BatchLoader {
  checkOptions(options);
  const augment = resolveAugmentation(options.augment);
  if (options.foregroundProbability !== undefined) augment.foregroundProbability = options.foregroundProbability;
  const extraArrays = [...(options.extraArrays ?? [])];
  const prefetch = options.workers === 0 ? 1 : (options.prefetch ?? 2 * options.workers);
  const shard = options.shard ?? { rank: 0, count: 1 };
  const stepSize = options.batchSize * shard.count;
  const batchCount = options.dropLast ? Math.floor(options.ids.length / stepSize) : Math.ceil(options.ids.length / stepSize);
  const caseMemoryBytes = options.caseMemoryBytes ?? DEFAULT_CASE_MEMORY_BYTES;
  const pool = options.workers > 0 ? new WorkerPool(options.workers, caseMemoryBytes) : undefined;
  const memory = pool ? undefined : new CaseMemory(caseMemoryBytes);
  let closed = false;

  const requestsOf = (epoch: number): { order: string[]; requests: BatchRequest[] } => {
    const order = [...options.ids];
    if (options.shuffle ?? true) shuffle(createRng(deriveSeed(options.seed, epoch, SHUFFLE_STREAM)), order);
    const requests = Array.from({ length: batchCount }, (_, b): BatchRequest => {
      const first = b * stepSize + shard.rank * options.batchSize;
      const positions = order.slice(first, first + options.batchSize).map((_, i) => first + i);
      return {
        cacheDir: options.cacheDir,
        ids: positions.map((position) => order[position]),
        seeds: positions.map((position) => deriveSeed(options.seed, epoch, position)),
        patchSize: [...options.patchSize],
        augment,
        extraArrays,
      };
    });
    return { order, requests };
  };

  async function* epochBatches(epoch: number): AsyncGenerator<Batch, void, undefined> {
    if (closed) throw new Error('batch loader is closed');
    if (!Number.isInteger(epoch) || epoch < 0) throw new Error(`batch loader: epoch must be a non-negative integer, got ${epoch}`);
    const { order, requests } = requestsOf(epoch);
    const owner = {};
    const pending: (Promise<BatchData> | undefined)[] = [];
    let started = 0;
    try {
      for (let b = 0; b < requests.length; b++) {
        for (; started < Math.min(requests.length, b + prefetch); started++) {
          const request = requests[started];
          const promise = pool ? pool.run(request, owner) : Promise.resolve().then(() => buildBatch(request, memory));
          // Handled here so a failed prefetched batch is reported when it is reached, not as an unhandled rejection.
          promise.catch(() => undefined);
          pending[started] = promise;
        }
        const data = await pending[b]!;
        pending[b] = undefined;
        yield { epoch, index: b, stepIds: order.slice(b * stepSize, (b + 1) * stepSize), ...data };
      }
    } finally {
      pool?.cancel(owner);
    }
  }

  return {
    batchesPerEpoch: batchCount,
    epoch: epochBatches,
    async close() {
      if (closed) return;
      closed = true;
      await pool?.close();
    },
  };
}
