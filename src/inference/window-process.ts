// One inference process of `InferenceProcesses` (processes.ts): holds a copy of the model and, for each run of windows
// it is sent, writes the blending sums of the run slab by slab into files and says where they are.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { torch } from '../engine/index.ts';
import { createModel, inPrecision, type SegmentationModel } from '../models/index.ts';
import { readFloats, writeHandOff, type ProcessReply, type ProcessRequest } from './processes.ts';
import { subsetPredictor } from './predict.ts';
import { accumulateWindows } from './sliding-window.ts';

if (!process.send) throw new Error('window-process.ts runs as an inference process started by InferenceProcesses');
torch.setNumThreads(1);

const parent = process.ppid;
const reply = (message: ProcessReply) => process.send!(message);
let model: SegmentationModel | null = null;
let loadError: string | null = null;
/** The folder of the sums, once a run named it. */
let sumsFolder: string | null = null;

/** Ends this process after the one that started it is gone (killed before it could end its processes), removing the folder of the sums. */
function exitOrphaned(): never {
  if (sumsFolder) fs.rmSync(sumsFolder, { recursive: true, force: true });
  process.exit(1);
}

/** Runs are long and synchronous, so the end of the IPC channel goes unseen until they finish: the parent is checked at every window. */
function exitWhenOrphaned(): void {
  try {
    process.kill(parent, 0);
  } catch {
    exitOrphaned();
  }
}

function loadModel(request: Extract<ProcessRequest, { type: 'model' }>): void {
  const { tensors } = torch.parseSafetensors(fs.readFileSync(request.weights), request.weights);
  try {
    const loaded = createModel(request.config);
    loaded.loadStateDict(tensors);
    loaded.eval();
    model = loaded;
  } finally {
    for (const tensor of tensors.values()) tensor.dispose();
  }
}

function runWindows(request: Extract<ProcessRequest, { type: 'windows' }>): void {
  if (!model) throw new Error(`the model could not be loaded: ${loadError ?? 'it was never sent'}`);
  const { patch, classes } = model.config;
  const predictor = subsetPredictor(model, request.subsets, 'cpu');
  const { job, part } = request;
  sumsFolder = request.folder;
  let reported = 0;
  try {
    const values = readFloats(request.images);
    fs.rmSync(request.images, { force: true });
    torch.tidy(() => {
      const { channels, shape } = request;
      const images = torch.zeros([1, request.modalities, ...shape]);
      const sent = torch.tensor(values, [channels.length, ...shape]);
      channels.forEach((channel, i) => images.select(1, channel).copy_(sent.select(0, i)));
      // One scope for the whole run of windows casts each weight once, as in one process.
      inPrecision(request.precision, 'cpu', () => accumulateWindows(
        images,
        [patch, patch, patch],
        classes,
        request.subsets,
        predictor.predict,
        (x, sum, weight) => {
          const file = path.join(request.folder, `${job}-${part}-${x}.bin`);
          // Written whole, then named: the parent reads only files it was told about, and deletes them once read.
          writeHandOff(file, [sum.toTypedArray(), weight.toTypedArray()]);
          reply({ type: 'sums', job, x, n: sum.size(2), file });
        },
        {
          xStarts: request.xStarts,
          windows: request.windows,
          overlap: request.overlap,
          weighting: request.weighting,
          batchSize: request.batchSize,
          onWindow: (done) => {
            exitWhenOrphaned();
            reply({ type: 'windows', job, count: done - reported });
            reported = done;
          },
        },
      ));
    });
  } finally {
    predictor.dispose();
  }
}

process.on('message', (request: ProcessRequest) => {
  try {
    if (request.type === 'model') loadModel(request);
    else runWindows(request);
    if (request.type === 'windows') reply({ type: 'done', job: request.job });
  } catch (error) {
    const message = (error as Error).message;
    if (request.type === 'model') loadError = message;
    else reply({ type: 'error', job: request.job, message });
  }
});
process.on('disconnect', exitOrphaned);
