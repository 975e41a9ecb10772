// Reflect padding of 5-D tensors (B, C, D, H, W) by whole rows: libtorch 1.13's reflection_pad3d computes
// every element's source index on its own and moves about 2 GB/s on one core, which made the padding cost
// as much as the convolution that follows it for most of our networks' reflect-padded layers.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace smml {

// Whether `ReflectPad3d` pads this tensor: a 5-D strided CPU tensor of a floating-point type, `pads`
// given as torch.nn.functional.pad takes them for the three spatial axes (W before/after, H, D), each
// non-negative and smaller than its axis.
bool ReflectPad3dApplies(const at::Tensor& x, const std::vector<int64_t>& pads);

// The padded tensor, differentiable to any order (the gradient folds the mirrored borders back onto
// the voxels they were copied from, and that map's gradient is the padding again).
at::Tensor ReflectPad3d(const at::Tensor& x, const std::vector<int64_t>& pads);

}  // namespace smml
