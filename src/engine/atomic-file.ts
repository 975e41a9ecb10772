// Atomic file replacement: the engine's writers (safetensors, PyTorch checkpoints) and, through data/files.ts, every
// other file smml writes.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync } from 'node:fs';

/** Writes through `write` into a temporary file beside `file`, flushes it and renames it over `file`. */
export function writeFileAtomically(file: string, write: (fd: number) => void): void {
  const temporary = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const fd = openSync(temporary, 'w');
  try {
    try {
      write(fd);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}
