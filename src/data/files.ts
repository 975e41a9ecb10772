/**
 * File helpers shared by the volume readers/writers: transparent gunzip on
 * read and atomic (temp file + rename) writes.
 */
import * as fs from 'node:fs';
import { gunzipSync } from 'fflate';
// The module itself, not the engine's index: writing a file must not load the libtorch addon.
import { writeFileAtomically } from '../engine/atomic-file.ts';

/** True when the bytes start with the gzip magic number (1f 8b). */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Reads a whole file, gunzipping it when its content is gzip (detected from
 * the bytes, not the name, so mis-named files still work).
 */
export function readFileBytes(filePath: string): Uint8Array {
  let raw: Uint8Array;
  try {
    raw = fs.readFileSync(filePath);
  } catch (error) {
    throw new Error(`${filePath}: cannot read file (${(error as Error).message})`);
  }
  if (!isGzip(raw)) return raw;
  try {
    return gunzipSync(raw);
  } catch (error) {
    const reason = (error as Error).message;
    const kind = /EOF/i.test(reason) ? 'truncated' : 'corrupt';
    throw new Error(`${filePath}: gzip data ${kind} (${reason})`);
  }
}

/** Writes `content` to `filePath` atomically (the engine's temp file + rename), so readers never observe a half-written file. */
export function writeFileAtomic(filePath: string, content: Uint8Array | string): void {
  writeFileAtomically(filePath, (fd) => fs.writeFileSync(fd, content));
}
