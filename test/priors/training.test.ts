// The refinement network trained on builtin priors (a tiny synthetic set, the `tiny` network, one step), and the
// trainer refusing to start when some training cases lack priors, naming them.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { synthesizeDataset } from '../../src/data/synthetic.ts';
import { fitBuiltinProvider } from '../../src/priors/builtin.ts';
import { makePriors } from '../../src/priors/make.ts';
import { parseTrainingConfig, type TrainingConfig } from '../../src/training/config.ts';
import { prepareTrainingData } from '../../src/training/data.ts';
import { runPaths, type RunData } from '../../src/training/run-dir.ts';
import { readRunLog } from '../../src/training/run-log.ts';
import { createTrainer } from '../../src/training/trainer.ts';

let root: string;
let config: TrainingConfig;
let data: RunData;

before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-'));
  synthesizeDataset({ out: path.join(root, 'data'), cases: 4, size: 32, seed: 7 });
  config = parseTrainingConfig({
    model: { preset: 'tiny' },
    data: { root: path.join(root, 'data'), cacheDir: path.join(root, 'cache'), workers: 0, split: { proportions: [2, 1, 1] } },
    training: { epochs: 1, stepsPerEpoch: 1, threads: 1 },
    losses: { srn: true, refinementKl: true, warmupEpochs: 0 },
    validation: { every: 0 },
  });
  data = await prepareTrainingData(config);
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

describe('training the refinement network on builtin priors', () => {
  it('refuses to start while a training case has no priors, naming it', async () => {
    const [first, second] = data.split.train;
    const provider = await fitBuiltinProvider({ cacheDir: data.cacheDir, trainIds: data.split.train });
    await makePriors({ cacheDir: data.cacheDir, ids: [first], provider });
    await assert.rejects(createTrainer({ runDir: path.join(root, 'refused'), config }), (error: Error) => {
      assert.match(error.message, new RegExp(`needs semantic priors, but 1 training case\\(s\\) in .* have none: ${second}\\.`));
      assert.ok(!error.message.includes(first), 'the case with priors is not named');
      return true;
    });
  });

  it('trains the SRN terms on uint8-stored builtin priors', async () => {
    const provider = await fitBuiltinProvider({ cacheDir: data.cacheDir, trainIds: data.split.train });
    await makePriors({ cacheDir: data.cacheDir, ids: data.split.train, provider, storedAs: 'uint8' });
    const runDir = path.join(root, 'run');
    const trainer = await createTrainer({ runDir, config });
    try {
      assert.equal((await trainer.run()).status, 'finished');
    } finally {
      await trainer.close();
    }
    const [step] = readRunLog(runPaths(runDir).log).filter((record) => record.type === 'step');
    for (const branch of step.branches as Record<string, number>[]) {
      assert.ok(Number.isFinite(branch.refinedTask) && branch.refinedTask > 0, 'Task(σ(Ŷ^ref)) is trained');
      assert.ok(Number.isFinite(branch.refinementKl) && branch.refinementKl >= 0, 'KL(σ(Ŷ^ref) ‖ σ(Ŷ)) is trained');
    }
  });
});
