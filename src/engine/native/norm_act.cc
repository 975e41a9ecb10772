// Instance normalisation + LeakyReLU as one operation each way: see norm_act.h.
//
// Forward, per (sample, channel) over n positions: mean, then the biased variance from the centred
// values (two reads, cache-resident), then y = lrelu((x − mean)·rstd). Backward, with x̂ recomputed
// from x and the saved statistics and g = gy·lrelu'(x̂): gx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
// The lane sums run in 4-float vectors (SSE2 on x86-64, NEON on ARM) and finish in double.
#include "norm_act.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>

namespace smml {
namespace {

typedef float F4 __attribute__((vector_size(16)));

F4 Load4(const float* p) {
  F4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
void Store4(float* p, F4 v) { std::memcpy(p, &v, sizeof v); }
F4 Splat(float s) { return F4{s, s, s, s}; }
double Sum(F4 v) { return (static_cast<double>(v[0]) + v[1]) + (static_cast<double>(v[2]) + v[3]); }

// Positions per instance worth a thread of their own.
constexpr int64_t kMinParallelElements = 32768;

// The statistics of one instance; saved for the backward as a (B·C, 2) float tensor.
struct Moments {
  float mean, rstd;
};

Moments InstanceMoments(const float* x, int64_t n, double eps) {
  const int64_t whole = n / 8 * 8;
  F4 s0{}, s1{};
  for (int64_t i = 0; i < whole; i += 8) {
    s0 += Load4(x + i);
    s1 += Load4(x + i + 4);
  }
  double sum = Sum(s0) + Sum(s1);
  for (int64_t i = whole; i < n; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / n);
  const F4 m = Splat(mean);
  F4 q0{}, q1{};
  for (int64_t i = 0; i < whole; i += 8) {
    const F4 a = Load4(x + i) - m, b = Load4(x + i + 4) - m;
    q0 += a * a;
    q1 += b * b;
  }
  double squares = Sum(q0) + Sum(q1);
  for (int64_t i = whole; i < n; ++i) squares += (x[i] - mean) * (x[i] - mean);
  return {mean, static_cast<float>(1.0 / std::sqrt(squares / n + eps))};
}

void Forward(const float* x, float* y, int64_t n, Moments mo, float slope) {
  const F4 m = Splat(mo.mean), r = Splat(mo.rstd), s = Splat(slope);
  const int64_t whole = n / 4 * 4;
  for (int64_t i = 0; i < whole; i += 4) {
    const F4 t = (Load4(x + i) - m) * r;
    Store4(y + i, t > 0 ? t : t * s);
  }
  for (int64_t i = whole; i < n; ++i) {
    const float t = (x[i] - mo.mean) * mo.rstd;
    y[i] = t > 0 ? t : t * slope;
  }
}

void Backward(const float* x, const float* gy, float* gx, int64_t n, Moments mo, float slope) {
  const F4 m = Splat(mo.mean), r = Splat(mo.rstd), s = Splat(slope), one = Splat(1.0f);
  const int64_t whole = n / 4 * 4;
  F4 sg{}, sgx{};
  for (int64_t i = 0; i < whole; i += 4) {
    const F4 t = (Load4(x + i) - m) * r;
    const F4 g = Load4(gy + i) * (t > 0 ? one : s);
    sg += g;
    sgx += g * t;
  }
  double sumG = Sum(sg), sumGx = Sum(sgx);
  for (int64_t i = whole; i < n; ++i) {
    const float t = (x[i] - mo.mean) * mo.rstd;
    const float g = gy[i] * (t > 0 ? 1.0f : slope);
    sumG += g;
    sumGx += g * t;
  }
  const float meanG = static_cast<float>(sumG / n), meanGx = static_cast<float>(sumGx / n);
  const F4 mg = Splat(meanG), mgx = Splat(meanGx);
  for (int64_t i = 0; i < whole; i += 4) {
    const F4 t = (Load4(x + i) - m) * r;
    const F4 g = Load4(gy + i) * (t > 0 ? one : s);
    Store4(gx + i, r * (g - mg - t * mgx));
  }
  for (int64_t i = whole; i < n; ++i) {
    const float t = (x[i] - mo.mean) * mo.rstd;
    const float g = gy[i] * (t > 0 ? 1.0f : slope);
    gx[i] = mo.rstd * (g - meanG - t * meanGx);
  }
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
    at::parallel_for(0, instances, std::max<int64_t>(1, kMinParallelElements / n), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const Moments mo = InstanceMoments(xp + i * n, n, eps);
        mp[2 * i] = mo.mean;
        mp[2 * i + 1] = mo.rstd;
        Forward(xp + i * n, yp + i * n, n, mo, static_cast<float>(slope));
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
    at::parallel_for(0, instances, std::max<int64_t>(1, kMinParallelElements / n), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        Backward(xp + i * n, gyp + i * n, gxp + i * n, n, Moments{mp[2 * i], mp[2 * i + 1]}, static_cast<float>(slope));
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
