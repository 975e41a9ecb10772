// The smml command line: one sub-command per job.
import { Command } from 'commander';
import { registerAblateCommand } from './ablate.ts';
import { registerDemoCommand } from './demo.ts';
import { registerEvaluateCommand } from './evaluate.ts';
import { registerPredictCommand } from './predict.ts';
import { registerPriorsCommand } from './priors.ts';
import { registerSynthCommand } from './synth.ts';
import { registerTrainCommand } from './train.ts';
import { registerViewCommand } from './view.ts';

const program = new Command()
  .name('smml')
  .description('Brain-tumour segmentation with arbitrary missing MRI modalities (SMML)')
  .showHelpAfterError();

registerDemoCommand(program);
registerSynthCommand(program);
registerTrainCommand(program);
registerPriorsCommand(program);
registerPredictCommand(program);
registerEvaluateCommand(program);
registerAblateCommand(program);
registerViewCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  // Expected failures (bad input, unreadable files) are reported as one clear line, not a stack trace.
  console.error(`smml: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
