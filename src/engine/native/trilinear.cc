// Trilinear resizing with aligned corners: see trilinear.h.
//
// The resize is separable: along W, then H, then D, each output index blends two neighbouring inputs.
// Forward, per output plane z: the two input planes that z reads are resized in-plane (rows along W,
// then whole rows blended along H) into a two-plane cache, and blended along D. The adjoint is
// gathered, one input plane per task: the output-gradient planes that read plane d are summed with
// their weights, then rows are summed back along H and elements along W, so no two tasks write to
// the same place and the result does not depend on the thread count.
#include "trilinear.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "simd.h"

namespace smml {
namespace {

// Floats moved below which a call does not wake a second thread.
constexpr int64_t kMinParallelElements = 32768;

// Linear interpolation along one axis of n inputs and m outputs: output o reads inputs lo[o] and
// hi[o] with weights 1 − t[o] and t[o], as libtorch computes them (in float). The adjoint lists, per
// input j, the outputs that read it: output[k] with weight[k] for k in [start[j], start[j + 1]).
struct AxisTaps {
  AxisTaps(int64_t n, int64_t m) : lo(m), hi(m), t(m), start(n + 1, 0) {
    const float scale = m > 1 ? static_cast<float>(n - 1) / static_cast<float>(m - 1) : 0.0f;
    for (int64_t o = 0; o < m; ++o) {
      const float position = scale * static_cast<float>(o);
      lo[o] = std::min(static_cast<int64_t>(position), n - 1);
      hi[o] = lo[o] < n - 1 ? lo[o] + 1 : lo[o];
      t[o] = std::clamp(position - static_cast<float>(lo[o]), 0.0f, 1.0f);
      ++start[lo[o] + 1];
      ++start[hi[o] + 1];
    }
    for (int64_t j = 0; j < n; ++j) start[j + 1] += start[j];
    output.resize(2 * m);
    weight.resize(2 * m);
    std::vector<int64_t> next(start.begin(), start.end() - 1);
    for (int64_t o = 0; o < m; ++o) {
      output[next[lo[o]]] = o;
      weight[next[lo[o]]++] = 1.0f - t[o];
      output[next[hi[o]]] = o;
      weight[next[hi[o]]++] = t[o];
    }
  }
  std::vector<int64_t> lo, hi;
  std::vector<float> t;
  std::vector<int64_t> start, output;
  std::vector<float> weight;
};

using Simd = simd::Generic;
constexpr int kLanes = Simd::kLanes;

// dst = wa · a + wb · b over n floats.
void Blend(float* dst, const float* a, float wa, const float* b, float wb, int64_t n) {
  const Simd::V va = Simd::Set1(wa), vb = Simd::Set1(wb);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) Simd::Store(dst + i, Simd::Fma(va, Simd::Load(a + i), vb * Simd::Load(b + i)));
  for (; i < n; ++i) dst[i] = wa * a[i] + wb * b[i];
}

// dst += w · src over n floats.
void Accumulate(float* dst, const float* src, float w, int64_t n) {
  const Simd::V vw = Simd::Set1(w);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) Simd::Store(dst + i, Simd::Fma(vw, Simd::Load(src + i), Simd::Load(dst + i)));
  for (; i < n; ++i) dst[i] += w * src[i];
}

// The three axes of one resize: from (D, H, W) to (D', H', W').
struct Resize {
  Resize(const std::vector<int64_t>& from, const std::vector<int64_t>& to)
      : from(from), to(to), d(from[0], to[0]), h(from[1], to[1]), w(from[2], to[2]) {}
  std::vector<int64_t> from, to;
  AxisTaps d, h, w;
};

// x (I, D, H, W) → y (I, D', H', W') for I = B·C instances, both contiguous.
void ResizeForward(const Resize& r, const float* x, float* y, int64_t instances) {
  const int64_t inPlane = r.from[1] * r.from[2], outRow = r.to[2], outPlane = r.to[1] * r.to[2];
  const int64_t grain = std::max<int64_t>(1, kMinParallelElements / outPlane);
  at::parallel_for(0, instances * r.to[0], grain, [&](int64_t begin, int64_t end) {
    std::vector<float> rows(r.from[1] * outRow), cache(2 * outPlane);
    int64_t held[2] = {-1, -1};
    // the input plane (instance, sd) resized in-plane, in cache slot sd % 2 (the two planes an output
    // plane reads are neighbours, or one plane)
    const auto plane = [&](int64_t instance, int64_t sd) {
      const int slot = static_cast<int>(sd % 2);
      float* p = cache.data() + slot * outPlane;
      const int64_t key = instance * r.from[0] + sd;
      if (held[slot] == key) return static_cast<const float*>(p);
      const float* src = x + key * inPlane;
      for (int64_t ih = 0; ih < r.from[1]; ++ih) {
        const float* in = src + ih * r.from[2];
        float* row = rows.data() + ih * outRow;
        for (int64_t ow = 0; ow < outRow; ++ow) row[ow] = (1.0f - r.w.t[ow]) * in[r.w.lo[ow]] + r.w.t[ow] * in[r.w.hi[ow]];
      }
      for (int64_t oh = 0; oh < r.to[1]; ++oh)
        Blend(p + oh * outRow, rows.data() + r.h.lo[oh] * outRow, 1.0f - r.h.t[oh], rows.data() + r.h.hi[oh] * outRow, r.h.t[oh], outRow);
      held[slot] = key;
      return static_cast<const float*>(p);
    };
    for (int64_t task = begin; task < end; ++task) {
      const int64_t instance = task / r.to[0], od = task % r.to[0];
      const float* lo = plane(instance, r.d.lo[od]);
      const float* hi = plane(instance, r.d.hi[od]);
      Blend(y + task * outPlane, lo, 1.0f - r.d.t[od], hi, r.d.t[od], outPlane);
    }
  });
}

// The adjoint: gy (I, D', H', W') → gx (I, D, H, W), one input plane per task.
void ResizeAdjoint(const Resize& r, const float* gy, float* gx, int64_t instances) {
  const int64_t inRow = r.from[2], inPlane = r.from[1] * r.from[2], outRow = r.to[2], outPlane = r.to[1] * r.to[2];
  const int64_t grain = std::max<int64_t>(1, kMinParallelElements / (outPlane * r.to[0] / r.from[0] + 1));
  at::parallel_for(0, instances * r.from[0], grain, [&](int64_t begin, int64_t end) {
    std::vector<float> plane(outPlane), rows(r.from[1] * outRow);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t instance = task / r.from[0], sd = task % r.from[0];
      std::fill(plane.begin(), plane.end(), 0.0f);
      for (int64_t k = r.d.start[sd]; k < r.d.start[sd + 1]; ++k)
        Accumulate(plane.data(), gy + (instance * r.to[0] + r.d.output[k]) * outPlane, r.d.weight[k], outPlane);
      std::fill(rows.begin(), rows.end(), 0.0f);
      for (int64_t ih = 0; ih < r.from[1]; ++ih)
        for (int64_t k = r.h.start[ih]; k < r.h.start[ih + 1]; ++k)
          Accumulate(rows.data() + ih * outRow, plane.data() + r.h.output[k] * outRow, r.h.weight[k], outRow);
      float* out = gx + task * inPlane;
      for (int64_t ih = 0; ih < r.from[1]; ++ih) {
        const float* row = rows.data() + ih * outRow;
        for (int64_t iw = 0; iw < inRow; ++iw) {
          float sum = 0.0f;
          for (int64_t k = r.w.start[iw]; k < r.w.start[iw + 1]; ++k) sum += r.w.weight[k] * row[r.w.output[k]];
          out[ih * inRow + iw] = sum;
        }
      }
    }
  });
}

std::vector<int64_t> SpatialSizes(const at::Tensor& t) { return {t.size(2), t.size(3), t.size(4)}; }

at::Tensor Run(const at::Tensor& input, const std::vector<int64_t>& size, bool adjoint) {
  const at::Tensor x = input.contiguous();
  const std::vector<int64_t> from = SpatialSizes(x);
  at::Tensor y = at::empty({x.size(0), x.size(1), size[0], size[1], size[2]}, x.options());
  const int64_t instances = x.size(0) * x.size(1);
  if (adjoint) ResizeAdjoint(Resize(size, from), x.data_ptr<float>(), y.data_ptr<float>(), instances);
  else ResizeForward(Resize(from, size), x.data_ptr<float>(), y.data_ptr<float>(), instances);
  return y;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// y = resize(x) to `size`
struct TrilinearFunction : public torch::autograd::Function<TrilinearFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, std::vector<int64_t> size);
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

// gx = resizeᵀ(gy), of spatial size `size` (the size of the resized input)
struct TrilinearAdjoint : public torch::autograd::Function<TrilinearAdjoint> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gy, std::vector<int64_t> size);
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

at::Tensor TrilinearFunction::forward(AutogradContext* ctx, const at::Tensor& x, std::vector<int64_t> size) {
  ctx->saved_data["from"] = SpatialSizes(x);
  return Run(x, size, false);
}

variable_list TrilinearFunction::backward(AutogradContext* ctx, variable_list grads) {
  return {TrilinearAdjoint::apply(grads[0], ctx->saved_data["from"].toIntVector()), at::Tensor()};
}

at::Tensor TrilinearAdjoint::forward(AutogradContext* ctx, const at::Tensor& gy, std::vector<int64_t> size) {
  ctx->saved_data["to"] = SpatialSizes(gy);
  return Run(gy, size, true);
}

variable_list TrilinearAdjoint::backward(AutogradContext* ctx, variable_list grads) {
  return {TrilinearFunction::apply(grads[0], ctx->saved_data["to"].toIntVector()), at::Tensor()};
}

}  // namespace

bool TrilinearAlignedApplies(const at::Tensor& x, const std::vector<int64_t>& size) {
  if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || x.layout() != at::kStrided || x.dim() != 5) return false;
  if (size.size() != 3 || std::any_of(size.begin(), size.end(), [](int64_t s) { return s < 1; })) return false;
  return x.numel() > 0;
}

at::Tensor TrilinearAligned(const at::Tensor& x, const std::vector<int64_t>& size) {
  return TrilinearFunction::apply(x, size);
}

}  // namespace smml
