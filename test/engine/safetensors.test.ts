// safetensors files: round trips of every dtype, the byte layout, hand-assembled files and corrupt ones.
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { torch } from '../../src/engine/index.ts';
import { oneTensorPerDtype } from './helpers.ts';

const { nn } = torch;
const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
after(() => fs.rmSync(directory, { recursive: true, force: true }));
let fileCounter = 0;
const freshPath = (name = 'file') => path.join(directory, `${name}-${fileCounter++}.safetensors`);

/** A file made of an 8-byte little-endian length, the header text as given, and the data bytes. */
function assemble(headerJson: string, ...data: ArrayBufferView[]): Buffer {
  const header = Buffer.from(headerJson, 'utf8');
  const length = Buffer.alloc(8);
  new DataView(length.buffer, length.byteOffset, 8).setBigUint64(0, BigInt(header.length), true);
  return Buffer.concat([length, header, ...data.map((d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength))]);
}

function writeFile(bytes: Uint8Array, name?: string): string {
  const file = freshPath(name);
  fs.writeFileSync(file, bytes);
  return file;
}

describe('safetensors round trip', () => {

  test('every dtype keeps its dtype, shape, values and bits through a file', () => {
    const tensors = oneTensorPerDtype();
    const file = freshPath('dtypes');
    torch.saveSafetensors(file, tensors, { note: 'round trip', 'ünïcode': '✓' });
    const loaded = torch.loadSafetensors(file);
    assert.deepEqual(loaded.metadata, { note: 'round trip', 'ünïcode': '✓' });
    assert.deepEqual([...loaded.tensors.keys()].sort(), Object.keys(tensors).sort());
    for (const [name, original] of Object.entries(tensors)) {
      const back = loaded.tensors.get(name)!;
      assert.equal(back.dtype, original.dtype, name);
      assert.deepEqual(back.shape, original.shape, name);
      assert.deepEqual(back.toTypedArray(), original.toTypedArray(), name);
    }
    // writing what was read gives the same bytes, so half-precision bits and −0 are preserved exactly
    assert.ok(torch.serializeSafetensors(loaded.tensors, loaded.metadata).equals(fs.readFileSync(file)));
  });

  test('Map input, non-contiguous tensors and the in-memory functions', () => {
    const transposed = torch.tensor([1, 2, 3, 4, 5, 6], [2, 3]).transpose(0, 1);
    const bytes = torch.serializeSafetensors(new Map([['t', transposed]]));
    const { tensors, metadata } = torch.parseSafetensors(bytes);
    assert.deepEqual(metadata, {});
    assert.deepEqual(tensors.get('t')!.shape, [3, 2]);
    assert.deepEqual(tensors.get('t')!.toArray(), [1, 4, 2, 5, 3, 6]);
  });

  test('the writer pads the header to 8 bytes and lays tensors out in name order', () => {
    const a = new Float32Array([1, 2, 3]);
    const b = new Float32Array([4.5, -6]);
    const bytes = torch.serializeSafetensors({ b: torch.tensor(b), a: torch.tensor(a) }, { format: 'pt' });
    const headerLength = Number(bytes.readBigUInt64LE(0));
    assert.equal((8 + headerLength) % 8, 0);
    const headerText = bytes.subarray(8, 8 + headerLength).toString('utf8');
    const header = JSON.parse(headerText);
    assert.deepEqual(Object.keys(header), ['__metadata__', 'a', 'b']);
    assert.deepEqual(header.__metadata__, { format: 'pt' });
    assert.deepEqual(header.a, { dtype: 'F32', shape: [3], data_offsets: [0, 12] });
    assert.deepEqual(header.b, { dtype: 'F32', shape: [2], data_offsets: [12, 20] });
    assert.match(headerText, /} *$/);
    const data = bytes.subarray(8 + headerLength);
    assert.ok(data.equals(Buffer.concat([Buffer.from(a.buffer), Buffer.from(b.buffer)])));
  });

  test('bad names and metadata are refused when writing', () => {
    assert.throws(() => torch.serializeSafetensors({ __metadata__: torch.zeros([1]) }), /invalid tensor name '__metadata__'/);
    assert.throws(() => torch.serializeSafetensors({ a: torch.zeros([1]) }, { epoch: 3 as unknown as string }), /metadata 'epoch' must be a string/);
  });
});

describe('hand-built files', () => {
  test('a header and Float32/BF16/I64 bytes assembled by hand load as written', () => {
    // the header lists tensors out of offset order and is not padded: both are allowed
    const header =
      '{"w":{"dtype":"BF16","shape":[2],"data_offsets":[20,24]},' +
      '"__metadata__":{"format":"pt","epoch":"7"},' +
      '"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},' +
      '"one":{"dtype":"F32","shape":[],"data_offsets":[16,20]},' +
      '"n":{"dtype":"I64","shape":[1],"data_offsets":[24,32]}}';
    // bfloat16 bit patterns: 0x3f80 = 1.0, 0xc020 = −2.5
    const file = writeFile(
      assemble(header, new Float32Array([1, -2, 3.5, 1e-3]), new Float32Array([1]), new Uint16Array([0x3f80, 0xc020]), new BigInt64Array([-(2n ** 33n)])),
      'hand',
    );
    const { tensors, metadata } = torch.loadSafetensors(file);
    assert.deepEqual(metadata, { format: 'pt', epoch: '7' });
    assert.deepEqual([...tensors.keys()], ['w', 'x', 'one', 'n']);
    assert.deepEqual(tensors.get('x')!.shape, [2, 2]);
    assert.deepEqual(tensors.get('x')!.toTypedArray(), new Float32Array([1, -2, 3.5, 1e-3]));
    assert.deepEqual(tensors.get('one')!.shape, []);
    assert.equal(tensors.get('one')!.item(), 1);
    assert.equal(tensors.get('w')!.dtype, 'bfloat16');
    assert.deepEqual(tensors.get('w')!.toArray(), [1, -2.5]);
    assert.equal(tensors.get('n')!.dtype, 'int64');
    assert.deepEqual(tensors.get('n')!.toTypedArray(), new BigInt64Array([-(2n ** 33n)]));
  });

  test('a file without metadata and with a zero-size tensor', () => {
    const header = '{"empty":{"dtype":"F16","shape":[0,4],"data_offsets":[0,0]},"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}';
    // float16 bit patterns: 0x3c00 = 1.0, 0xc000 = −2.0
    const { tensors, metadata } = torch.parseSafetensors(assemble(header, new Uint16Array([0x3c00, 0xc000])));
    assert.deepEqual(metadata, {});
    assert.deepEqual(tensors.get('empty')!.shape, [0, 4]);
    assert.deepEqual(tensors.get('h')!.toArray(), [1, -2]);
  });
});

describe('corrupt files', () => {
  const f32 = (n: number) => new Float32Array(n);
  const cases: { name: string; bytes: () => Uint8Array; message: RegExp }[] = [
    { name: 'shorter than the length field', bytes: () => new Uint8Array(5), message: /5 bytes is too short for a safetensors file/ },
    {
      name: 'header length beyond the file',
      bytes: () => {
        const bytes = assemble('{}', f32(3));
        bytes.writeBigUInt64LE(1000n, 0);
        return bytes;
      },
      message: /the header length 1000 runs past the end of the file \(22 bytes\)/,
    },
    { name: 'invalid JSON', bytes: () => assemble('{"a": {"dtype": ', f32(1)), message: /the header is not valid UTF-8 JSON/ },
    { name: 'invalid UTF-8', bytes: () => assemble('{"abc": 1}').fill(0xff, 10, 11), message: /not valid UTF-8 JSON/ },
    { name: 'a header that is not an object', bytes: () => assemble('[1, 2]'), message: /the header is not a JSON object/ },
    {
      name: 'an unknown dtype',
      bytes: () => assemble('{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}', new Uint8Array(1)),
      message: /tensor 'a': unknown or unsupported dtype "F8"/,
    },
    {
      name: 'a bad shape',
      bytes: () => assemble('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', f32(1)),
      message: /tensor 'a': shape \[-1\] is not a list of sizes/,
    },
    {
      name: 'reversed offsets',
      bytes: () => assemble('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', f32(1)),
      message: /tensor 'a': data_offsets \[4,0\] is not a \[begin, end\] pair/,
    },
    {
      name: 'offsets past the data',
      bytes: () => assemble('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', f32(2)),
      message: /tensor 'a': data_offsets \[0, 16\] run past the 8 data bytes/,
    },
    {
      name: 'offsets that do not match shape × item size',
      bytes: () => assemble('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', f32(2)),
      message: /tensor 'a': data_offsets \[0, 8\] hold 8 bytes, but float32 \[3\] needs 12/,
    },
    {
      name: 'overlapping tensors',
      bytes: () =>
        assemble('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', f32(3)),
      message: /tensors 'a' \[0, 8\] and 'b' \[4, 12\] overlap/,
    },
    {
      name: 'a gap between tensors',
      bytes: () =>
        assemble('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', f32(3)),
      message: /data bytes \[4, 8\) belong to no tensor/,
    },
    {
      name: 'trailing garbage',
      bytes: () => Buffer.concat([torch.serializeSafetensors({ a: torch.ones([2]) }), Buffer.from([1, 2, 3])]),
      message: /3 trailing bytes follow the last tensor/,
    },
    {
      name: 'a truncated file',
      bytes: () => torch.serializeSafetensors({ a: torch.ones([2]) }).subarray(0, -2),
      message: /tensor 'a': data_offsets \[0, 8\] run past the 6 data bytes/,
    },
    {
      name: 'non-string metadata',
      bytes: () => assemble('{"__metadata__":{"epoch":3}}'),
      message: /metadata 'epoch' is not a string/,
    },
    {
      name: 'a bool byte that is not 0 or 1',
      bytes: () => assemble('{"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}', new Uint8Array([1, 2])),
      message: /tensor 'm': a bool byte is neither 0 nor 1/,
    },
  ];
  for (const c of cases) {
    test(`${c.name} is an error naming the file`, () => {
      const file = writeFile(c.bytes(), 'corrupt');
      assert.throws(
        () => torch.loadSafetensors(file),
        (error: Error) => error.message.startsWith(`${file}: `) && c.message.test(error.message),
      );
    });
  }

  test('a missing file is an error naming it', () => {
    const file = path.join(directory, 'absent.safetensors');
    assert.throws(() => torch.loadSafetensors(file), (error: Error) => error.message.startsWith(`${file}: cannot read the safetensors file`));
  });
});

describe('atomic saving', () => {
  test('saving replaces an existing file and leaves no temporary files; a refused save keeps the old file', () => {
    const sub = fs.mkdtempSync(path.join(directory, 'atomic-'));
    const file = path.join(sub, 'model.safetensors');
    torch.saveSafetensors(file, { a: torch.ones([2]) });
    torch.saveSafetensors(file, { b: torch.zeros([3]) });
    assert.deepEqual(fs.readdirSync(sub), ['model.safetensors']);
    assert.deepEqual([...torch.loadSafetensors(file).tensors.keys()], ['b']);
    assert.throws(() => torch.saveSafetensors(file, { c: torch.ones([1]) }, { bad: 1 as unknown as string }));
    assert.throws(() => torch.saveSafetensors(path.join(sub, 'missing-dir', 'x.safetensors'), { c: torch.ones([1]) }), /ENOENT/);
    assert.deepEqual(fs.readdirSync(sub), ['model.safetensors']);
    assert.deepEqual([...torch.loadSafetensors(file).tensors.keys()], ['b']);
  });
});

describe('module checkpoints', () => {
  const network = () => new nn.Sequential(new nn.Conv3d(1, 2, 3, { padding: 1 }), new nn.BatchNorm3d(2));

  test('saveModule and loadModule restore parameters and buffers', () => {
    torch.manualSeed(4);
    const source = network();
    source.forward(torch.randn([2, 1, 3, 3, 3])); // moves the running statistics away from their start
    const file = freshPath('module');
    torch.saveModule(file, source, { epoch: '3' });
    const target = network();
    const result = torch.loadModule(file, target);
    assert.deepEqual(result, { missing: [], unexpected: [], metadata: { epoch: '3' } });
    for (const [name, value] of source.stateDict()) assert.ok(value.equal(target.stateDict().get(name)!), name);
    assert.equal(target.stateDict().get('1.num_batches_tracked')!.item(), 1);
  });

  test('a checkpoint that does not fit names the file and the entries', () => {
    const file = freshPath('module');
    torch.saveModule(file, network());
    const smaller = new nn.Sequential(new nn.Conv3d(1, 2, 3));
    assert.throws(
      () => torch.loadModule(file, smaller),
      (error: Error) => error.message.startsWith(`${file}: loadStateDict`) && /unexpected: 1\.bias, 1\.num_batches_tracked, 1\.running_mean, 1\.running_var, 1\.weight\)/.test(error.message),
    );
    const lenient = torch.loadModule(file, smaller, { strict: false });
    assert.deepEqual(lenient.unexpected, ['1.bias', '1.num_batches_tracked', '1.running_mean', '1.running_var', '1.weight']);
    assert.deepEqual(lenient.missing, []);
  });
});
