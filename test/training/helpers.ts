// Shared by the training tests.
import assert from 'node:assert/strict';
import { torch } from '../../src/engine/index.ts';

/** Every tensor of two safetensors files is identical (weights, optimiser states, random state). */
export function assertSameTensors(fileA: string, fileB: string): void {
  const a = torch.loadSafetensors(fileA);
  const b = torch.loadSafetensors(fileB);
  try {
    assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
    for (const [name, tensor] of a.tensors) assert.ok(tensor.equal(b.tensors.get(name)!), `tensor ${name} differs`);
  } finally {
    torch.dispose([...a.tensors.values(), ...b.tensors.values()]);
  }
}
