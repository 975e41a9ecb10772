// PyTorch checkpoint of SAM-Med3D (e.g. sam_med3d_turbo.pth) → safetensors, read without Python.
import { basename } from 'node:path';
import { loadTorchCheckpoint, stateDictOf, torch } from '../../engine/index.ts';
import { VIT_B_ORI, type SamMed3dConfig } from './config.ts';
import { SamMed3d } from './model.ts';
import { checkSamMed3dState, WEIGHTS_FORMAT } from './weights.ts';

/**
 * Reads a torch.save checkpoint (the official one nests the state dict under `model_state_dict`; a
 * bare state dict works too), checks every key and shape against the architecture (vit_b_ori unless
 * `config` says otherwise), and writes the tensors under the same names to `to` as safetensors, with
 * the architecture in its metadata. Returns the number of tensors and of learnt parameters (values
 * of the parameters, buffers excluded).
 */
export function convertSamMed3dCheckpoint(from: string, to: string, config: SamMed3dConfig = VIT_B_ORI): { tensors: number; parameters: number } {
  const tree = loadTorchCheckpoint(from);
  try {
    let state: Map<string, torch.Tensor>;
    try {
      state = stateDictOf(tree);
    } catch (error) {
      throw new Error(`${from}: ${(error as Error).message}`, { cause: error });
    }
    const model = new SamMed3d(config);
    try {
      checkSamMed3dState(model, state, from);
      const parameterNames = model.namedParameters().map(([name]) => name);
      const parameters = parameterNames.reduce((sum, name) => sum + state.get(name)!.numel, 0);
      torch.saveSafetensors(to, state, { format: WEIGHTS_FORMAT, config: JSON.stringify(model.config), source: basename(from) });
      return { tensors: state.size, parameters };
    } finally {
      model.dispose();
    }
  } finally {
    torch.dispose(tree);
  }
}
