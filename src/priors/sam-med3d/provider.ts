// The SAM-Med3D prior provider (docs/method.md §4): per modality and tumour class, SAM-Med3D prompted with clicks
// drawn from the class's ground truth, its final mask probability pasted back into the case's crop frame.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { torch, type Device, type Tensor } from '../../engine/index.ts';
import type { CachedCase } from '../../data/cache.ts';
import { deriveSeed } from '../../data/loader.ts';
import type { Shape3 } from '../../data/preprocess.ts';
import { createRng, type Rng } from '../../data/random.ts';
import { voxelSpacing } from '../../data/volume.ts';
import type { PriorProvider } from '../provider.ts';
import { sampleClick, type Click } from './clicks.ts';
import type { SamMed3d } from './model.ts';
import { fromWindowSamplings, prepareModelInput, resampleVolume, TARGET_SPACING_MM } from './preprocess.ts';
import { loadSamMed3dModel } from './weights.ts';

/** Recorded as the provider of priors made here. */
export const SAM_MED3D_PROVIDER = 'sam-med3d';

/** Clicks per class and modality unless asked otherwise (SAM-Med3D's own evaluation uses 5). */
export const DEFAULT_CLICKS = 5;

export interface SamMed3dProviderOptions {
  /** Weights converted by `convertSamMed3dCheckpoint` (safetensors). */
  weights: string;
  /** Clicks per class and modality (≥ 1): the first inside the class, each further one on the previous error. */
  clicks?: number;
  /** Seed of the click sampling; a case's clicks depend only on it, the case id, the modality and the class. */
  seed?: number;
  device?: Device;
}

/**
 * Mask probabilities for one object: clicks one after another, each prediction prompted with every click
 * so far and the previous low-resolution logits as the mask prompt (zeros at first, as SAM-Med3D
 * starts). Stops early when a prediction matches the truth. Returns sigmoid of the final logits at the
 * input size, or null when `truth` is empty.
 */
export function segmentInteractively(
  model: SamMed3d,
  embedding: Tensor /* (1, promptDim, G, G, G) */,
  truth: Uint8Array /* (S, S, S) 0/1 */,
  clicks: number,
  rng: Rng,
): { probabilities: Float32Array /* (S, S, S) */; clicks: Click[] } | null {
  const side = model.config.imageSize;
  const shape: Shape3 = [side, side, side];
  const device = embedding.device;
  const placed: Click[] = [];
  let predicted: Uint8Array | null = null;
  let logits: Tensor | null = null;
  let maskPrompt = torch.zeros([1, 1, model.sizes.lowRes, model.sizes.lowRes, model.sizes.lowRes], { device });
  try {
    for (let i = 0; i < clicks; i++) {
      const click = sampleClick(truth, predicted, shape, rng);
      if (!click) break;
      placed.push(click);
      const points = {
        coords: torch.tensor(placed.flatMap((c) => c.point), [1, placed.length, 3], { device }),
        labels: torch.tensor(placed.map((c) => (c.positive ? 1 : 0)), [1, placed.length], { device }),
      };
      const { lowResLogits, iou } = model.predictMasks(embedding, points, maskPrompt);
      torch.dispose([points, iou, maskPrompt, logits]);
      maskPrompt = lowResLogits;
      logits = model.upscaleLogits(lowResLogits);
      predicted = torch.tidy(() => logits!.gt(0).to('uint8').toTypedArray() as Uint8Array);
    }
    if (!logits) return null;
    const probabilities = torch.tidy(() => logits!.sigmoid().toTypedArray() as Float32Array);
    return { probabilities, clicks: placed };
  } finally {
    torch.dispose([maskPrompt, logits]);
  }
}

/** A 32-bit number from a case id, so that click streams differ between cases. */
function idHash(id: string): number {
  return createHash('sha256').update(id).digest().readUInt32LE(0);
}

/**
 * Priors of one labelled case, (C, K, X, Y, Z): for every modality k with signal in the window and
 * every foreground class c present in it, the mask probability of SAM-Med3D (one image embedding per
 * modality, reused by all classes and clicks), zero outside the model's window and for absent
 * classes; the background is the product of (1 − p_c) over the foreground classes.
 */
export async function samMed3dCasePriors(
  model: SamMed3d,
  kase: CachedCase & { label: Uint8Array },
  options: { clicks: number; seed: number; device: Device },
): Promise<Float32Array> {
  const classes = kase.meta.numClasses;
  const modalities = kase.meta.modalities.length;
  const shape = kase.shape;
  const voxels = shape[0] * shape[1] * shape[2];
  const side = model.config.imageSize;
  if (kase.images.length !== modalities * voxels || kase.label.length !== voxels) {
    throw new Error(`case "${kase.id}": ${kase.images.length} image and ${kase.label.length} label values do not fit ${modalities} modalities of (${shape.join(', ')})`);
  }
  const out = new Float32Array(classes * modalities * voxels);
  const input = prepareModelInput(kase.images, kase.label, shape, kase.meta, voxelSpacing(kase.meta.affine), side);
  if (input) {
    const back = fromWindowSamplings(shape, input.change, input.start, side);
    for (let k = 0; k < modalities; k++) {
      const image = input.images[k];
      if (!image) continue;
      const embedding = torch.noGrad(() => torch.tidy(() => model.embedImage(torch.tensor(image, [1, 1, side, side, side], { device: options.device }))));
      try {
        for (let c = 1; c < classes; c++) {
          const truth = input.label.map((value) => (value === c ? 1 : 0));
          const rng = createRng(deriveSeed(options.seed, idHash(kase.id), k, c));
          const result = torch.noGrad(() => segmentInteractively(model, embedding, truth, options.clicks, rng));
          if (result) out.set(resampleVolume(result.probabilities, [side, side, side], back), (c * modalities + k) * voxels);
        }
      } finally {
        embedding.dispose();
      }
      await yieldToEventLoop();
    }
  }
  for (let k = 0; k < modalities; k++) {
    const background = out.subarray(k * voxels, (k + 1) * voxels).fill(1);
    for (let c = 1; c < classes; c++) {
      const foreground = out.subarray((c * modalities + k) * voxels, (c * modalities + k + 1) * voxels);
      for (let v = 0; v < voxels; v++) background[v] *= 1 - foreground[v];
    }
  }
  return out;
}

function sha256OfFile(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** A provider that runs SAM-Med3D with the converted weights in `options.weights`. */
export function createSamMed3dProvider(options: SamMed3dProviderOptions): PriorProvider {
  const clicks = options.clicks ?? DEFAULT_CLICKS;
  const seed = options.seed ?? 0;
  const device = options.device ?? 'cpu';
  if (!Number.isInteger(clicks) || clicks < 1) throw new Error(`SAM-Med3D provider: clicks must be a positive integer, got ${clicks}`);
  if (!Number.isInteger(seed)) throw new Error(`SAM-Med3D provider: seed must be an integer, got ${seed}`);
  const model = loadSamMed3dModel(options.weights, device);
  return {
    name: SAM_MED3D_PROVIDER,
    settings: {
      weights: basename(options.weights),
      weightsSha256: sha256OfFile(options.weights),
      architecture: model.config,
      clicks,
      seed,
      targetSpacingMm: TARGET_SPACING_MM,
      background: 'product of (1 - p_c) over the foreground classes',
    },
    computeCase: (kase) => samMed3dCasePriors(model, kase, { clicks, seed, device }),
  };
}
