// Probabilities stored as uint8 levels q/255 (absolute error ≤ 1/510): the semantic priors' `--quantize uint8`
// storage, written by the prior store and read back by the batch loader.

/** Largest uint8 level: probability 1. */
const QUANTIZATION_LEVELS = 255;

/** Probabilities in [0, 1] to uint8 levels round(p·255). */
export function quantizeProbabilities(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.round(values[i] * QUANTIZATION_LEVELS);
  return out;
}

/** uint8 levels back to probabilities q/255. */
export function dequantizeProbabilities(levels: Uint8Array): Float32Array {
  const out = new Float32Array(levels.length);
  for (let i = 0; i < levels.length; i++) out[i] = levels[i] / QUANTIZATION_LEVELS;
  return out;
}
