// Process groups across two real processes (Gloo over 127.0.0.1): collectives checked against sums worked out
// by hand, and a peer that exits or stalls turning into an error on the survivor within the timeout.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { distributedBackends, freeLocalPort, ProcessGroup } from '../../src/engine/index.ts';

const workerFile = fileURLToPath(new URL('./fixtures/distributed-worker.ts', import.meta.url));

interface RankResult {
  rank: number;
  [key: string]: unknown;
}

/**
 * Runs both ranks of `scenario`; resolves with what each printed (null for a rank that printed nothing). The ranks
 * meet in a folder before joining, so that a slow start of one (a busy machine) does not eat the join's timeout.
 */
async function runRanks(scenario: string, timeoutSeconds: number): Promise<(RankResult | null)[]> {
  const port = await freeLocalPort();
  const meetingFolder = mkdtempSync(join(tmpdir(), 'smml-ranks-'));
  return Promise.all(
    [0, 1].map(
      (rank) =>
        new Promise<RankResult | null>((resolve, reject) => {
          const child = spawn(process.execPath, ['--import', 'tsx', workerFile, String(rank), '2', String(port), scenario, String(timeoutSeconds), meetingFolder], {
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let out = '';
          let err = '';
          child.stdout.on('data', (chunk) => (out += chunk));
          child.stderr.on('data', (chunk) => (err += chunk));
          child.on('error', reject);
          child.on('exit', (code) => {
            if (code !== 0) return reject(new Error(`rank ${rank} exited with ${code}: ${err}`));
            resolve(out.trim() ? (JSON.parse(out.trim()) as RankResult) : null);
          });
        }),
    ),
  ).finally(() => rmSync(meetingFolder, { recursive: true, force: true }));
}

test('this build has the Gloo back end', () => {
  assert.ok(distributedBackends().includes('gloo'));
});

test('allReduce (sum, avg, mixed dtypes, non-contiguous, past one bucket), broadcast and barrier across two processes', async () => {
  const results = await runRanks('collectives', 30);
  for (const result of results) {
    // Rank r holds [r+1, 2(r+1), 0.5]: sums [1+2, 2+4, 0.5+0.5].
    assert.deepEqual(result?.floats, [3, 6, 1]);
    // [[10r, 1], [2, 3]]ᵀ summed: [[0+10, 2+2], [1+1, 3+3]] read row by row.
    assert.deepEqual(result?.matrix, [10, 4, 2, 6]);
    assert.deepEqual(result?.integers, [0 + 1, 7 + 7]);
    assert.deepEqual(result?.large, [1 + 2, 1 + 2]);
    // Means of [0, 0] and [1, 4].
    assert.deepEqual(result?.averaged, [0.5, 2]);
    // Rank 1's [1, 1²].
    assert.deepEqual(result?.broadcast, [1, 1]);
  }
});

test('a peer that exits makes the other rank throw at once, naming both ranks', async () => {
  const [survivor] = await runRanks('peer-exits', 60);
  assert.equal(survivor?.distributed, true);
  assert.match(String(survivor?.error), /^rank 0 of 2: allReduce failed: the connection to rank 1 broke/);
  assert.ok((survivor?.seconds as number) < 10, `took ${survivor?.seconds} s`);
});

test('a peer that stops answering makes the other rank throw after the timeout', async () => {
  const [survivor] = await runRanks('peer-stalls', 2);
  assert.equal(survivor?.distributed, true);
  assert.match(String(survivor?.error), /^rank 0 of 2: allReduce failed: rank 1 did not answer within the 2 s timeout/);
  assert.ok((survivor?.seconds as number) >= 1.9 && (survivor?.seconds as number) < 10, `took ${survivor?.seconds} s`);
});

test('a back end the build lacks is a clear error before any connection is tried', { skip: distributedBackends().includes('nccl') }, () => {
  assert.throws(
    () => ProcessGroup.create({ backend: 'nccl', rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: 29500, timeoutSeconds: 1 }),
    /this build of the addon has no nccl back end; it needs a libtorch built with CUDA and NCCL/,
  );
});
