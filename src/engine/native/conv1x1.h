// A direct float32 CPU 1×1×1 convolution: per voxel, a small matrix times the vector of input
// channels, a memory-bound product that oneDNN and libtorch's own route run several times slower.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace smml {

// Whether `Conv1x1` computes this convolution, and faster than libtorch's routes: float32 CPU tensors
// x (B, Cin, D, H, W) and weight (Cout, Cin, 1, 1, 1), stride 1, padding 0, one group, at most 32
// output channels and 64 input channels (the dilation of a 1×1×1 kernel changes nothing). Measured
// on AVX-512 with 1 and 2 threads (forward + both gradients): 4 → 4 channels at 32³, batch 2, 0.7 ms
// against 6–7 ms; 32 → 32 channels at 32³ 10 ms against 18 ms; 64 → 32 at 16³ 1.5–2.3 ms against 2.8–7.6 ms.
bool Conv1x1Applies(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                    const std::vector<int64_t>& stride, const std::vector<int64_t>& padding, int64_t groups);

// The convolution, differentiable to any order (its gradients are built from the same kernels).
at::Tensor Conv1x1(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias);

// Whether a CPU 1×1×1 convolution (stride 1, padding 0, one group, any floating dtype) has so few voxels per
// sample against its input channels (16 voxels or fewer per 256 channels) that one matrix product beats
// libtorch's route, which reorders the whole weight for oneDNN on every call: forward + both gradients,
// batch 2, 2 threads, 2048 → 512 channels at 2³ 16.6 ms against 1.2 ms, at 4³ 19.5 ms against 5.4 ms;
// 512 → 128 at 2³ 0.33 against 0.22 ms (at 8³ and at 512 → 128 at 4³ oneDNN is the faster).
bool Conv1x1ByMatmulApplies(const at::Tensor& x, const at::Tensor& w, const std::vector<int64_t>& stride,
                            const std::vector<int64_t>& padding, int64_t groups);

// That convolution as weight (Cout, Cin) × x (B, Cin, N) + bias, differentiable through libtorch's matmul.
at::Tensor Conv1x1ByMatmul(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias);

}  // namespace smml
