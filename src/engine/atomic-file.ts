// Atomic file replacement: the engine's writers (safetensors, PyTorch checkpoints) and, through data/files.ts, every
// other file smml writes.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync } from 'node:fs';

/**
 * Writes through `write` into a temporary file beside `file`, flushes it to disk and renames it over `file`.
 * `flush: false` skips the flush where only other readers' view matters, not surviving a crash (files handed between
 * processes and deleted once read).
 */
export function writeFileAtomically(file: string, write: (fd: number) => void, { flush = true }: { flush?: boolean } = {}): void {
  const temporary = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const fd = openSync(temporary, 'w');
  try {
    try {
      write(fd);
      if (flush) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}
