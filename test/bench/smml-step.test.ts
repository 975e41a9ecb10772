import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { findPythonTorch, PythonReference } from '../../bench/harness.ts';
import { smmlStepWorkload } from '../../bench/smml-step.ts';
import { DEFAULT_OBJECTIVE_CONFIG } from '../../src/losses/index.ts';
import { branchLayerCosts, modelConfig, modelParameterCount } from '../../src/models/index.ts';
import { parseTrainingConfig } from '../../src/training/config.ts';

const python = findPythonTorch();
const SMML_REFERENCE = fileURLToPath(new URL('../../bench/smml_reference.py', import.meta.url));

test('smml_reference.py mirrors the network and the step: same parameters, forward FLOPs as cost.ts, the same losses as ours', { skip: python === null && 'no Python with torch' }, async () => {
  const config = modelConfig('tiny');
  const { lr, betas, eps, weightDecay, amsgrad } = parseTrainingConfig({ data: { root: '.' } }).training;
  const reference = PythonReference.start(python!, SMML_REFERENCE);
  try {
    await assert.rejects(reference.setup({ workload: 'nope', threads: 1 }), /unknown workload 'nope'/);
    const setup = await reference.request<{ parameters: number; forwardFlops: number }>({
      op: 'setup',
      workload: 'smml_step',
      threads: 1,
      config,
      batch: 2,
      optimizer: { lr, betas, eps, weightDecay, amsgrad },
      tau: DEFAULT_OBJECTIVE_CONFIG.tau,
    });
    assert.equal(setup.parameters, modelParameterCount(config));
    // Counted layer by layer while the Python model ran one forward of both branches at batch 2.
    assert.equal(setup.forwardFlops, 2 * 2 * branchLayerCosts(config).reduce((n, l) => n + l.forwardFlops, 0));
    const ours = smmlStepWorkload(config, 2);
    // Same seed, same construction order and initialisation, same dropout draws: the same step on both sides, and
    // after one Adam update of every weight still the same loss up to float rounding.
    for (let step = 0; step < 2; step++) {
      const theirs = Number((await reference.run()).value);
      const mine = ours.step();
      assert.ok(Math.abs(mine - theirs) <= 1e-5 * Math.abs(theirs), `step ${step}: ours ${mine}, PyTorch ${theirs}`);
    }
  } finally {
    reference.close();
  }
});
