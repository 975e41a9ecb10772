// PyTorch checkpoints: round trips through saveTorchCheckpoint, archives assembled by hand (shared
// storages, strides, byte orders, deflate, zip64), a file written by PyTorch itself, and broken files.
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { zipSync } from 'fflate';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { PickleCall, PickleGlobal, PicklePersistentId, PickleTuple, writePickle } from '../../src/engine/pickle.ts';
import { loadTorchCheckpoint, NumpyArray, saveTorchCheckpoint, stateDictOf } from '../../src/engine/torch-checkpoint.ts';
import { assertClose, oneTensorPerDtype } from './helpers.ts';

const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
after(() => fs.rmSync(directory, { recursive: true, force: true }));
let fileCounter = 0;
const freshPath = (name = 'checkpoint') => path.join(directory, `${name}-${fileCounter++}.pt`);

function writeFile(bytes: Uint8Array, name?: string): string {
  const file = freshPath(name);
  fs.writeFileSync(file, bytes);
  return file;
}

const asMap = (value: unknown) => value as Map<unknown, unknown>;
const bytesOf = (array: ArrayBufferView) => new Uint8Array(array.buffer, array.byteOffset, array.byteLength);

// -- pickled tensors, as torch.save writes them ------------------------------------------------------
const ORDERED_DICT = new PickleGlobal('collections', 'OrderedDict');
const storageId = (storageClass: string, key: string, numel: number) =>
  new PicklePersistentId(new PickleTuple(['storage', new PickleGlobal('torch', storageClass), key, 'cpu', numel]));
/** torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=OrderedDict()). */
const pickledTensor = (storageClass: string, key: string, numel: number, offset: number, size: number[], stride: number[]) =>
  new PickleCall(new PickleGlobal('torch._utils', '_rebuild_tensor_v2'), [
    storageId(storageClass, key, numel),
    offset,
    new PickleTuple(size),
    new PickleTuple(stride),
    false,
    new PickleCall(ORDERED_DICT, []),
  ]);

/** A zip of `archive/<name>` entries: data.pkl from `value`, the rest as given. Level 0 stores, as torch.save does. */
function archive(value: unknown, entries: Record<string, Uint8Array> = {}, level: 0 | 6 = 0): Uint8Array {
  const files: Record<string, Uint8Array> = { 'archive/data.pkl': writePickle(value) };
  for (const [name, data] of Object.entries(entries)) files[`archive/${name}`] = data;
  return zipSync(files, { level });
}

/**
 * The same entries as a zip64 archive: every central-directory size and offset is 0xFFFFFFFF with the
 * real values in the zip64 extra field, and the end record points to a zip64 end record.
 */
function zip64Archive(entries: Record<string, Uint8Array>): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of Object.entries(entries)) {
    const nameBytes = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(45, 4);
    local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const extra = Buffer.alloc(28);
    extra.writeUInt16LE(0x0001, 0);
    extra.writeUInt16LE(24, 2);
    extra.writeBigUInt64LE(BigInt(data.length), 4); // size
    extra.writeBigUInt64LE(BigInt(data.length), 12); // compressed size
    extra.writeBigUInt64LE(BigInt(offset), 20); // local header offset
    const header = Buffer.alloc(46);
    header.writeUInt32LE(0x02014b50, 0);
    header.writeUInt16LE(45, 4);
    header.writeUInt16LE(45, 6);
    header.writeUInt32LE(crc32(data), 16);
    header.writeUInt32LE(0xffffffff, 20);
    header.writeUInt32LE(0xffffffff, 24);
    header.writeUInt16LE(nameBytes.length, 28);
    header.writeUInt16LE(extra.length, 30);
    header.writeUInt32LE(0xffffffff, 42);
    central.push(header, nameBytes, extra);
    parts.push(local, nameBytes, Buffer.from(data));
    offset += 30 + nameBytes.length + data.length;
  }
  const directoryBytes = Buffer.concat(central);
  const count = Object.keys(entries).length;
  const end64 = Buffer.alloc(56);
  end64.writeUInt32LE(0x06064b50, 0);
  end64.writeBigUInt64LE(44n, 4);
  end64.writeUInt16LE(45, 12);
  end64.writeUInt16LE(45, 14);
  end64.writeBigUInt64LE(BigInt(count), 24);
  end64.writeBigUInt64LE(BigInt(count), 32);
  end64.writeBigUInt64LE(BigInt(directoryBytes.length), 40);
  end64.writeBigUInt64LE(BigInt(offset), 48);
  const locator = Buffer.alloc(20);
  locator.writeUInt32LE(0x07064b50, 0);
  locator.writeBigUInt64LE(BigInt(offset + directoryBytes.length), 8);
  locator.writeUInt32LE(1, 16);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(0xffff, 8);
  end.writeUInt16LE(0xffff, 10);
  end.writeUInt32LE(0xffffffff, 12);
  end.writeUInt32LE(0xffffffff, 16);
  return Buffer.concat([...parts, directoryBytes, end64, locator, end]);
}

const twelve = () => bytesOf(Float32Array.from({ length: 12 }, (_, i) => i));

describe('saveTorchCheckpoint → loadTorchCheckpoint', () => {

  test('every dtype, nested under model_state_dict beside plain values', () => {
    const tensors = oneTensorPerDtype();
    const file = freshPath();
    saveTorchCheckpoint(file, {
      model_state_dict: new Map(Object.entries(tensors)),
      epoch: 3,
      lr: 0.001,
      name: 'ünïcode ✓',
      history: [0.5, [1, 2], null, true],
      huge: 2n ** 70n,
      blob: Uint8Array.from([0, 0x80, 0x9f, 0xff]),
      nested: { a: new Map([[7, 'seven']]) },
    });
    const tree = asMap(loadTorchCheckpoint(file));
    assert.deepEqual([...tree.keys()], ['model_state_dict', 'epoch', 'lr', 'name', 'history', 'huge', 'blob', 'nested']);
    assert.equal(tree.get('epoch'), 3);
    assert.equal(tree.get('lr'), 0.001);
    assert.equal(tree.get('name'), 'ünïcode ✓');
    assert.deepEqual(tree.get('history'), [0.5, [1, 2], null, true]);
    assert.equal(tree.get('huge'), 2n ** 70n);
    assert.deepEqual(tree.get('blob'), Uint8Array.from([0, 0x80, 0x9f, 0xff]));
    assert.deepEqual(tree.get('nested'), new Map([['a', new Map([[7, 'seven']])]]));
    const loaded = stateDictOf(tree);
    assert.equal(loaded, tree.get('model_state_dict'));
    assert.deepEqual([...loaded.keys()], Object.keys(tensors));
    for (const [name, original] of Object.entries(tensors)) {
      const back = loaded.get(name)!;
      assert.equal(back.dtype, original.dtype, name);
      assert.deepEqual(back.shape, original.shape, name);
      assert.equal(back.device, 'cpu');
      // compared bit for bit through the bytes (so −0, 5e-324 and the half-precision patterns count)
      assert.deepEqual(Buffer.from(torch.serializeSafetensors({ t: back })), Buffer.from(torch.serializeSafetensors({ t: original })), name);
    }
  });

  test('dense strides are kept, other views are written compactly, a repeated tensor stays one object', () => {
    const grid = torch.arange(0, 12, 1, { dtype: 'float32' }).view(3, 4);
    const channelsLast = torch.arange(0, 24, 1, { dtype: 'float32' }).view(1, 2, 3, 4).contiguous('channelsLast');
    const weight = torch.tensor([1, 2], [2], { requiresGrad: true });
    const file = freshPath();
    saveTorchCheckpoint(file, [grid.transpose(0, 1), channelsLast, grid.slice(1, 0, 4, 2), weight, weight]);
    const [transposed, cl, sliced, w1, w2] = loadTorchCheckpoint(file) as Tensor[];
    assert.deepEqual(transposed.shape, [4, 3]);
    assert.deepEqual(transposed.strides, [1, 4]);
    assert.deepEqual(transposed.toArray(), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    assert.deepEqual(cl.strides, [24, 1, 8, 2]);
    assert.deepEqual(cl.toArray(), Array.from({ length: 24 }, (_, i) => i));
    assert.deepEqual(sliced.shape, [3, 2]);
    assert.deepEqual(sliced.strides, [2, 1]);
    assert.deepEqual(sliced.toArray(), [0, 2, 4, 6, 8, 10]);
    assert.equal(w1, w2);
    assert.equal(w1.requiresGrad, true);
    assert.equal(transposed.requiresGrad, false);
  });

  test('loading and saving leave no tensor handles behind, also when loading fails', () => {
    const file = freshPath();
    const grid = torch.arange(0, 12, 1, { dtype: 'float32' }).view(3, 4);
    saveTorchCheckpoint(file, { a: grid, t: grid.transpose(0, 1), s: grid.slice(1, 0, 4, 2) });
    const before = torch.memoryStats().handles;
    saveTorchCheckpoint(file, { a: grid, t: grid.transpose(0, 1), s: grid.slice(1, 0, 4, 2) });
    const tree = loadTorchCheckpoint(file);
    assert.equal(torch.memoryStats().handles, before + 2 + 3, 'the transpose and slice passed to the second save, and the three loaded tensors');
    torch.dispose(tree);
    const truncated = writeFile(
      archive(new Map([['ok', pickledTensor('FloatStorage', '0', 12, 0, [12], [1])], ['bad', pickledTensor('FloatStorage', '1', 12, 0, [12], [1])]]), {
        'data/0': twelve(),
        'data/1': twelve().subarray(0, 8),
      }),
    );
    assert.throws(() => loadTorchCheckpoint(truncated), /is truncated/);
    assert.equal(torch.memoryStats().handles, before + 2);
  });

  test('the device option', () => {
    const file = freshPath();
    saveTorchCheckpoint(file, { w: torch.ones([2]) });
    assert.equal((asMap(loadTorchCheckpoint(file, { device: 'cpu' })).get('w') as Tensor).device, 'cpu');
  });

  test('saving is atomic: an existing file is replaced, no temporary file stays, a refused value keeps the old file', () => {
    const sub = fs.mkdtempSync(path.join(directory, 'atomic-'));
    const file = path.join(sub, 'model.pt');
    saveTorchCheckpoint(file, { a: torch.ones([2]) });
    saveTorchCheckpoint(file, { b: torch.zeros([3]) });
    assert.deepEqual(fs.readdirSync(sub), ['model.pt']);
    assert.deepEqual([...asMap(loadTorchCheckpoint(file)).keys()], ['b']);
    assert.throws(() => saveTorchCheckpoint(file, { c: () => 1 }), /cannot write function values/);
    assert.throws(() => saveTorchCheckpoint(path.join(sub, 'missing-dir', 'x.pt'), { c: 1 }), /ENOENT/);
    assert.deepEqual(fs.readdirSync(sub), ['model.pt']);
    assert.deepEqual([...asMap(loadTorchCheckpoint(file)).keys()], ['b']);
  });

  test('the archive layout: stored entries whose data start at multiples of 64 bytes, with valid CRCs', () => {
    const file = freshPath();
    saveTorchCheckpoint(file, { w: torch.ones([5]), h: torch.zeros([3], { dtype: 'float16' }) });
    const bytes = fs.readFileSync(file);
    const names: string[] = [];
    for (let at = 0; bytes.readUInt32LE(at) === 0x04034b50; ) {
      const nameLength = bytes.readUInt16LE(at + 26);
      const dataStart = at + 30 + nameLength + bytes.readUInt16LE(at + 28);
      const size = bytes.readUInt32LE(at + 22);
      names.push(bytes.toString('utf8', at + 30, at + 30 + nameLength));
      assert.equal(bytes.readUInt16LE(at + 8), 0, 'stored, not compressed');
      assert.equal(dataStart % 64, 0);
      assert.equal(crc32(bytes.subarray(dataStart, dataStart + size)), bytes.readUInt32LE(at + 14));
      at = dataStart + size;
    }
    assert.deepEqual(names, ['archive/data.pkl', 'archive/byteorder', 'archive/data/0', 'archive/data/1', 'archive/version']);
  });
});

describe('hand-assembled archives', () => {
  test('views of one storage: full, transposed, offset, strided, broadcast and scalar', () => {
    const view = (offset: number, size: number[], stride: number[]) => pickledTensor('FloatStorage', '0', 12, offset, size, stride);
    const file = writeFile(
      archive(
        new Map([
          ['full', view(0, [3, 4], [4, 1])],
          ['transposed', view(0, [4, 3], [1, 4])],
          ['offset', view(2, [2, 3], [3, 1])],
          ['strided', view(1, [2, 2], [6, 2])],
          ['broadcast', view(5, [3, 2], [0, 1])],
          ['scalar', view(11, [], [])],
          ['empty', pickledTensor('FloatStorage', '1', 0, 0, [0, 2], [2, 1])],
        ]),
        { 'data/0': twelve(), 'data/1': new Uint8Array() },
      ),
    );
    const dict = stateDictOf(loadTorchCheckpoint(file));
    const values = (name: string) => dict.get(name)!.toArray();
    // element [i, j] of a view is storage[offset + i·stride0 + j·stride1], and storage[k] = k
    assert.deepEqual(values('full'), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert.deepEqual(values('transposed'), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    assert.deepEqual(dict.get('transposed')!.strides, [1, 4]);
    assert.deepEqual(values('offset'), [2, 3, 4, 5, 6, 7]);
    assert.deepEqual(values('strided'), [1, 3, 7, 9]);
    assert.deepEqual(values('broadcast'), [5, 6, 5, 6, 5, 6]);
    assert.deepEqual(dict.get('scalar')!.shape, []);
    assert.equal(dict.get('scalar')!.item(), 11);
    assert.deepEqual(dict.get('empty')!.shape, [0, 2]);
    // views that cover the whole storage share its memory, as in PyTorch; partial ones are copies
    dict.get('full')!.add_(100);
    assert.deepEqual(values('transposed'), [100, 104, 108, 101, 105, 109, 102, 106, 110, 103, 107, 111]);
    assert.deepEqual(values('offset'), [2, 3, 4, 5, 6, 7]);
  });

  test('parameters, _rebuild_tensor_v3 on an untyped storage, torch.Size and dtypes', () => {
    const untyped = new PicklePersistentId(new PickleTuple(['storage', new PickleGlobal('torch.storage', 'UntypedStorage'), '1', 'cpu', 16]));
    const value = new Map<string, unknown>([
      ['param', new PickleCall(new PickleGlobal('torch._utils', '_rebuild_parameter'), [pickledTensor('FloatStorage', '0', 12, 0, [12], [1]), true, new PickleCall(ORDERED_DICT, [])])],
      [
        'v3',
        new PickleCall(new PickleGlobal('torch._utils', '_rebuild_tensor_v3'), [
          untyped, 0, new PickleTuple([2]), new PickleTuple([1]), false, new PickleCall(ORDERED_DICT, []), new PickleGlobal('torch', 'float64'),
        ]),
      ],
      ['size', new PickleCall(new PickleGlobal('torch', 'Size'), [new PickleTuple([2, 3])])],
      ['dtype', new PickleGlobal('torch', 'bfloat16')],
    ]);
    const file = writeFile(archive(value, { 'data/0': twelve(), 'data/1': bytesOf(new Float64Array([2.5, -1e-300])) }));
    const tree = asMap(loadTorchCheckpoint(file));
    const param = tree.get('param') as Tensor;
    assert.equal(param.requiresGrad, true);
    assert.deepEqual(param.toArray(), Array.from({ length: 12 }, (_, i) => i));
    const v3 = tree.get('v3') as Tensor;
    assert.equal(v3.dtype, 'float64');
    assert.deepEqual(v3.toArray(), [2.5, -1e-300]);
    assert.deepEqual(tree.get('size'), [2, 3]);
    assert.equal(tree.get('dtype'), 'torch.bfloat16');
  });

  test('a big-endian archive is byte-swapped', () => {
    const big = (values: number[], bytes: number, write: (b: Buffer, v: number, at: number) => void) => {
      const out = Buffer.alloc(values.length * bytes);
      values.forEach((v, i) => write(out, v, i * bytes));
      return out;
    };
    const file = writeFile(
      archive(
        new Map([
          ['f', pickledTensor('FloatStorage', '0', 2, 0, [2], [1])],
          ['s', pickledTensor('ShortStorage', '1', 2, 0, [2], [1])],
          ['d', pickledTensor('DoubleStorage', '2', 1, 0, [1], [1])],
        ]),
        {
          byteorder: Buffer.from('big'),
          'data/0': big([1.5, -2], 4, (b, v, at) => b.writeFloatBE(v, at)),
          'data/1': big([-300, 7], 2, (b, v, at) => b.writeInt16BE(v, at)),
          'data/2': big([1 / 3], 8, (b, v, at) => b.writeDoubleBE(v, at)),
        },
      ),
    );
    const dict = stateDictOf(loadTorchCheckpoint(file));
    assert.deepEqual(dict.get('f')!.toArray(), [1.5, -2]);
    assert.deepEqual(dict.get('s')!.toArray(), [-300, 7]);
    assert.deepEqual(dict.get('d')!.toArray(), [1 / 3]);
  });

  test('deflated entries and zip64 archives load the same', () => {
    const value = new Map([['w', pickledTensor('FloatStorage', '0', 12, 0, [3, 4], [4, 1])]]);
    const deflated = writeFile(archive(value, { 'data/0': twelve() }, 6));
    const zip64 = writeFile(zip64Archive({ 'archive/data.pkl': writePickle(value), 'archive/data/0': twelve(), 'archive/version': Buffer.from('3\n') }));
    for (const file of [deflated, zip64]) {
      assert.deepEqual(stateDictOf(loadTorchCheckpoint(file)).get('w')!.toArray(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], file);
    }
  });
});

describe('a checkpoint written by PyTorch', () => {
  // test/engine/fixtures/torch-save-checkpoint.pt was written by torch.save (PyTorch 1.13, default
  // zip format, pickle protocol 2). The Python snippet built a float32 tensor of 0…11 and put into an
  // OrderedDict several views of it (the 3×4 grid, its transpose, the slice 2:8 and every third element),
  // float16 [0.5, −2, 65504], bfloat16 [1.5, −3.140625], the int64 scalar 7, the bools [T, F, T] and the
  // uint8 [0, 255, 17], and set its _metadata to {'': {'version': 1}, 'norm': {'version': 2}}. It then took
  // one Adam step (lr 1e-3) on a parameter [1, 2] with the loss sum([0.5, −2] · p), made a MultiStepLR
  // schedule with milestones [120, 180] (its state holds a collections.Counter), and saved
  // {'model_state_dict': that dict, 'optimizer_state_dict': the optimiser's state dict,
  //  'lr_scheduler_state_dict': the schedule's state dict, 'epoch': 3,
  //  'args': argparse.Namespace(lr=1e-3, name='sam', data=Path('/data/brats'), crop=(128, 128, 128),
  //  best=np.float64(0.875), seed=np.int64(2023)), 'huge': 2**70}.
  const fixture = fileURLToPath(new URL('./fixtures/torch-save-checkpoint.pt', import.meta.url));

  test('the state dict: views of one storage, every dtype, the _metadata attribute', () => {
    const tree = asMap(loadTorchCheckpoint(fixture));
    const dict = stateDictOf(tree);
    assert.equal(dict, tree.get('model_state_dict'));
    assert.deepEqual([...dict.keys()], ['grid', 'grid_t', 'middle', 'every_third', 'half', 'brain', 'count', 'mask', 'pixels']);
    const range = Array.from({ length: 12 }, (_, i) => i);
    assert.deepEqual(dict.get('grid')!.shape, [3, 4]);
    assert.deepEqual(dict.get('grid')!.toArray(), range);
    assert.deepEqual(dict.get('grid_t')!.strides, [1, 4]);
    assert.deepEqual(dict.get('grid_t')!.toArray(), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    assert.deepEqual(dict.get('middle')!.toArray(), range.slice(2, 8));
    assert.deepEqual(dict.get('every_third')!.toArray(), [0, 3, 6, 9]);
    assert.equal(dict.get('half')!.dtype, 'float16');
    assert.deepEqual(dict.get('half')!.toArray(), [0.5, -2, 65504]);
    assert.equal(dict.get('brain')!.dtype, 'bfloat16');
    assert.deepEqual(dict.get('brain')!.toArray(), [1.5, -3.140625]);
    assert.equal(dict.get('count')!.dtype, 'int64');
    assert.deepEqual(dict.get('count')!.shape, []);
    assert.equal(dict.get('count')!.item(), 7);
    assert.equal(dict.get('mask')!.dtype, 'bool');
    assert.deepEqual(dict.get('mask')!.toArray(), [1, 0, 1]);
    assert.equal(dict.get('pixels')!.dtype, 'uint8');
    assert.deepEqual(dict.get('pixels')!.toArray(), [0, 255, 17]);
    const metadata = (dict as unknown as { _metadata: unknown })._metadata;
    assert.deepEqual(metadata, new Map([['', new Map([['version', 1]])], ['norm', new Map([['version', 2]])]]));
  });

  test('the optimiser and schedule states, the epoch, the argparse namespace with numpy scalars and a path', () => {
    const tree = asMap(loadTorchCheckpoint(fixture));
    const optimizer = asMap(tree.get('optimizer_state_dict'));
    const state = asMap(asMap(optimizer.get('state')).get(0));
    // one Adam step from zero moments: m = (1 − 0.9)·g, v = (1 − 0.999)·g², with g = [0.5, −2]
    assert.equal((state.get('step') as Tensor).item(), 1);
    assertClose(state.get('exp_avg') as Tensor, [0.05, -0.2]);
    assertClose(state.get('exp_avg_sq') as Tensor, [0.00025, 0.004]);
    const [group] = optimizer.get('param_groups') as Map<string, unknown>[];
    assert.equal(group.get('lr'), 0.001);
    assert.deepEqual(group.get('betas'), [0.9, 0.999]);
    assert.deepEqual(group.get('params'), [0]);
    const schedule = asMap(tree.get('lr_scheduler_state_dict'));
    assert.deepEqual(schedule.get('milestones'), new Map([[120, 1], [180, 1]]));
    assert.equal(schedule.get('gamma'), 0.1);
    assert.deepEqual(schedule.get('base_lrs'), [0.001]);
    assert.equal(tree.get('epoch'), 3);
    assert.deepEqual(tree.get('args'), { lr: 0.001, name: 'sam', data: '/data/brats', crop: [128, 128, 128], best: 0.875, seed: 2023 });
    assert.equal(tree.get('huge'), 2n ** 70n);
  });
});

describe('numpy values', () => {
  const numpy = (name: string) => new PickleGlobal('numpy.core.multiarray', name);
  test('scalars and arrays', () => {
    // Assembled from writer fragments (without their PROTO and STOP) and BUILD opcodes, which the writer
    // has no node for. Each fragment restarts the memo numbering, harmless as no fragment reads the memo.
    const parts: number[] = [0x80, 2, 0x28];
    const push = (bytes: Uint8Array) => parts.push(...bytes.subarray(2, -1));
    // numpy.dtype(descr, False, True), then BUILD with the state (3, byte order, None, None, None, -1, -1, 0)
    const dtypeBytes = (descr: string, order: string) => {
      push(writePickle(new PickleCall(new PickleGlobal('numpy', 'dtype'), [descr, false, true])));
      push(writePickle(new PickleTuple([3, order, null, null, null, -1, -1, 0])));
      parts.push(0x62); // BUILD
    };
    const scalar = (descr: string, order: string, data: Uint8Array) => {
      push(writePickle(numpy('scalar')));
      dtypeBytes(descr, order);
      push(writePickle(data));
      parts.push(0x86, 0x52); // TUPLE2, REDUCE
    };
    scalar('f8', '<', bytesOf(new Float64Array([0.875])));
    scalar('i8', '<', bytesOf(new BigInt64Array([-(2n ** 60n)])));
    scalar('b1', '|', Uint8Array.from([1]));
    scalar('i2', '>', Uint8Array.from([0xff, 0xfe])); // big-endian −2
    scalar('c8', '<', new Uint8Array(8)); // complex: kept as numpy wrote it
    // numpy.core.multiarray._reconstruct(ndarray, (0,), b'b') and BUILD (1, (2,), dtype, False, data)
    push(writePickle(new PickleCall(numpy('_reconstruct'), [new PickleGlobal('numpy', 'ndarray'), new PickleTuple([0]), Uint8Array.from([0x62])])));
    parts.push(0x28); // MARK for the state tuple
    push(writePickle(1));
    push(writePickle(new PickleTuple([2])));
    dtypeBytes('f4', '<');
    push(writePickle(false));
    push(writePickle(bytesOf(new Float32Array([1.5, -2]))));
    parts.push(0x74, 0x62); // TUPLE, BUILD
    parts.push(0x74, 0x2e); // TUPLE, STOP
    const file = writeFile(zipSync({ 'archive/data.pkl': Uint8Array.from(parts) }, { level: 0 }));
    const [f8, i8, b1, i2, c8, array] = loadTorchCheckpoint(file) as unknown[];
    assert.equal(f8, 0.875);
    assert.equal(i8, -(2n ** 60n));
    assert.equal(b1, true);
    assert.equal(i2, -2);
    assert.ok(c8 instanceof NumpyArray);
    assert.equal(c8.dtype, '<c8');
    assert.deepEqual(c8.shape, []);
    assert.ok(array instanceof NumpyArray);
    assert.equal(array.dtype, '<f4');
    assert.deepEqual(array.shape, [2]);
    assert.equal(array.fortranOrder, false);
    assert.deepEqual(array.data, bytesOf(new Float32Array([1.5, -2])));
  });
});

describe('stateDictOf', () => {
  const dict = () => new Map([['w', torch.ones([1])]]);

  test('finds the dictionary at the top, under a known key, under the only candidate or the given key', () => {
    const top = dict();
    assert.equal(stateDictOf(top), top);
    const record = stateDictOf({ a: torch.ones([1]) });
    assert.deepEqual([...record.keys()], ['a']);
    const known = dict();
    assert.equal(stateDictOf(new Map<string, unknown>([['epoch', 3], ['ema', dict()], ['state_dict', known]])), known);
    const only = dict();
    assert.equal(stateDictOf({ epoch: 3, weights_of_the_net: only }), only);
    const chosen = dict();
    assert.equal(stateDictOf({ a: dict(), b: chosen }, { key: 'b' }), chosen);
  });

  test('errors say what the checkpoint holds', () => {
    assert.throws(() => stateDictOf({ a: dict(), b: dict() }), /several entries hold tensors \(a, b\); choose one with options\.key/);
    assert.throws(() => stateDictOf({ epoch: 3, args: {} }), /no dictionary of tensors at the top level or one level down \(top-level entries: epoch, args\)/);
    assert.throws(() => stateDictOf({ epoch: 3 }, { key: 'model' }), /no entry 'model' \(its entries: epoch\)/);
    assert.throws(
      () => stateDictOf({ model: new Map<string, unknown>([['w', torch.ones([1])], ['step', 3]]) }, { key: 'model' }),
      /'model' is not a dictionary of tensors \(not tensors: step\)/,
    );
    assert.throws(() => stateDictOf([1, 2]), /the checkpoint is not a dictionary/);
  });
});

describe('broken checkpoints are errors naming the file', () => {
  const savedBytes = (value: unknown) => {
    const file = freshPath();
    saveTorchCheckpoint(file, value);
    return fs.readFileSync(file);
  };
  const cases: { name: string; bytes: () => Uint8Array; message: RegExp }[] = [
    { name: 'a text file', bytes: () => Buffer.from('hello, world\n'), message: /is not a PyTorch zip checkpoint: it is not a zip archive \(or it is truncated\)/ },
    { name: 'an empty file', bytes: () => new Uint8Array(), message: /not a zip archive/ },
    {
      name: 'the legacy format',
      bytes: () => Buffer.from('80028a0a6cfc9c46f9206aa850192e', 'hex'),
      message: /is not a PyTorch zip checkpoint: it is in the legacy format of torch\.save before PyTorch 1\.6/,
    },
    { name: 'a truncated file', bytes: () => savedBytes({ w: torch.ones([4]) }).subarray(0, -10), message: /not a zip archive \(or it is truncated\)/ },
    {
      name: 'a zip without data.pkl',
      bytes: () => zipSync({ 'archive/version': Buffer.from('3\n'), 'archive/data/0': new Uint8Array(4) }),
      message: /the archive has no data\.pkl, so it is not a torch\.save checkpoint \(its entries: archive\/version, archive\/data\/0\)/,
    },
    {
      name: 'a TorchScript archive',
      bytes: () => archive(null, { 'constants.pkl': writePickle(null) }),
      message: /a TorchScript archive \(torch\.jit\.save\)/,
    },
    {
      name: 'an unsupported global',
      bytes: () => archive(new PickleCall(new PickleGlobal('os', 'system'), ['echo hi'])),
      message: /archive\/data\.pkl, byte 2: unsupported object 'os\.system'/,
    },
    {
      name: 'a truncated storage',
      bytes: () => archive(pickledTensor('FloatStorage', '0', 12, 0, [12], [1]), { 'data/0': twelve().subarray(0, 40) }),
      message: /storage archive\/data\/0 is truncated: it holds 40 bytes, but 12 elements of torch\.float32 need 48/,
    },
    {
      name: 'a storage longer than its element count',
      bytes: () => archive(pickledTensor('FloatStorage', '0', 2, 0, [2], [1]), { 'data/0': twelve() }),
      message: /storage archive\/data\/0 holds 48 bytes, but 2 elements of torch\.float32 need 8/,
    },
    {
      name: 'a missing storage',
      bytes: () => archive(pickledTensor('FloatStorage', '3', 12, 0, [12], [1]), { 'data/0': twelve() }),
      message: /storage '3' \(archive\/data\/3\) is missing from the archive/,
    },
    {
      name: 'a view beyond its storage',
      bytes: () => archive(pickledTensor('FloatStorage', '0', 12, 10, [2, 2], [2, 1]), { 'data/0': twelve() }),
      message: /tensor on storage '0': size \[2,2\], stride \[2,1\] and offset 10 reach element 13, but the storage holds 12/,
    },
    {
      name: 'an unsupported storage dtype',
      bytes: () => archive(pickledTensor('ComplexFloatStorage', '0', 6, 0, [6], [1]), { 'data/0': twelve() }),
      message: /storage '0' holds torch\.complex64, which is not supported \(supported: float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool\)/,
    },
    {
      name: 'a bool byte that is not 0 or 1',
      bytes: () => archive(pickledTensor('BoolStorage', '0', 2, 0, [2], [1]), { 'data/0': Uint8Array.from([1, 2]) }),
      message: /storage archive\/data\/0: a bool byte is neither 0 nor 1/,
    },
    {
      name: 'a corrupted storage',
      bytes: () => {
        const bytes = savedBytes({ w: torch.tensor(new Float32Array([1.25, 2.5, 3.75])) });
        bytes[bytes.indexOf(Buffer.from(new Float32Array([2.5]).buffer))] ^= 1;
        return bytes;
      },
      message: /entry 'archive\/data\/0' is corrupt \(its CRC-32 does not match\)/,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const file = writeFile(c.bytes(), 'broken');
      assert.throws(
        () => loadTorchCheckpoint(file),
        (error: Error) => {
          assert.ok(error.message.startsWith(`${file}: `), error.message);
          assert.match(error.message, c.message);
          return true;
        },
      );
    });
  }

  test('a missing file', () => {
    const file = path.join(directory, 'absent.pt');
    assert.throws(() => loadTorchCheckpoint(file), (error: Error) => error.message.startsWith(`${file}: cannot read the checkpoint (ENOENT`));
  });
});
