// The pickle reader against byte strings assembled by hand from the opcode table of Python's pickle
// protocol, and the protocol-2 writer against exact bytes and through the reader.
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import {
  PickleCall,
  PickleGlobal,
  PicklePersistentId,
  PickleTuple,
  pythonGlobals,
  readPickle,
  SET_STATE,
  writePickle,
} from '../../src/engine/pickle.ts';

/** Concatenates opcode bytes (numbers) and text (strings, one byte per character). */
function bytes(...parts: (number | string)[]): Uint8Array {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === 'number') out.push(part);
    else for (const char of part) out.push(char.charCodeAt(0));
  }
  return Uint8Array.from(out);
}
const u32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const u64 = (n: number) => [...u32(n), 0, 0, 0, 0];
/** BINUNICODE with a length prefix. */
const binunicode = (text: string) => [0x58, ...u32(Buffer.byteLength(text)), ...Buffer.from(text, 'utf8')];

describe('reading hand-assembled pickles', () => {
  test('protocol 2: a dict of a list of every small constant, a tuple and a memo reference', () => {
    const pickle = bytes(
      0x80, 2, // PROTO 2
      0x7d, 0x71, 0, // EMPTY_DICT, BINPUT 0
      0x28, // MARK
      ...binunicode('a'),
      0x5d, 0x71, 1, // EMPTY_LIST, BINPUT 1
      0x28, // MARK
      0x4b, 1, // BININT1 1
      0x4a, 0xfe, 0xff, 0xff, 0xff, // BININT −2
      0x4d, 0x2c, 0x01, // BININT2 300
      0x4a, 0x70, 0x11, 0x01, 0x00, // BININT 70000 = 0x011170
      0x47, 0x40, 0x04, 0, 0, 0, 0, 0, 0, // BINFLOAT 2.5 (big-endian IEEE 754: 0x4004000000000000)
      0x4e, 0x88, 0x89, // NONE, NEWTRUE, NEWFALSE
      0x65, // APPENDS
      ...binunicode('b'),
      ...binunicode('x'),
      0x68, 1, // BINGET 1: the same list again
      0x86, // TUPLE2
      0x75, // SETITEMS
      0x2e, // STOP
    );
    const value = readPickle(pickle) as Map<string, unknown>;
    assert.ok(value instanceof Map);
    assert.deepEqual([...value.keys()], ['a', 'b']);
    assert.deepEqual(value.get('a'), [1, -2, 300, 70000, 2.5, null, true, false]);
    const pair = value.get('b') as unknown[];
    assert.equal(pair[0], 'x');
    assert.equal(pair[1], value.get('a'), 'BINGET returns the very object BINPUT stored');
  });

  test('LONG1 and LONG4 are little-endian two’s complement; beyond 2^53 they are bigints', () => {
    const pickle = bytes(
      0x80, 2, 0x28,
      0x8a, 0, // 0 (no bytes)
      0x8a, 1, 0xff, // −1
      0x8a, 2, 0x00, 0x80, // −32768
      0x8a, 2, 0xff, 0x00, // 255 (the sign byte keeps it positive)
      0x8a, 6, 0, 0, 0, 0, 0, 1, // 2^40
      0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, // 2^64
      0x8a, 8, 1, 0, 0, 0, 0, 0, 0, 0x80, // −2^63 + 1
      0x8b, ...u32(2), 0xff, 0x7f, // LONG4 32767
      0x74, 0x2e, // TUPLE, STOP
    );
    assert.deepEqual(readPickle(pickle), [0, -1, -32768, 255, 2 ** 40, 2n ** 64n, -(2n ** 63n) + 1n, 32767]);
  });

  test('protocol 4/5: frames, short strings, MEMOIZE, STACK_GLOBAL, bytes, sets, NEWOBJ_EX', () => {
    const body = bytes(
      0x5d, 0x94, // EMPTY_LIST, MEMOIZE (index 0)
      0x28, // MARK
      0x8c, 2, 0xc3, 0xa9, // SHORT_BINUNICODE 'é' (UTF-8 c3 a9)
      0x8d, ...u64(4), 'long', // BINUNICODE8
      0x43, 3, 1, 2, 3, // SHORT_BINBYTES
      0x42, ...u32(2), 0xfe, 0xff, // BINBYTES
      0x8e, ...u64(1), 7, // BINBYTES8
      0x96, ...u64(2), 8, 9, // BYTEARRAY8
      0x8f, 0x28, 0x4b, 1, 0x4b, 2, 0x90, // EMPTY_SET, MARK, 1, 2, ADDITEMS
      0x28, 0x4b, 3, 0x91, // MARK, 3, FROZENSET
      0x8c, 11, 'collections', 0x8c, 11, 'OrderedDict', 0x93, // STACK_GLOBAL
      0x29, 0x52, // EMPTY_TUPLE, REDUCE: OrderedDict()
      0x8c, 3, 'mod', 0x8c, 5, 'Point', 0x93, // STACK_GLOBAL
      0x4b, 5, 0x4b, 6, 0x86, 0x7d, 0x92, // (5, 6), {}, NEWOBJ_EX
      0x68, 0, // BINGET 0: the list itself
      0x65, // APPENDS
      0x2e,
    );
    const pickle = bytes(0x80, 5, 0x95, ...u64(body.length), ...body);
    const globals = { ...pythonGlobals, 'mod.Point': (x: number, y: number) => ({ x, y }) };
    const value = readPickle(pickle, { globals }) as unknown[];
    assert.equal(value.length, 11);
    assert.deepEqual(value.slice(0, 2), ['é', 'long']);
    assert.deepEqual(value.slice(2, 6), [Uint8Array.from([1, 2, 3]), Uint8Array.from([0xfe, 0xff]), Uint8Array.from([7]), Uint8Array.from([8, 9])]);
    assert.deepEqual(value[6], new Set([1, 2]));
    assert.deepEqual(value[7], new Set([3]));
    assert.deepEqual(value[8], new Map());
    assert.deepEqual(value[9], { x: 5, y: 6 });
    assert.equal(value[10], value, 'a list that contains itself');
  });

  test('protocol 0 text opcodes: INT, LONG, FLOAT, STRING, UNICODE, PUT/GET, LIST, TUPLE, DICT', () => {
    const pickle = bytes(
      '(lp0\n', // MARK, LIST, PUT 0
      'I1\na', 'I00\na', 'I01\na', // 1, False, True
      'L12345678901234567890L\na',
      'F-0.25\na', 'Finf\na',
      "S'it\\'s\\n\\x41\\101'\np1\na", // escapes: \' \n \x41 and octal \101 ('A')
      'Vcaf\\u00e9 \\U0001f600\na', // raw-unicode-escape
      'g1\na', // GET 1
      '(I1\nI2\nta', // MARK … TUPLE
      "(dp2\nS'k'\nI3\nsa", // MARK, DICT, PUT 2, 'k': 3, SETITEM
      '.',
    );
    assert.deepEqual(readPickle(pickle), [
      1, false, true, 12345678901234567890n, -0.25, Infinity, "it's\nAA", 'café 😀', "it's\nAA", [1, 2], new Map([['k', 3]]),
    ]);
  });

  test('POP, POP_MARK and DUP', () => {
    // MARK 1 2 POP_MARK → nothing; 7 DUP 8 POP → 7 7; TUPLE2
    assert.deepEqual(readPickle(bytes('(I1\nI2\n1I7\n2I8\n0', 0x86, '.')), [7, 7]);
  });

  test('globals: REDUCE, NEWOBJ, INST, OBJ, BUILD by attributes and by SET_STATE, Python 2 module names', () => {
    const received: unknown[] = [];
    const globals = {
      ...pythonGlobals,
      'argparse.Namespace': () => ({}),
      'mod.Point': (x: number, y: number) => ({ x, y }),
      'mod.Stateful': () => ({ [SET_STATE]: (state: unknown) => received.push(state) }),
    };
    const pickle = bytes(
      0x80, 2, 0x28, // PROTO 2, MARK
      'c__builtin__\nset\n', 0x5d, 0x28, 0x4b, 1, 0x4b, 2, 0x65, 0x85, 0x52, // set([1, 2]) under its Python 2 name
      'cargparse\nNamespace\n', 0x29, 0x81, // Namespace.__new__(Namespace)
      0x7d, ...binunicode('lr'), 0x47, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0, 0x73, 0x62, // BUILD {'lr': 0.5}
      'cmod\nStateful\n', 0x29, 0x52, 0x4b, 9, 0x62, // BUILD 9 → SET_STATE(9)
      'cargparse\nNamespace\n', 0x29, 0x81, 0x4e, 0x7d, ...binunicode('slot'), 0x4b, 4, 0x73, 0x86, 0x62, // BUILD (None, {'slot': 4})
      0x28, 'I1\nI2\nimod\nPoint\n', // INST: Point(1, 2)
      0x28, 'cmod\nPoint\n', 'I3\nI4\no', // OBJ: Point(3, 4)
      0x74, 0x2e,
    );
    const [set, namespace, stateful, slots, inst, obj] = readPickle(pickle, { globals }) as unknown[];
    assert.deepEqual(set, new Set([1, 2]));
    assert.deepEqual(namespace, { lr: 0.5 });
    assert.equal(typeof stateful, 'object');
    assert.deepEqual(received, [9]);
    assert.deepEqual(slots, { slot: 4 });
    assert.deepEqual(inst, { x: 1, y: 2 });
    assert.deepEqual(obj, { x: 3, y: 4 });
  });

  test('BINPERSID and PERSID hand the id to persistentLoad', () => {
    const ids: unknown[] = [];
    const persistentLoad = (id: unknown) => {
      ids.push(id);
      return `loaded ${ids.length}`;
    };
    const pickle = bytes(0x80, 2, ...binunicode('storage'), 0x4b, 3, 0x86, 0x51, 'Pkey\n', 0x86, 0x2e);
    assert.deepEqual(readPickle(pickle, { persistentLoad }), ['loaded 1', 'loaded 2']);
    assert.deepEqual(ids, [['storage', 3], 'key']);
  });

  test('_codecs.encode and bytes(), as protocol 2 writes bytes', () => {
    const pickle = bytes(
      0x80, 2,
      'c_codecs\nencode\n', ...binunicode('\u00ff\u0000a'), ...binunicode('latin1'), 0x86, 0x52,
      'c__builtin__\nbytes\n', 0x29, 0x52,
      0x86, 0x2e,
    );
    assert.deepEqual(readPickle(pickle, { globals: pythonGlobals }), [Uint8Array.from([0xff, 0, 0x61]), new Uint8Array()]);
  });

  test('Counter, defaultdict and int under the names Python 3 gives them in protocol 2', () => {
    const pickle = bytes(
      0x80, 2, 0x28,
      'ccollections\nCounter\n', 0x7d, 0x28, 0x4b, 120, 0x4b, 1, 0x4b, 180, 0x4b, 1, 0x75, 0x85, 0x52, // Counter({120: 1, 180: 1})
      'ccollections\ndefaultdict\n', 'c__builtin__\nlist\n', 0x85, 0x52, ...binunicode('a'), 0x5d, 0x4b, 1, 0x61, 0x73, // defaultdict(list, a=[1])
      'c__builtin__\nlong\n', 0x4b, 7, 0x85, 0x52, // int(7), which protocol 2 spells __builtin__.long
      0x74, 0x2e,
    );
    assert.deepEqual(readPickle(pickle, { globals: pythonGlobals }), [new Map([[120, 1], [180, 1]]), new Map([['a', [1]]]), 7]);
  });

  describe('errors name the source, the byte and the problem', () => {
    const cases: { name: string; pickle: Uint8Array; message: RegExp; options?: Parameters<typeof readPickle>[1] }[] = [
      { name: 'an unknown global', pickle: bytes(0x80, 2, 'cos\nsystem\n', 0x2e), message: /data\.pkl, byte 2: unsupported object 'os\.system'/ },
      {
        name: 'an allow-listed value that is not callable',
        pickle: bytes(0x80, 2, 'ctorch\nfloat32\n', 0x29, 0x52, 0x2e),
        message: /byte 18: REDUCE cannot call the str 'torch\.float32'/,
        options: { globals: { 'torch.float32': 'torch.float32' } },
      },
      { name: 'a truncated string', pickle: bytes(0x80, 2, 0x58, ...u32(10), 'abc'), message: /byte 2: BINUNICODE needs 10 bytes but only 3 remain/ },
      { name: 'a missing STOP', pickle: bytes(0x80, 2, 0x4b, 1), message: /byte 4: the pickle ends without STOP/ },
      { name: 'an unknown opcode', pickle: bytes(0x80, 2, 0xff), message: /byte 2: unknown opcode 0xff/ },
      { name: 'a memo entry never stored', pickle: bytes(0x80, 2, 0x68, 5, 0x2e), message: /memo entry 5 was never stored/ },
      { name: 'a future protocol', pickle: bytes(0x80, 6, 0x4e, 0x2e), message: /unsupported pickle protocol 6/ },
      { name: 'a persistent id without a loader', pickle: bytes(0x80, 2, 0x4b, 1, 0x51, 0x2e), message: /no persistentLoad was given/ },
      { name: 'SETITEM on a list', pickle: bytes(0x80, 2, 0x5d, 0x4b, 1, 0x4b, 2, 0x73, 0x2e), message: /SETITEM\(S\) on a list\/tuple of 0, which is not a dict/ },
      { name: 'an out-of-band buffer', pickle: bytes(0x80, 5, 0x97, 0x2e), message: /out-of-band buffers/ },
      { name: 'popping an empty stack', pickle: bytes(0x80, 2, 0x30, 0x2e), message: /the stack is empty/ },
      { name: 'invalid UTF-8', pickle: bytes(0x80, 2, 0x8c, 1, 0xff, 0x2e), message: /SHORT_BINUNICODE is not valid UTF-8/ },
    ];
    for (const c of cases) {
      test(c.name, () => {
        assert.throws(() => readPickle(c.pickle, { source: 'data.pkl', ...c.options }), c.message);
      });
    }
  });
});

describe('writing protocol 2', () => {
  const hex = (data: Uint8Array) => Buffer.from(data).toString('hex');

  test('a dict of a list: the exact bytes', () => {
    // PROTO 2, EMPTY_DICT, BINPUT 0, 'a', EMPTY_LIST, BINPUT 1, MARK, BININT1 1, BININT2 300, APPENDS, SETITEM, STOP
    assert.equal(hex(writePickle(new Map([['a', [1, 300]]]))), '80027d7100580100000061' + '5d7101284b014d2c016573' + '2e');
  });

  test('integers take the shortest opcode; other numbers are BINFLOAT', () => {
    const body = (value: unknown) => hex(writePickle(value)).slice(4, -2);
    assert.equal(body(0), '4b00');
    assert.equal(body(255), '4bff');
    assert.equal(body(256), '4d0001');
    assert.equal(body(65535), '4dffff');
    assert.equal(body(65536), '4a00000100');
    assert.equal(body(-1), '4affffffff');
    assert.equal(body(2 ** 31 - 1), '4affffff7f');
    assert.equal(body(-(2 ** 31)), '4a00000080');
    assert.equal(body(2 ** 31), '8a050000008000'); // LONG1: 5 bytes, the top one keeps the sign positive
    assert.equal(body(-(2 ** 31) - 1), '8a05ffffff7fff');
    assert.equal(body(2n ** 64n), '8a09' + '00'.repeat(8) + '01');
    assert.equal(body(-128n), '4a80ffffff');
    assert.equal(body(0.5), '473fe0000000000000');
    assert.equal(body(-0), '478000000000000000');
    assert.equal(body(2 ** 53), '47' + '4340000000000000', 'beyond the safe integers, a number is a float');
    assert.equal(body('é'), '5802000000c3a9');
    assert.equal(body(null) + body(true) + body(false), '4e8889');
  });

  test('globals, tuples, calls and persistent ids', () => {
    const value = new PickleCall(new PickleGlobal('mod', 'f'), [new PickleTuple([]), new PickleTuple([1]), new PicklePersistentId('id')]);
    // GLOBAL mod f, BINPUT 0, EMPTY_TUPLE, BINPUT 1, K1, TUPLE1, BINPUT 2, 'id', BINPERSID, TUPLE3, BINPUT 3, REDUCE, BINPUT 4
    assert.equal(
      hex(writePickle(value)),
      '8002' + '636d6f640a660a' + '7100' + '29' + '7101' + '4b01' + '85' + '7102' + '58020000006964' + '51' + '87' + '7103' + '52' + '7104' + '2e',
    );
  });

  test('what is written reads back the same, shared objects and cycles included', () => {
    const shared = [1, 2];
    const cyclic: unknown[] = ['self'];
    cyclic.push(cyclic);
    const value = {
      ints: [0, 255, 256, -1, 2 ** 31, -(2 ** 40), Number.MAX_SAFE_INTEGER, 2n ** 70n, -(2n ** 70n)],
      floats: [0.1, -1e-300, Infinity, -Infinity],
      text: ['', 'ünïcode ✓', 'line\nbreak'],
      bytes: Uint8Array.from([0, 0x80, 0x9f, 0xff]),
      map: new Map<unknown, unknown>([[1, 'one'], ['two', 2], [null, false]]),
      first: shared,
      second: shared,
      cyclic,
      tuple: new PickleTuple([1, 'a', null, [2]]),
    };
    const back = readPickle(writePickle(value), { globals: pythonGlobals }) as Map<string, unknown>;
    assert.deepEqual(back.get('ints'), value.ints);
    assert.deepEqual(back.get('floats'), value.floats);
    assert.ok(Number.isNaN((readPickle(writePickle([NaN])) as number[])[0]));
    assert.deepEqual(back.get('text'), value.text);
    assert.deepEqual(back.get('bytes'), value.bytes);
    assert.deepEqual(back.get('map'), value.map);
    assert.deepEqual(back.get('first'), [1, 2]);
    assert.equal(back.get('first'), back.get('second'));
    const cycle = back.get('cyclic') as unknown[];
    assert.equal(cycle[0], 'self');
    assert.equal(cycle[1], cycle);
    assert.deepEqual(back.get('tuple'), [1, 'a', null, [2]]);
  });

  test('long lists and dicts are written in batches of 1000', () => {
    const sevens = new Array<number>(2500).fill(7);
    const written = writePickle(sevens); // only opcodes and the byte 7, so counting bytes counts opcodes
    assert.equal(written.filter((b) => b === 0x65).length, 3, 'three APPENDS');
    assert.equal(written.filter((b) => b === 0x28).length, 3, 'three MARKs');
    assert.deepEqual(readPickle(written), sevens);
    const map = new Map(Array.from({ length: 2500 }, (_, i) => [i, -i]));
    assert.deepEqual(readPickle(writePickle(map)), map);
  });

  test('replace stands in for unknown objects, once per object', () => {
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    const p = new Point(1, 2);
    let calls = 0;
    const written = writePickle([p, p], {
      replace: (item) => {
        calls++;
        return item instanceof Point ? new PickleCall(new PickleGlobal('mod', 'Point'), [item.x, item.y]) : undefined;
      },
    });
    assert.equal(calls, 1);
    const back = readPickle(written, { globals: { 'mod.Point': (x: number, y: number) => ({ x, y }) } }) as unknown[];
    assert.deepEqual(back[0], { x: 1, y: 2 });
    assert.equal(back[0], back[1]);
  });

  test('values the writer cannot write are errors', () => {
    assert.throws(() => writePickle([undefined]), /cannot write undefined values/);
    assert.throws(() => writePickle({ f: () => 1 }), /cannot write function values/);
    assert.throws(() => writePickle(new Date(0)), /cannot write an object \(Date\)/);
    assert.throws(() => writePickle(new Set([1])), /cannot write an object \(Set\)/);
  });
});
