// PyTorch checkpoints: the zip archives torch.save writes (PyTorch ≥ 1.6), read without Python and
// written so that torch.load reads them.
//
// An archive holds, under one top folder: `data.pkl`, a pickle of the saved object in which every
// storage is the persistent id ('storage', storage class, key, location, element count) and every
// tensor a call `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`;
// `data/<key>`, each storage's raw bytes (stored uncompressed, aligned to 64 bytes); `version`; and
// in newer files `byteorder`. The entries are read by offset from the file, one storage at a time.
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { posix, win32 } from 'node:path';
import { crc32 } from 'node:zlib';
import { inflateSync } from 'fflate';
import { writeFileAtomically } from './atomic-file.ts';
import { arange, scalarTensor, zeros } from './creation.ts';
import { native } from './native.ts';
import {
  intValue,
  PickleCall,
  PickleGlobal,
  PicklePersistentId,
  PickleTuple,
  pythonGlobals,
  readPickle,
  SET_STATE,
  writePickle,
  type PickleGlobals,
} from './pickle.ts';
import { Tensor, tidy, wrap, type DType, type Device } from './tensor.ts';

// ---------------------------------------------------------------------------------------------
// Dtypes and storage classes.

/** torch's dtypes by name: their element size and, where the engine has it, the engine's dtype. */
const TORCH_DTYPES: Record<string, { itemSize: number; dtype?: DType }> = {
  float32: { itemSize: 4, dtype: 'float32' },
  float64: { itemSize: 8, dtype: 'float64' },
  float16: { itemSize: 2, dtype: 'float16' },
  bfloat16: { itemSize: 2, dtype: 'bfloat16' },
  int64: { itemSize: 8, dtype: 'int64' },
  int32: { itemSize: 4, dtype: 'int32' },
  int16: { itemSize: 2, dtype: 'int16' },
  int8: { itemSize: 1, dtype: 'int8' },
  uint8: { itemSize: 1, dtype: 'uint8' },
  bool: { itemSize: 1, dtype: 'bool' },
  uint16: { itemSize: 2 },
  uint32: { itemSize: 4 },
  uint64: { itemSize: 8 },
  complex32: { itemSize: 4 },
  complex64: { itemSize: 8 },
  complex128: { itemSize: 16 },
  float8_e4m3fn: { itemSize: 1 },
  float8_e5m2: { itemSize: 1 },
  float8_e4m3fnuz: { itemSize: 1 },
  float8_e5m2fnuz: { itemSize: 1 },
  qint8: { itemSize: 1 },
  quint8: { itemSize: 1 },
  qint32: { itemSize: 4 },
  quint4x2: { itemSize: 1 },
  quint2x4: { itemSize: 1 },
};
const SUPPORTED_DTYPES = Object.entries(TORCH_DTYPES)
  .filter(([, info]) => info.dtype)
  .map(([name]) => name)
  .join(', ');

/** torch's storage classes (all in the `torch` module) and the dtype each holds. */
const STORAGE_CLASSES: Record<string, string> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
  ComplexFloatStorage: 'complex64',
  ComplexDoubleStorage: 'complex128',
  QInt8Storage: 'qint8',
  QUInt8Storage: 'quint8',
  QInt32Storage: 'qint32',
  QUInt4x2Storage: 'quint4x2',
  QUInt2x4Storage: 'quint2x4',
  UntypedStorage: 'uint8',
};

/** What a storage-class global stands for while reading. */
class StorageClass {
  constructor(
    readonly name: string,
    readonly dtypeName: string,
  ) {}
}

/** A storage named by a persistent id; its bytes are read when a tensor needs them. */
class StorageRef {
  constructor(
    readonly storageClass: StorageClass,
    readonly key: string,
    readonly numel: number,
  ) {}
}

// ---------------------------------------------------------------------------------------------
// Values that sit next to the weights in training checkpoints.

/**
 * A numpy array (or a numpy scalar of a dtype without a plain JavaScript form) as numpy pickled it:
 * the dtype string (e.g. '<f8'), the shape, whether the data is in Fortran order, and the raw bytes
 * (or the list of objects of an object array).
 */
export class NumpyArray {
  dtype = '';
  shape: number[] = [];
  fortranOrder = false;
  data: Uint8Array | unknown[] = new Uint8Array();

  [SET_STATE](state: unknown): void {
    // (version, shape, dtype, is_fortran, data), without the version in old pickles
    const parts = Array.isArray(state) && state.length === 5 ? state.slice(1) : state;
    if (!Array.isArray(parts) || parts.length !== 4) throw new Error('numpy.ndarray: unexpected pickled state');
    const [shape, dtype, fortranOrder, data] = parts;
    if (!(dtype instanceof NumpyDType)) throw new Error('numpy.ndarray: the pickled state has no dtype');
    this.shape = counts(shape, 'numpy.ndarray shape');
    this.dtype = dtype.str;
    this.fortranOrder = fortranOrder === true;
    if (!(data instanceof Uint8Array) && !Array.isArray(data)) throw new Error('numpy.ndarray: the pickled data is neither bytes nor a list');
    this.data = data;
  }
}

/** numpy.dtype('f8', …) with the byte order its pickled state gives. */
class NumpyDType {
  private byteOrder = '|';
  constructor(readonly descr: string) {}

  get str(): string {
    return `${this.byteOrder === '=' ? (endianness() === 'LE' ? '<' : '>') : this.byteOrder}${this.descr}`;
  }

  [SET_STATE](state: unknown): void {
    if (Array.isArray(state) && typeof state[1] === 'string') this.byteOrder = state[1];
  }
}

/** A numpy scalar as a number, bigint (64-bit integers beyond 2^53) or boolean; others stay a NumpyArray. */
function numpyScalar(dtype: unknown, data: unknown): unknown {
  if (!(dtype instanceof NumpyDType) || !(data instanceof Uint8Array)) throw new Error('numpy scalar: expected a dtype and bytes');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const little = !dtype.str.startsWith('>');
  const readers: Record<string, () => unknown> = {
    b1: () => data[0] !== 0,
    f4: () => view.getFloat32(0, little),
    f8: () => view.getFloat64(0, little),
    i1: () => view.getInt8(0),
    i2: () => view.getInt16(0, little),
    i4: () => view.getInt32(0, little),
    i8: () => intValue(view.getBigInt64(0, little)),
    u1: () => view.getUint8(0),
    u2: () => view.getUint16(0, little),
    u4: () => view.getUint32(0, little),
    u8: () => intValue(view.getBigUint64(0, little)),
  };
  const reader = readers[dtype.descr];
  if (reader && data.length === Number(dtype.descr.slice(1))) return reader();
  const scalar = new NumpyArray();
  scalar[SET_STATE]([[], dtype, false, data]);
  return scalar;
}

/** A list of non-negative integers (sizes, strides) from the pickle. */
function counts(value: unknown, what: string): number[] {
  if (!Array.isArray(value) || !value.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    throw new Error(`${what} ${JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? String(v) : v))} is not a list of non-negative integers`);
  }
  return value as number[];
}

// ---------------------------------------------------------------------------------------------
// Strided layouts.

/**
 * The dimensions from outermost to innermost in memory when `stride` lays `size` out densely (a
 * permutation of a row-major layout, such as a transpose or channels-last), else null.
 */
function denseOrder(size: number[], stride: number[]): number[] | null {
  const order = size.map((_, d) => d).sort((a, b) => stride[b] - stride[a] || a - b);
  let expected = 1;
  for (let i = order.length - 1; i >= 0; i--) {
    const d = order[i];
    if (size[d] !== 1 && stride[d] !== expected) return null;
    expected *= size[d];
  }
  return order;
}

/** Row-major strides for the dimensions taken in `order` (outermost first), indexed by dimension. */
function stridesFor(size: number[], order: number[]): number[] {
  const stride = new Array<number>(size.length);
  let step = 1;
  for (let i = order.length - 1; i >= 0; i--) {
    stride[order[i]] = step;
    step *= size[order[i]];
  }
  return stride;
}

const isIdentity = (order: number[]) => order.every((d, i) => d === i);

/**
 * The tensor torch's `as_strided(size, stride, offset)` gives on the one-dimensional `storage`. Dense
 * layouts keep their strides (as torch.load does) and share the storage when they cover all of it;
 * anything else is gathered into a fresh row-major tensor.
 */
function stridedView(storage: Tensor /* (N) */, offset: number, size: number[], stride: number[], label: string): Tensor {
  const numel = size.reduce((a, b) => a * b, 1);
  if (numel === 0) return zeros(size, { dtype: storage.dtype });
  if (stride.length !== size.length) throw new Error(`${label}: size [${size}] and stride [${stride}] differ in length`);
  const last = offset + size.reduce((sum, n, d) => sum + (n - 1) * stride[d], 0);
  if (last >= storage.numel) {
    throw new Error(`${label}: size [${size}], stride [${stride}] and offset ${offset} reach element ${last}, but the storage holds ${storage.numel}`);
  }
  const order = denseOrder(size, stride);
  if (order) {
    const dense = storage.narrow(0, offset, numel).view(order.map((d) => size[d]));
    const view = isIdentity(order) ? dense : dense.permute(size.map((_, d) => order.indexOf(d)));
    return numel < storage.numel ? view.clone() : view;
  }
  return tidy(() => {
    let index = scalarTensor(offset, { dtype: 'int64' });
    size.forEach((n, d) => {
      const along = size.map((_, e) => (e === d ? n : 1));
      index = index.add(arange(0, n, 1, { dtype: 'int64' }).mul(stride[d]).view(along));
    });
    return storage.indexSelect(0, index.flatten()).view(size);
  });
}

// ---------------------------------------------------------------------------------------------
// Zip archives.

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const ZIP64_END_LOCATOR = 0x07064b50;
const ZIP64_END = 0x06064b50;
const ZIP64_EXTRA = 0x0001;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
/** The start of the pickled magic number that legacy (pre-1.6) torch.save files begin with. */
const LEGACY_MAGIC = Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);

interface ZipEntry {
  name: string;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  headerOffset: number;
}

function readExactly(fd: number, length: number, position: number, into: Buffer = Buffer.allocUnsafe(length)): Buffer {
  let done = 0;
  while (done < length) {
    const count = readSync(fd, into, done, length - done, position + done);
    if (count === 0) throw new Error(`the file ends at byte ${position + done}, before the ${length} bytes expected at byte ${position} (truncated?)`);
    done += count;
  }
  return into.subarray(0, length);
}

class ZipReader {
  readonly entries = new Map<string, ZipEntry>();

  private constructor(
    private readonly fd: number,
    private readonly fileSize: number,
  ) {}

  /** Opens `file` and reads its central directory (zip64 included). */
  static open(file: string): ZipReader {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (error) {
      throw new Error(`cannot read the checkpoint (${(error as Error).message})`, { cause: error });
    }
    const zip = new ZipReader(fd, fstatSync(fd).size);
    try {
      zip.readCentralDirectory();
      return zip;
    } catch (error) {
      zip.close();
      throw error;
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  private notAZip(): never {
    const start = readExactly(this.fd, Math.min(this.fileSize, LEGACY_MAGIC.length), 0);
    if (start.equals(LEGACY_MAGIC)) {
      throw new Error(
        'is not a PyTorch zip checkpoint: it is in the legacy format of torch.save before PyTorch 1.6 (load it and save it again with PyTorch ≥ 1.6)',
      );
    }
    throw new Error('is not a PyTorch zip checkpoint: it is not a zip archive (or it is truncated)');
  }

  private readCentralDirectory(): void {
    const tailLength = Math.min(this.fileSize, 22 + U16_MAX);
    const tailStart = this.fileSize - tailLength;
    const tail = readExactly(this.fd, tailLength, tailStart);
    let end = -1;
    for (let i = tailLength - 22; i >= 0 && end < 0; i--) if (tail.readUInt32LE(i) === END_OF_CENTRAL_DIRECTORY) end = i;
    if (end < 0) this.notAZip();
    let count = tail.readUInt16LE(end + 10);
    let directorySize = tail.readUInt32LE(end + 12);
    let directoryOffset = tail.readUInt32LE(end + 16);
    if (count === U16_MAX || directorySize === U32_MAX || directoryOffset === U32_MAX) {
      const locator = tailStart + end - 20;
      if (locator < 0 || readExactly(this.fd, 20, locator).readUInt32LE(0) !== ZIP64_END_LOCATOR) {
        throw new Error('the zip64 end-of-central-directory locator is missing');
      }
      const record = readExactly(this.fd, 56, Number(readExactly(this.fd, 20, locator).readBigUInt64LE(8)));
      if (record.readUInt32LE(0) !== ZIP64_END) throw new Error('the zip64 end-of-central-directory record is missing');
      count = Number(record.readBigUInt64LE(32));
      directorySize = Number(record.readBigUInt64LE(40));
      directoryOffset = Number(record.readBigUInt64LE(48));
    }
    if (directoryOffset + directorySize > this.fileSize) {
      throw new Error(`the zip central directory runs past the end of the file (${this.fileSize} bytes; truncated?)`);
    }
    const directory = readExactly(this.fd, directorySize, directoryOffset);
    let at = 0;
    for (let k = 0; k < count; k++) {
      if (at + 46 > directory.length || directory.readUInt32LE(at) !== CENTRAL_HEADER) throw new Error(`the zip central directory is corrupt (entry ${k})`);
      const nameLength = directory.readUInt16LE(at + 28);
      const extraLength = directory.readUInt16LE(at + 30);
      const entry: ZipEntry = {
        name: directory.toString('utf8', at + 46, at + 46 + nameLength),
        method: directory.readUInt16LE(at + 10),
        crc: directory.readUInt32LE(at + 16),
        compressedSize: directory.readUInt32LE(at + 20),
        size: directory.readUInt32LE(at + 24),
        headerOffset: directory.readUInt32LE(at + 42),
      };
      this.applyZip64(entry, directory.subarray(at + 46 + nameLength, at + 46 + nameLength + extraLength));
      this.entries.set(entry.name, entry);
      at += 46 + nameLength + extraLength + directory.readUInt16LE(at + 32);
    }
  }

  /** Sizes and offsets that do not fit 32 bits are in the zip64 extra field, in this order. */
  private applyZip64(entry: ZipEntry, extra: Buffer): void {
    for (let at = 0; at + 4 <= extra.length; at += 4 + extra.readUInt16LE(at + 2)) {
      if (extra.readUInt16LE(at) !== ZIP64_EXTRA) continue;
      let field = at + 4;
      const next = () => {
        if (field + 8 > at + 4 + extra.readUInt16LE(at + 2)) throw new Error(`entry '${entry.name}': the zip64 extra field is too short`);
        field += 8;
        return Number(extra.readBigUInt64LE(field - 8));
      };
      if (entry.size === U32_MAX) entry.size = next();
      if (entry.compressedSize === U32_MAX) entry.compressedSize = next();
      if (entry.headerOffset === U32_MAX) entry.headerOffset = next();
    }
  }

  /** The entry's bytes (checked against its CRC-32); stored entries go into `scratch` when it is large enough. */
  read(entry: ZipEntry, scratch?: Buffer): Buffer {
    const header = readExactly(this.fd, 30, entry.headerOffset);
    if (header.readUInt32LE(0) !== LOCAL_HEADER) throw new Error(`entry '${entry.name}': no local header at byte ${entry.headerOffset}`);
    const dataStart = entry.headerOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
    if (dataStart + entry.compressedSize > this.fileSize) {
      throw new Error(`entry '${entry.name}' runs past the end of the file (${this.fileSize} bytes; truncated?)`);
    }
    let data: Buffer;
    if (entry.method === 0 && entry.compressedSize === entry.size) {
      data = readExactly(this.fd, entry.size, dataStart, scratch && scratch.length >= entry.size ? scratch : undefined);
    } else if (entry.method === 8) {
      const inflated = inflateSync(readExactly(this.fd, entry.compressedSize, dataStart), { out: new Uint8Array(entry.size) });
      data = Buffer.from(inflated.buffer, inflated.byteOffset, inflated.byteLength);
    } else {
      throw new Error(`entry '${entry.name}' uses zip compression method ${entry.method} (only stored and deflated entries are read)`);
    }
    if (crc32(data) !== entry.crc) throw new Error(`entry '${entry.name}' is corrupt (its CRC-32 does not match)`);
    return data;
  }
}

const ALIGNMENT = 64;
const DOS_DATE_1980 = 0x21; // 1980-01-01, the earliest date zip can hold: archives are reproducible

/** Writes stored (uncompressed) entries whose data start at multiples of 64 bytes, as torch.save does. */
class ZipWriter {
  private offset = 0;
  private readonly directory: Buffer[] = [];

  constructor(private readonly fd: number) {}

  private write(bytes: Uint8Array): void {
    for (let written = 0; written < bytes.length; ) written += writeSync(this.fd, bytes, written, bytes.length - written);
    this.offset += bytes.length;
  }

  add(name: string, data: Uint8Array): void {
    const nameBytes = Buffer.from(name, 'utf8');
    // the padding sits in an extra field (id 'FB', as PyTorch's writer names it)
    const padding = (ALIGNMENT - ((this.offset + 30 + nameBytes.length + 4) % ALIGNMENT)) % ALIGNMENT;
    const header = Buffer.alloc(30 + nameBytes.length + 4 + padding);
    if (this.offset + header.length + data.length >= U32_MAX || this.directory.length >= U16_MAX) {
      throw new Error('checkpoints of 4 GiB or more (or 65535 entries) need zip64, which this writer does not produce');
    }
    const crc = crc32(data);
    header.writeUInt32LE(LOCAL_HEADER, 0);
    header.writeUInt16LE(20, 4); // version needed to extract: 2.0
    header.writeUInt16LE(DOS_DATE_1980, 12);
    header.writeUInt32LE(crc, 14);
    header.writeUInt32LE(data.length, 18);
    header.writeUInt32LE(data.length, 22);
    header.writeUInt16LE(nameBytes.length, 26);
    header.writeUInt16LE(4 + padding, 28);
    nameBytes.copy(header, 30);
    header.writeUInt16LE(0x4246, 30 + nameBytes.length);
    header.writeUInt16LE(padding, 32 + nameBytes.length);

    const central = Buffer.alloc(46 + nameBytes.length);
    central.writeUInt32LE(CENTRAL_HEADER, 0);
    central.writeUInt16LE(20, 4); // made by: 2.0
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(DOS_DATE_1980, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE(this.offset, 42);
    nameBytes.copy(central, 46);
    this.directory.push(central);

    this.write(header);
    this.write(data);
  }

  finish(): void {
    const directoryOffset = this.offset;
    for (const central of this.directory) this.write(central);
    const end = Buffer.alloc(22);
    end.writeUInt32LE(END_OF_CENTRAL_DIRECTORY, 0);
    end.writeUInt16LE(this.directory.length, 8);
    end.writeUInt16LE(this.directory.length, 10);
    end.writeUInt32LE(this.offset - directoryOffset, 12);
    end.writeUInt32LE(directoryOffset, 16);
    this.write(end);
  }
}

// ---------------------------------------------------------------------------------------------
// Loading.

class CheckpointLoader {
  /** One-dimensional tensors over each storage's bytes, by key and dtype. */
  private readonly storages = new Map<string, Tensor>();
  private readonly scratch: Buffer;
  private readonly prefix: string;
  private readonly swapBytes: boolean;

  constructor(
    private readonly zip: ZipReader,
    private readonly device: Device | undefined,
  ) {
    const names = [...zip.entries.keys()];
    const pickles = names.filter((name) => /^([^/]+\/)?data\.pkl$/.test(name));
    if (pickles.length === 0) {
      const shown = names.slice(0, 8).join(', ') + (names.length > 8 ? ', …' : '');
      throw new Error(`the archive has no data.pkl, so it is not a torch.save checkpoint (its entries: ${shown || 'none'})`);
    }
    if (pickles.length > 1) throw new Error(`the archive has several data.pkl entries (${pickles.join(', ')})`);
    this.prefix = pickles[0].slice(0, -'data.pkl'.length);
    if (zip.entries.has(`${this.prefix}constants.pkl`)) {
      throw new Error('this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint');
    }
    const byteOrderEntry = zip.entries.get(`${this.prefix}byteorder`);
    const byteOrder = byteOrderEntry ? zip.read(byteOrderEntry).toString('latin1') : 'little';
    if (byteOrder !== 'little' && byteOrder !== 'big') throw new Error(`unknown byte order '${byteOrder}' in ${this.prefix}byteorder`);
    this.swapBytes = (byteOrder === 'little') !== (endianness() === 'LE');
    const storageSizes = names.filter((name) => name.startsWith(`${this.prefix}data/`)).map((name) => zip.entries.get(name)!.size);
    this.scratch = Buffer.allocUnsafeSlow(Math.max(0, ...storageSizes));
  }

  load(): unknown {
    const name = `${this.prefix}data.pkl`;
    return readPickle(this.zip.read(this.zip.entries.get(name)!), {
      globals: this.globals(),
      persistentLoad: (id) => this.persistentLoad(id),
      source: name,
    });
  }

  private persistentLoad(id: unknown): StorageRef {
    if (!Array.isArray(id) || id.length !== 5 || id[0] !== 'storage') {
      throw new Error(`unsupported persistent id ${Array.isArray(id) ? `('${String(id[0])}', …)` : typeof id} (expected ('storage', …))`);
    }
    const [, storageClass, key, , numel] = id;
    if (!(storageClass instanceof StorageClass)) throw new Error(`storage '${String(key)}' has no storage class`);
    if (typeof key !== 'string' || !Number.isSafeInteger(numel) || numel < 0) throw new Error(`storage ${String(key)}: malformed persistent id`);
    return new StorageRef(storageClass, key, numel);
  }

  /** The storage's bytes as a one-dimensional tensor of `dtypeName` (read once per storage and dtype). */
  private storageTensor(ref: StorageRef, dtypeName: string): Tensor {
    const info = TORCH_DTYPES[dtypeName];
    if (!info?.dtype) throw new Error(`storage '${ref.key}' holds torch.${dtypeName}, which is not supported (supported: ${SUPPORTED_DTYPES})`);
    const cacheKey = `${ref.key}/${dtypeName}`;
    const cached = this.storages.get(cacheKey);
    if (cached) return cached;
    const name = `${this.prefix}data/${ref.key}`;
    const entry = this.zip.entries.get(name);
    if (!entry) throw new Error(`storage '${ref.key}' (${name}) is missing from the archive`);
    const storageItemSize = TORCH_DTYPES[ref.storageClass.dtypeName].itemSize;
    const expected = ref.numel * storageItemSize;
    if (entry.size !== expected) {
      throw new Error(
        `storage ${name} ${entry.size < expected ? 'is truncated: it ' : ''}holds ${entry.size} bytes, but ${ref.numel} elements of torch.${ref.storageClass.dtypeName} need ${expected}`,
      );
    }
    if (expected % info.itemSize !== 0) throw new Error(`storage ${name}: ${expected} bytes are not a whole number of torch.${dtypeName} elements`);
    const bytes = this.zip.read(entry, this.scratch);
    if (this.swapBytes && info.itemSize === 2) bytes.swap16();
    if (this.swapBytes && info.itemSize === 4) bytes.swap32();
    if (this.swapBytes && info.itemSize === 8) bytes.swap64();
    if (info.dtype === 'bool' && bytes.some((b) => b > 1)) throw new Error(`storage ${name}: a bool byte is neither 0 nor 1`);
    const tensor = wrap(native.fromBuffer(bytes, [expected / info.itemSize], info.dtype));
    this.storages.set(cacheKey, tensor);
    return tensor;
  }

  /** torch._utils._rebuild_tensor_v2 and its relatives. */
  private tensor(storage: unknown, offset: unknown, size: unknown, stride: unknown, requiresGrad: unknown, dtype?: unknown): Tensor {
    if (!(storage instanceof StorageRef)) throw new Error('a tensor is rebuilt from something that is not a storage');
    if (dtype !== undefined && (typeof dtype !== 'string' || !dtype.startsWith('torch.'))) throw new Error('a tensor is rebuilt with an unknown dtype');
    const dtypeName = dtype === undefined ? storage.storageClass.dtypeName : dtype.slice('torch.'.length);
    const label = `tensor on storage '${storage.key}'`;
    const [start] = counts([offset], `${label}: offset`);
    let tensor = stridedView(this.storageTensor(storage, dtypeName), start, counts(size, `${label}: size`), counts(stride, `${label}: stride`), label);
    if (this.device) tensor = tensor.to(this.device);
    if (requiresGrad === true) tensor.requiresGrad_(true);
    return tensor;
  }

  private globals(): PickleGlobals {
    const parameter = (data: unknown, requiresGrad: unknown) => {
      if (!(data instanceof Tensor)) throw new Error('a parameter is rebuilt from something that is not a tensor');
      if (requiresGrad === true) data.requiresGrad_(true);
      return data;
    };
    const fromType = (rebuild: unknown, _type: unknown, args: unknown) => {
      if (typeof rebuild !== 'function' || !Array.isArray(args)) throw new Error('a tensor subclass is rebuilt without a rebuild function');
      return rebuild(...args);
    };
    const join = (path: typeof posix) => (...parts: unknown[]) => path.join(...parts.map(String));
    const reconstruct = () => new NumpyArray();
    const globals: Record<string, unknown> = {
      ...pythonGlobals,
      'torch._utils._rebuild_tensor': (s: unknown, o: unknown, size: unknown, stride: unknown) => this.tensor(s, o, size, stride, false),
      'torch._utils._rebuild_tensor_v2': (s: unknown, o: unknown, size: unknown, stride: unknown, requiresGrad: unknown) =>
        this.tensor(s, o, size, stride, requiresGrad),
      'torch._utils._rebuild_tensor_v3': (s: unknown, o: unknown, size: unknown, stride: unknown, requiresGrad: unknown, _hooks: unknown, dtype: unknown) =>
        this.tensor(s, o, size, stride, requiresGrad, dtype),
      'torch._utils._rebuild_parameter': parameter,
      'torch._utils._rebuild_parameter_with_state': parameter,
      'torch._tensor._rebuild_from_type': fromType,
      'torch._tensor._rebuild_from_type_v2': fromType,
      'torch.Tensor': 'torch.Tensor',
      'torch.nn.parameter.Parameter': 'torch.nn.parameter.Parameter',
      'torch.Size': (dims: unknown = []) => [...counts(dims, 'torch.Size')],
      'torch.device': (type: unknown, index?: unknown) => (index === undefined || index === null ? String(type) : `${String(type)}:${String(index)}`),
      'torch.storage.UntypedStorage': new StorageClass('UntypedStorage', 'uint8'),
      'argparse.Namespace': () => ({}),
      'pathlib.Path': join(posix),
      'pathlib.PosixPath': join(posix),
      'pathlib.PurePosixPath': join(posix),
      'pathlib.WindowsPath': join(win32),
      'pathlib.PureWindowsPath': join(win32),
    };
    for (const [name, dtypeName] of Object.entries(STORAGE_CLASSES)) globals[`torch.${name}`] = new StorageClass(name, dtypeName);
    for (const name of Object.keys(TORCH_DTYPES)) globals[`torch.${name}`] = `torch.${name}`;
    for (const numpy of ['numpy.core', 'numpy._core']) {
      globals[`${numpy}.multiarray.scalar`] = numpyScalar;
      globals[`${numpy}.multiarray._reconstruct`] = reconstruct;
    }
    globals['numpy.ndarray'] = 'numpy.ndarray';
    globals['numpy.dtype'] = (descr: unknown) => new NumpyDType(String(descr));
    return globals;
  }
}

/**
 * Reads a checkpoint written by torch.save (PyTorch ≥ 1.6, the zip format). Returns plain values:
 * dicts (OrderedDict included) are Maps, tensors are `Tensor`s (on `options.device`, else the CPU),
 * ints are numbers (bigint beyond 2^53), tuples and lists are arrays, `torch.Size` an array, dtypes
 * strings like 'torch.float32', `argparse.Namespace` a plain object of its attributes, numpy scalars
 * numbers or booleans, numpy arrays `NumpyArray`s, paths strings; an OrderedDict's attributes (a state
 * dict's `_metadata`) are properties of its Map. Tensors that shared a storage and cover all of it
 * share memory; dense strides (a transpose, channels-last) are kept. Any other pickled object, a
 * dtype the engine lacks, a missing or truncated storage is an Error naming the file.
 */
export function loadTorchCheckpoint(file: string, options: { device?: Device } = {}): unknown {
  let zip: ZipReader | undefined;
  try {
    zip = ZipReader.open(file);
    const loader = new CheckpointLoader(zip, options.device);
    return tidy(() => loader.load());
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`, { cause: error });
  } finally {
    zip?.close();
  }
}

const STATE_DICT_KEYS = ['model_state_dict', 'state_dict', 'model', 'module', 'net', 'network', 'weights'];

const entriesOf = (value: unknown): [unknown, unknown][] | null =>
  value instanceof Map
    ? [...value]
    : typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Tensor)
      ? Object.entries(value)
      : null;

/** `value` as a name → tensor Map (itself when it is a Map) when every key is a string and every value a tensor. */
function asTensorDict(value: unknown): Map<string, Tensor> | null {
  const entries = entriesOf(value);
  if (!entries || !entries.every(([key, item]) => typeof key === 'string' && item instanceof Tensor)) return null;
  return value instanceof Map ? (value as Map<string, Tensor>) : new Map(entries as [string, Tensor][]);
}

/**
 * The name → tensor dictionary (a state dict) in a loaded checkpoint: `tree` itself, the entry
 * `options.key`, or the first of model_state_dict, state_dict, model, module, net, network and
 * weights that is one, or else the only top-level entry that is one. Errors say what is there.
 */
export function stateDictOf(tree: unknown, options: { key?: string } = {}): Map<string, Tensor> {
  const entries = entriesOf(tree);
  const keys = () => (entries ?? []).map(([key]) => String(key)).join(', ') || 'none';
  if (options.key !== undefined) {
    const found = entries?.find(([key]) => key === options.key);
    if (!found) throw new Error(`stateDictOf: the checkpoint has no entry '${options.key}' (its entries: ${keys()})`);
    const dict = asTensorDict(found[1]);
    if (!dict) {
      const others = (entriesOf(found[1]) ?? []).filter(([key, item]) => typeof key !== 'string' || !(item instanceof Tensor)).map(([key]) => String(key));
      throw new Error(`stateDictOf: '${options.key}' is not a dictionary of tensors${others.length ? ` (not tensors: ${others.slice(0, 8).join(', ')})` : ''}`);
    }
    return dict;
  }
  const top = asTensorDict(tree);
  if (top && top.size > 0) return top;
  if (!entries) throw new Error('stateDictOf: the checkpoint is not a dictionary');
  for (const name of STATE_DICT_KEYS) {
    const dict = asTensorDict(entries.find(([key]) => key === name)?.[1]);
    if (dict && dict.size > 0) return dict;
  }
  const candidates = entries.filter(([, item]) => (asTensorDict(item)?.size ?? 0) > 0);
  if (candidates.length === 1) return asTensorDict(candidates[0][1])!;
  throw new Error(
    candidates.length > 1
      ? `stateDictOf: several entries hold tensors (${candidates.map(([key]) => String(key)).join(', ')}); choose one with options.key`
      : `stateDictOf: no dictionary of tensors at the top level or one level down (top-level entries: ${keys()})`,
  );
}

// ---------------------------------------------------------------------------------------------
// Saving.

const ARCHIVE = 'archive';
const REBUILD_TENSOR = new PickleGlobal('torch._utils', '_rebuild_tensor_v2');
const ORDERED_DICT = new PickleGlobal('collections', 'OrderedDict');
const STORAGE_GLOBALS = new Map(
  Object.entries(STORAGE_CLASSES)
    .filter(([, dtypeName]) => TORCH_DTYPES[dtypeName].dtype)
    .filter(([name]) => name !== 'UntypedStorage')
    .map(([name, dtypeName]) => [TORCH_DTYPES[dtypeName].dtype!, new PickleGlobal('torch', name)]),
);

/**
 * Writes `value` as a torch.save checkpoint that torch.load reads: Maps and plain objects become
 * dicts, arrays lists, numbers ints (safe integers) or floats, bigints ints, strings, booleans, null,
 * Uint8Arrays bytes, and Tensors tensors on the CPU with their dtype, shape and requires_grad (a
 * transposed or channels-last tensor keeps its strides; other views are written compactly; a tensor
 * that appears twice is written once). The file is replaced atomically.
 */
export function saveTorchCheckpoint(file: string, value: unknown): void {
  tidy(() => {
    const storages: Tensor[] = [];
    const pickle = writePickle(value, {
      replace: (item) => {
        if (!(item instanceof Tensor)) return undefined;
        const size = item.shape;
        const order = item.numel > 0 ? denseOrder(size, item.strides) : null;
        const stride = stridesFor(size, order ?? size.map((_, d) => d));
        storages.push(order && !isIdentity(order) ? item.permute(order) : item);
        const id = new PickleTuple(['storage', STORAGE_GLOBALS.get(item.dtype)!, String(storages.length - 1), 'cpu', item.numel]);
        return new PickleCall(REBUILD_TENSOR, [
          new PicklePersistentId(id),
          0,
          new PickleTuple(size),
          new PickleTuple(stride),
          item.requiresGrad,
          new PickleCall(ORDERED_DICT, []),
        ]);
      },
    });
    writeFileAtomically(file, (fd) => {
      const zip = new ZipWriter(fd);
      zip.add(`${ARCHIVE}/data.pkl`, pickle);
      zip.add(`${ARCHIVE}/byteorder`, Buffer.from(endianness() === 'LE' ? 'little' : 'big'));
      storages.forEach((tensor, key) => zip.add(`${ARCHIVE}/data/${key}`, new Uint8Array(native.toBuffer(tensor.handle) as ArrayBuffer)));
      zip.add(`${ARCHIVE}/version`, Buffer.from('3\n'));
      zip.finish();
    });
  });
}

