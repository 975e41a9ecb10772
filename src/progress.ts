// Console progress of the long jobs, on a terminal as a live bar with rate and ETA and otherwise as plain lines (logs,
// CI): training steps (epoch, step, losses), the cases of a per-case job (priors), the sliding windows of a volume.
import cliProgress from 'cli-progress';

export interface ProgressStart {
  epochs: number;
  stepsPerEpoch: number;
  /** Where the run starts (later than 0 when resuming). */
  epoch: number;
  stepInEpoch: number;
}

export interface ProgressStep {
  epoch: number;
  /** Steps of `epoch` done, this one included. */
  stepInEpoch: number;
  loss: number;
  /** Total loss of each branch. */
  branchLosses: number[];
  lr: number;
}

export interface ProgressReporter {
  start(info: ProgressStart): void;
  step(info: ProgressStep): void;
  /** A line that must not be drawn over (epoch summaries, validation, warnings). */
  note(text: string): void;
  stop(): void;
}

/** Reports nothing (tests, library use). */
export const silentProgress: ProgressReporter = { start() {}, step() {}, note() {}, stop() {} };

/** "1h02m", "4m05s", "12s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

const formatLoss = (value: number) => (Number.isFinite(value) ? value.toFixed(4) : String(value));

/** Steps per second over the steps of this session (the first step, which warms caches up, is excluded once others exist). */
class RateMeter {
  private first: number | undefined;
  private last: number | undefined;
  private steps = 0;

  tick(now: number): void {
    if (this.first === undefined) this.first = now;
    else this.steps++;
    this.last = now;
  }

  /** Steps per second, NaN until two steps were seen. */
  get rate(): number {
    return this.steps > 0 ? (this.steps * 1000) / (this.last! - this.first!) : NaN;
  }
}

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** Plain-line mode: print every N steps (default 10). */
  printEvery?: number;
  /** Force the mode (default: a bar when `stream` is a terminal). */
  bar?: boolean;
}

/** Training progress: a bar on a terminal, plain lines (every `printEvery` steps) otherwise. */
export function createProgress(options: ProgressOptions = {}): ProgressReporter {
  const stream = options.stream ?? process.stderr;
  const useBar = options.bar ?? stream.isTTY === true;
  return useBar ? new BarProgress(stream) : new LineProgress(stream, options.printEvery ?? 10);
}

class LineProgress implements ProgressReporter {
  private info: ProgressStart | undefined;
  private readonly meter = new RateMeter();
  private done = 0;

  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly printEvery: number,
  ) {}

  start(info: ProgressStart): void {
    this.info = info;
    this.done = info.epoch * info.stepsPerEpoch + info.stepInEpoch;
  }

  step(step: ProgressStep): void {
    const info = this.info!;
    this.meter.tick(performance.now());
    this.done++;
    if (step.stepInEpoch % this.printEvery !== 0 && step.stepInEpoch !== info.stepsPerEpoch) return;
    const remaining = info.epochs * info.stepsPerEpoch - this.done;
    const rate = this.meter.rate;
    const branches = step.branchLosses.length > 1 ? ` (${step.branchLosses.map(formatLoss).join(' / ')})` : '';
    this.note(
      `epoch ${step.epoch + 1}/${info.epochs} step ${step.stepInEpoch}/${info.stepsPerEpoch} loss ${formatLoss(step.loss)}${branches} ` +
        `lr ${step.lr.toExponential(2)} ${Number.isNaN(rate) ? '' : `${(1 / rate).toFixed(2)} s/step ETA ${formatDuration(remaining / rate)}`}`.trimEnd(),
    );
  }

  note(text: string): void {
    this.stream.write(`${text}\n`);
  }

  stop(): void {}
}

class BarProgress implements ProgressReporter {
  private readonly bars: cliProgress.MultiBar;
  private bar: cliProgress.SingleBar | undefined;
  private info: ProgressStart | undefined;
  private readonly meter = new RateMeter();

  constructor(private readonly stream: NodeJS.WriteStream) {
    this.bars = new cliProgress.MultiBar(
      {
        stream,
        format: 'epoch {epochText} step {stepText} |{bar}| {percentage}% | loss {loss}{branches} | {rate} | ETA {eta_formatted}',
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  private payload(epoch: number, stepInEpoch: number, loss = NaN, branchLosses: number[] = []) {
    const info = this.info!;
    const rate = this.meter.rate;
    return {
      epochText: `${epoch + 1}/${info.epochs}`,
      stepText: `${stepInEpoch}/${info.stepsPerEpoch}`,
      loss: formatLoss(loss),
      branches: branchLosses.length > 1 ? ` (${branchLosses.map(formatLoss).join(' / ')})` : '',
      rate: Number.isNaN(rate) ? '-- s/step' : `${(1 / rate).toFixed(2)} s/step`,
    };
  }

  start(info: ProgressStart): void {
    this.info = info;
    const done = info.epoch * info.stepsPerEpoch + info.stepInEpoch;
    this.bar = this.bars.create(info.epochs * info.stepsPerEpoch, done, this.payload(info.epoch, info.stepInEpoch));
  }

  step(step: ProgressStep): void {
    this.meter.tick(performance.now());
    const info = this.info!;
    this.bar?.update(step.epoch * info.stepsPerEpoch + step.stepInEpoch, this.payload(step.epoch, step.stepInEpoch, step.loss, step.branchLosses));
  }

  note(text: string): void {
    if (!this.bar) {
      this.stream.write(`${text}\n`);
      return;
    }
    this.bars.log(`${text}\n`);
    // The log buffer is flushed on the next redraw; force one so the line shows up now.
    this.bars.update();
  }

  stop(): void {
    this.bars.stop();
    this.bar = undefined;
  }
}

/** A bar over a count that the first update gives (cases, windows), started then and stopped by `stop`. */
function countBar(
  stream: NodeJS.WriteStream,
  format: string,
  options: { clearOnComplete?: boolean; etaBuffer?: number } = {},
): { update(done: number, total: number, payload?: Record<string, string>): void; stop(): void } {
  const bar = new cliProgress.SingleBar({ stream, format, hideCursor: true, ...options }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update(done, total, payload = {}) {
      // Nothing is done at the start, so no item to name yet.
      if (!started) bar.start(total, 0, Object.fromEntries(Object.keys(payload).map((key) => [key, ''])));
      started = true;
      bar.update(done, payload);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

/** One finished case of a per-case job. */
export interface CaseProgressEvent {
  /** Cases handled so far, this one included. */
  done: number;
  total: number;
  id: string;
  /** What happened to the case, e.g. 'written' or 'skipped'. */
  status: string;
  seconds: number;
}

export interface CaseProgress {
  update(progress: CaseProgressEvent): void;
  stop(): void;
}

/** Per-case progress: a bar on a terminal, one line per case otherwise. */
export function caseProgress(label: string, stream: NodeJS.WriteStream = process.stderr): CaseProgress {
  if (!stream.isTTY) {
    return {
      update: (p) => stream.write(`${label} ${p.done}/${p.total} ${p.id}: ${p.status} (${p.seconds.toFixed(1)} s)\n`),
      stop() {},
    };
  }
  const bar = countBar(stream, `${label} [{bar}] {value}/{total} cases | {id} | ETA {eta_formatted}`, { etaBuffer: 20 });
  return { update: (p) => bar.update(p.done, p.total, { id: p.id }), stop: () => bar.stop() };
}

export interface WindowProgress {
  /** Pass as `onWindow` of the whole-volume options. */
  onWindow(done: number, total: number): void;
  /** Removes the bar; call before printing a line. */
  stop(): void;
}

/** Progress over the sliding windows of one volume: a bar on a terminal, silent otherwise (callers print one line per case). */
export function windowProgress(label: string, stream: NodeJS.WriteStream = process.stderr): WindowProgress {
  if (!stream.isTTY) return { onWindow() {}, stop() {} };
  const bar = countBar(stream, `${label} [{bar}] {value}/{total} windows, {eta_formatted} left`, { clearOnComplete: true });
  return { onWindow: (done, total) => bar.update(done, total), stop: () => bar.stop() };
}
