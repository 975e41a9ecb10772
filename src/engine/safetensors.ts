// The safetensors format: an 8-byte little-endian header length, a JSON header describing each tensor
// ({dtype, shape, data_offsets} plus an optional string-to-string "__metadata__"), then the raw
// little-endian tensor bytes. Tensors are written in name order, back to back.
import { readFileSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { writeFileAtomically } from './atomic-file.ts';
import { native } from './native.ts';
import type { Module } from './nn/module.ts';
import { wrap, type DType, type Tensor } from './tensor.ts';

export type NamedTensors = Map<string, Tensor> | Record<string, Tensor>;
export type SafetensorsMetadata = Record<string, string>;

const CODE_OF_DTYPE: Record<DType, string> = {
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};
const DTYPE_OF_CODE = new Map(Object.entries(CODE_OF_DTYPE).map(([dtype, code]) => [code, dtype as DType]));
const ITEM_SIZE: Record<DType, number> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};
const METADATA_KEY = '__metadata__';

// The addon copies raw bytes in the machine's order, and the format is little-endian.
function checkLittleEndian(): void {
  if (endianness() !== 'LE') throw new Error('safetensors: only little-endian machines are supported');
}

interface Layout {
  /** The length prefix and the JSON header, padded with spaces to a multiple of 8 bytes. */
  header: Buffer;
  /** Tensors in the order of their bytes. */
  tensors: Tensor[];
}

function planLayout(collection: NamedTensors, metadata: SafetensorsMetadata | undefined): Layout {
  checkLittleEndian();
  const named = [...(collection instanceof Map ? collection : Object.entries(collection))];
  named.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') throw new Error(`safetensors: metadata '${key}' must be a string, got ${typeof value}`);
    }
    header[METADATA_KEY] = metadata;
  }
  let offset = 0;
  for (const [name, tensor] of named) {
    if (name === '' || name === METADATA_KEY) throw new Error(`safetensors: invalid tensor name '${name}'`);
    const dtype = tensor.dtype;
    const bytes = tensor.numel * ITEM_SIZE[dtype];
    header[name] = { dtype: CODE_OF_DTYPE[dtype], shape: tensor.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const paddedLength = Math.ceil(json.length / 8) * 8;
  const prefixed = Buffer.alloc(8 + paddedLength, 0x20);
  prefixed.writeBigUInt64LE(BigInt(paddedLength), 0);
  json.copy(prefixed, 8);
  return { header: prefixed, tensors: named.map(([, tensor]) => tensor) };
}

/** The tensor's values as raw bytes (row-major, on the CPU). */
function rawBytes(tensor: Tensor): Uint8Array {
  return new Uint8Array(native.toBuffer(tensor.handle) as ArrayBuffer);
}

/** The complete file contents for `tensors` (and optional string metadata). */
export function serializeSafetensors(tensors: NamedTensors, metadata?: SafetensorsMetadata): Buffer {
  const layout = planLayout(tensors, metadata);
  return Buffer.concat([layout.header, ...layout.tensors.map(rawBytes)]);
}

/**
 * Writes `tensors` to `path` atomically: the bytes go to a temporary file beside it, which is
 * flushed to disk and then renamed over `path`. Tensors are copied out one at a time.
 */
export function saveSafetensors(path: string, tensors: NamedTensors, metadata?: SafetensorsMetadata): void {
  const layout = planLayout(tensors, metadata);
  writeFileAtomically(path, (fd) => {
    writeAll(fd, layout.header);
    for (const tensor of layout.tensors) writeAll(fd, rawBytes(tensor));
  });
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
}

export interface SafetensorsContents {
  /** The tensors, in the header's order, on the CPU. */
  tensors: Map<string, Tensor>;
  metadata: SafetensorsMetadata;
}

interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

/**
 * Reads safetensors bytes. Every structural problem (truncation, a bad header, an unknown dtype,
 * offsets that do not match the shapes, overlap, gaps or trailing bytes) is an Error naming `source`.
 */
export function parseSafetensors(bytes: Uint8Array, source = 'safetensors buffer'): SafetensorsContents {
  checkLittleEndian();
  function fail(problem: string): never {
    throw new Error(`${source}: ${problem}`);
  }
  if (bytes.length < 8) fail(`${bytes.length} bytes is too short for a safetensors file (the header length alone takes 8)`);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.readBigUInt64LE(0);
  if (headerLength > BigInt(bytes.length - 8)) {
    fail(`the header length ${headerLength} runs past the end of the file (${bytes.length} bytes)`);
  }
  const dataStart = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(view.subarray(8, dataStart)));
  } catch (error) {
    fail(`the header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (!isPlainObject(header)) fail('the header is not a JSON object');

  const metadata: SafetensorsMetadata = {};
  const rawMetadata = header[METADATA_KEY] ?? {};
  if (!isPlainObject(rawMetadata)) fail(`"${METADATA_KEY}" is not an object`);
  for (const [key, value] of Object.entries(rawMetadata)) {
    if (typeof value !== 'string') fail(`metadata '${key}' is not a string`);
    metadata[key] = value;
  }

  const dataLength = bytes.length - dataStart;
  const entries: Entry[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === METADATA_KEY) continue;
    if (!isPlainObject(info)) fail(`tensor '${name}': the entry is not an object`);
    const dtype = typeof info.dtype === 'string' ? DTYPE_OF_CODE.get(info.dtype) : undefined;
    if (!dtype) fail(`tensor '${name}': unknown or unsupported dtype ${JSON.stringify(info.dtype)}`);
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every(isCount)) fail(`tensor '${name}': shape ${JSON.stringify(shape)} is not a list of sizes`);
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
      fail(`tensor '${name}': data_offsets ${JSON.stringify(offsets)} is not a [begin, end] pair`);
    }
    const [begin, end] = offsets;
    if (end > dataLength) fail(`tensor '${name}': data_offsets [${begin}, ${end}] run past the ${dataLength} data bytes`);
    const expected = shape.reduce((a: number, b: number) => a * b, 1) * ITEM_SIZE[dtype];
    if (end - begin !== expected) {
      fail(`tensor '${name}': data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but ${dtype} [${shape.join(', ')}] needs ${expected}`);
    }
    entries.push({ name, dtype, shape, begin, end });
  }

  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: Entry | undefined;
  for (const entry of byOffset) {
    if (entry.begin < covered && previous) {
      fail(`tensors '${previous.name}' [${previous.begin}, ${previous.end}] and '${entry.name}' [${entry.begin}, ${entry.end}] overlap`);
    }
    if (entry.begin > covered) fail(`data bytes [${covered}, ${entry.begin}) belong to no tensor`);
    covered = entry.end;
    previous = entry;
  }
  if (covered < dataLength) fail(`${dataLength - covered} trailing bytes follow the last tensor`);

  const data = view.subarray(dataStart);
  for (const entry of entries) {
    if (entry.dtype === 'bool' && data.subarray(entry.begin, entry.end).some((b) => b > 1)) {
      fail(`tensor '${entry.name}': a bool byte is neither 0 nor 1`);
    }
  }
  const tensors = new Map<string, Tensor>();
  for (const entry of entries) {
    tensors.set(entry.name, wrap(native.fromBuffer(data.subarray(entry.begin, entry.end), entry.shape, entry.dtype)));
  }
  return { tensors, metadata };
}

/** Reads a safetensors file; errors name the file and the problem. */
export function loadSafetensors(path: string): SafetensorsContents {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new Error(`${path}: cannot read the safetensors file (${(error as Error).message})`, { cause: error });
  }
  return parseSafetensors(bytes, path);
}

/** Saves a module's parameters and buffers under their dotted names. */
export function saveModule(path: string, module: Module, metadata?: SafetensorsMetadata): void {
  saveSafetensors(path, module.stateDict(), metadata);
}

/**
 * Loads a file saved by `saveModule` (or a PyTorch state dict saved as safetensors) into `module`
 * in place. Strict mode (default) rejects missing and unexpected names; shapes must always match.
 */
export function loadModule(
  path: string,
  module: Module,
  opts: { strict?: boolean } = {},
): { missing: string[]; unexpected: string[]; metadata: SafetensorsMetadata } {
  const { tensors, metadata } = loadSafetensors(path);
  try {
    return { ...module.loadStateDict(tensors, opts), metadata };
  } catch (error) {
    throw new Error(`${path}: ${(error as Error).message}`, { cause: error });
  } finally {
    for (const tensor of tensors.values()) tensor.dispose();
  }
}
