// Console progress over the sliding windows of one volume: a bar on a terminal, silent otherwise
// (callers print one plain line per case, which suits logs).
import cliProgress from 'cli-progress';

export interface WindowProgress {
  /** Pass as `onWindow` of the whole-volume options. */
  onWindow(done: number, total: number): void;
  /** Removes the bar; call before printing a line. */
  stop(): void;
}

export function windowProgress(label: string, stream: NodeJS.WriteStream = process.stderr): WindowProgress {
  if (!stream.isTTY) return { onWindow() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { stream, format: `${label} [{bar}] {value}/{total} windows, {eta_formatted} left`, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    onWindow(done, total) {
      if (!started) bar.start(total, 0);
      started = true;
      bar.update(done);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
