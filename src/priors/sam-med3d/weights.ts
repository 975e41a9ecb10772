// SAM-Med3D weights as safetensors: the official state-dict keys, checked strictly against the architecture.
import { torch, type Device, type Tensor } from '../../engine/index.ts';
import { parseSamMed3dConfig, VIT_B_ORI, type SamMed3dConfig } from './config.ts';
import { SamMed3d } from './model.ts';

/** `format` entry of the safetensors metadata; `config` holds the architecture as JSON. */
export const WEIGHTS_FORMAT = 'sam-med3d';

/** Names listed in full in an error; longer lists are cut. */
const LISTED = 24;

function listNames(names: string[]): string {
  return names.length > LISTED ? `${names.slice(0, LISTED).join(', ')}, … (${names.length - LISTED} more)` : names.join(', ');
}

/**
 * Throws unless `state` holds exactly the model's parameter and buffer names with the model's shapes.
 * The error names `source`, lists missing and unexpected keys, and gives both shapes of each mismatch.
 */
export function checkSamMed3dState(model: SamMed3d, state: Map<string, Tensor>, source: string): void {
  const own = model.stateDict();
  const missing = [...own.keys()].filter((name) => !state.has(name));
  const unexpected = [...state.keys()].filter((name) => !own.has(name));
  const mismatched: string[] = [];
  for (const [name, target] of own) {
    const tensor = state.get(name);
    if (tensor && (tensor.ndim !== target.ndim || tensor.shape.some((d, i) => d !== target.shape[i]))) {
      mismatched.push(`'${name}' has shape [${tensor.shape.join(', ')}], the architecture expects [${target.shape.join(', ')}]`);
    }
  }
  if (missing.length + unexpected.length + mismatched.length === 0) return;
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing keys (${missing.length}): ${listNames(missing)}`);
  if (unexpected.length > 0) problems.push(`unexpected keys (${unexpected.length}): ${listNames(unexpected)}`);
  problems.push(...mismatched);
  throw new Error(`${source}: the tensors do not match the SAM-Med3D architecture (${describeConfig(model.config)})\n  ${problems.join('\n  ')}`);
}

function describeConfig(config: SamMed3dConfig): string {
  return `image ${config.imageSize}^3, patch ${config.patchSize}, ViT ${config.embedDim}×${config.depth}, prompt ${config.promptDim}`;
}

/** The architecture recorded in a weights file's metadata (vit_b_ori when it records none). */
function configOf(metadata: Record<string, string>, file: string): SamMed3dConfig {
  if (metadata.config === undefined) return VIT_B_ORI;
  let parsed: unknown;
  try {
    parsed = JSON.parse(metadata.config);
  } catch (error) {
    throw new Error(`${file}: the "config" metadata is not JSON (${(error as Error).message})`);
  }
  return parseSamMed3dConfig(parsed, file);
}

const sameConfig = (a: SamMed3dConfig, b: SamMed3dConfig) => JSON.stringify(parseSamMed3dConfig(a)) === JSON.stringify(parseSamMed3dConfig(b));

function copyInto(model: SamMed3d, tensors: Map<string, Tensor>, file: string): void {
  checkSamMed3dState(model, tensors, file);
  model.loadStateDict(tensors);
}

/**
 * Loads converted weights (see `convertSamMed3dCheckpoint`) into `model` in place. Every key must match
 * (missing or unexpected keys are listed, a wrong shape names the key and both shapes), and an
 * architecture recorded in the file must be the model's.
 */
export function loadSamMed3dWeights(model: SamMed3d, file: string): void {
  const { tensors, metadata } = torch.loadSafetensors(file);
  try {
    const recorded = configOf(metadata, file);
    if (metadata.config !== undefined && !sameConfig(recorded, model.config)) {
      throw new Error(`${file}: the weights are for another SAM-Med3D configuration (${describeConfig(recorded)}; the model is ${describeConfig(model.config)})`);
    }
    copyInto(model, tensors, file);
  } finally {
    torch.dispose(tensors);
  }
}

/** Builds the model the weights file describes (vit_b_ori unless its metadata says otherwise), loads it, and moves it to `device`. */
export function loadSamMed3dModel(file: string, device: Device = 'cpu'): SamMed3d {
  const { tensors, metadata } = torch.loadSafetensors(file);
  try {
    const model = new SamMed3d(configOf(metadata, file));
    try {
      copyInto(model, tensors, file);
    } catch (error) {
      model.dispose();
      throw error;
    }
    return device === 'cpu' ? model : model.to({ device });
  } finally {
    torch.dispose(tensors);
  }
}
