// Checks made before long computations, so that an output location that cannot be written fails
// in seconds rather than after minutes of inference.
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Throws (naming `what` and `file`) when `file` cannot be written: a folder in the way, or a
 * location that refuses a file. Missing parent folders are created; a probe file is written next to
 * `file` and removed again.
 */
export function checkWritableFile(file: string, what: string): void {
  const problem = (reason: string) => new Error(`${what} ${file} cannot be written: ${reason}`);
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw problem('it is a folder');
  const probe = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(probe, '');
  } catch (error) {
    throw problem((error as Error).message);
  }
  fs.rmSync(probe, { force: true });
}
