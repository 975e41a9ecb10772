// Shared by the SAM-Med3D tests: a small configuration and seeded models.
import { torch } from '../../src/engine/index.ts';
import { VIT_B_ORI, type SamMed3dConfig } from '../../src/priors/sam-med3d/config.ts';
import { SamMed3d } from '../../src/priors/sam-med3d/model.ts';

/** 32^3 input, 8^3 patches (a 4^3 token grid, padded to 6^3 by windows of 3), two blocks, one global. */
export const SMALL: SamMed3dConfig = {
  ...VIT_B_ORI,
  imageSize: 32,
  patchSize: 8,
  embedDim: 24,
  depth: 2,
  heads: 2,
  globalAttentionIndexes: [1],
  windowSize: 3,
  promptDim: 24,
  maskInChannels: 4,
  decoderHeads: 2,
  decoderMlpDim: 16,
  iouHeadHidden: 8,
};

/** A small model with reproducible weights; zero-initialised tables get values so that they take part. */
export function seededModel(seed = 5, config: SamMed3dConfig = SMALL): SamMed3d {
  torch.manualSeed(seed);
  const model = new SamMed3d(config);
  torch.noGrad(() => {
    for (const [name, parameter] of model.namedParameters()) {
      if (/rel_pos_|pos_embed/.test(name)) parameter.normal_(0, 0.2);
    }
  });
  return model;
}
