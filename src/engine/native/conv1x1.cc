// The direct 1×1×1 convolution: see conv1x1.h.
//
// Over the flattened voxels n of each sample, all three maps are small dense products:
// the output y(t)[n] = b[t] + Σ_s W[t, s] · x(s)[n], the input gradient gx(s)[n] = Σ_t W[t, s] · gy(t)[n]
// (the same channel mix with the matrix transposed) and the weight gradient gW[t, s] = Σ_n gy(t)[n] · x(s)[n]
// (a Gram matrix of the two sets of rows). Each pass reads its operands from memory once: the voxels
// are cut into tiles small enough to stay in cache while blocks of channels, held in vector
// registers, run over them in turn.
#include "conv1x1.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "simd.h"

namespace smml {
namespace {

// Input and output channels routed to the direct kernels.
constexpr int64_t kMaxInChannels = 64;
constexpr int64_t kMaxOutChannels = 32;
// Voxels of one sample per tile: the unit of work of a thread (a multiple of every vector group).
constexpr int64_t kTileVoxels = 512;
// Elements read and written below which a call does not wake a second thread.
constexpr int64_t kMinParallelElements = 65536;
// Elements read per weight-gradient chunk, and the most chunks.
constexpr int64_t kGramChunkElements = 131072;
constexpr int64_t kMaxGramChunks = 16;
// Input channels per voxel of a sample from which a wider 1×1×1 convolution is one matrix product.
constexpr int64_t kMatmulChannelsPerVoxel = 16;

// dst (B, Ct, N) = matrix (Cs, Ct)ᵀ · src (B, Cs, N) + bias, per sample.
struct MixProblem {
  const float* src;
  float* dst;
  const float* matrix;
  const float* bias;
  int64_t srcChannels, dstChannels, voxels, tiles;
};

struct MixBlockArgs {
  const float* src;
  float* dst;
  const float* matrix;  // at the block's first target channel
  const float* bias;    // likewise, or null
  int64_t srcChannels, srcStride, dstStride, matrixStride;
  int64_t groups;  // whole groups of kMixVectors vectors
};
using MixBlockFn = void (*)(const MixBlockArgs&);

// One row of `partials` per chunk: Σ over the chunk's tiles of a (B, Ca, N) · b (B, Cb, N)ᵀ, as (Ca, Cb).
struct GramProblem {
  const float* a;
  const float* b;
  float* partials;
  const int64_t* chunkStart;  // in tiles, b · tiles + t
  int64_t aChannels, bChannels, voxels, tiles;
};

struct GramBlockArgs {
  const float* a;
  const float* b;
  float* sums;  // a vector per channel pair, rows of sumsStride pairs
  int64_t aStride, bStride, sumsStride, vectors;
};
using GramBlockFn = void (*)(const GramBlockArgs&);

// -- the kernels, once per instruction set ------------------------------------------------------

#ifdef SMML_SIMD_X86
#pragma GCC push_options
#pragma GCC target("avx512f")
namespace avx512 {
struct Simd : simd::Avx512 {
  static constexpr int kMixVectors = 2;
  static constexpr int kMixBlock = 12;  // 24 accumulators of 32 registers
  static constexpr int kGramBlock = 4;  // 16 accumulators and 8 operands
};
#include "conv1x1_kernels.h"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
struct Simd : simd::Avx2 {
  static constexpr int kMixVectors = 2;
  static constexpr int kMixBlock = 6;  // 12 accumulators of 16 registers
  static constexpr int kGramBlock = 3;  // 9 accumulators and 6 operands
};
#include "conv1x1_kernels.h"
}  // namespace avx2
#pragma GCC pop_options
#endif

namespace generic {
struct Simd : simd::Generic {
  static constexpr int kMixVectors = 2;
  static constexpr int kMixBlock = 6;
  static constexpr int kGramBlock = 3;
};
#include "conv1x1_kernels.h"
}  // namespace generic

SMML_ALIAS_MISSING_ISAS

struct Kernels {
  void (*mix)(const MixProblem&, int64_t, int64_t);
  void (*gram)(const GramProblem&, int64_t, int64_t);
};

const Kernels& ChosenKernels() {
  static const Kernels avx512{&avx512::MixTiles, &avx512::GramChunks};
  static const Kernels avx2{&avx2::MixTiles, &avx2::GramChunks};
  static const Kernels generic{&generic::MixTiles, &generic::GramChunks};
  return simd::ForWidestIsa(avx512, avx2, generic);
}

int64_t VoxelsOf(const at::Tensor& t) { return t.numel() / (t.size(0) * t.size(1)); }

int64_t TilesOf(int64_t voxels) { return (voxels + kTileVoxels - 1) / kTileVoxels; }

// -- the three linear maps ----------------------------------------------------------------------

// src (B, Cs, D, H, W) and matrix (Cs, Ct), both contiguous → (B, Ct, D, H, W).
at::Tensor RunMix(const at::Tensor& src, const at::Tensor& matrix, const c10::optional<at::Tensor>& bias) {
  const int64_t batch = src.size(0), srcChannels = src.size(1), dstChannels = matrix.size(1), voxels = VoxelsOf(src);
  at::Tensor dst = at::empty({batch, dstChannels, src.size(2), src.size(3), src.size(4)}, src.options());
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  const MixProblem p{src.data_ptr<float>(), dst.data_ptr<float>(), matrix.data_ptr<float>(),
                     b.defined() ? b.data_ptr<float>() : nullptr, srcChannels, dstChannels, voxels, TilesOf(voxels)};
  const int64_t grain = std::max<int64_t>(1, kMinParallelElements / (kTileVoxels * (srcChannels + dstChannels)));
  const Kernels& kernels = ChosenKernels();
  at::parallel_for(0, batch * p.tiles, grain, [&](int64_t begin, int64_t end) { kernels.mix(p, begin, end); });
  return dst;
}

at::Tensor ForwardConv(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias) {
  return RunMix(x.contiguous(), w.reshape({w.size(0), w.size(1)}).t().contiguous(), bias);
}

at::Tensor InputGradConv(const at::Tensor& gy, const at::Tensor& w) {
  return RunMix(gy.contiguous(), w.reshape({w.size(0), w.size(1)}).contiguous(), c10::nullopt);
}

// gw (Cout, Cin, 1, 1, 1) = Σ over samples and voxels of gy ⊗ x.
at::Tensor WeightGradConv(const at::Tensor& xIn, const at::Tensor& gyIn) {
  const at::Tensor x = xIn.contiguous(), gy = gyIn.contiguous();
  const int64_t batch = x.size(0), inChannels = x.size(1), outChannels = gy.size(1), voxels = VoxelsOf(x);
  const int64_t tiles = TilesOf(voxels), tasks = batch * tiles;
  // The chunks depend on the shape only, so any thread count adds the same partial sums in the same order.
  const int64_t elements = batch * voxels * (inChannels + outChannels);
  const int64_t chunks = std::clamp<int64_t>(elements / kGramChunkElements, 1, std::min(tasks, kMaxGramChunks));
  std::vector<int64_t> chunkStart(chunks + 1);
  for (int64_t i = 0; i <= chunks; ++i) chunkStart[i] = i * tasks / chunks;
  const int64_t pairs = outChannels * inChannels;
  at::Tensor partials = at::empty({chunks, pairs}, x.options());
  const GramProblem p{gy.data_ptr<float>(), x.data_ptr<float>(), partials.data_ptr<float>(), chunkStart.data(),
                      outChannels, inChannels, voxels, tiles};
  const Kernels& kernels = ChosenKernels();
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) { kernels.gram(p, begin, end); });
  at::Tensor gw = at::zeros({outChannels, inChannels, 1, 1, 1}, x.options());
  SumChunkPartials(partials.data_ptr<float>(), chunks, pairs, gw.data_ptr<float>());
  return gw;
}

// -- autograd: each map's gradients are the other two maps, so every order of derivative works ---

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// y = W x + bias
struct Conv1x1Function : public torch::autograd::Function<Conv1x1Function> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias);
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

// gx = Wᵀ gy
struct Conv1x1InputGrad : public torch::autograd::Function<Conv1x1InputGrad> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gy, const at::Tensor& w);
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

// gW = Σ gy ⊗ x
struct Conv1x1WeightGrad : public torch::autograd::Function<Conv1x1WeightGrad> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& gy);
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

at::Tensor Conv1x1Function::forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                                    const c10::optional<at::Tensor>& bias) {
  ctx->save_for_backward({x, w});
  ctx->saved_data["bias"] = bias.has_value() && bias->defined();
  return ForwardConv(x, w, bias);
}

variable_list Conv1x1Function::backward(AutogradContext* ctx, variable_list grads) {
  const auto saved = ctx->get_saved_variables();
  const at::Tensor& x = saved[0];
  const at::Tensor& w = saved[1];
  const at::Tensor gy = grads[0].contiguous();
  at::Tensor gx, gw, gb;
  if (ctx->needs_input_grad(0)) gx = Conv1x1InputGrad::apply(gy, w);
  if (ctx->needs_input_grad(1)) gw = Conv1x1WeightGrad::apply(x, gy);
  if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) gb = gy.sum({0, 2, 3, 4});
  return {gx, gw, gb};
}

at::Tensor Conv1x1InputGrad::forward(AutogradContext* ctx, const at::Tensor& gy, const at::Tensor& w) {
  ctx->save_for_backward({gy, w});
  return InputGradConv(gy, w);
}

variable_list Conv1x1InputGrad::backward(AutogradContext* ctx, variable_list grads) {
  const auto saved = ctx->get_saved_variables();
  const at::Tensor& gy = saved[0];
  const at::Tensor& w = saved[1];
  const at::Tensor ggx = grads[0].contiguous();
  at::Tensor dgy, dw;
  if (ctx->needs_input_grad(0)) dgy = Conv1x1Function::apply(ggx, w, c10::nullopt);
  if (ctx->needs_input_grad(1)) dw = Conv1x1WeightGrad::apply(ggx, gy);
  return {dgy, dw};
}

at::Tensor Conv1x1WeightGrad::forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& gy) {
  ctx->save_for_backward({x, gy});
  return WeightGradConv(x, gy);
}

variable_list Conv1x1WeightGrad::backward(AutogradContext* ctx, variable_list grads) {
  const auto saved = ctx->get_saved_variables();
  const at::Tensor& x = saved[0];
  const at::Tensor& gy = saved[1];
  const at::Tensor ggw = grads[0].contiguous();
  at::Tensor dx, dgy;
  if (ctx->needs_input_grad(0)) dx = Conv1x1InputGrad::apply(gy, ggw);
  if (ctx->needs_input_grad(1)) dgy = Conv1x1Function::apply(x, ggw, c10::nullopt);
  return {dx, dgy};
}

// A 3-D 1×1×1 convolution of CPU tensors at stride 1 without padding, one group, on a non-empty input.
bool IsPlainPointwiseOnCpu(const at::Tensor& x, const at::Tensor& w, const std::vector<int64_t>& stride,
                           const std::vector<int64_t>& padding, int64_t groups) {
  if (!x.device().is_cpu() || !w.device().is_cpu()) return false;
  if (x.layout() != at::kStrided || w.layout() != at::kStrided || x.dim() != 5 || w.dim() != 5 || groups != 1) return false;
  const auto all = [](const std::vector<int64_t>& values, int64_t v) {
    return std::all_of(values.begin(), values.end(), [v](int64_t e) { return e == v; });
  };
  if (stride.size() != 3 || padding.size() != 3 || !all(stride, 1) || !all(padding, 0)) return false;
  if (w.size(1) != x.size(1) || w.size(2) != 1 || w.size(3) != 1 || w.size(4) != 1) return false;
  return x.numel() > 0 && w.size(0) > 0;
}

}  // namespace

bool Conv1x1Applies(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                    const std::vector<int64_t>& stride, const std::vector<int64_t>& padding, int64_t groups) {
  if (!IsPlainPointwiseOnCpu(x, w, stride, padding, groups) || x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat) return false;
  if (bias && (!bias->device().is_cpu() || bias->scalar_type() != at::kFloat || bias->dim() != 1 || bias->size(0) != w.size(0)))
    return false;
  return x.size(1) <= kMaxInChannels && w.size(0) <= kMaxOutChannels;
}

bool Conv1x1ByMatmulApplies(const at::Tensor& x, const at::Tensor& w, const std::vector<int64_t>& stride,
                            const std::vector<int64_t>& padding, int64_t groups) {
  if (!IsPlainPointwiseOnCpu(x, w, stride, padding, groups) || !at::isFloatingType(x.scalar_type())) return false;
  return VoxelsOf(x) * kMatmulChannelsPerVoxel <= x.size(1);
}

at::Tensor Conv1x1ByMatmul(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias) {
  const int64_t batch = x.size(0), cin = x.size(1), cout = w.size(0);
  at::Tensor y = at::matmul(w.reshape({cout, cin}), x.reshape({batch, cin, -1}));
  if (bias) y = y + bias->view({1, cout, 1});
  return y.view({batch, cout, x.size(2), x.size(3), x.size(4)});
}

at::Tensor Conv1x1(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias) {
  return Conv1x1Function::apply(x, w, bias);
}

}  // namespace smml
