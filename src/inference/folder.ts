// Segmenting every case of a folder (BraTS layouts or nnU-Net's channel files) into `<output>/<case>.nii.gz`: cases
// already segmented are skipped, and a case that fails is recorded and does not stop the others.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { discoverInputCases, type InputLayout } from '../data/brats.ts';
import type { Modality, ModalityMask } from '../data/modalities.ts';
import { predictToFiles, type InferenceModel, type PredictOptions } from './predict.ts';

export interface FolderCaseResult {
  id: string;
  status: 'written' | 'skipped' | 'failed';
  /** The output file (written or found). */
  output: string;
  /** The sequences the case was segmented from (written cases). */
  present?: ModalityMask;
  /** Why the case failed. */
  reason?: string;
  seconds: number;
}

export interface FolderPrediction {
  layout: InputLayout;
  cases: FolderCaseResult[];
}

export interface PredictFolderOptions extends Omit<PredictOptions, 'probabilities'> {
  input: string;
  output: string;
  /** Segment cases again whose output exists; default false (skipped). */
  overwrite?: boolean;
  /** Modality of nnU-Net channel files `_0000`, `_0001`, …; default DEFAULT_CHANNEL_ORDER. */
  channelOrder?: readonly Modality[];
  /** After each case, whatever happened to it. */
  onCase?: (done: number, total: number, result: FolderCaseResult) => void;
}

/** The output file of a case. */
const folderOutputFile = (output: string, id: string) => path.join(output, `${id}.nii.gz`);

/**
 * Segments every case found under `options.input` into `options.output`. Errors of one case (an unreadable file,
 * sequences on grids that do not overlap) are recorded in its result; only a folder without cases throws.
 */
export async function predictFolder(inference: InferenceModel, options: PredictFolderOptions): Promise<FolderPrediction> {
  const { layout, cases } = discoverInputCases(options.input, { channelOrder: options.channelOrder });
  fs.mkdirSync(options.output, { recursive: true });
  const results: FolderCaseResult[] = [];
  for (const [index, entry] of cases.entries()) {
    const started = performance.now();
    const output = folderOutputFile(options.output, entry.id);
    const seconds = () => (performance.now() - started) / 1000;
    let result: FolderCaseResult;
    if (!options.overwrite && fs.existsSync(output)) {
      result = { id: entry.id, status: 'skipped', output, seconds: 0 };
    } else {
      try {
        const prediction = await predictToFiles(inference, entry.modalities, { ...options, out: output });
        result = { id: entry.id, status: 'written', output, present: prediction.present, seconds: seconds() };
      } catch (error) {
        result = { id: entry.id, status: 'failed', output, reason: (error as Error).message, seconds: seconds() };
      }
    }
    results.push(result);
    options.onCase?.(index + 1, cases.length, result);
    await yieldToEventLoop();
  }
  return { layout, cases: results };
}
