// `smml priors make` and `smml priors import` in a child process on a tiny synthetic set.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readCacheIndex, readCaseManifest } from '../../src/data/cache.ts';
import { synthesizeDataset } from '../../src/data/synthetic.ts';
import { PRIORS_ARRAY } from '../../src/priors/provider.ts';
import { loadPriors } from '../../src/priors/store.ts';
import { float32Bytes, npyBytes } from './helpers.ts';

const run = promisify(execFile);
const projectDir = fileURLToPath(new URL('../..', import.meta.url));

let root: string;
let dataDir: string;
let cacheDir: string;
/** The smml command line itself. */
const programFile = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

async function smml(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', programFile, 'priors', ...args], { cwd: projectDir });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
  dataDir = path.join(root, 'data');
  cacheDir = path.join(root, 'cache');
  synthesizeDataset({ out: dataDir, cases: 4, size: 32, seed: 5 });
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

describe('smml priors', () => {
  it('make: preprocesses, makes builtin priors for every case, prints the Dice table; a second run skips them', async () => {
    const first = await smml('make', '--data', dataDir, '--cache', cacheDir, '--cases', 'all', '--quantize', 'uint8');
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /priors by builtin-intensity in .*: 4 made, 0 already there/);
    assert.match(first.stdout, /\| Prior +\| Cases \| FLAIR \| +T1ce \|/);
    assert.match(first.stderr, /fitting the builtin intensity priors on \d training cases/);
    for (const id of readCacheIndex(cacheDir).cases) {
      const { record } = loadPriors(cacheDir, id);
      assert.deepEqual([record.provider, record.storedAs], ['builtin-intensity', 'uint8']);
    }
    const second = await smml('make', '--data', dataDir, '--cache', cacheDir, '--cases', 'all', '--quantize', 'uint8');
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /: 0 made, 4 already there/);
  });

  it('import: stores an .npy file under the given provider name; make without weights for sam-med3d fails clearly', async () => {
    const [id] = readCacheIndex(cacheDir).cases;
    const shape = readCaseManifest(cacheDir, id).shape;
    const count = 16 * shape[0] * shape[1] * shape[2];
    const from = path.join(root, 'npy');
    fs.mkdirSync(from);
    fs.writeFileSync(path.join(from, `${id}.npy`), npyBytes('<f4', [4, 4, ...shape], float32Bytes(new Float32Array(count).fill(0.75))));
    const imported = await smml('import', '--cache', cacheDir, '--data', dataDir, '--from', from, '--format', 'npy', '--provider-name', 'sam-med3d');
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /imported the priors of 1 case\(s\)/);
    const { priors, record } = loadPriors(cacheDir, id);
    assert.equal(record.provider, 'sam-med3d');
    assert.equal(readCaseManifest(cacheDir, id).arrays[PRIORS_ARRAY].dtype, 'float16');
    assert.ok(priors.every((value) => value === 0.75));
    const refused = await smml('make', '--data', dataDir, '--cache', cacheDir, '--provider', 'sam-med3d');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /smml: --provider sam-med3d needs --weights/);
  });
});
