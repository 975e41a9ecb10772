// Direct float32 CPU kernels for thin 3D networks (few channels, large volumes), where oneDNN's
// convolutions reach only a few GFLOP/s: a 3x3x3 convolution at stride 1 with zero or
// reflect padding.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace smml {

// Whether `ThinConvolution` computes this convolution, and faster than libtorch's routes: float32 CPU
// tensors (B, Cin, D, H, W), weight (Cout, Cin, 3, 3, 3), padding 1, stride 1, dilation 1, one group,
// at most 16 channels out and 16 in (Cin·Cout above 128 only with reflect padding or planes of 32×32 or more),
// or up to 32 in on planes of 32×32 or more, or on rows of 16 or more when no gradient is needed.
// A reflect-padded axis must have at least 2 voxels.
bool ThinConvolutionApplies(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                            const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                            const std::vector<int64_t>& dilation, int64_t groups, bool reflect, bool gradientNeeded);

// Whether autograd will record a convolution of these operands.
bool GradientNeeded(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias);

// The convolution, differentiable to any order (its gradients are built from the same kernels).
at::Tensor ThinConvolution(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias, bool reflect);

}  // namespace smml
