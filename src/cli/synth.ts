/**
 * `smml synth`: writes the built-in synthetic BraTS-like data set.
 */
import { InvalidArgumentError, type Command } from 'commander';
import * as path from 'node:path';
import { writeSlicePreview } from '../data/preview.ts';
import { synthesizeDataset, synthesizeDatasetCase, SYNTHETIC_MODALITIES } from '../data/synthetic.ts';

function nonNegativeInteger(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value)) throw new InvalidArgumentError(`expected a non-negative integer, got '${text}'`);
  return value;
}

interface SynthOptions {
  out: string;
  cases: number;
  size: number;
  seed: number;
  preview?: string;
}

export function registerSynthCommand(program: Command): Command {
  return program
    .command('synth')
    .description('write a synthetic BraTS 2020-style data set: phantom brains with gliomas, four MR sequences and labels')
    .requiredOption('--out <dir>', 'output folder (<dir>/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz and dataset.json)')
    .option('--cases <n>', 'number of cases', nonNegativeInteger, 40)
    .option('--size <s>', 'in-plane size S: volumes are S x S x round(0.65 S) voxels of 240/S mm', nonNegativeInteger, 96)
    .option('--seed <k>', 'data-set seed (same seed, same data)', nonNegativeInteger, 1)
    .option('--preview <png>', 'also write a PNG of the first case: one axial slice per sequence and the labels')
    .action((options: SynthOptions) => {
      const started = performance.now();
      const info = synthesizeDataset({
        out: options.out,
        cases: options.cases,
        size: options.size,
        seed: options.seed,
        onProgress: ({ done, total, caseId, grade, seconds }) => {
          console.log(`[${done}/${total}] ${caseId} (${grade} grade) ${seconds.toFixed(2)} s`);
        },
      });
      const seconds = (performance.now() - started) / 1000;
      console.log(`wrote ${info.cases.length} cases of ${info.shape.join('x')} voxels to ${path.resolve(options.out)} in ${seconds.toFixed(1)} s`);
      if (options.preview) {
        const first = synthesizeDatasetCase(options.seed, 0, options.size);
        writeSlicePreview(options.preview, [
          ...SYNTHETIC_MODALITIES.map((modality) => ({ name: modality, data: first.images[modality], shape: first.shape })),
          { name: 'seg', data: first.labels, shape: first.shape, kind: 'label' as const },
        ]);
        console.log(`preview of ${info.cases[0]!.id}: ${path.resolve(options.preview)}`);
      }
    });
}
