// libtorch's autocast (automatic mixed precision) for JavaScript: scopes that switch it on and off per device
// type, and the casts of the operations that libtorch's autocast does not reach.
//
// libtorch's autocast casts the operands of the operations it lists (matrix products, `linear`, the conv1d/2d/3d
// entries, the losses) when they pass its dispatch key. The engine calls `at::convolution` and its own float32
// kernels directly, so those casts are made here, on request of the engine's functions:
// - 'lower': to the autocast dtype (weights through libtorch's cast cache, so a weight is cast once per scope);
// - 'float32': back to float32 (normalisations, softmax, resizing: their sums need float32's precision, and the
//   fused and resizing kernels are float32 kernels);
// - a convolution: float32 where one of the engine's direct kernels computes it, else the autocast dtype.
// The state is libtorch's and per thread; the engine runs every operation on the JavaScript thread.
#include <ATen/autocast_mode.h>

#include <string>
#include <vector>

#include "binding.h"
#include "conv1x1.h"
#include "thin_conv.h"

namespace smml {
namespace {

c10::DeviceType DeviceTypeArgument(const Napi::Value& v) {
  std::string name = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (name == "cpu") return c10::DeviceType::CPU;
  if (name == "cuda") return c10::DeviceType::CUDA;
  throw Napi::TypeError::New(v.Env(), "autocast: expected the device type 'cpu' or 'cuda'");
}

at::ScalarType LowerDtypeArgument(const Napi::Value& v) {
  std::string name = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  throw Napi::TypeError::New(v.Env(), "autocast: expected the dtype 'bfloat16' or 'float16'");
}

const char* DtypeName(at::ScalarType dtype) { return dtype == at::kHalf ? "float16" : "bfloat16"; }

bool IsEnabled(c10::DeviceType device) {
  return device == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
}

void SetEnabled(c10::DeviceType device, bool enabled) {
  if (device == c10::DeviceType::CPU) at::autocast::set_cpu_enabled(enabled);
  else at::autocast::set_enabled(enabled);
}

at::ScalarType LowerDtype(c10::DeviceType device) {
  return device == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype() : at::autocast::get_autocast_gpu_dtype();
}

void SetLowerDtype(c10::DeviceType device, at::ScalarType dtype) {
  if (device == c10::DeviceType::CPU) at::autocast::set_autocast_cpu_dtype(dtype);
  else at::autocast::set_autocast_gpu_dtype(dtype);
}

Napi::Object StateObject(Napi::Env env, c10::DeviceType device) {
  Napi::Object state = Napi::Object::New(env);
  state.Set("enabled", Napi::Boolean::New(env, IsEnabled(device)));
  state.Set("dtype", Napi::String::New(env, DtypeName(LowerDtype(device))));
  state.Set("cache", Napi::Boolean::New(env, at::autocast::is_autocast_cache_enabled()));
  return state;
}

// The device type whose autocast applies to `t`, if it is on there and t is a floating-point tensor it casts.
c10::optional<c10::DeviceType> AutocastDeviceOf(const at::Tensor& t) {
  if (!t.defined() || !t.is_floating_point() || t.scalar_type() == at::kDouble) return c10::nullopt;
  c10::DeviceType device = t.device().type();
  if ((device != c10::DeviceType::CPU && device != c10::DeviceType::CUDA) || !IsEnabled(device)) return c10::nullopt;
  return device;
}

// Operands: an array of tensors and nulls (absent optional operands).
std::vector<c10::optional<at::Tensor>> OperandsArgument(const Napi::Value& v) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "autocast: expected an array of tensors and nulls");
  Napi::Array array = v.As<Napi::Array>();
  std::vector<c10::optional<at::Tensor>> operands;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array.Get(i);
    if (item.IsNull() || item.IsUndefined()) operands.emplace_back(c10::nullopt);
    else operands.emplace_back(TensorArgument(item));
  }
  return operands;
}

// The operands cast to `dtype` as autocast casts them; null where one is absent or would not change.
Napi::Value CastOperands(Napi::Env env, const std::vector<c10::optional<at::Tensor>>& operands, c10::DeviceType device,
                         at::ScalarType dtype) {
  Napi::Array out = Napi::Array::New(env, operands.size());
  for (size_t i = 0; i < operands.size(); ++i) {
    const auto& t = operands[i];
    bool changes = t && t->is_floating_point() && t->scalar_type() != at::kDouble && t->scalar_type() != dtype;
    out.Set(static_cast<uint32_t>(i), changes ? TensorValue(env, at::autocast::cached_cast(dtype, *t, device)) : env.Null());
  }
  return out;
}

std::vector<int64_t> IntsArgument(const Napi::Value& v) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "autocast: expected an array of integers");
  Napi::Array array = v.As<Napi::Array>();
  std::vector<int64_t> ints;
  for (uint32_t i = 0; i < array.Length(); ++i) ints.push_back(array.Get(i).As<Napi::Number>().Int64Value());
  return ints;
}

// A float32 stand-in of t for the direct kernels' predicates, which read only device, dtype, layout and sizes:
// one element broadcast to t's sizes, so that no copy of t is made to ask.
at::Tensor Float32StandIn(const at::Tensor& t) {
  return at::empty({1}, t.options().dtype(at::kFloat)).expand(t.sizes());
}

}  // namespace

void InitAutocast(Napi::Env env, Napi::Object exports) {
  DefineFunction(env, exports, "autocastEnter", [](const Napi::CallbackInfo& info) {
    // (deviceType, enabled, dtype): opens a scope, as torch.autocast's __enter__; returns the state it replaces.
    c10::DeviceType device = DeviceTypeArgument(info[0]);
    at::ScalarType dtype = LowerDtypeArgument(info[2]);
    if (device == c10::DeviceType::CPU && dtype != at::kBFloat16) {
      throw Napi::TypeError::New(info.Env(), "autocast on the CPU supports bfloat16 only");
    }
    Napi::Object previous = StateObject(info.Env(), device);
    SetEnabled(device, info[1].ToBoolean());
    SetLowerDtype(device, dtype);
    at::autocast::increment_nesting();
    at::autocast::set_autocast_cache_enabled(true);
    return previous;
  });
  DefineFunction(env, exports, "autocastExit", [](const Napi::CallbackInfo& info) {
    // (deviceType, previous state): closes a scope; leaving the outermost drops the cached weight casts.
    c10::DeviceType device = DeviceTypeArgument(info[0]);
    Napi::Object previous = info[1].As<Napi::Object>();
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    SetEnabled(device, previous.Get("enabled").ToBoolean());
    SetLowerDtype(device, LowerDtypeArgument(previous.Get("dtype")));
    at::autocast::set_autocast_cache_enabled(previous.Get("cache").ToBoolean());
    return info.Env().Undefined();
  });
  DefineFunction(env, exports, "autocastState", [](const Napi::CallbackInfo& info) {
    return StateObject(info.Env(), DeviceTypeArgument(info[0]));
  });
  DefineFunction(env, exports, "autocastCast", [](const Napi::CallbackInfo& info) -> Napi::Value {
    // (policy 'lower' | 'float32', operands): the operands of one operation cast for the autocast of the first
    // one's device; null for the whole list when that autocast is off.
    std::string policy = info[0].As<Napi::String>().Utf8Value();
    auto operands = OperandsArgument(info[1]);
    if (operands.empty() || !operands[0]) return info.Env().Null();
    auto device = AutocastDeviceOf(*operands[0]);
    if (!device) return info.Env().Null();
    if (policy == "lower") return CastOperands(info.Env(), operands, *device, LowerDtype(*device));
    if (policy == "float32") return CastOperands(info.Env(), operands, *device, at::kFloat);
    throw Napi::TypeError::New(info.Env(), "autocastCast: unknown policy '" + policy + "'");
  });
  DefineFunction(env, exports, "autocastConvolutionOperands", [](const Napi::CallbackInfo& info) -> Napi::Value {
    // ([x, w, bias | null], stride, padding, dilation, groups, paddingMode): as autocastCast, with the dtype
    // the convolution runs in. The direct kernels stay float32: on thin layers they are faster than oneDNN's
    // bfloat16 convolutions (forward + backward, batch 8, AVX512-BF16: 3×3×3 8 → 8 channels at 32³ 43 ms
    // against 82 ms; 1×1×1 8 → 8 at 32³ 3 ms against 21 ms), while wider layers gain (64 → 64 at 4³: 21 ms
    // against 8 ms; 64 → 32 at 32³, batch 2: 358 ms against 149 ms).
    auto operands = OperandsArgument(info[0]);
    if (operands.size() != 3 || !operands[0] || !operands[1]) {
      throw Napi::TypeError::New(info.Env(), "autocastConvolutionOperands: expected [x, weight, bias | null]");
    }
    auto device = AutocastDeviceOf(*operands[0]);
    if (!device) return info.Env().Null();
    auto stride = IntsArgument(info[1]), padding = IntsArgument(info[2]), dilation = IntsArgument(info[3]);
    int64_t groups = info[4].As<Napi::Number>().Int64Value();
    std::string mode = info[5].As<Napi::String>().Utf8Value();
    at::Tensor x = Float32StandIn(*operands[0]), w = Float32StandIn(*operands[1]);
    c10::optional<at::Tensor> bias, realBias;
    if (operands[2]) {
      bias = Float32StandIn(*operands[2]);
      realBias = *operands[2];
    }
    bool direct = Conv1x1Applies(x, w, bias, stride, padding, groups) ||
                  ((mode == "zeros" || mode == "reflect") &&
                   ThinConvolutionApplies(x, w, bias, stride, padding, dilation, groups, mode == "reflect",
                                          GradientNeeded(*operands[0], *operands[1], realBias)));
    return CastOperands(info.Env(), operands, *device, direct ? at::kFloat : LowerDtype(*device));
  });
}

}  // namespace smml
