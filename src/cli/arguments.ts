// Parsers of command-line values shared by the sub-commands (commander reports their errors with the option's name).
import { InvalidArgumentError, Option } from 'commander';
import { PRECISIONS } from '../models/index.ts';

export function positiveInteger(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(`expected a positive integer, got '${text}'`);
  return value;
}

export function nonNegativeInteger(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value)) throw new InvalidArgumentError(`expected a non-negative integer, got '${text}'`);
  return value;
}

export function positiveNumber(text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !(value > 0) || !Number.isFinite(value)) throw new InvalidArgumentError(`expected a positive number, got '${text}'`);
  return value;
}

/** A comma-separated list of distinct non-negative integers, e.g. '1,2,3'. */
export function nonNegativeIntegerList(text: string): number[] {
  const values = text.split(',').map((part) => nonNegativeInteger(part.trim()));
  if (new Set(values).size !== values.length) throw new InvalidArgumentError(`expected distinct values, got '${text}'`);
  return values;
}

/** Collects a repeatable option's values in order. */
export const collect = (value: string, previous: string[]) => [...previous, value];

export function deviceName(text: string): string {
  if (!/^(cpu|cuda(:\d+)?)$/.test(text)) throw new InvalidArgumentError(`expected 'cpu', 'cuda' or 'cuda:N', got '${text}'`);
  return text;
}

/** `--precision`: the network's arithmetic, float32 or bfloat16 mixed precision (src/models/precision.ts). */
export function precisionOption(what: string): Option {
  return new Option('--precision <p>', `${what}: 'fp32', or 'bf16' mixed precision (bfloat16 convolutions and matrix products, float32 weights, norms and losses)`).choices(PRECISIONS);
}
