// Instance normalisation fused with a LeakyReLU, as the pre-norm convolution blocks apply them.
#pragma once

#include <torch/torch.h>

namespace smml {

// leaky_relu(instance_norm(x), slope) for x (B, C, …): each (sample, channel) normalised over its
// positions with the biased variance, no affine parameters, no running statistics. Float32 CPU
// tensors run one fused operation forward and one backward; other tensors the two libtorch operations.
at::Tensor InstanceNormLeakyRelu(const at::Tensor& x, double slope, double eps);

}  // namespace smml
