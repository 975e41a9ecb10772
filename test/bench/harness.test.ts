import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findPythonTorch, formatMs, PythonReference, summarise, timeAlternating } from '../../bench/harness.ts';
import { formatBenchTable, formatMarkdownTable } from '../../bench/table.ts';

test('summarise: median of odd and even sample counts, min and max', () => {
  assert.deepEqual(summarise([5, 1, 3]), { medianMs: 3, minMs: 1, maxMs: 5, samplesMs: [5, 1, 3] });
  assert.equal(summarise([4, 1, 3, 10]).medianMs, 3.5);
  assert.throws(() => summarise([]), /no samples/);
});

test('formatMs picks the unit and the digits by magnitude', () => {
  assert.equal(formatMs(1.234), '1.23 ms');
  assert.equal(formatMs(12.34), '12.3 ms');
  assert.equal(formatMs(123.4), '123 ms');
  assert.equal(formatMs(1234), '1.23 s');
  assert.equal(formatMs(12345), '12.3 s');
});

test('formatMarkdownTable pads every column to its widest cell', () => {
  const table = formatMarkdownTable(['a', 'long header'], [['wide cell', 'x']]);
  assert.equal(table, ['| a         | long header |', '|-----------|-------------|', '| wide cell | x           |'].join('\n'));
});

test('formatBenchTable shows a dash where there is no reference, and the ratio with two decimals', () => {
  const lines = formatBenchTable([
    { benchmark: 'with', ours: '10 ms', python: '8 ms', ratio: 1.25 },
    { benchmark: 'without', ours: '3 ms' },
  ]).split('\n');
  assert.equal(lines.length, 4);
  assert.equal(lines[0], '| benchmark | ours  | PyTorch (Python) | ratio |');
  assert.equal(lines[2], '| with      | 10 ms | 8 ms             | 1.25  |');
  assert.equal(lines[3], '| without   | 3 ms  | —                | —     |');
});

// A stand-in reference speaking the setup/run protocol: each run answers a fixed time and counts runs.
const FAKE_REFERENCE = `
import json, sys
runs = 0
for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "setup":
        reply = {"error": "ValueError: bad size"} if request["size"] < 0 else {}
    else:
        runs += 1
        reply = {"ms": 7.5, "value": runs}
    print(json.dumps(reply), flush=True)
`;

function plainPython(): string | null {
  for (const candidate of ['python3', '/usr/bin/python3']) {
    if (spawnSync(candidate, ['-c', 'pass']).status === 0) return candidate;
  }
  return null;
}

test('PythonReference and timeAlternating: warm-up runs are untimed, errors name the script', { skip: plainPython() === null && 'no python3' }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
  try {
    const script = path.join(dir, 'fake.py');
    fs.writeFileSync(script, FAKE_REFERENCE);
    const reference = PythonReference.start({ executable: plainPython()!, torchVersion: 'none' }, script);
    try {
      await reference.setup({ size: 1 });
      let ourRuns = 0;
      const timing = await timeAlternating(() => ++ourRuns, reference, 2, 3);
      assert.equal(ourRuns, 5);
      assert.deepEqual(timing.ourValues, [1, 2, 3, 4, 5]);
      assert.deepEqual(timing.referenceValues, [1, 2, 3, 4, 5]);
      assert.deepEqual(timing.reference?.samplesMs, [7.5, 7.5, 7.5]);
      assert.equal(timing.ours.samplesMs.length, 3);
      assert.deepEqual(timing.warmupMs.reference, [7.5, 7.5]);
      assert.equal(timing.warmupMs.ours.length, 2);
      await assert.rejects(reference.setup({ size: -1 }), (e: Error) => e.message.includes('fake.py') && e.message.includes('bad size'));
    } finally {
      reference.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('PythonReference rejects pending and later requests once the process has exited', { skip: plainPython() === null && 'no python3' }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
  try {
    const script = path.join(dir, 'exits.py');
    fs.writeFileSync(script, 'import sys\nsys.stdin.readline()\nsys.exit(3)\n');
    const reference = PythonReference.start({ executable: plainPython()!, torchVersion: 'none' }, script);
    await assert.rejects(reference.run(), /exits\.py exited \(status 3\)/);
    await assert.rejects(reference.run(), /exits\.py exited/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const python = findPythonTorch();
const ENGINE_REFERENCE = fileURLToPath(new URL('../../bench/engine_reference.py', import.meta.url));

test('engine_reference.py runs a tiny U-Net step and rejects unknown workloads', { skip: python === null && 'no Python with torch' }, async () => {
  const reference = PythonReference.start(python!, ENGINE_REFERENCE);
  try {
    await assert.rejects(reference.setup({ workload: 'nope', threads: 1 }), /unknown workload 'nope'/);
    await reference.setup({ workload: 'unet_step', batch: 1, size: 8, channels: [2, 4], inChannels: 1, classes: 4, learningRate: 0.01, threads: 1 });
    const first = await reference.run();
    const second = await reference.run();
    assert.ok(first.ms > 0);
    // Cross-entropy of 4 classes from a freshly initialised network lies near ln 4 and a step lowers it.
    assert.ok(Math.abs(Number(first.value) - Math.log(4)) < 1, `loss ${first.value}`);
    assert.ok(Number(second.value) < Number(first.value), `loss ${first.value} → ${second.value}`);
  } finally {
    reference.close();
  }
});
