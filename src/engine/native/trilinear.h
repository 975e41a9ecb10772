// Trilinear resizing with aligned corners (the decoders' upsampling) for float32 CPU tensors, in
// place of libtorch's `upsample_trilinear3d`, whose backward scatters eight taps per output voxel.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace smml {

// Whether `TrilinearAligned` resizes x: a float32 CPU tensor (B, C, D, H, W) with voxels, to three
// output sizes of at least 1.
bool TrilinearAlignedApplies(const at::Tensor& x, const std::vector<int64_t>& size);

// x resized to `size` (D', H', W'): output index o of an axis of n inputs and m outputs samples input
// position o·(n − 1)/(m − 1) linearly. Differentiable to any order (the map is linear; its adjoint is
// built from the same passes).
at::Tensor TrilinearAligned(const at::Tensor& x, const std::vector<int64_t>& size);

}  // namespace smml
