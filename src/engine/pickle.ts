// Python's pickle format: a reader for protocols 0–5 that builds objects only through an explicit
// allow-list, and a protocol-2 writer (the protocol torch.save uses) for plain data, calls and
// persistent ids.
//
// What the reader returns for each Python value:
//   None → null; bool → boolean; int → number, or bigint beyond ±(2^53 − 1); float → number;
//   str → string; bytes and bytearray → Uint8Array; list and tuple → array; set and frozenset → Set;
//   dict → Map, keys as read (strings, numbers, …; a tuple key is its array, so look it up by
//   iterating); a global (class or function) → the allow-list's value for "module.name".
// The Python 2 names that protocol 2 writes (`__builtin__`, `copy_reg`, `__builtin__.long`, …) are
// looked up under their Python 3 names (`builtins`, `copyreg`, `builtins.int`). REDUCE, NEWOBJ, NEWOBJ_EX, INST and OBJ call the global as
// a function with the arguments. BUILD calls `object[SET_STATE](state)` when the object has it;
// otherwise a dict state (or the (dict, slots) pair) becomes own properties of the object, so an
// OrderedDict's `_metadata` attribute is a property of its Map.

/** The key of the method BUILD calls on objects that take their state themselves. */
export const SET_STATE = Symbol('pickle.setState');

/** "module.name" → what a GLOBAL naming it stands for; functions can be called by REDUCE and NEWOBJ. */
export type PickleGlobals = Readonly<Record<string, unknown>>;

export interface ReadPickleOptions {
  /** The allow-list; any other global is an error naming it. */
  globals?: PickleGlobals;
  /** Turns a persistent id (PERSID, BINPERSID) into its object. */
  persistentLoad?: (id: unknown) => unknown;
  /** What the bytes are, for error messages (a file name). */
  source?: string;
}

const PYTHON2_MODULES: Record<string, string> = { __builtin__: 'builtins', copy_reg: 'copyreg' };
/** Python 3 writes `int` and `str` under their Python 2 names in protocols below 3. */
const PYTHON2_NAMES: Record<string, string> = { 'builtins.long': 'builtins.int', 'builtins.unicode': 'builtins.str' };
const HIGHEST_PROTOCOL = 5;

const latin1Bytes = (text: string, what: string): Uint8Array =>
  Uint8Array.from(text, (char) => {
    const code = char.charCodeAt(0);
    if (code > 0xff) throw new Error(`${what}: character U+${code.toString(16).padStart(4, '0')} is not latin-1`);
    return code;
  });

/**
 * Globals that pickles of plain data use: protocol 2 writes bytes as `_codecs.encode(text, 'latin1')`;
 * builtin types (as a defaultdict's factory, for instance), sets, OrderedDict, Counter and defaultdict
 * (all three become Maps).
 */
export const pythonGlobals: PickleGlobals = {
  '_codecs.encode': (text: unknown, encoding: unknown = 'utf-8') => {
    if (typeof text !== 'string') throw new Error(`_codecs.encode: expected a str, got ${describe(text)}`);
    const name = String(encoding).toLowerCase().replace('_', '-');
    if (name === 'latin1' || name === 'latin-1' || name === 'iso-8859-1') return latin1Bytes(text, '_codecs.encode');
    if (name === 'utf-8' || name === 'utf8') return new TextEncoder().encode(text);
    throw new Error(`_codecs.encode: unsupported encoding '${String(encoding)}'`);
  },
  'builtins.bytes': (value: unknown = new Uint8Array()) => toBytes(value, 'bytes'),
  'builtins.bytearray': (value: unknown = new Uint8Array(), encoding?: unknown) =>
    typeof value === 'string' && encoding !== undefined ? latin1Bytes(value, 'bytearray') : toBytes(value, 'bytearray'),
  'builtins.int': (value: unknown = 0) => intValue(BigInt(typeof value === 'number' ? Math.trunc(value) : String(value))),
  'builtins.float': (value: unknown = 0) => Number(value),
  'builtins.str': (value: unknown = '') => String(value),
  'builtins.list': (items: unknown = []) => [...iterableArgument(items, 'list')],
  'builtins.dict': (items: unknown = new Map()) => (items instanceof Map ? new Map(items) : pairsToMap(items, 'dict')),
  'builtins.set': (items: unknown = []) => new Set(iterableArgument(items, 'set')),
  'builtins.frozenset': (items: unknown = []) => new Set(iterableArgument(items, 'frozenset')),
  'collections.OrderedDict': (pairs: unknown = []) => pairsToMap(pairs, 'OrderedDict'),
  // a Counter pickles as Counter(dict); a defaultdict as defaultdict(factory) followed by its items
  'collections.Counter': (counts: unknown = new Map()) => (counts instanceof Map ? new Map(counts) : pairsToMap(counts, 'Counter')),
  'collections.defaultdict': () => new Map(),
};

function pairsToMap(pairs: unknown, what: string): Map<unknown, unknown> {
  return new Map(
    iterableArgument(pairs, what).map((pair) => {
      if (!Array.isArray(pair) || pair.length !== 2) throw new Error(`${what}: expected (key, value) pairs, got ${describe(pair)}`);
      return [pair[0], pair[1]] as const;
    }),
  );
}

function toBytes(value: unknown, what: string): Uint8Array {
  if (value instanceof Uint8Array) return Uint8Array.from(value);
  if (Array.isArray(value) && value.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) return Uint8Array.from(value as number[]);
  throw new Error(`${what}: cannot make bytes from ${describe(value)}`);
}

function iterableArgument(value: unknown, what: string): unknown[] {
  if (Array.isArray(value)) return value;
  if (value instanceof Set) return [...value];
  throw new Error(`${what}: expected a list, got ${describe(value)}`);
}

/** A short description of a value for error messages. */
function describe(value: unknown): string {
  if (value === null) return 'None';
  if (Array.isArray(value)) return `a list/tuple of ${value.length}`;
  if (value instanceof Map) return `a dict of ${value.size}`;
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (typeof value === 'string') return `the str '${value.length > 40 ? `${value.slice(0, 40)}…` : value}'`;
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'no class'})`;
  return `${typeof value} ${String(value)}`;
}

/** A Python int as the reader returns it: a number when it is a safe integer, else a bigint. */
export const intValue = (value: bigint): number | bigint =>
  value >= -BigInt(Number.MAX_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;

/** A little-endian two's-complement integer (LONG1, LONG4). */
function decodeLong(bytes: Uint8Array): number | bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
  if (bytes.length > 0 && bytes[bytes.length - 1] & 0x80) value -= 1n << BigInt(8 * bytes.length);
  return intValue(value);
}

/** The backslash escapes of a Python 2 str literal (the STRING opcode). */
function unescapeString(body: string): Uint8Array {
  const out: number[] = [];
  const simple: Record<string, number> = { n: 10, t: 9, r: 13, b: 8, f: 12, v: 11, a: 7, '\\': 92, "'": 39, '"': 34 };
  for (let i = 0; i < body.length; i++) {
    const char = body[i];
    if (char !== '\\' || i + 1 === body.length) {
      out.push(body.charCodeAt(i) & 0xff);
      continue;
    }
    const next = body[++i];
    if (next in simple) out.push(simple[next]);
    else if (next === 'x' && /^[0-9a-fA-F]{2}$/.test(body.slice(i + 1, i + 3))) {
      out.push(parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (/[0-7]/.test(next)) {
      const digits = /^[0-7]{1,3}/.exec(body.slice(i))![0];
      out.push(parseInt(digits, 8) & 0xff);
      i += digits.length - 1;
    } else if (next !== '\n') out.push(92, body.charCodeAt(i) & 0xff);
  }
  return Uint8Array.from(out);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
// (TextDecoder's 'latin1' is windows-1252; Buffer's is ISO-8859-1, as Python's.)
const latin1 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');

class PickleReader {
  private position = 0;
  private opcodeAt = 0;
  private stack: unknown[] = [];
  private readonly marks: unknown[][] = [];
  private readonly memo = new Map<number, unknown>();
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly globals: PickleGlobals,
    private readonly persistentLoad: ((id: unknown) => unknown) | undefined,
    private readonly source: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private fail(problem: string): never {
    throw new Error(`${this.source}, byte ${this.opcodeAt}: ${problem}`);
  }

  private take(count: number, what: string): Uint8Array {
    if (count > this.bytes.length - this.position) {
      this.fail(`${what} needs ${count} bytes but only ${this.bytes.length - this.position} remain (truncated?)`);
    }
    const slice = this.bytes.subarray(this.position, this.position + count);
    this.position += count;
    return slice;
  }

  private uint(size: 1 | 2 | 4 | 8, what: string): number {
    const at = this.position;
    this.take(size, what);
    if (size === 1) return this.view.getUint8(at);
    if (size === 2) return this.view.getUint16(at, true);
    if (size === 4) return this.view.getUint32(at, true);
    const value = this.view.getBigUint64(at, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} length ${value} is too large`);
    return Number(value);
  }

  private line(what: string): string {
    const end = this.bytes.indexOf(0x0a, this.position);
    if (end < 0) this.fail(`${what} has no end of line (truncated?)`);
    const text = latin1(this.bytes.subarray(this.position, end));
    this.position = end + 1;
    return text;
  }

  private text(bytes: Uint8Array, what: string): string {
    try {
      return utf8.decode(bytes);
    } catch {
      this.fail(`${what} is not valid UTF-8`);
    }
  }

  private push(value: unknown): void {
    this.stack.push(value);
  }

  private pop(): unknown {
    if (this.stack.length === 0) this.fail('the stack is empty (a malformed pickle)');
    return this.stack.pop();
  }

  private top(): unknown {
    if (this.stack.length === 0) this.fail('the stack is empty (a malformed pickle)');
    return this.stack[this.stack.length - 1];
  }

  private popMark(): unknown[] {
    const items = this.stack;
    const previous = this.marks.pop();
    if (!previous) this.fail('no MARK to pop back to (a malformed pickle)');
    this.stack = previous;
    return items;
  }

  private memoGet(index: number): unknown {
    if (!this.memo.has(index)) this.fail(`memo entry ${index} was never stored`);
    return this.memo.get(index);
  }

  private global(module: string, name: string): unknown {
    const qualified = `${PYTHON2_MODULES[module] ?? module}.${name}`;
    const key = PYTHON2_NAMES[qualified] ?? qualified;
    if (!Object.hasOwn(this.globals, key)) this.fail(`unsupported object '${key}' (only allow-listed globals can be loaded)`);
    return this.globals[key];
  }

  private call(callable: unknown, args: unknown, what: string): unknown {
    if (typeof callable !== 'function') this.fail(`${what} cannot call ${describe(callable)}`);
    if (!Array.isArray(args)) this.fail(`${what} needs an argument tuple, got ${describe(args)}`);
    return callable(...args);
  }

  private persistent(id: unknown): unknown {
    if (!this.persistentLoad) this.fail('a persistent id appears but no persistentLoad was given');
    return this.persistentLoad(id);
  }

  private build(target: unknown, state: unknown): void {
    if (typeof target !== 'object' || target === null) this.fail(`BUILD on ${describe(target)}`);
    const setState = (target as { [SET_STATE]?: unknown })[SET_STATE];
    if (typeof setState === 'function') {
      setState.call(target, state);
      return;
    }
    const parts = Array.isArray(state) && state.length === 2 ? state : [state];
    for (const part of parts) {
      if (part === null) continue;
      if (!(part instanceof Map)) this.fail(`BUILD state ${describe(part)} is not a dict of attributes`);
      for (const [key, value] of part) {
        if (typeof key !== 'string') this.fail(`BUILD attribute name ${describe(key)} is not a str`);
        if (!Object.isExtensible(target)) this.fail(`BUILD cannot set attribute '${key}' on ${describe(target)}`);
        Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
      }
    }
  }

  private setItems(target: unknown, items: unknown[]): void {
    if (!(target instanceof Map)) this.fail(`SETITEM(S) on ${describe(target)}, which is not a dict`);
    if (items.length % 2 !== 0) this.fail('SETITEMS has a key without a value');
    for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
  }

  private append(target: unknown, items: unknown[]): void {
    if (!Array.isArray(target)) this.fail(`APPEND(S) on ${describe(target)}, which is not a list`);
    for (const item of items) target.push(item);
  }

  read(): unknown {
    for (;;) {
      this.opcodeAt = this.position;
      if (this.position >= this.bytes.length) this.fail('the pickle ends without STOP (truncated?)');
      const opcode = this.bytes[this.position++];
      switch (opcode) {
        case 0x80: {
          // PROTO
          const protocol = this.uint(1, 'PROTO');
          if (protocol > HIGHEST_PROTOCOL) this.fail(`unsupported pickle protocol ${protocol}`);
          break;
        }
        case 0x95: // FRAME: only a hint for buffered readers
          this.uint(8, 'FRAME');
          break;
        case 0x2e: // STOP
          return this.pop();
        case 0x28: // MARK
          this.marks.push(this.stack);
          this.stack = [];
          break;
        case 0x30: // POP
          this.pop();
          break;
        case 0x31: // POP_MARK
          this.popMark();
          break;
        case 0x32: // DUP
          this.push(this.top());
          break;

        // -- constants and numbers
        case 0x4e: // NONE
          this.push(null);
          break;
        case 0x88: // NEWTRUE
          this.push(true);
          break;
        case 0x89: // NEWFALSE
          this.push(false);
          break;
        case 0x4a: // BININT
          this.take(4, 'BININT');
          this.push(this.view.getInt32(this.position - 4, true));
          break;
        case 0x4b: // BININT1
          this.push(this.uint(1, 'BININT1'));
          break;
        case 0x4d: // BININT2
          this.push(this.uint(2, 'BININT2'));
          break;
        case 0x8a: // LONG1
          this.push(decodeLong(this.take(this.uint(1, 'LONG1'), 'LONG1')));
          break;
        case 0x8b: // LONG4
          this.push(decodeLong(this.take(this.uint(4, 'LONG4'), 'LONG4')));
          break;
        case 0x47: // BINFLOAT (big-endian)
          this.take(8, 'BINFLOAT');
          this.push(this.view.getFloat64(this.position - 8, false));
          break;
        case 0x49: {
          // INT: decimal text; "00" and "01" are protocol 0's False and True
          const text = this.line('INT');
          if (text === '00' || text === '01') this.push(text === '01');
          else this.push(this.parseInteger(text, 'INT'));
          break;
        }
        case 0x4c: // LONG: decimal text with an optional trailing L
          this.push(this.parseInteger(this.line('LONG').replace(/L$/, ''), 'LONG'));
          break;
        case 0x46: {
          // FLOAT: repr() text
          const text = this.line('FLOAT').trim();
          const special: Record<string, number> = { inf: Infinity, '-inf': -Infinity, nan: NaN };
          const value = text in special ? special[text] : Number(text);
          if (Number.isNaN(value) && text !== 'nan') this.fail(`FLOAT '${text}' is not a number`);
          this.push(value);
          break;
        }

        // -- strings and bytes
        case 0x58: // BINUNICODE
          this.push(this.text(this.take(this.uint(4, 'BINUNICODE'), 'BINUNICODE'), 'BINUNICODE'));
          break;
        case 0x8c: // SHORT_BINUNICODE
          this.push(this.text(this.take(this.uint(1, 'SHORT_BINUNICODE'), 'SHORT_BINUNICODE'), 'SHORT_BINUNICODE'));
          break;
        case 0x8d: // BINUNICODE8
          this.push(this.text(this.take(this.uint(8, 'BINUNICODE8'), 'BINUNICODE8'), 'BINUNICODE8'));
          break;
        case 0x56: // UNICODE: raw-unicode-escape text
          this.push(
            this.line('UNICODE').replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, short: string, long: string) =>
              String.fromCodePoint(parseInt(short ?? long, 16)),
            ),
          );
          break;
        case 0x53: {
          // STRING: a quoted Python 2 str literal, read as UTF-8 text
          const quoted = this.line('STRING');
          if (quoted.length < 2 || (quoted[0] !== "'" && quoted[0] !== '"') || quoted.at(-1) !== quoted[0]) {
            this.fail(`STRING ${quoted} is not quoted`);
          }
          this.push(this.text(unescapeString(quoted.slice(1, -1)), 'STRING'));
          break;
        }
        case 0x54: // BINSTRING (Python 2 str, read as UTF-8 text)
          this.push(this.text(this.take(this.uint(4, 'BINSTRING'), 'BINSTRING'), 'BINSTRING'));
          break;
        case 0x55: // SHORT_BINSTRING
          this.push(this.text(this.take(this.uint(1, 'SHORT_BINSTRING'), 'SHORT_BINSTRING'), 'SHORT_BINSTRING'));
          break;
        case 0x42: // BINBYTES
          this.push(Uint8Array.from(this.take(this.uint(4, 'BINBYTES'), 'BINBYTES')));
          break;
        case 0x43: // SHORT_BINBYTES
          this.push(Uint8Array.from(this.take(this.uint(1, 'SHORT_BINBYTES'), 'SHORT_BINBYTES')));
          break;
        case 0x8e: // BINBYTES8
          this.push(Uint8Array.from(this.take(this.uint(8, 'BINBYTES8'), 'BINBYTES8')));
          break;
        case 0x96: // BYTEARRAY8
          this.push(Uint8Array.from(this.take(this.uint(8, 'BYTEARRAY8'), 'BYTEARRAY8')));
          break;
        case 0x97: // NEXT_BUFFER
        case 0x98: // READONLY_BUFFER
          this.fail('out-of-band buffers (pickle protocol 5 buffer_callback) are not supported');

        // -- containers
        case 0x29: // EMPTY_TUPLE
          this.push([]);
          break;
        case 0x85: // TUPLE1
          this.push([this.pop()]);
          break;
        case 0x86: {
          // TUPLE2
          const second = this.pop();
          this.push([this.pop(), second]);
          break;
        }
        case 0x87: {
          // TUPLE3
          const third = this.pop();
          const second = this.pop();
          this.push([this.pop(), second, third]);
          break;
        }
        case 0x74: // TUPLE
        case 0x6c: // LIST
          this.push(this.popMark());
          break;
        case 0x5d: // EMPTY_LIST
          this.push([]);
          break;
        case 0x61: {
          // APPEND
          const item = this.pop();
          this.append(this.top(), [item]);
          break;
        }
        case 0x65: {
          // APPENDS
          const items = this.popMark();
          this.append(this.top(), items);
          break;
        }
        case 0x7d: // EMPTY_DICT
          this.push(new Map());
          break;
        case 0x64: {
          // DICT
          const map = new Map();
          this.setItems(map, this.popMark());
          this.push(map);
          break;
        }
        case 0x73: {
          // SETITEM
          const value = this.pop();
          const key = this.pop();
          this.setItems(this.top(), [key, value]);
          break;
        }
        case 0x75: {
          // SETITEMS
          const items = this.popMark();
          this.setItems(this.top(), items);
          break;
        }
        case 0x8f: // EMPTY_SET
          this.push(new Set());
          break;
        case 0x90: {
          // ADDITEMS
          const items = this.popMark();
          const target = this.top();
          if (!(target instanceof Set)) this.fail(`ADDITEMS on ${describe(target)}, which is not a set`);
          for (const item of items) target.add(item);
          break;
        }
        case 0x91: // FROZENSET
          this.push(new Set(this.popMark()));
          break;

        // -- memo
        case 0x71: // BINPUT
          this.memo.set(this.uint(1, 'BINPUT'), this.top());
          break;
        case 0x72: // LONG_BINPUT
          this.memo.set(this.uint(4, 'LONG_BINPUT'), this.top());
          break;
        case 0x94: // MEMOIZE
          this.memo.set(this.memo.size, this.top());
          break;
        case 0x70: // PUT
          this.memo.set(Number(this.parseInteger(this.line('PUT'), 'PUT')), this.top());
          break;
        case 0x68: // BINGET
          this.push(this.memoGet(this.uint(1, 'BINGET')));
          break;
        case 0x6a: // LONG_BINGET
          this.push(this.memoGet(this.uint(4, 'LONG_BINGET')));
          break;
        case 0x67: // GET
          this.push(this.memoGet(Number(this.parseInteger(this.line('GET'), 'GET'))));
          break;

        // -- objects
        case 0x63: {
          // GLOBAL
          const module = this.line('GLOBAL');
          this.push(this.global(module, this.line('GLOBAL')));
          break;
        }
        case 0x93: {
          // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') this.fail('STACK_GLOBAL needs a module and a name (str)');
          this.push(this.global(module, name));
          break;
        }
        case 0x52: {
          // REDUCE
          const args = this.pop();
          this.push(this.call(this.pop(), args, 'REDUCE'));
          break;
        }
        case 0x81: {
          // NEWOBJ
          const args = this.pop();
          this.push(this.call(this.pop(), args, 'NEWOBJ'));
          break;
        }
        case 0x92: {
          // NEWOBJ_EX
          const kwargs = this.pop();
          const args = this.pop();
          if (!(kwargs instanceof Map) || kwargs.size > 0) this.fail('NEWOBJ_EX with keyword arguments is not supported');
          this.push(this.call(this.pop(), args, 'NEWOBJ_EX'));
          break;
        }
        case 0x69: {
          // INST: GLOBAL and a call with the arguments since MARK
          const module = this.line('INST');
          const callable = this.global(module, this.line('INST'));
          this.push(this.call(callable, this.popMark(), 'INST'));
          break;
        }
        case 0x6f: {
          // OBJ: the class and its arguments since MARK
          const [callable, ...args] = this.popMark();
          this.push(this.call(callable, args, 'OBJ'));
          break;
        }
        case 0x62: {
          // BUILD
          const state = this.pop();
          this.build(this.top(), state);
          break;
        }
        case 0x51: // BINPERSID
          this.push(this.persistent(this.pop()));
          break;
        case 0x50: // PERSID
          this.push(this.persistent(this.line('PERSID')));
          break;
        case 0x82: // EXT1
        case 0x83: // EXT2
        case 0x84: // EXT4
          this.fail('the copyreg extension registry (EXT1/EXT2/EXT4) is not supported');
        default:
          this.fail(`unknown opcode 0x${opcode.toString(16).padStart(2, '0')}`);
      }
    }
  }

  private parseInteger(text: string, what: string): number | bigint {
    if (!/^[+-]?\d+$/.test(text.trim())) this.fail(`${what} '${text}' is not an integer`);
    return intValue(BigInt(text.trim()));
  }
}

/** Reads a pickle (protocols 0–5); see the top of this file for what each Python value becomes. */
export function readPickle(bytes: Uint8Array, options: ReadPickleOptions = {}): unknown {
  return new PickleReader(bytes, options.globals ?? {}, options.persistentLoad, options.source ?? 'pickle').read();
}

// ---------------------------------------------------------------------------------------------
// Writing.

/** A class or function, written as GLOBAL "module\nname\n". */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
}

/** A tuple (arrays are written as lists). */
export class PickleTuple {
  constructor(readonly items: readonly unknown[]) {}
}

/** `callable(*args)`, written as REDUCE. */
export class PickleCall {
  constructor(
    readonly callable: PickleGlobal,
    readonly args: readonly unknown[],
  ) {}
}

/** An object the reader looks up by id (BINPERSID): torch.save writes storages this way. */
export class PicklePersistentId {
  constructor(readonly id: unknown) {}
}

export interface WritePickleOptions {
  /**
   * Stands in for a value the writer does not know (for example a PickleCall that rebuilds a tensor);
   * returns undefined when it does not know the value either. Called once per object.
   */
  replace?: (value: object) => unknown;
}

const CODECS_ENCODE = new PickleGlobal('_codecs', 'encode');
const BATCH_SIZE = 1000;

class PickleWriter {
  private readonly chunks: Uint8Array[] = [];
  private readonly memo = new Map<object, number>();

  constructor(private readonly replace: ((value: object) => unknown) | undefined) {}

  result(): Uint8Array {
    return Buffer.concat(this.chunks);
  }

  bytes(...values: number[]): void {
    this.chunks.push(Uint8Array.from(values));
  }

  private uint32(value: number): number[] {
    return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];
  }

  private string(text: string): void {
    const encoded = Buffer.from(text, 'utf8');
    this.bytes(0x58, ...this.uint32(encoded.length)); // BINUNICODE
    this.chunks.push(encoded);
  }

  private integer(value: bigint): void {
    if (value >= 0n && value < 0x100n) this.bytes(0x4b, Number(value)); // BININT1
    else if (value >= 0n && value < 0x10000n) this.bytes(0x4d, Number(value) & 0xff, Number(value) >> 8); // BININT2
    else if (value >= -(2n ** 31n) && value < 2n ** 31n) this.bytes(0x4a, ...this.uint32(Number(value))); // BININT
    else {
      // LONG1: the shortest little-endian two's complement
      const digits: number[] = [];
      let rest = value;
      for (;;) {
        const byte = Number(rest & 0xffn);
        digits.push(byte);
        rest >>= 8n;
        if ((rest === 0n && !(byte & 0x80)) || (rest === -1n && byte & 0x80)) break;
      }
      if (digits.length > 255) throw new Error(`writePickle: the integer ${value} is too large`);
      this.bytes(0x8a, digits.length, ...digits);
    }
  }

  private float(value: number): void {
    const encoded = Buffer.alloc(9);
    encoded[0] = 0x47; // BINFLOAT
    encoded.writeDoubleBE(value, 1);
    this.chunks.push(encoded);
  }

  /** Stores the object just written in the memo (BINPUT), so later occurrences become BINGET. */
  private remember(value: object, alias?: object): void {
    const index = this.memo.size;
    this.memo.set(value, index);
    if (alias) this.memo.set(alias, index);
    if (index < 0x100) this.bytes(0x71, index);
    else this.bytes(0x72, ...this.uint32(index));
  }

  private batches(values: unknown[], single: number, batch: number, step = 1): void {
    for (let start = 0; start < values.length; start += BATCH_SIZE * step) {
      const chunk = values.slice(start, start + BATCH_SIZE * step);
      if (chunk.length === step) {
        for (const value of chunk) this.write(value);
        this.bytes(single);
      } else {
        this.bytes(0x28); // MARK
        for (const value of chunk) this.write(value);
        this.bytes(batch);
      }
    }
  }

  write(value: unknown, alias?: object): void {
    if (value === null) return this.bytes(0x4e); // NONE
    switch (typeof value) {
      case 'boolean':
        return this.bytes(value ? 0x88 : 0x89); // NEWTRUE, NEWFALSE
      case 'number':
        return Number.isSafeInteger(value) && !Object.is(value, -0) ? this.integer(BigInt(value)) : this.float(value);
      case 'bigint':
        return this.integer(value);
      case 'string':
        return this.string(value);
      case 'object':
        break;
      default:
        throw new Error(`writePickle: cannot write ${typeof value} values`);
    }
    const seen = this.memo.get(value);
    if (seen !== undefined) return seen < 0x100 ? this.bytes(0x68, seen) : this.bytes(0x6a, ...this.uint32(seen)); // BINGET
    if (value instanceof PickleGlobal) {
      this.chunks.push(Buffer.from(`c${value.module}\n${value.name}\n`, 'utf8')); // GLOBAL
      return this.remember(value, alias);
    }
    if (value instanceof PickleTuple) {
      const { items } = value;
      if (items.length === 0) this.bytes(0x29); // EMPTY_TUPLE
      else if (items.length <= 3) {
        for (const item of items) this.write(item);
        this.bytes(0x84 + items.length); // TUPLE1..3
      } else {
        this.bytes(0x28); // MARK
        for (const item of items) this.write(item);
        this.bytes(0x74); // TUPLE
      }
      return this.remember(value, alias);
    }
    if (value instanceof PickleCall) {
      this.write(value.callable);
      this.write(new PickleTuple(value.args));
      this.bytes(0x52); // REDUCE
      return this.remember(value, alias);
    }
    if (value instanceof PicklePersistentId) {
      this.write(value.id);
      return this.bytes(0x51); // BINPERSID
    }
    if (value instanceof Uint8Array) {
      // protocol 2 has no bytes opcode: Python writes _codecs.encode(latin-1 text, 'latin1')
      this.write(new PickleCall(CODECS_ENCODE, [latin1(value), 'latin1']));
      return this.remember(value, alias);
    }
    if (Array.isArray(value)) {
      this.bytes(0x5d); // EMPTY_LIST
      this.remember(value, alias);
      return this.batches(value, 0x61, 0x65); // APPEND, APPENDS
    }
    if (value instanceof Map || Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null) {
      const entries = value instanceof Map ? [...value].flat() : Object.entries(value).flat();
      this.bytes(0x7d); // EMPTY_DICT
      this.remember(value, alias);
      return this.batches(entries, 0x73, 0x75, 2); // SETITEM, SETITEMS
    }
    const replacement = this.replace?.(value);
    if (replacement === undefined || replacement === value) {
      throw new Error(`writePickle: cannot write ${describe(value)}`);
    }
    return this.write(replacement, value);
  }
}

/**
 * Writes `value` as a protocol-2 pickle. null, booleans, numbers (safe integers become Python ints,
 * other numbers floats), bigints, strings, Uint8Array (bytes), arrays (lists), Maps and plain
 * objects (dicts) are written directly; PickleGlobal, PickleTuple, PickleCall and
 * PicklePersistentId build other objects; `options.replace` turns anything else into those.
 * An object that appears twice is written once and referenced (so shared and cyclic lists and dicts
 * survive).
 */
export function writePickle(value: unknown, options: WritePickleOptions = {}): Uint8Array {
  const writer = new PickleWriter(options.replace);
  writer.bytes(0x80, 2); // PROTO 2
  writer.write(value);
  writer.bytes(0x2e); // STOP
  return writer.result();
}
