// Benchmark section `sam-med3d`: SAM-Med3D vit_b_ori with random weights on the CPU. The image encoder
// runs once per 128^3 volume, the prompt encoder and mask decoder once per click; a whole case's priors
// (4 modalities × 3 tumour classes × the default clicks) add resampling, click sampling and pasting back.
import { CACHE_FORMAT_VERSION, type CachedCase, type CaseManifest } from '../src/data/cache.ts';
import type { Shape3 } from '../src/data/preprocess.ts';
import { torch, type Tensor } from '../src/engine/index.ts';
import { VIT_B_ORI } from '../src/priors/sam-med3d/config.ts';
import { SamMed3d } from '../src/priors/sam-med3d/model.ts';
import { DEFAULT_CLICKS, samMed3dCasePriors } from '../src/priors/sam-med3d/provider.ts';
import { describeTiming, formatMs, MIB, summarise, type BenchContext, type Section } from './harness.ts';
import type { BenchRow } from './table.ts';

/** A typical BraTS brain crop at 1 mm. */
const CASE_SHAPE: Shape3 = [144, 176, 136];

/** Times `fn` `runs` times after `warmup` untimed calls (oneDNN builds its kernels on the first call of each shape). */
function time(fn: () => void, warmup: number, runs: number) {
  const samples: number[] = [];
  for (let i = 0; i < warmup + runs; i++) {
    const start = performance.now();
    fn();
    if (i >= warmup) samples.push(performance.now() - start);
  }
  return summarise(samples);
}

/** A labelled case: noise inside an ellipsoid brain (0 outside), a tumour of nested balls (classes 3 ⊂ 1 ⊂ 2). */
function syntheticCase(): CachedCase & { label: Uint8Array } {
  const [X, Y, Z] = CASE_SHAPE;
  const voxels = X * Y * Z;
  const noise = torch.tidy(() => torch.randn([4, voxels]).toTypedArray() as Float32Array);
  const images = new Float32Array(4 * voxels);
  const label = new Uint8Array(voxels);
  const tumour = [0.35 * X, 0.55 * Y, 0.6 * Z];
  for (let x = 0, v = 0; x < X; x++) {
    for (let y = 0; y < Y; y++) {
      for (let z = 0; z < Z; z++, v++) {
        if ((x / X - 0.5) ** 2 + (y / Y - 0.5) ** 2 + (z / Z - 0.5) ** 2 > 0.25) continue;
        const r = Math.hypot(x - tumour[0], y - tumour[1], z - tumour[2]);
        label[v] = r < 8 ? 3 : r < 14 ? 1 : r < 24 ? 2 : 0;
        for (let k = 0; k < 4; k++) images[k * voxels + v] = noise[k * voxels + v] + 0.7 * label[v] + 1e-3;
      }
    }
  }
  const meta: CaseManifest = {
    formatVersion: CACHE_FORMAT_VERSION,
    id: 'bench',
    shape: CASE_SHAPE,
    originalShape: [240, 240, 155],
    cropBox: { start: [48, 32, 10], end: [192, 208, 146] },
    affine: [
      [1, 0, 0, 0],
      [0, 1, 0, 0],
      [0, 0, 1, 0],
      [0, 0, 0, 1],
    ],
    referenceFile: 'bench_flair.nii.gz',
    sourceFiles: {},
    modalities: ['flair', 't1ce', 't1', 't2'],
    normalization: [0, 1, 2, 3].map(() => ({ mean: 400, std: 120 })),
    numClasses: 4,
    arrays: {},
  };
  return { id: 'bench', images, label, shape: CASE_SHAPE, extras: {}, meta };
}

export async function samMed3dBenchmark(ctx: BenchContext): Promise<BenchRow[]> {
  const encoderRuns = ctx.quick ? { warmup: 0, runs: 1 } : { warmup: 1, runs: 3 };
  const decoderRuns = ctx.quick ? { warmup: 1, runs: 3 } : { warmup: 2, runs: 10 };
  torch.manualSeed(3);
  const model = new SamMed3d(VIT_B_ORI);
  const side = VIT_B_ORI.imageSize;
  const low = model.sizes.lowRes;
  const volume = torch.randn([1, 1, side, side, side]);
  const params = (model.parameterCount() / 1e6).toFixed(1);
  try {
    ctx.log(`sam-med3d: image encoder, ${encoderRuns.runs} timed run(s)`);
    let last: Tensor | undefined;
    const encoder = time(
      () => {
        last?.dispose();
        last = torch.noGrad(() => model.embedImage(volume));
      },
      encoderRuns.warmup,
      encoderRuns.runs,
    );
    const embedding = last!;
    ctx.log(`sam-med3d: image encoder ${describeTiming(encoder)}`);
    const points = { coords: torch.tensor([[[60, 64, 70], [70, 50, 64]]]), labels: torch.tensor([[1, 0]]) };
    const maskPrompt = torch.zeros([1, 1, low, low, low]);
    const decoder = time(
      () => torch.noGrad(() => torch.tidy(() => model.upscaleLogits(model.predictMasks(embedding, points, maskPrompt).lowResLogits).sigmoid())),
      decoderRuns.warmup,
      decoderRuns.runs,
    );
    ctx.log(`sam-med3d: prompt encoder + mask decoder + upscaling ${describeTiming(decoder)}`);
    torch.dispose([embedding, points, maskPrompt]);

    const kase = syntheticCase();
    const decodes = 4 * 3 * DEFAULT_CLICKS;
    ctx.log(`sam-med3d: priors of a ${CASE_SHAPE.join('×')} case (4 modalities × 3 classes × ${DEFAULT_CLICKS} clicks)`);
    const start = performance.now();
    await samMed3dCasePriors(model, kase, { clicks: DEFAULT_CLICKS, seed: 1, device: 'cpu' });
    const caseMs = performance.now() - start;
    const modelMs = 4 * encoder.medianMs + decodes * decoder.medianMs;
    ctx.log(`sam-med3d: case priors ${formatMs(caseMs)} (model alone ≈ ${formatMs(modelMs)})`);
    const peak = (process.resourceUsage().maxRSS * 1024) / MIB / 1024;
    return [
      { benchmark: `SAM-Med3D vit_b_ori (${params} M parameters) image encoder, 1×1×${side}³`, ours: `${formatMs(encoder.medianMs)} (peak RSS of the process ${peak.toFixed(2)} GiB)` },
      { benchmark: `SAM-Med3D vit_b_ori prompt encoder + mask decoder + upscaling to ${side}³, one click`, ours: formatMs(decoder.medianMs) },
      {
        benchmark: `SAM-Med3D priors of one ${CASE_SHAPE.join('×')} case at 1 mm: 4 modalities × 3 classes × ${DEFAULT_CLICKS} clicks`,
        ours: `${formatMs(caseMs)} (4 encoder runs + ${decodes} decoder runs ≈ ${formatMs(modelMs)}; the rest is resampling, clicks, pasting back)`,
      },
    ];
  } finally {
    volume.dispose();
    model.dispose();
  }
}

export const samMed3dSection: Section = {
  name: 'sam-med3d',
  description: 'SAM-Med3D vit_b_ori on the CPU (random weights): encoder per 128³ volume, decoder per click, priors of one case',
  run: samMed3dBenchmark,
};
