// log.jsonl: one JSON object per line, appended as training goes. Record types: 'start', 'step', 'epoch',
// 'interrupted', 'diverged', 'finished'.
import * as fs from 'node:fs';
import { writeFileAtomic } from '../data/files.ts';
import type { TrainingPosition } from './checkpoint.ts';

export interface LogRecord {
  type: string;
  [field: string]: unknown;
}

/** Reads a log; a line cut short by a crash (the last one) is skipped, any other bad line is an error. */
export function readRunLog(file: string): LogRecord[] {
  if (!fs.existsSync(file)) return [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const records: LogRecord[] = [];
  lines.forEach((line, index) => {
    if (line.trim() === '') return;
    try {
      records.push(JSON.parse(line) as LogRecord);
    } catch {
      if (index < lines.length - 1 && lines.slice(index + 1).some((rest) => rest.trim() !== '')) {
        throw new Error(`${file}:${index + 1}: not a JSON record`);
      }
    }
  });
  return records;
}

export class RunLog {
  constructor(readonly file: string) {}

  append(record: LogRecord): void {
    fs.appendFileSync(this.file, `${JSON.stringify(record)}\n`);
  }

  /** Starts an empty log. */
  clear(): void {
    fs.rmSync(this.file, { force: true });
  }

  /**
   * Drops the step and epoch records written after the checkpoint at `position` (a run killed after its last
   * checkpoint repeats those steps when resumed); other records stay as the run's history.
   */
  truncateAfter(position: TrainingPosition): void {
    const kept = readRunLog(this.file).filter((record) => {
      if (record.type === 'step') return (record.step as number) <= position.step;
      if (record.type === 'epoch') return (record.epoch as number) < position.epoch;
      return true;
    });
    writeFileAtomic(this.file, kept.map((record) => `${JSON.stringify(record)}\n`).join(''));
  }
}
