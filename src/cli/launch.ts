// `smml train --nproc-per-node N`: starts this machine's training processes, as torchrun does. Each runs the
// same command without the launcher's flags, placed by torchrun's environment variables; the launcher waits
// for them. When one fails the others stop too: they notice the broken connection at their next gradient
// exchange, and whatever is still running after a grace period is killed, so a failure never leaves a hang.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { availableParallelism, tmpdir } from 'node:os';
import { freeLocalPort } from '../engine/index.ts';
import { SMML_PRESETS, type SmmlPresetName } from '../models/index.ts';
import type { TrainingConfig } from '../training/config.ts';
import { placementEnvironment, type WorkerPlacement } from '../training/data-parallel.ts';

/** The flags that place processes; the started processes get their placement from the environment instead. */
export const LAUNCHER_FLAGS = ['--nproc-per-node', '--nnodes', '--node-rank', '--master-addr', '--master-port'] as const;

/** The `smml` program the processes run (it loads the TypeScript sources itself), whoever calls the launcher. */
const PROGRAM_FILE = fileURLToPath(new URL('../../bin/smml.js', import.meta.url));

/** Seconds the other processes get to stop by themselves after one failed. */
const GRACE_SECONDS = 30;

export interface LaunchOptions {
  processesPerNode: number;
  nodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  /** The `smml` command line after the program name (e.g. ['train', '--out', 'run', …]). */
  args: string[];
}

/** `args` without the launcher's flags and their values (`--flag value` or `--flag=value`). */
export function withoutLauncherFlags(args: string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const flag = LAUNCHER_FLAGS.find((name) => args[i] === name || args[i].startsWith(`${name}=`));
    if (!flag) kept.push(args[i]);
    else if (args[i] === flag) i++;
  }
  return kept;
}

/** What ended a process, in words. */
const endText = (code: number | null, signal: NodeJS.Signals | null) => (signal ? `was killed by ${signal}` : `exited with status ${code}`);

/** Runs the processes of this machine to their end; resolves with the exit status for the launcher. */
export function launchWorkers(options: LaunchOptions): Promise<number> {
  const { processesPerNode, nodes, nodeRank, masterAddr, masterPort } = options;
  if (nodeRank >= nodes) throw new Error(`--node-rank ${nodeRank} is not below --nnodes ${nodes}`);
  const args = [PROGRAM_FILE, ...withoutLauncherFlags(options.args)];
  const children: ChildProcess[] = [];
  return new Promise((resolve) => {
    let running = processesPerNode;
    let status = 0;
    let killTimer: NodeJS.Timeout | undefined;
    // Ctrl-C reaches every process of the terminal: the training processes stop together and save; the
    // launcher only waits for them. A SIGTERM sent to the launcher alone (a job scheduler) is passed on.
    const onInterrupt = () => undefined;
    const onTerminate = () => children.forEach((child) => child.kill('SIGTERM'));
    process.on('SIGINT', onInterrupt);
    process.on('SIGTERM', onTerminate);
    for (let localRank = 0; localRank < processesPerNode; localRank++) {
      const placement: WorkerPlacement = {
        rank: nodeRank * processesPerNode + localRank,
        worldSize: nodes * processesPerNode,
        localRank,
        localWorldSize: processesPerNode,
        masterAddr,
        masterPort,
      };
      const child = spawn(process.execPath, args, { stdio: 'inherit', env: { ...process.env, ...placementEnvironment(placement) } });
      children.push(child);
      child.on('exit', (code, signal) => {
        running--;
        const failed = code !== 0 && code !== 130;
        if (failed && (status === 0 || status === 130)) {
          status = code ?? 1;
          console.error(`smml: training process of rank ${placement.rank} ${endText(code, signal)}; stopping the others`);
          killTimer = setTimeout(() => children.forEach((other) => other.exitCode === null && other.signalCode === null && other.kill('SIGKILL')), GRACE_SECONDS * 1000);
        } else if (code === 130 && status === 0) {
          status = 130;
        }
        if (running === 0) {
          clearTimeout(killTimer);
          process.off('SIGINT', onInterrupt);
          process.off('SIGTERM', onTerminate);
          resolve(status);
        }
      });
    }
  });
}

/** Runs `smml <args>` in `processes` processes of this machine, meeting at a free local port; resolves with the launcher's status. */
export async function launchLocalWorkers(processes: number, args: string[]): Promise<number> {
  return launchWorkers({ processesPerNode: processes, nodes: 1, nodeRank: 0, masterAddr: '127.0.0.1', masterPort: await freeLocalPort(), args });
}

/**
 * The processes a recipe trains in on this machine when nobody says: two, one branch each, for a two-branch
 * network with `training.parallel` 'branches' on two or more cores (1.5–2× as fast as one process on two cores,
 * docs/learning.md); otherwise one.
 */
export function defaultTrainingProcesses(config: TrainingConfig): number {
  const { model } = config;
  const branches = model.family === 'smml' ? (model.branches ?? SMML_PRESETS[model.preset as SmmlPresetName].branches) : 1;
  return branches === 2 && config.training.parallel === 'branches' && config.training.device === 'cpu' && availableParallelism() >= 2 ? 2 : 1;
}

/**
 * `smml train` into `runDir` in `processes` processes of this machine: a new run of `config`, or with `config` null
 * the run there resumed. False when interrupted (Ctrl-C); a failure is an error naming `what`.
 */
export async function trainInLocalProcesses(processes: number, runDir: string, config: TrainingConfig | null, what: string): Promise<boolean> {
  const configDir = fs.mkdtempSync(path.join(tmpdir(), 'smml-train-'));
  try {
    const configFile = path.join(configDir, 'config.json');
    if (config) fs.writeFileSync(configFile, JSON.stringify(config));
    const status = await launchLocalWorkers(processes, ['train', '--out', runDir, ...(config ? ['--config', configFile] : ['--resume'])]);
    if (status === 130) return false;
    if (status !== 0) throw new Error(`${what}: training in ${processes} processes failed (status ${status}); the messages above say why`);
    return true;
  } finally {
    fs.rmSync(configDir, { recursive: true, force: true });
  }
}
