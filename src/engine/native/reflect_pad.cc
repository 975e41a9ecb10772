// Reflect padding by whole rows: see reflect_pad.h.
#include "reflect_pad.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <cstring>

namespace smml {
namespace {

// Elements copied or added per task below which a call stays on one thread.
constexpr int64_t kGrainElements = 32768;

// For each padded index along an axis of n voxels, the voxel it copies: mirrored at the edges without
// repeating the edge voxel (before − 1 reads 1, n + before reads n − 2).
std::vector<int64_t> SourceIndices(int64_t n, int64_t before, int64_t after) {
  std::vector<int64_t> source(n + before + after);
  for (int64_t o = 0; o < static_cast<int64_t>(source.size()); ++o) {
    int64_t s = o - before;
    if (s < 0) s = -s;
    if (s >= n) s = 2 * (n - 1) - s;
    source[o] = s;
  }
  return source;
}

// The padded geometry of x: its spatial sizes and each padded axis's source indices.
struct Geometry {
  int64_t planes;  // B · C
  int64_t d, h, w;
  int64_t wBefore;
  std::vector<int64_t> sd, sh, sw;
  Geometry(at::IntArrayRef shape, const std::vector<int64_t>& pads)
      : planes(shape[0] * shape[1]), d(shape[2]), h(shape[3]), w(shape[4]), wBefore(pads[0]),
        sd(SourceIndices(d, pads[4], pads[5])), sh(SourceIndices(h, pads[2], pads[3])), sw(SourceIndices(w, pads[0], pads[1])) {}
  int64_t OutD() const { return static_cast<int64_t>(sd.size()); }
  int64_t OutH() const { return static_cast<int64_t>(sh.size()); }
  int64_t OutW() const { return static_cast<int64_t>(sw.size()); }
};

at::Tensor Pad(const at::Tensor& input, const std::vector<int64_t>& pads) {
  const at::Tensor x = input.contiguous();
  const Geometry g(x.sizes(), pads);
  at::Tensor out = at::empty({x.size(0), x.size(1), g.OutD(), g.OutH(), g.OutW()}, x.options());
  const int64_t outRows = g.planes * g.OutD() * g.OutH();
  const int64_t rowsPerTask = std::max<int64_t>(1, kGrainElements / g.OutW());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "ReflectPad3d", [&] {
    const scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, outRows, rowsPerTask, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t oh = row % g.OutH(), od = (row / g.OutH()) % g.OutD(), plane = row / (g.OutH() * g.OutD());
        const scalar_t* in = src + ((plane * g.d + g.sd[od]) * g.h + g.sh[oh]) * g.w;
        scalar_t* o = dst + row * g.OutW();
        std::memcpy(o + g.wBefore, in, sizeof(scalar_t) * g.w);
        for (int64_t k = 0; k < g.wBefore; ++k) o[k] = in[g.sw[k]];
        for (int64_t k = g.wBefore + g.w; k < g.OutW(); ++k) o[k] = in[g.sw[k]];
      }
    });
  });
  return out;
}

// The adjoint of Pad: every padded element added onto the voxel it was copied from. Each (sample,
// channel) is summed by one thread in a fixed order, so the result does not depend on the thread count.
at::Tensor Fold(const at::Tensor& padded, at::IntArrayRef inputShape, const std::vector<int64_t>& pads) {
  const at::Tensor gy = padded.contiguous();
  const Geometry g(inputShape, pads);
  at::Tensor gx = at::zeros(inputShape, gy.options());
  const int64_t planeElements = g.OutD() * g.OutH() * g.OutW();
  const int64_t planesPerTask = std::max<int64_t>(1, kGrainElements / planeElements);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, gy.scalar_type(), "ReflectPad3dBackward", [&] {
    const scalar_t* src = gy.data_ptr<scalar_t>();
    scalar_t* dst = gx.data_ptr<scalar_t>();
    at::parallel_for(0, g.planes, planesPerTask, [&](int64_t begin, int64_t end) {
      for (int64_t plane = begin; plane < end; ++plane)
        for (int64_t od = 0; od < g.OutD(); ++od)
          for (int64_t oh = 0; oh < g.OutH(); ++oh) {
            const scalar_t* in = src + ((plane * g.OutD() + od) * g.OutH() + oh) * g.OutW();
            scalar_t* o = dst + ((plane * g.d + g.sd[od]) * g.h + g.sh[oh]) * g.w;
            for (int64_t k = 0; k < g.w; ++k) o[k] += in[g.wBefore + k];
            for (int64_t k = 0; k < g.wBefore; ++k) o[g.sw[k]] += in[k];
            for (int64_t k = g.wBefore + g.w; k < g.OutW(); ++k) o[g.sw[k]] += in[k];
          }
    });
  });
  return gx;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct ReflectPadFunction : public torch::autograd::Function<ReflectPadFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, std::vector<int64_t> pads);
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

struct ReflectFoldFunction : public torch::autograd::Function<ReflectFoldFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& padded, std::vector<int64_t> inputShape,
                            std::vector<int64_t> pads);
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

at::Tensor ReflectPadFunction::forward(AutogradContext* ctx, const at::Tensor& x, std::vector<int64_t> pads) {
  ctx->saved_data["shape"] = x.sizes().vec();
  ctx->saved_data["pads"] = pads;
  return Pad(x, pads);
}

variable_list ReflectPadFunction::backward(AutogradContext* ctx, variable_list grads) {
  const auto shape = ctx->saved_data["shape"].toIntVector();
  const auto pads = ctx->saved_data["pads"].toIntVector();
  return {ReflectFoldFunction::apply(grads[0], shape, pads), at::Tensor()};
}

at::Tensor ReflectFoldFunction::forward(AutogradContext* ctx, const at::Tensor& padded, std::vector<int64_t> inputShape,
                                        std::vector<int64_t> pads) {
  ctx->saved_data["pads"] = pads;
  return Fold(padded, inputShape, pads);
}

variable_list ReflectFoldFunction::backward(AutogradContext* ctx, variable_list grads) {
  const auto pads = ctx->saved_data["pads"].toIntVector();
  return {ReflectPadFunction::apply(grads[0], pads), at::Tensor(), at::Tensor()};
}

}  // namespace

bool ReflectPad3dApplies(const at::Tensor& x, const std::vector<int64_t>& pads) {
  if (!x.device().is_cpu() || x.layout() != at::kStrided || x.dim() != 5 || pads.size() != 6) return false;
  if (!at::isFloatingType(x.scalar_type())) return false;
  for (size_t i = 0; i < pads.size(); ++i) {
    const int64_t size = x.size(4 - static_cast<int64_t>(i) / 2);
    if (pads[i] < 0 || pads[i] >= size) return false;
  }
  return true;
}

at::Tensor ReflectPad3d(const at::Tensor& x, const std::vector<int64_t>& pads) { return ReflectPadFunction::apply(x, pads); }

}  // namespace smml
