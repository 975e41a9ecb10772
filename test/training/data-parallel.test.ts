// Data-parallel `smml train` with real processes (Gloo over 127.0.0.1): two processes with batch 1 end where
// one process with batch 2 does; a killed process makes the other fail with a clear error, not hang; and
// `--resume` after the kill ends with the weights of the uninterrupted run.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { synthesizeDataset } from '../../src/data/synthetic.ts';
import { freeLocalPort, torch } from '../../src/engine/index.ts';
import { runPaths } from '../../src/training/run-dir.ts';
import { readRunLog } from '../../src/training/run-log.ts';
import { createTrainer } from '../../src/training/trainer.ts';
import { assertSameTensors } from './helpers.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-dp-'));
const dataDir = path.join(root, 'data');
const cacheDir = path.join(root, 'cache');
const projectDir = fileURLToPath(new URL('../..', import.meta.url));
const programFile = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

// Augmentation and dropout off, so that the samples and the network are the same whatever the split into
// processes; FRC relates the samples of each process's share, so it is off too. Adam's eps of 1 makes its
// update nearly proportional to the gradient (with the default 1e-8, a gradient that is float noise still
// moves its weight by a full learning rate), so float differences stay float-sized in the weights.
const TRAIN_ARGS = [
  ...['--data', dataDir, '--cache', cacheDir, '--preset', 'tiny', '--epochs', '2', '--steps-per-epoch', '2', '--threads', '1', '--workers', '0'],
  ...['--validate-every', '0', '--lr', '0.05', '--set', 'data.split.proportions=[4,1,1]', '--set', 'data.augment=false', '--set', 'model.dropout=0'],
  ...['--set', 'losses.frc=false', '--set', 'training.eps=1', '--dist-timeout', '30'],
];

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

function start(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<Finished> } {
  const child = spawn(process.execPath, ['--import', 'tsx', programFile, 'train', ...args], {
    cwd: projectDir,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const done = new Promise<Finished>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
  return { child, done };
}

async function train(args: string[], common = TRAIN_ARGS): Promise<void> {
  const result = await start([...args, ...common]).done;
  assert.equal(result.code, 0, result.stderr);
}

/** The largest absolute difference between the network weights of two checkpoints. */
function largestWeightDifference(fileA: string, fileB: string): number {
  const a = torch.loadSafetensors(fileA).tensors;
  const b = torch.loadSafetensors(fileB).tensors;
  let largest = 0;
  for (const [name, tensor] of a) {
    if (name.startsWith('branch')) largest = Math.max(largest, tensor.sub(b.get(name)!).abs().max().item());
  }
  torch.dispose([...a.values(), ...b.values()]);
  return largest;
}

const checkpointOf = (name: string) => runPaths(path.join(root, name)).checkpoint;

/**
 * Starts two training processes as torchrun starts them (placed by the environment alone) and kills rank 1 once
 * epoch 1 is checkpointed; returns how rank 0 ended and how long it took to stop after the kill.
 */
async function killRankOneInEpochTwo(runDir: string, args: string[]): Promise<Finished & { seconds: number }> {
  const placement = { WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(await freeLocalPort()) };
  const ranks = [0, 1].map((rank) => start(['--out', runDir, ...args], { ...placement, RANK: String(rank), LOCAL_RANK: String(rank) }));
  let ended = false;
  void ranks[0].done.then(() => (ended = true));
  for (;;) {
    const log = runPaths(runDir).log;
    if (fs.existsSync(log) && readRunLog(log).some((record) => record.type === 'epoch')) break;
    if (ended) assert.fail(`rank 0 ended before the end of epoch 1: ${(await ranks[0].done).stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  ranks[1].child.kill('SIGKILL');
  const killedAt = performance.now();
  const survivor = await ranks[0].done;
  assert.equal((await ranks[1].done).signal, 'SIGKILL');
  return { ...survivor, seconds: (performance.now() - killedAt) / 1000 };
}

before(() => {
  synthesizeDataset({ out: dataDir, cases: 6, size: 32, seed: 7 });
});

after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('data-parallel training', () => {
  it('2 processes × batch 1 end with the weights of 1 process × batch 2', async () => {
    await train(['--out', path.join(root, 'one'), '--batch-size', '2']);
    await train(['--out', path.join(root, 'two'), '--batch-size', '1', '--nproc-per-node', '2', '--master-port', String(await freeLocalPort())]);
    // One process with batch 1 sees half of each step's samples: the same comparison must then fail clearly.
    await train(['--out', path.join(root, 'half'), '--batch-size', '1']);
    const tolerance = 2e-4;
    const parallel = largestWeightDifference(checkpointOf('one'), checkpointOf('two'));
    assert.ok(parallel < tolerance, `2 × 1 differs from 1 × 2 by ${parallel}`);
    const half = largestWeightDifference(checkpointOf('one'), checkpointOf('half'));
    assert.ok(half > 20 * tolerance, `batch 1 differs from batch 2 by ${half} only`);
    const log = readRunLog(runPaths(path.join(root, 'two')).log);
    assert.deepEqual(
      log.filter((record) => record.type === 'step').map((record) => record.step),
      [1, 2, 3, 4],
      'rank 0 alone writes the log',
    );
  });

  it('a killed process makes the other exit with an error naming both ranks; --resume then ends as the uninterrupted run', async () => {
    const runDir = path.join(root, 'killed');
    const survivor = await killRankOneInEpochTwo(runDir, ['--batch-size', '1', ...TRAIN_ARGS]);
    assert.equal(survivor.code, 1, survivor.stderr);
    assert.match(survivor.stderr, /rank 0 of 2: \w+ failed: the connection to rank 1 broke/);
    assert.ok(survivor.seconds < 20, `the survivor took ${survivor.seconds} s to stop`);

    // Any number of processes may resume: one process here (it finishes), two for the exact comparison.
    const alone = path.join(root, 'killed-resumed-alone');
    fs.cpSync(runDir, alone, { recursive: true });
    await train(['--out', alone, '--resume']);
    assert.equal(readRunLog(runPaths(alone).log).at(-1)?.type, 'finished');

    await train(['--out', runDir, '--resume', '--nproc-per-node', '2', '--master-port', String(await freeLocalPort())]);
    assertSameTensors(checkpointOf('killed'), checkpointOf('two'));
  });
});

// Branch-parallel training: each process trains one branch of the dual-branch network on the whole batch and
// receives the other's logits and bottleneck, so FRC stays on and the result is the one-process run's.
describe('branch-parallel training', () => {
  const BRANCH_ARGS = [...TRAIN_ARGS, '--batch-size', '2', '--set', 'losses.frc=true'];
  const parallel = async () => ['--parallel', 'branches', '--nproc-per-node', '2', '--master-port', String(await freeLocalPort())];

  it('2 processes training one branch each end with the weights of 1 process training both', async () => {
    await train(['--out', path.join(root, 'both')], BRANCH_ARGS);
    await train(['--out', path.join(root, 'branches'), ...(await parallel())], BRANCH_ARGS);
    const difference = largestWeightDifference(checkpointOf('both'), checkpointOf('branches'));
    assert.ok(difference < 2e-4, `branch-parallel differs from one process by ${difference}`);
    const steps = (name: string) => readRunLog(runPaths(path.join(root, name)).log).filter((record) => record.type === 'step');
    const reference = steps('both');
    assert.equal(steps('branches').length, 4);
    steps('branches').forEach((record, i) => {
      const [loss, expected] = [record.loss as number, reference[i].loss as number];
      assert.ok(Math.abs(loss - expected) < 1e-4, `step ${i + 1}: loss ${loss} against ${expected}`);
    });
  });

  it('2 processes training one branch each share the validation cases and agree with one process validating them all', async () => {
    const runDir = path.join(root, 'branches-validated');
    // Two validation cases, one per process.
    const validated = [...BRANCH_ARGS, '--validate-every', '1', '--set', 'data.split.proportions=[3,2,1]'];
    await train(['--out', runDir, ...(await parallel())], validated);
    const epochs = readRunLog(runPaths(runDir).log).filter((record) => record.type === 'epoch');
    assert.equal(epochs.length, 2);
    const shared = epochs[1].validation as { dice: Record<string, number>; mean: number; cases: number };
    assert.equal(shared.cases, 2);
    // The last epoch's checkpoint holds the weights that validation scored; one process scores both cases.
    const alone = await createTrainer({ runDir, resume: true });
    try {
      const scores = alone.validate();
      assert.deepEqual({ dice: scores.dice, mean: scores.mean }, { dice: shared.dice, mean: shared.mean });
    } finally {
      await alone.close();
    }
  });

  it('with dropout, a run killed in epoch 2 and resumed ends bit-exactly as the uninterrupted one', async () => {
    const common = [...BRANCH_ARGS, '--set', 'model.dropout=0.2'];
    await train(['--out', path.join(root, 'branches-dropout'), ...(await parallel())], common);
    const runDir = path.join(root, 'branches-killed');
    const survivor = await killRankOneInEpochTwo(runDir, ['--parallel', 'branches', ...common]);
    assert.equal(survivor.code, 1, survivor.stderr);
    await train(['--out', runDir, '--resume', ...(await parallel())], common);
    assertSameTensors(checkpointOf('branches-killed'), checkpointOf('branches-dropout'));
  });
});
