// Whole-volume inference split between processes. On the small convolutions of patch networks libtorch's threads
// add CPU time for little gain, while separate processes with one thread each add no work (bench/README.md). The
// windows of a volume, in the order x, then y, then z, are split into contiguous runs of about equal work, one per
// process; each process accumulates the blending sums of its run's windows (over the x extent they cover) and hands
// them back slab by slab through files in a temporary folder (a long synchronous computation cannot flush large IPC
// messages until it ends); here the sums of neighbouring runs are added where their windows overlap and divided into
// probabilities. The images of a run go the other way through a file too: structured-clone messages of tens of
// megabytes cost the sending process about as much time as the network's first windows.
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { torch, type Tensor } from '../engine/index.ts';
import { writeFileAtomically } from '../engine/atomic-file.ts';
import type { ModalityMask } from '../data/modalities.ts';
import type { ModelConfig, Precision, SegmentationModel } from '../models/index.ts';
import { blendSums, splitWindows, windowWork, type Shape3, type StreamedWindowOptions } from './sliding-window.ts';

/** The program each process runs. */
const PROCESS_FILE = fileURLToPath(new URL('./window-process.ts', import.meta.url));
/** tsx's loader, resolved from this package, so that the processes run the TypeScript sources wherever they start. */
const TSX_LOADER = import.meta.resolve('tsx');

/** What a process is sent: the model once, then one run of windows per volume. */
export type ProcessRequest =
  | { type: 'model'; config: ModelConfig; /** A safetensors file of the weights, shared by the processes. */ weights: string }
  | {
      type: 'windows';
      job: number;
      /**
       * A file of (k, n, Y, Z) float32 values, z fastest: the channels `channels` (those some subset reads) of the
       * volume's voxels x in [first, first + n), the extent of the run's windows; the process deletes it once read.
       */
      images: string;
      channels: number[];
      /** K, the channels of the volume; the others are zeros. */
      modalities: number;
      shape: Shape3;
      /** Start offsets along x of the run's windows, relative to the slab. */
      xStarts: number[];
      /** The run's windows, [first, end) in the order x (over `xStarts`), then y, then z. */
      windows: [number, number];
      subsets: ModalityMask[];
      overlap: number;
      weighting: 'uniform' | 'gaussian';
      batchSize?: number;
      /** What the network computes in (bf16: under autocast, sums in float32). */
      precision: Precision;
      /** Where the sums go: `<folder>/<job>-<part>-<x>.bin`. */
      folder: string;
      part: number;
    };

/** What a process answers: sums of a slab in a file (sum (S, C, n, Y, Z) then weight (S, 1, n, Y, Z), float32), progress, the end of a run or its failure. */
export type ProcessReply =
  | { type: 'sums'; job: number; x: number; n: number; file: string }
  | { type: 'windows'; job: number; count: number }
  | { type: 'done'; job: number }
  | { type: 'error'; job: number; message: string };

/**
 * Writes a file handed between this process and an inference process: `parts` one after another, whole before it is
 * named, not flushed to disk (the reader deletes it once read, or the folder goes with the processes).
 */
export function writeHandOff(file: string, parts: readonly NodeJS.ArrayBufferView[]): void {
  writeFileAtomically(file, (fd) => parts.forEach((part) => fs.writeSync(fd, part)), { flush: false });
}

/** The float32 values of a file written by `writeHandOff` from Float32Arrays. */
export function readFloats(file: string): Float32Array {
  const bytes = fs.readFileSync(file);
  // A float view needs 4-byte alignment, which a buffer from Node's pool may lack.
  return bytes.byteOffset % 4 === 0 ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) : new Float32Array(Uint8Array.from(bytes).buffer);
}

/** What ended a process, in words. */
const endText = (code: number | null, signal: NodeJS.Signals | null) => (signal ? `was killed by ${signal}` : `exited with status ${code}`);

/** Whether a process (and its IPC channel) keeps this one running: only while it works on a volume, so that one left open never holds up the exit. */
function holdOpen(child: ChildProcess, hold: boolean): void {
  if (hold) {
    child.ref();
    child.channel?.ref();
  } else {
    child.unref();
    child.channel?.unref();
  }
}

/** The default number of inference processes: one per core. */
export function defaultProcessCount(): number {
  return os.availableParallelism();
}

/**
 * Adds the sums of runs whose windows overlap and hands out each x once, blended: x planes covered by one run pass
 * straight through, planes covered by several wait (alone) until every run has delivered them.
 */
class SlabMerger {
  private readonly coverage: Uint8Array;
  private readonly pending = new Map<number, { sum: Tensor; weight: Tensor; remaining: number }>();
  private remainingPlanes: number;

  constructor(
    size: number,
    extents: readonly [number, number][],
    private readonly onSlab: (xStart: number, blended: Tensor /* (S, C, n, Y, Z) */) => void,
  ) {
    this.coverage = new Uint8Array(size);
    for (const [begin, end] of extents) for (let x = begin; x < end; x++) this.coverage[x]++;
    this.remainingPlanes = size;
  }

  /** Sums of x in [first, first + n) from one run. */
  add(first: number, sum: Tensor /* (S, C, n, Y, Z) */, weight: Tensor /* (S, 1, n, Y, Z) */): void {
    const end = first + sum.size(2);
    if (first < 0 || end > this.coverage.length) throw new Error(`sums for x ${first}–${end} lie outside the volume (x < ${this.coverage.length})`);
    let x = first;
    while (x < end) {
      if (this.coverage[x] === 1) {
        let until = x + 1;
        while (until < end && this.coverage[until] === 1) until++;
        torch.tidy(() => this.onSlab(x, blendSums(sum.narrow(2, x - first, until - x), weight.narrow(2, x - first, until - x))));
        this.remainingPlanes -= until - x;
        x = until;
        continue;
      }
      const [planeSum, planeWeight] = [sum.narrow(2, x - first, 1), weight.narrow(2, x - first, 1)];
      const waiting = this.pending.get(x);
      if (!waiting) {
        this.pending.set(x, { sum: torch.keep(planeSum.clone()), weight: torch.keep(planeWeight.clone()), remaining: this.coverage[x] - 1 });
      } else {
        waiting.sum.add_(planeSum);
        waiting.weight.add_(planeWeight);
        if (--waiting.remaining === 0) {
          torch.tidy(() => this.onSlab(x, blendSums(waiting.sum, waiting.weight)));
          waiting.sum.dispose();
          waiting.weight.dispose();
          this.pending.delete(x);
          this.remainingPlanes--;
        }
      }
      x++;
    }
  }

  /** Whether every x was handed out. */
  get complete(): boolean {
    return this.remainingPlanes === 0;
  }

  dispose(): void {
    for (const { sum, weight } of this.pending.values()) {
      sum.dispose();
      weight.dispose();
    }
    this.pending.clear();
  }
}

/**
 * Processes that each hold a copy of a model (loaded once, with one libtorch thread) and predict parts of whole
 * volumes for `stream`. A process that died is started again for the next volume; `close` ends them all, and they end
 * by themselves when this process does.
 */
export class InferenceProcesses {
  private readonly children: (ChildProcess | null)[];
  private readonly config: ModelConfig;
  /** The weights when the processes were made (safetensors), and their file in the folder while it exists. */
  private readonly weights: Uint8Array;
  private weightsFile: string | null = null;
  private folder: string | null = null;
  private jobs = 0;
  private readonly stopAll = () => this.close();
  // Ctrl-C or a termination request: the processes and their folder go first, then the signal does what it would have.
  private readonly stopAndResignal = (signal: NodeJS.Signals) => {
    this.close();
    process.kill(process.pid, signal);
  };

  /**
   * `count` processes (at least 2: with one, inference runs in the calling process) for `model`'s weights as they are
   * now, started at once: their start (Node, libtorch, the model) then overlaps the caller's reading of its first volume.
   */
  constructor(
    model: SegmentationModel,
    readonly count: number,
  ) {
    if (!Number.isInteger(count) || count < 2) throw new Error(`inference processes: expected at least 2, got ${count}`);
    this.config = model.config;
    this.weights = torch.serializeSafetensors(model.stateDict());
    this.children = Array.from({ length: count }, () => null);
    for (let index = 0; index < count; index++) this.child(index);
  }

  /** Ids of the processes that are running. */
  get pids(): number[] {
    return this.children.flatMap((child) => (child && child.exitCode === null && child.signalCode === null && child.pid !== undefined ? [child.pid] : []));
  }

  /** The process of part `index`, started (and sent the model) when it is not running. */
  private child(index: number): ChildProcess {
    const running = this.children[index];
    if (running && running.exitCode === null && running.signalCode === null) return running;
    if (!this.folder) {
      this.folder = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-inference-'));
      process.on('exit', this.stopAll);
      process.once('SIGINT', this.stopAndResignal);
      process.once('SIGTERM', this.stopAndResignal);
    }
    if (!this.weightsFile) {
      const file = path.join(this.folder, 'model.safetensors');
      writeHandOff(file, [this.weights]);
      this.weightsFile = file;
    }
    const child = fork(PROCESS_FILE, [], {
      execArgv: ['--import', TSX_LOADER],
      serialization: 'advanced',
      // One thread per process: the processes are the parallelism.
      env: { ...process.env, OMP_NUM_THREADS: '1' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    // Failures are reported through the run that is waiting for the process.
    child.on('error', () => undefined);
    holdOpen(child, false);
    child.send({ type: 'model', config: this.config, weights: this.weightsFile } satisfies ProcessRequest);
    this.children[index] = child;
    return child;
  }

  /**
   * `streamWindows` over the volume for the subsets (each reading the channels it flags), split between the processes:
   * blended slabs (S, C, n, Y, Z) go to `onSlab`, each x once, in no fixed order. `what` names the volume in errors:
   * a process that fails or dies fails the volume (and the others are stopped, to start afresh for the next one).
   * Images: (1, K, X, Y, Z) on the CPU.
   */
  stream(
    images: Tensor /* (1, K, X, Y, Z) */,
    subsets: readonly ModalityMask[],
    options: StreamedWindowOptions & { precision?: Precision },
    onSlab: (xStart: number, blended: Tensor /* (S, C, n, Y, Z) */) => void,
    what: string,
  ): Promise<void> {
    const { patch: side, classes } = this.config;
    const patch: Shape3 = [side, side, side];
    const overlap = options.overlap ?? 0.5;
    const [, , X, Y, Z] = images.shape as [number, number, number, number, number];
    const { xStarts, work } = windowWork(images, patch, subsets, overlap);
    const runs = splitWindows(work, this.count);
    const perX = work.length / xStarts.length;
    // A run's x starts, [first, end) indices: from its first window's to its last window's.
    const xRange = ([first, end]: [number, number]) => [Math.floor(first / perX), Math.floor((end - 1) / perX) + 1];
    const extents = runs.map((run): [number, number] => {
      const [first, end] = xRange(run);
      return [xStarts[first], Math.min(xStarts[end - 1] + side, X)];
    });
    const total = work.length;
    // Only the channels some subset reads travel; the process fills the others with zeros.
    const channels = Array.from({ length: images.size(1) }, (_, k) => k).filter((k) => subsets.some((subset) => subset[k]));
    const merger = new SlabMerger(X, extents, onSlab);
    const job = ++this.jobs;
    const planeValues = (rows: number) => subsets.length * rows * Y * Z;
    return new Promise<void>((resolve, reject) => {
      const listeners: (() => void)[] = [];
      let running = runs.length;
      let done = 0;
      let settled = false;
      const finish = (error?: Error) => {
        if (settled) return;
        settled = true;
        listeners.forEach((remove) => remove());
        merger.dispose();
        if (error) {
          this.close();
          reject(error);
        } else resolve();
      };
      runs.forEach((run, part) => {
        if (settled) return;
        const [firstX, endX] = xRange(run);
        const [begin, until] = extents[part];
        const name = `inference process ${part + 1} of ${runs.length}`;
        let child: ChildProcess;
        try {
          child = this.child(part);
        } catch (error) {
          finish(new Error(`${what}: ${name} could not start: ${(error as Error).message}`));
          return;
        }
        const onMessage = (reply: ProcessReply) => {
          if (reply.job !== job || settled) return;
          try {
            if (reply.type === 'windows') {
              done += reply.count;
              options.onWindow?.(done, total);
            } else if (reply.type === 'sums') {
              const values = readFloats(reply.file);
              fs.rmSync(reply.file, { force: true });
              const sumLength = planeValues(reply.n) * classes;
              if (values.length !== sumLength + planeValues(reply.n)) throw new Error(`${reply.file} holds ${values.length} values, expected ${sumLength + planeValues(reply.n)}`);
              torch.tidy(() =>
                merger.add(
                  begin + reply.x,
                  torch.tensor(values.subarray(0, sumLength), [subsets.length, classes, reply.n, Y, Z]),
                  torch.tensor(values.subarray(sumLength), [subsets.length, 1, reply.n, Y, Z]),
                ),
              );
            } else if (reply.type === 'error') {
              finish(new Error(`${what}: ${name} failed: ${reply.message}`));
            } else if (--running === 0) {
              finish(merger.complete ? undefined : new Error(`${what}: the inference processes left part of the volume without sums`));
            }
          } catch (error) {
            finish(new Error(`${what}: the sums of ${name} could not be added: ${(error as Error).message}`));
          }
        };
        const onExit = (code: number | null, signal: NodeJS.Signals | null) => finish(new Error(`${what}: ${name} ${endText(code, signal)} before it finished its windows`));
        child.on('message', onMessage);
        child.on('exit', onExit);
        holdOpen(child, true);
        listeners.push(() => {
          child.off('message', onMessage);
          child.off('exit', onExit);
          holdOpen(child, false);
        });
        const imagesFile = path.join(this.folder!, `${job}-${part}-images.bin`);
        try {
          torch.tidy(() => {
            const slab = images.narrow(2, begin, until - begin).squeeze(0).indexSelect(0, torch.tensor(channels, [channels.length], { dtype: 'int64' }));
            writeHandOff(imagesFile, [slab.toTypedArray() as Float32Array]);
          });
        } catch (error) {
          finish(new Error(`${what}: the images of ${name} could not be written to ${imagesFile}: ${(error as Error).message}`));
          return;
        }
        const request: ProcessRequest = {
          type: 'windows',
          job,
          images: imagesFile,
          channels,
          modalities: images.size(1),
          shape: [until - begin, Y, Z],
          xStarts: xStarts.slice(firstX, endX).map((x) => x - begin),
          windows: [run[0] - firstX * perX, run[1] - firstX * perX],
          subsets: [...subsets],
          overlap,
          weighting: options.weighting ?? 'uniform',
          batchSize: options.batchSize,
          precision: options.precision ?? 'fp32',
          folder: this.folder!,
          part,
        };
        child.send(request, (error) => {
          if (error) finish(new Error(`${what}: ${name} could not be sent its windows: ${error.message}`));
        });
      });
    });
  }

  /** Ends the processes and removes their folder. */
  close(): void {
    for (const child of this.children) if (child && child.exitCode === null && child.signalCode === null) child.kill();
    this.children.fill(null);
    if (this.folder) {
      fs.rmSync(this.folder, { recursive: true, force: true });
      this.folder = null;
      this.weightsFile = null;
      process.off('exit', this.stopAll);
      process.off('SIGINT', this.stopAndResignal);
      process.off('SIGTERM', this.stopAndResignal);
    }
  }
}
