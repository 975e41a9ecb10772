// What every benchmark section shares: the section interface, timing, resident memory, and the
// PyTorch-from-Python reference run as a subprocess.
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { BenchRow } from './table.ts';

export interface BenchContext {
  /** Shorter runs (fewer repetitions and steps) for a quick look; the numbers are noisier. */
  quick: boolean;
  /** libtorch intra-op threads, the same for our engine and the Python reference. */
  threads: number;
  /** An interpreter that can `import torch`, or null when the comparison is skipped. */
  python: PythonTorch | null;
  /** Progress and details on stderr, so that stdout holds only the table. */
  log(message: string): void;
}

export interface Section {
  /** The name `--only` selects. */
  name: string;
  description: string;
  run(ctx: BenchContext): BenchRow[] | Promise<BenchRow[]>;
}

export interface Timing {
  medianMs: number;
  minMs: number;
  maxMs: number;
  samplesMs: number[];
}

export function summarise(samplesMs: number[]): Timing {
  if (samplesMs.length === 0) throw new Error('summarise: no samples');
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianMs = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { medianMs, minMs: sorted[0], maxMs: sorted.at(-1)!, samplesMs };
}

export function formatMs(ms: number): string {
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

/** "median (min–max)" for progress lines: the spread shows how noisy a measurement was. */
export function describeTiming(t: Timing): string {
  return `${formatMs(t.medianMs)} (min ${formatMs(t.minMs)}, max ${formatMs(t.maxMs)}, n=${t.samplesMs.length})`;
}

export const MIB = 1024 * 1024;

/**
 * This process's memory in MiB: the resident set (libtorch's allocations included) and the part of
 * it that is JavaScript heap in use (tensor handles not yet collected live there).
 */
export function memoryMiB(): { rss: number; jsHeap: number } {
  const usage = process.memoryUsage();
  return { rss: usage.rss / MIB, jsHeap: usage.heapUsed / MIB };
}

// -- the Python reference --------------------------------------------------------------------------

export interface PythonTorch {
  executable: string;
  torchVersion: string;
}

/**
 * The first interpreter that can import torch: $BENCH_PYTHON when set, then the system Python
 * (Debian's python3-torch installs there, while a pyenv or venv `python3` first on PATH usually
 * lacks torch), then `python3` on PATH.
 */
export function findPythonTorch(): PythonTorch | null {
  const candidates = [process.env.BENCH_PYTHON, '/usr/bin/python3', 'python3'].filter((c): c is string => !!c);
  for (const executable of new Set(candidates)) {
    const probe = spawnSync(executable, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (probe.status === 0) return { executable, torchVersion: probe.stdout.trim() };
  }
  return null;
}

interface PendingReply {
  resolve(line: string): void;
  reject(error: Error): void;
}

/**
 * A Python process running a reference script that answers one JSON request per line with one JSON
 * line: `{"op": "setup", ...workload}` prepares a workload, `{"op": "run"}` runs it once and answers
 * `{"ms": wall-clock milliseconds, "value": what the run returned}`. A reply `{"error": message}` fails
 * the request. Keeping one process lets our runs and the reference's alternate, so that both sides see
 * the same background load on a shared machine.
 */
export class PythonReference {
  private readonly pending: PendingReply[] = [];
  private exitError: Error | null = null;

  private constructor(
    private readonly child: ChildProcessByStdio<Writable, Readable, null>,
    private readonly script: string,
  ) {
    createInterface({ input: child.stdout }).on('line', (line) => this.pending.shift()?.resolve(line));
    child.on('exit', (code, signal) => {
      this.exitError = new Error(`${script} exited (${signal ?? `status ${code}`})`);
      for (const p of this.pending.splice(0)) p.reject(this.exitError);
    });
    child.on('error', (error) => {
      this.exitError = new Error(`${script}: could not run ${child.spawnfile}: ${error.message}`);
      for (const p of this.pending.splice(0)) p.reject(this.exitError);
    });
  }

  static start(python: PythonTorch, script: string): PythonReference {
    return new PythonReference(spawn(python.executable, [script], { stdio: ['pipe', 'pipe', 'inherit'] }), script);
  }

  async request<T>(message: object): Promise<T> {
    if (this.exitError) throw this.exitError;
    const line = await new Promise<string>((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.child.stdin.write(`${JSON.stringify(message)}\n`);
    });
    let reply: { error?: string } & T;
    try {
      reply = JSON.parse(line) as { error?: string } & T;
    } catch {
      throw new Error(`${this.script}: expected a JSON reply, got '${line.slice(0, 200)}'`);
    }
    if (reply.error) throw new Error(`${this.script}: ${reply.error}`);
    return reply;
  }

  /** Prepares a workload; later `run` requests run it. */
  async setup(workload: object): Promise<void> {
    await this.request({ op: 'setup', ...workload });
  }

  /** Runs the prepared workload once; its wall-clock time and its result (a loss, or null). */
  async run(): Promise<{ ms: number; value: unknown }> {
    return this.request<{ ms: number; value: unknown }>({ op: 'run' });
  }

  close(): void {
    this.child.stdin.end();
  }
}

/**
 * Times `ours` and the reference's prepared workload alternately: `warmup` untimed rounds, then `runs`
 * timed rounds. Returns our timing, the reference's (when given) and each side's run results.
 */
export async function timeAlternating<T>(
  ours: () => T,
  reference: PythonReference | undefined,
  warmup: number,
  runs: number,
): Promise<{ ours: Timing; reference?: Timing; ourValues: T[]; referenceValues: unknown[]; warmupMs: { ours: number[]; reference: number[] } }> {
  // every round's time, warm-up rounds first
  const ourMs: number[] = [];
  const referenceMs: number[] = [];
  const ourValues: T[] = [];
  const referenceValues: unknown[] = [];
  for (let round = 0; round < warmup + runs; round++) {
    const start = performance.now();
    ourValues.push(ours());
    ourMs.push(performance.now() - start);
    const ref = reference && (await reference.run());
    if (ref) {
      referenceValues.push(ref.value);
      referenceMs.push(ref.ms);
    }
  }
  return {
    ours: summarise(ourMs.slice(warmup)),
    reference: reference && summarise(referenceMs.slice(warmup)),
    ourValues,
    referenceValues,
    warmupMs: { ours: ourMs.slice(0, warmup), reference: referenceMs.slice(0, warmup) },
  };
}
