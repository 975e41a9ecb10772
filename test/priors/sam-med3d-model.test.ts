import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { torch, type Tensor } from '../../src/engine/index.ts';
import { parseSamMed3dConfig, VIT_B_ORI } from '../../src/priors/sam-med3d/config.ts';
import { relativePositionQueryKey, windowPartition, windowUnpartition } from '../../src/priors/sam-med3d/image-encoder.ts';
import { LayerNorm3d } from '../../src/priors/sam-med3d/layers.ts';
import { SamMed3d } from '../../src/priors/sam-med3d/model.ts';
import { PositionEmbeddingRandom3d } from '../../src/priors/sam-med3d/prompt-encoder.ts';
import { seededModel } from './sam-med3d-helpers.ts';

const values = (t: Tensor) => t.toArray();
const maxAbsDiff = (a: Tensor, b: Tensor) => torch.tidy(() => a.sub(b).abs().max().item());

// From the official vit_b_ori architecture (image_encoder3D.py, prompt_encoder3D.py, mask_decoder3D.py with
// build_sam3D_vit_b_ori): the published model has 100.5 M parameters.
const OFFICIAL_SHAPES: [string, number[]][] = [
  ['image_encoder.patch_embed.proj.weight', [768, 1, 16, 16, 16]],
  ['image_encoder.patch_embed.proj.bias', [768]],
  ['image_encoder.pos_embed', [1, 8, 8, 8, 768]],
  ['image_encoder.blocks.0.norm1.weight', [768]],
  ['image_encoder.blocks.0.attn.qkv.weight', [2304, 768]],
  ['image_encoder.blocks.0.attn.qkv.bias', [2304]],
  ['image_encoder.blocks.0.attn.proj.weight', [768, 768]],
  ['image_encoder.blocks.0.attn.rel_pos_d', [27, 64]],
  ['image_encoder.blocks.0.attn.rel_pos_h', [27, 64]],
  ['image_encoder.blocks.0.attn.rel_pos_w', [27, 64]],
  ['image_encoder.blocks.2.attn.rel_pos_d', [15, 64]],
  ['image_encoder.blocks.11.attn.rel_pos_w', [15, 64]],
  ['image_encoder.blocks.10.attn.rel_pos_h', [27, 64]],
  ['image_encoder.blocks.0.norm2.bias', [768]],
  ['image_encoder.blocks.0.mlp.lin1.weight', [3072, 768]],
  ['image_encoder.blocks.0.mlp.lin2.weight', [768, 3072]],
  ['image_encoder.neck.0.weight', [384, 768, 1, 1, 1]],
  ['image_encoder.neck.1.weight', [384]],
  ['image_encoder.neck.2.weight', [384, 384, 3, 3, 3]],
  ['image_encoder.neck.3.bias', [384]],
  ['prompt_encoder.pe_layer.positional_encoding_gaussian_matrix', [3, 128]],
  ['prompt_encoder.point_embeddings.0.weight', [1, 384]],
  ['prompt_encoder.point_embeddings.1.weight', [1, 384]],
  ['prompt_encoder.not_a_point_embed.weight', [1, 384]],
  ['prompt_encoder.mask_downscaling.0.weight', [4, 1, 2, 2, 2]],
  ['prompt_encoder.mask_downscaling.1.weight', [4]],
  ['prompt_encoder.mask_downscaling.3.weight', [16, 4, 2, 2, 2]],
  ['prompt_encoder.mask_downscaling.4.bias', [16]],
  ['prompt_encoder.mask_downscaling.6.weight', [384, 16, 1, 1, 1]],
  ['prompt_encoder.no_mask_embed.weight', [1, 384]],
  ['mask_decoder.transformer.layers.0.self_attn.q_proj.weight', [384, 384]],
  ['mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight', [192, 384]],
  ['mask_decoder.transformer.layers.0.cross_attn_token_to_image.out_proj.weight', [384, 192]],
  ['mask_decoder.transformer.layers.1.mlp.lin1.weight', [2048, 384]],
  ['mask_decoder.transformer.layers.1.norm4.weight', [384]],
  ['mask_decoder.transformer.layers.1.cross_attn_image_to_token.v_proj.bias', [192]],
  ['mask_decoder.transformer.final_attn_token_to_image.k_proj.weight', [192, 384]],
  ['mask_decoder.transformer.norm_final_attn.bias', [384]],
  ['mask_decoder.iou_token.weight', [1, 384]],
  ['mask_decoder.mask_tokens.weight', [4, 384]],
  ['mask_decoder.output_upscaling.0.weight', [384, 96, 2, 2, 2]],
  ['mask_decoder.output_upscaling.1.weight', [96]],
  ['mask_decoder.output_upscaling.3.weight', [96, 48, 2, 2, 2]],
  ['mask_decoder.output_upscaling.3.bias', [48]],
  ['mask_decoder.output_hypernetworks_mlps.3.layers.2.weight', [48, 384]],
  ['mask_decoder.iou_prediction_head.layers.0.weight', [256, 384]],
  ['mask_decoder.iou_prediction_head.layers.2.weight', [4, 256]],
];

test('vit_b_ori has the official keys and shapes, 324 tensors and 100,509,232 parameters', () => {
  const model = new SamMed3d();
  try {
    const state = model.stateDict();
    for (const [name, shape] of OFFICIAL_SHAPES) {
      assert.ok(state.has(name), `missing ${name}`);
      assert.deepEqual(state.get(name)!.shape, shape, name);
    }
    // 189 image-encoder tensors (15 per block), 15 prompt-encoder tensors (one buffer), 120 mask-decoder tensors.
    assert.equal(state.size, 324);
    assert.equal([...state.keys()].filter((k) => k.startsWith('image_encoder.')).length, 189);
    assert.equal([...state.keys()].filter((k) => k.startsWith('prompt_encoder.')).length, 15);
    assert.equal(model.parameterCount(), 100_509_232);
    // The Gaussian matrix is a buffer: saved, not trained.
    assert.ok(model.namedBuffers().some(([name]) => name === 'prompt_encoder.pe_layer.positional_encoding_gaussian_matrix'));
    assert.equal(model.namedBuffers().length, 1);
  } finally {
    model.dispose();
  }
});

test('configurations that cannot work are rejected with the reason', () => {
  assert.throws(() => parseSamMed3dConfig({ ...VIT_B_ORI, patchSize: 12 }), /multiple of patchSize/);
  assert.throws(() => parseSamMed3dConfig({ ...VIT_B_ORI, promptDim: 380 }), /divisible by 3/);
  assert.throws(() => parseSamMed3dConfig({ ...VIT_B_ORI, globalAttentionIndexes: [12] }), /\[12\]/);
  assert.throws(() => parseSamMed3dConfig({ ...VIT_B_ORI, extra: 1 }), /extra/);
});

test('LayerNorm3d normalises each voxel over the channels (biased variance, eps 1e-6), then scales and shifts', () => {
  torch.manualSeed(1);
  const norm = new LayerNorm3d(3);
  torch.noGrad(() => {
    norm.weight.copy_(torch.tensor([0.5, -1, 2]));
    norm.bias.copy_(torch.tensor([0.1, 0, -0.3]));
  });
  const x = torch.randn([2, 3, 2, 1, 2]);
  const got = values(torch.noGrad(() => norm.forward(x)));
  const input = values(x);
  const at = (b: number, c: number, s: number) => (b * 3 + c) * 4 + s;
  for (let b = 0; b < 2; b++) {
    for (let s = 0; s < 4; s++) {
      const column = [0, 1, 2].map((c) => input[at(b, c, s)]);
      const mean = column.reduce((a, v) => a + v, 0) / 3;
      const variance = column.reduce((a, v) => a + (v - mean) ** 2, 0) / 3;
      for (let c = 0; c < 3; c++) {
        const expected = ((column[c] - mean) / Math.sqrt(variance + 1e-6)) * [0.5, -1, 2][c] + [0.1, 0, -0.3][c];
        assert.ok(Math.abs(got[at(b, c, s)] - expected) < 1e-5, `b${b} c${c} s${s}: ${got[at(b, c, s)]} vs ${expected}`);
      }
    }
  }
});

test('window partition pads each side at its end with zeros; unpartition restores the grid', () => {
  const [B, D, H, W, C] = [2, 5, 4, 3, 2];
  const x = torch.arange(1, B * D * H * W * C + 1).to('float32').reshape(B, D, H, W, C);
  const input = values(x);
  const { windows, padded } = windowPartition(x, 2);
  assert.deepEqual(padded, [6, 4, 4]);
  const counts = [3, 2, 2];
  assert.deepEqual(windows.shape, [B * 12, 2, 2, 2, C]);
  const got = values(windows);
  let checked = 0;
  for (let b = 0; b < B; b++) {
    for (let wd = 0; wd < counts[0]; wd++) {
      for (let wh = 0; wh < counts[1]; wh++) {
        for (let ww = 0; ww < counts[2]; ww++) {
          const index = ((b * counts[0] + wd) * counts[1] + wh) * counts[2] + ww;
          for (let a = 0; a < 2; a++) {
            for (let e = 0; e < 2; e++) {
              for (let f = 0; f < 2; f++) {
                for (let c = 0; c < C; c++) {
                  const [d, h, w] = [2 * wd + a, 2 * wh + e, 2 * ww + f];
                  const expected = d < D && h < H && w < W ? input[(((b * D + d) * H + h) * W + w) * C + c] : 0;
                  assert.equal(got[((((index * 2 + a) * 2 + e) * 2 + f) * C) + c], expected);
                  checked++;
                }
              }
            }
          }
        }
      }
    }
  }
  assert.equal(checked, windows.numel);
  assert.ok(windowUnpartition(windows, 2, padded, [D, H, W]).equal(x));
});

test('the extended query/key product equals scale·q·k plus the decomposed relative position bias', () => {
  torch.manualSeed(2);
  const size: [number, number, number] = [2, 3, 2];
  const [D, H, W] = size;
  const [B, N, c] = [2, D * H * W, 4];
  const q = torch.randn([B, N, c]);
  const k = torch.randn([B, N, c]);
  const tables = size.map((s) => torch.randn([2 * s - 1, c])) as [Tensor, Tensor, Tensor];
  const scale = 0.3;
  const { query, key } = relativePositionQueryKey(q, k, tables, size, scale);
  const got = values(query.matmul(key.transpose(1, 2)));
  const [qv, kv] = [values(q), values(k)];
  const tv = tables.map(values);
  const dot = (a: number[], ai: number, b: number[], bi: number) => [0, 1, 2, 3].reduce((s, j) => s + a[ai * c + j] * b[bi * c + j], 0);
  const coords = (n: number) => [Math.floor(n / (H * W)), Math.floor(n / W) % H, n % W];
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) {
        const [qi, ki] = [coords(i), coords(j)];
        let expected = scale * dot(qv, b * N + i, kv, b * N + j);
        for (let axis = 0; axis < 3; axis++) expected += dot(qv, b * N + i, tv[axis], qi[axis] - ki[axis] + size[axis] - 1);
        assert.ok(Math.abs(got[(b * N + i) * N + j] - expected) < 1e-5, `b${b} ${i}→${j}: ${got[(b * N + i) * N + j]} vs ${expected}`);
      }
    }
  }
  assert.throws(() => relativePositionQueryKey(q, k, [tables[0], tables[0], tables[2]], size, scale), /3 rows, an axis of 3 tokens needs 5/);
});

test('the dense positional encoding is [sin, cos, sin] of 2π(2p − 1)G with the first two grid axes swapped, as trained', () => {
  torch.manualSeed(3);
  const pe = new PositionEmbeddingRandom3d(2);
  const g = values(pe.gaussianMatrix);
  const [X, Y, Z] = [2, 3, 4];
  const grid = values(pe.grid([X, Y, Z]));
  for (let i = 0; i < X; i++) {
    for (let j = 0; j < Y; j++) {
      for (let l = 0; l < Z; l++) {
        // Coordinate 0 runs along the second axis (divided by X), coordinate 1 along the first (divided by Y).
        const p = [(j + 0.5) / X, (i + 0.5) / Y, (l + 0.5) / Z];
        for (let f = 0; f < 2; f++) {
          const phase = 2 * Math.PI * p.reduce((s, v, a) => s + (2 * v - 1) * g[a * 2 + f], 0);
          const at = (channel: number) => grid[((channel * X + i) * Y + j) * Z + l];
          assert.ok(Math.abs(at(f) - Math.sin(phase)) < 1e-5);
          assert.ok(Math.abs(at(2 + f) - Math.cos(phase)) < 1e-5);
          assert.ok(Math.abs(at(4 + f) - Math.sin(phase)) < 1e-5);
        }
      }
    }
  }
});

test('point prompts: encoding of the voxel centre plus the type embedding, and a trailing not-a-point entry', () => {
  const model = seededModel();
  try {
    const encoder = model.promptEncoder;
    const coords = torch.tensor([[[3, 0, 31], [10, 20, 5]]]);
    const sparse = torch.noGrad(() => encoder.embedPoints({ coords, labels: torch.tensor([[1, 0]]) }));
    assert.deepEqual(sparse.shape, [1, 3, 24]);
    const encoded = torch.noGrad(() => encoder.peLayer.encode(coords.add(0.5).div(32)));
    const [negative, positive] = [...encoder.pointEmbeddings].map((e) => e.weight);
    assert.ok(maxAbsDiff(sparse.select(1, 0), encoded.select(1, 0).add(positive.squeeze(0))) < 1e-5);
    assert.ok(maxAbsDiff(sparse.select(1, 1), encoded.select(1, 1).add(negative.squeeze(0))) < 1e-5);
    assert.ok(maxAbsDiff(sparse.select(1, 2), encoder.notAPointEmbed.weight) === 0);
  } finally {
    model.dispose();
  }
});

test('forward pass: documented shapes, and the same outputs for the same weights, volume and prompts', () => {
  const run = () => {
    const model = seededModel();
    torch.manualSeed(9);
    const volume = torch.randn([1, 1, 32, 32, 32]);
    try {
      return torch.noGrad(() => {
        const embedding = model.embedImage(volume);
        assert.deepEqual(embedding.shape, [1, 24, 4, 4, 4]);
        const points = { coords: torch.tensor([[[4, 5, 6], [20, 1, 30]]]), labels: torch.tensor([[1, 0]]) };
        const first = model.predictMasks(embedding, points, torch.zeros([1, 1, 16, 16, 16]));
        assert.deepEqual(first.lowResLogits.shape, [1, 1, 16, 16, 16]);
        assert.deepEqual(first.iou.shape, [1, 1]);
        const multi = model.predictMasks(embedding, points, first.lowResLogits, true);
        assert.deepEqual(multi.lowResLogits.shape, [1, 3, 16, 16, 16]);
        assert.deepEqual(multi.iou.shape, [1, 3]);
        const unprompted = model.predictMasks(embedding, points, null);
        assert.ok(maxAbsDiff(unprompted.lowResLogits, first.lowResLogits) > 0, 'the mask prompt takes part');
        const upscaled = model.upscaleLogits(first.lowResLogits);
        assert.deepEqual(upscaled.shape, [1, 1, 32, 32, 32]);
        return [embedding, first.lowResLogits, multi.lowResLogits, multi.iou].map(values);
      });
    } finally {
      model.dispose();
    }
  };
  const [a, b] = [run(), run()];
  assert.deepEqual(a, b);
  assert.ok(a.every((list) => list.every(Number.isFinite)));
});

test('a wrongly shaped volume or mask prompt is rejected with the expected shape', () => {
  const model = seededModel();
  try {
    assert.throws(() => model.embedImage(torch.zeros([1, 1, 16, 32, 32])), /expected input \(B, 1, 32, 32, 32\), got \[1, 1, 16, 32, 32\]/);
    const points = { coords: torch.zeros([1, 1, 3]), labels: torch.ones([1, 1]) };
    assert.throws(() => model.predictMasks(torch.zeros([1, 24, 4, 4, 4]), points, torch.zeros([1, 1, 8, 8, 8])), /mask prompt \(B, 1, 16, 16, 16\)/);
  } finally {
    model.dispose();
  }
});
