// Instance normalisation + LeakyReLU as one operation each way: see norm_act.h.
//
// Forward, per (sample, channel) over n positions: mean, then the biased variance from the centred
// values (two reads, cache-resident), then y = lrelu((x − mean)·rstd). Backward, with x̂ recomputed
// from x and the saved statistics and g = gy·lrelu'(x̂): gx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
// The loops (norm_act_kernels.h) run in the widest vectors the CPU has (simd.h); the lane sums finish in double.
#include "norm_act.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>

#include "simd.h"

namespace smml {
namespace {

// Positions per instance worth a thread of their own.
constexpr int64_t kMinParallelElements = 32768;

// The statistics of one instance; saved for the backward as a (B·C, 2) float tensor.
struct Moments {
  float mean, rstd;
};

// -- the loops, once per instruction set --------------------------------------------------------

#ifdef SMML_SIMD_X86
#pragma GCC push_options
#pragma GCC target("avx512f")
namespace avx512 {
using Simd = simd::Avx512;
#include "norm_act_kernels.h"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
using Simd = simd::Avx2;
#include "norm_act_kernels.h"
}  // namespace avx2
#pragma GCC pop_options
#endif

namespace generic {
using Simd = simd::Generic;
#include "norm_act_kernels.h"
}  // namespace generic

SMML_ALIAS_MISSING_ISAS

struct Kernels {
  Moments (*moments)(const float*, int64_t, double);
  void (*forward)(const float*, float*, int64_t, Moments, float);
  void (*backward)(const float*, const float*, float*, int64_t, Moments, float);
};

const Kernels& ChosenKernels() {
  static const Kernels avx512{&avx512::InstanceMoments, &avx512::Forward, &avx512::Backward};
  static const Kernels avx2{&avx2::InstanceMoments, &avx2::Forward, &avx2::Backward};
  static const Kernels generic{&generic::InstanceMoments, &generic::Forward, &generic::Backward};
  return simd::ForWidestIsa(avx512, avx2, generic);
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct InstanceNormLeakyReluFunction : public torch::autograd::Function<InstanceNormLeakyReluFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& xIn, double slope, double eps) {
    const at::Tensor x = xIn.contiguous();
    const int64_t instances = x.size(0) * x.size(1), n = x.numel() / instances;
    at::Tensor y = at::empty_like(x);
    at::Tensor moments = at::empty({instances, 2}, x.options());
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    float* mp = moments.data_ptr<float>();
    const Kernels& kernels = ChosenKernels();
    at::parallel_for(0, instances, std::max<int64_t>(1, kMinParallelElements / n), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const Moments mo = kernels.moments(xp + i * n, n, eps);
        mp[2 * i] = mo.mean;
        mp[2 * i + 1] = mo.rstd;
        kernels.forward(xp + i * n, yp + i * n, n, mo, static_cast<float>(slope));
      }
    });
    ctx->save_for_backward({x, moments});
    ctx->saved_data["slope"] = slope;
    ctx->saved_data["eps"] = eps;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const double slope = ctx->saved_data["slope"].toDouble();
    const at::Tensor gy = grads[0].contiguous();
    if (at::GradMode::is_enabled()) {
      // a gradient that will be differentiated again: the same formula from differentiable operations
      std::vector<int64_t> positions;
      for (int64_t d = 2; d < x.dim(); ++d) positions.push_back(d);
      const at::Tensor centred = x - x.mean(positions, true);
      const at::Tensor rstd = (centred.square().mean(positions, true) + ctx->saved_data["eps"].toDouble()).rsqrt();
      const at::Tensor xh = centred * rstd;
      const at::Tensor g = gy * at::where(xh > 0, at::ones_like(xh), at::full_like(xh, slope));
      return {rstd * (g - g.mean(positions, true) - xh * (g * xh).mean(positions, true)), at::Tensor(), at::Tensor()};
    }
    const int64_t instances = x.size(0) * x.size(1), n = x.numel() / instances;
    at::Tensor gx = at::empty_like(x);
    const float* xp = x.data_ptr<float>();
    const float* gyp = gy.data_ptr<float>();
    float* gxp = gx.data_ptr<float>();
    const float* mp = saved[1].data_ptr<float>();
    const Kernels& kernels = ChosenKernels();
    at::parallel_for(0, instances, std::max<int64_t>(1, kMinParallelElements / n), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        kernels.backward(xp + i * n, gyp + i * n, gxp + i * n, n, Moments{mp[2 * i], mp[2 * i + 1]}, static_cast<float>(slope));
    });
    return {gx, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor InstanceNormLeakyRelu(const at::Tensor& x, double slope, double eps) {
  const bool fused = x.device().is_cpu() && x.scalar_type() == at::kFloat && x.layout() == at::kStrided && x.dim() >= 3 &&
                     x.numel() > 0;
  if (!fused) return at::leaky_relu(at::instance_norm(x, {}, {}, {}, {}, true, 0.0, eps, false), slope);
  return InstanceNormLeakyReluFunction::apply(x, slope, eps);
}

}  // namespace smml
