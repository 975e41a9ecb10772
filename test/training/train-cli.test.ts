// `smml train` in a child process: a real Ctrl-C (SIGINT) and a hard kill (SIGKILL) during training, each
// followed by `--resume`, end with exactly the weights of an uninterrupted run.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { synthesizeDataset } from '../../src/data/synthetic.ts';
import { runPaths } from '../../src/training/run-dir.ts';
import { readRunLog } from '../../src/training/run-log.ts';
import { assertSameTensors } from './helpers.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
const dataDir = path.join(root, 'data');
const cacheDir = path.join(root, 'cache');
const projectDir = fileURLToPath(new URL('../..', import.meta.url));
/** The smml command line itself. */
const programFile = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

const TRAIN_ARGS = ['--data', dataDir, '--cache', cacheDir, '--preset', 'tiny', '--epochs', '2', '--steps-per-epoch', '2', '--threads', '1'];
const SPLIT_ARGS = ['--set', 'data.split.proportions=[2,1,1]', '--validate-every', '1', '--warmup-epochs', '1'];

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function start(args: string[]): { child: ChildProcess; done: Promise<Finished> } {
  const child = spawn(process.execPath, ['--import', 'tsx', programFile, 'train', ...args], { cwd: projectDir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const done = new Promise<Finished>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

/** Resolves once the run's log holds a record of `type` (polling; the child writes it). */
async function waitForRecord(runDir: string, type: string, exited: Promise<Finished>): Promise<void> {
  let finished = false;
  void exited.then(() => (finished = true));
  for (;;) {
    if (fs.existsSync(runPaths(runDir).log) && readRunLog(runPaths(runDir).log).some((r) => r.type === type)) return;
    if (finished) throw new Error(`the run ended before writing a '${type}' record: ${(await exited).stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

before(() => {
  synthesizeDataset({ out: dataDir, cases: 4, size: 32, seed: 7 });
});

after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('smml train', () => {
  const reference = path.join(root, 'reference');

  it('trains to the end and reports the best validation Dice', async () => {
    const { done } = start(['--out', reference, '--workers', '1', ...TRAIN_ARGS, ...SPLIT_ARGS]);
    const result = await done;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /finished 4 steps, [\d.]+ s per step; selected weights: validation Dice [\d.]+/);
    assert.match(result.stderr, /the semantic-guided refinement network \(SRN\) is off/);
    assert.match(result.stderr, /epoch 2\/2 step 2\/2 loss/);
  });

  it('Ctrl-C saves a checkpoint and exits with 130; --resume ends with the uninterrupted weights', async () => {
    const runDir = path.join(root, 'interrupted');
    const { child, done } = start(['--out', runDir, '--workers', '0', ...TRAIN_ARGS, ...SPLIT_ARGS]);
    await waitForRecord(runDir, 'step', done);
    child.kill('SIGINT');
    const stopped = await done;
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.match(stopped.stderr, /SIGINT: finishing the current step and saving a checkpoint/);
    assert.match(stopped.stdout, /continue with: smml train --out .* --resume/);
    assert.equal(readRunLog(runPaths(runDir).log).at(-1)?.type, 'interrupted');

    const resumed = await start(['--out', runDir, '--resume']).done;
    assert.equal(resumed.code, 0, resumed.stderr);
    assertSameTensors(runPaths(reference).checkpoint, runPaths(runDir).checkpoint);
  });

  it('after a hard kill (SIGKILL) nothing is corrupt and --resume ends with the uninterrupted weights', async () => {
    const runDir = path.join(root, 'killed');
    const { child, done } = start(['--out', runDir, '--workers', '0', ...TRAIN_ARGS, ...SPLIT_ARGS]);
    await waitForRecord(runDir, 'epoch', done);
    child.kill('SIGKILL');
    assert.equal((await done).signal, 'SIGKILL');

    const resumed = await start(['--out', runDir, '--resume', '--threads', '1']).done;
    assert.equal(resumed.code, 0, resumed.stderr);
    assertSameTensors(runPaths(reference).checkpoint, runPaths(runDir).checkpoint);
    const steps = readRunLog(runPaths(runDir).log).filter((r) => r.type === 'step');
    assert.deepEqual(steps.map((r) => r.step), [1, 2, 3, 4], 'steps repeated after the kill are logged once');
  });

  it('a resume that changes the training configuration is refused', async () => {
    const result = await start(['--out', reference, '--resume', '--epochs', '3']).done;
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /cannot resume with a different configuration \(training\.epochs differ/);
  });
});
