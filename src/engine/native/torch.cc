// N-API binding of libtorch's at::Tensor and autograd.
//
// Every exported function takes native tensor handles (instances of `NativeTensor`), plain numbers,
// strings and arrays, and returns new handles. All libtorch errors are caught and re-thrown as
// JavaScript errors carrying libtorch's message, so no input can abort the process.
#include <napi.h>
#include <torch/torch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Reduction.h>
#include <c10/core/CPUAllocator.h>

#include "binding.h"
#include "conv1x1.h"
#include "norm_act.h"
#include "reflect_pad.h"
#include "thin_conv.h"
#include "trilinear.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------------
// CPU memory.
//
// libtorch's default CPU allocator uses posix_memalign. glibc before 2.38 rarely reuses a block
// freed by posix_memalign for a later aligned request of the same size (the request asks for
// size + alignment), so a training loop that frees everything it allocates still grows the heap
// by roughly its per-step allocations, step after step. This allocator takes plain malloc blocks,
// which glibc reuses, and aligns inside them.
//
// Blocks of kLargeBlock bytes and more (glibc maps those anew at every allocation and unmaps them
// when freed, whatever M_MMAP_THRESHOLD says) are mapped here instead, on 2 MiB boundaries and
// marked for transparent huge pages: first touching a fresh 67 MB block faulted its 4 KiB pages in
// at about 0.3 GB/s, its 2 MiB pages at about 10 GB/s. Freed ones are kept for reuse by a later
// block of the same size, up to a cap, since the kernel clears every fresh page; a training step
// frees and asks again for the same sizes (src/engine/README.md, "Large blocks").
//
// Both kinds keep two words before the aligned address, so that the aligned address alone can free
// it (libtorch's raw_allocate needs data == context): the mapping's length (0 for a malloc block)
// and the malloc pointer or the mapping's start.

constexpr size_t kCpuAlignment = 64;  // as libtorch's own allocator (AVX-512 lines)
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kLargeBlock = size_t{32} << 20;  // glibc's largest M_MMAP_THRESHOLD

// Freed large blocks by mapped length, at most `capacity` bytes together (an eighth of the
// machine's memory, at most 4 GiB).
class LargeBlockCache {
 public:
  void* take(size_t mappedBytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = blocks_.find(mappedBytes);
    if (found == blocks_.end()) return nullptr;
    void* aligned = found->second;
    blocks_.erase(found);
    cachedBytes_ -= mappedBytes;
    return aligned;
  }
  bool keep(void* aligned, size_t mappedBytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cachedBytes_ + mappedBytes > capacity_) return false;
    blocks_.emplace(mappedBytes, aligned);
    cachedBytes_ += mappedBytes;
    return true;
  }
  size_t cachedBytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cachedBytes_;
  }

 private:
  static size_t Capacity() {
    const long pages = sysconf(_SC_PHYS_PAGES);
    const long pageSize = sysconf(_SC_PAGESIZE);
    const size_t physical = pages > 0 && pageSize > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(pageSize) : 0;
    return std::min(physical / 8, size_t{4} << 30);
  }
  std::mutex mutex_;
  std::multimap<size_t, void*> blocks_;
  size_t cachedBytes_ = 0;
  const size_t capacity_ = Capacity();
};

LargeBlockCache largeBlocks;

void FreeAligned(void* aligned) {
  if (aligned == nullptr) return;
  void** header = static_cast<void**>(aligned);
  const auto mappedBytes = reinterpret_cast<size_t>(header[-2]);
  if (mappedBytes == 0) std::free(header[-1]);
  else if (!largeBlocks.keep(aligned, mappedBytes)) munmap(header[-1], mappedBytes);
}

// A block of at least `nbytes` bytes whose huge pages start on a 2 MiB boundary, kept from an
// earlier one of the same size or mapped now; nullptr when the system refuses it.
void* LargeBlock(size_t nbytes) {
  const size_t usable = (nbytes + kCpuAlignment + kHugePage - 1) / kHugePage * kHugePage;
  const size_t mappedBytes = usable + kHugePage;  // room to move the start to a 2 MiB boundary
  if (void* kept = largeBlocks.take(mappedBytes)) return kept;
  void* mapping = mmap(nullptr, mappedBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED) return nullptr;
  const uintptr_t start = (reinterpret_cast<uintptr_t>(mapping) + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
#ifdef MADV_HUGEPAGE
  // Advice only: without huge pages the block still works, with 4 KiB pages.
  madvise(reinterpret_cast<void*>(start), usable, MADV_HUGEPAGE);
#endif
  void* aligned = reinterpret_cast<void*>(start + kCpuAlignment);
  static_cast<void**>(aligned)[-1] = mapping;
  static_cast<void**>(aligned)[-2] = reinterpret_cast<void*>(mappedBytes);
  return aligned;
}

class ReusingCpuAllocator final : public at::Allocator {
 public:
  at::DataPtr allocate(size_t nbytes) const override {
    const at::Device cpu(at::DeviceType::CPU);
    if (nbytes == 0) return {nullptr, nullptr, &FreeAligned, cpu};
    if (nbytes >= kLargeBlock && nbytes <= SIZE_MAX / 2) {
      if (void* aligned = LargeBlock(nbytes)) return {aligned, aligned, &FreeAligned, cpu};
    }
    constexpr size_t overhead = kCpuAlignment + 2 * sizeof(void*);
    void* raw = nbytes <= SIZE_MAX - overhead ? std::malloc(nbytes + overhead) : nullptr;
    TORCH_CHECK(raw != nullptr, "out of CPU memory allocating ", nbytes, " bytes");
    uintptr_t first = reinterpret_cast<uintptr_t>(raw) + 2 * sizeof(void*);
    void* aligned = reinterpret_cast<void*>((first + kCpuAlignment - 1) & ~(uintptr_t{kCpuAlignment} - 1));
    static_cast<void**>(aligned)[-1] = raw;
    static_cast<void**>(aligned)[-2] = nullptr;
    return {aligned, aligned, &FreeAligned, cpu};
  }
  at::DeleterFnPtr raw_deleter() const override { return &FreeAligned; }
};

ReusingCpuAllocator cpuAllocator;

// ---------------------------------------------------------------------------------------------
// The tensor handle.

class NativeTensor : public Napi::ObjectWrap<NativeTensor> {
 public:
  static Napi::FunctionReference constructor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "NativeTensor", {});
    constructor = Napi::Persistent(cls);
    constructor.SuppressDestruct();
    exports.Set("NativeTensor", cls);
  }

  explicit NativeTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTensor>(info) {}

  void Finalize(Napi::Env env) override { Release(env); }

  // Drops this handle's reference; storage is freed once no other tensor shares it.
  void Release(Napi::Env env) {
    if (reported_ != 0) {
      Napi::MemoryManagement::AdjustExternalMemory(env, -reported_);
      reportedBytes -= reported_;
      reported_ = 0;
    }
    if (tensor_.defined()) --liveHandles;
    tensor_.reset();
  }

  // Tells V8 how much native memory this handle keeps alive, so garbage collection runs when
  // JavaScript drops tensors without disposing them. Views share their base's storage and are
  // not counted again.
  void Set(Napi::Env env, at::Tensor t) {
    tensor_ = std::move(t);
    if (tensor_.defined()) ++liveHandles;
    if (tensor_.defined() && !tensor_.is_view() && tensor_.has_storage() && tensor_.device().is_cpu()) {
      reported_ = static_cast<int64_t>(tensor_.storage().nbytes());
      if (reported_ > 0) {
        Napi::MemoryManagement::AdjustExternalMemory(env, reported_);
        reportedBytes += reported_;
      }
    }
  }

  at::Tensor tensor_;
  // Handles not yet disposed or collected, and the bytes they report to V8 (for leak checks).
  static std::atomic<int64_t> liveHandles;
  static std::atomic<int64_t> reportedBytes;

 private:
  int64_t reported_ = 0;
};

Napi::FunctionReference NativeTensor::constructor;
std::atomic<int64_t> NativeTensor::liveHandles{0};
std::atomic<int64_t> NativeTensor::reportedBytes{0};

// ---------------------------------------------------------------------------------------------
// Argument conversion.

Napi::Value Wrap(Napi::Env env, at::Tensor t) {
  Napi::Object obj = NativeTensor::constructor.New({});
  NativeTensor::Unwrap(obj)->Set(env, std::move(t));
  return obj;
}

Napi::Array WrapList(Napi::Env env, const std::vector<at::Tensor>& list) {
  Napi::Array out = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); ++i) out.Set(static_cast<uint32_t>(i), Wrap(env, list[i]));
  return out;
}

bool IsTensor(const Napi::Value& v) {
  return v.IsObject() && v.As<Napi::Object>().InstanceOf(NativeTensor::constructor.Value());
}

const at::Tensor& T(const Napi::Value& v) {
  if (!IsTensor(v)) throw Napi::TypeError::New(v.Env(), "expected a tensor");
  const at::Tensor& t = NativeTensor::Unwrap(v.As<Napi::Object>())->tensor_;
  if (!t.defined())
    throw Napi::Error::New(v.Env(), "a disposed tensor was used (disposed by dispose() or by the tidy scope that made it)");
  return t;
}

c10::optional<at::Tensor> OptT(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return c10::nullopt;
  return T(v);
}

// Index arguments: libtorch wants int64 for gather/scatter/one_hot; other integer dtypes are widened.
at::Tensor IndexT(const Napi::Value& v) {
  const at::Tensor& t = T(v);
  if (t.scalar_type() != at::kLong && at::isIntegralType(t.scalar_type(), /*includeBool=*/false)) return t.to(at::kLong);
  return t;
}

std::vector<at::Tensor> TList(const Napi::Value& v) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "expected an array of tensors");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(T(a.Get(i)));
  return out;
}

// A fractional size or index is a caller's bug; truncating it would hide that.
int64_t Int(const Napi::Value& v) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), "expected an integer, got " + v.ToString().Utf8Value());
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d)
    throw Napi::TypeError::New(v.Env(), "expected an integer, got " + v.ToString().Utf8Value());
  return v.As<Napi::Number>().Int64Value();
}

double Num(const Napi::Value& v) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), "expected a number, got " + v.ToString().Utf8Value());
  return v.As<Napi::Number>().DoubleValue();
}

bool Bool(const Napi::Value& v) { return v.ToBoolean().Value(); }

std::string Str(const Napi::Value& v) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), "expected a string, got " + v.ToString().Utf8Value());
  return v.As<Napi::String>().Utf8Value();
}

std::vector<int64_t> Ints(const Napi::Value& v) {
  if (v.IsNumber()) return {Int(v)};
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "expected an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) out[i] = Int(a.Get(i));
  return out;
}

c10::optional<std::vector<int64_t>> OptInts(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return c10::nullopt;
  return Ints(v);
}

// JavaScript integers become integer scalars so that `intTensor + 1` stays integral, as in PyTorch.
at::Scalar Scalar(const Napi::Value& v) {
  if (v.IsBoolean()) return at::Scalar(v.As<Napi::Boolean>().Value());
  double d = Num(v);
  if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9007199254740992.0) {
    return at::Scalar(static_cast<int64_t>(d));
  }
  return at::Scalar(d);
}

c10::optional<at::Scalar> OptScalar(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return c10::nullopt;
  return Scalar(v);
}

const std::vector<std::pair<std::string, at::ScalarType>>& DtypeNames() {
  static const std::vector<std::pair<std::string, at::ScalarType>> names = {
      {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16},
      {"int64", at::kLong},    {"int32", at::kInt},      {"int16", at::kShort},  {"int8", at::kChar},
      {"uint8", at::kByte},    {"bool", at::kBool},
  };
  return names;
}

at::ScalarType Dtype(const Napi::Value& v) {
  std::string name = Str(v);
  for (const auto& [n, t] : DtypeNames())
    if (n == name) return t;
  std::string known;
  for (const auto& entry : DtypeNames()) known += (known.empty() ? "" : ", ") + entry.first;
  throw Napi::TypeError::New(v.Env(), "unknown dtype '" + name + "' (known: " + known + ")");
}

c10::optional<at::ScalarType> OptDtype(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return c10::nullopt;
  return Dtype(v);
}

std::string DtypeName(at::ScalarType t) {
  for (const auto& [n, s] : DtypeNames())
    if (s == t) return n;
  return c10::toString(t);
}

c10::Device Device(const Napi::Value& v) {
  std::string name = Str(v);
  c10::Device device(name);
  if (device.is_cuda() && !torch::cuda::is_available())
    throw Napi::Error::New(v.Env(), "device '" + name + "' requested, but the linked libtorch has no usable CUDA");
  return device;
}

at::TensorOptions Options(const Napi::Value& dtype, const Napi::Value& device) {
  return at::TensorOptions().dtype(Dtype(dtype)).device(Device(device));
}

int64_t Reduction(const Napi::Value& v) {
  std::string r = Str(v);
  if (r == "none") return at::Reduction::None;
  if (r == "mean") return at::Reduction::Mean;
  if (r == "sum") return at::Reduction::Sum;
  throw Napi::TypeError::New(v.Env(), "unknown reduction '" + r + "'");
}

// ---------------------------------------------------------------------------------------------
// Registration with error translation.

// The same error with the function's name in front of its message, so that an argument error
// says which call it came from.
Napi::Error Renamed(Napi::Env env, const char* name, const Napi::Error& e) {
  std::string message = std::string(name) + ": " + e.Message();
  Napi::Value kind = e.Value().Get("name");
  std::string className = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "";
  if (className == "TypeError") return Napi::TypeError::New(env, message);
  if (className == "RangeError") return Napi::RangeError::New(env, message);
  return Napi::Error::New(env, message);
}

template <typename F>
void Def(Napi::Env env, Napi::Object exports, const char* name, F f) {
  exports.Set(name, Napi::Function::New(
                        env,
                        [f, name](const Napi::CallbackInfo& info) -> Napi::Value {
                          try {
                            return f(info);
                          } catch (const Napi::Error& e) {
                            throw Renamed(info.Env(), name, e);
                          } catch (const c10::Error& e) {
                            throw Napi::Error::New(info.Env(), std::string(name) + ": " + e.what_without_backtrace());
                          } catch (const std::exception& e) {
                            throw Napi::Error::New(info.Env(), std::string(name) + ": " + e.what());
                          }
                        },
                        name));
}

using Info = const Napi::CallbackInfo&;

// A binary operation whose right operand may be a tensor or a number.
template <typename TT, typename TS>
Napi::Value Binary(Info info, TT tensor_op, TS scalar_op) {
  const at::Tensor& a = T(info[0]);
  if (IsTensor(info[1])) return Wrap(info.Env(), tensor_op(a, T(info[1])));
  return Wrap(info.Env(), scalar_op(a, Scalar(info[1])));
}

// Float32 CPU convolutions that libtorch 1.13 runs slowly, routed through oneDNN by hand:
// - batch 1 with N·C·D·H ≤ 20480: libtorch picks its reference kernel (`slow_conv3d`, ~2 GFLOP/s)
//   in both directions;
// - few channels at stride 1: oneDNN's own backward kernels are 5–15× slower than its forward
//   convolution on the same sizes.
// The forward is oneDNN's. At stride 1 (dilation 1, one group) both gradients are themselves
// forward convolutions: the input gradient convolves the output gradient with the flipped,
// transposed kernel, and the weight gradient convolves the input with the output gradient after
// swapping the batch and channel axes. Otherwise the backward is libtorch's oneDNN backward, run on
// a batch padded with a zero sample when the batch is 1 (a zero sample adds nothing to the weight
// gradient, and its input gradient is dropped). Both backward forms are built from differentiable
// operations, so second derivatives work. The bias is added outside, by ordinary autograd.
// Every bfloat16 convolution (autocast's) takes this route too: libtorch 1.13's oneDNN weight gradient in
// bfloat16 is 10–500× slower than its forward convolution (64 → 64 channels at 4³, batch 2: 22 ms against
// 0.15 ms; 16 → 32 at 16³, stride 2: 102 ms against 0.2 ms), so it is computed as a forward convolution at
// any stride (one group, dilation 1).
constexpr int64_t kFewChannels = 8;

bool IsPlainStride1(const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                    const std::vector<int64_t>& dilation, int64_t groups, const at::Tensor& w) {
  if (groups != 1) return false;
  for (size_t i = 0; i < stride.size(); ++i) {
    if (stride[i] != 1 || dilation[i] != 1 || padding[i] > w.size(static_cast<int64_t>(i) + 2) - 1) return false;
  }
  return true;
}

bool NeedsOneDnnRoute(const at::Tensor& x, const at::Tensor& w, const std::vector<int64_t>& stride,
                      const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation, int64_t groups) {
  if (!at::hasMKLDNN() || !at::globalContext().userEnabledMkldnn()) return false;
  if (!x.device().is_cpu() || x.layout() != at::kStrided || x.dim() < 4 || x.dim() > 5) return false;
  if (x.scalar_type() == at::kBFloat16 && w.scalar_type() == at::kBFloat16) return true;
  if (x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat) return false;
  bool smallBatch1 = x.size(0) == 1 && x.size(0) * x.size(1) * x.size(2) * x.size(3) <= 20480;
  bool fewChannels = std::max(w.size(0), w.size(1)) <= kFewChannels && IsPlainStride1(stride, padding, dilation, groups, w);
  return smallBatch1 || fewChannels;
}

// The weight gradient as a forward convolution (one group, dilation 1): the input with its batch and channel
// axes swapped, convolved with the output gradient likewise swapped and dilated by the stride; what lies past the
// kernel (where the stride does not divide the padded input) is dropped.
at::Tensor WeightGradientByForward(const at::Tensor& x, const at::Tensor& gy, const at::Tensor& w,
                                   const std::vector<int64_t>& stride, const std::vector<int64_t>& padding) {
  std::vector<int64_t> ones(stride.size(), 1);
  at::Tensor gw = at::mkldnn_convolution(x.transpose(0, 1).contiguous(), gy.transpose(0, 1).contiguous(), c10::nullopt,
                                         padding, ones, stride, 1);
  for (size_t i = 0; i < stride.size(); ++i) {
    const int64_t axis = static_cast<int64_t>(i) + 2;
    gw = gw.narrow(axis, 0, w.size(axis));
  }
  return gw.transpose(0, 1).contiguous();
}

bool AllOnes(const std::vector<int64_t>& values) {
  return std::all_of(values.begin(), values.end(), [](int64_t v) { return v == 1; });
}

struct OneDnnConvolution : public torch::autograd::Function<OneDnnConvolution> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            std::vector<int64_t> stride, std::vector<int64_t> padding,
                            std::vector<int64_t> dilation, int64_t groups) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["dilation"] = dilation;
    ctx->saved_data["groups"] = groups;
    return at::mkldnn_convolution(x.contiguous(), w.contiguous(), c10::nullopt, padding, stride, dilation, groups);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    auto stride = ctx->saved_data["stride"].toIntVector();
    auto padding = ctx->saved_data["padding"].toIntVector();
    auto dilation = ctx->saved_data["dilation"].toIntVector();
    int64_t groups = ctx->saved_data["groups"].toInt();
    at::Tensor gy = grads[0].contiguous();
    at::Tensor gx, gw;
    if (IsPlainStride1(stride, padding, dilation, groups, w)) {
      std::vector<int64_t> spatial, ones(padding.size(), 1), inputPadding(padding.size());
      for (size_t i = 0; i < padding.size(); ++i) {
        spatial.push_back(static_cast<int64_t>(i) + 2);
        inputPadding[i] = w.size(static_cast<int64_t>(i) + 2) - 1 - padding[i];
      }
      if (ctx->needs_input_grad(0)) {
        at::Tensor flipped = w.transpose(0, 1).flip(spatial).contiguous();
        gx = at::mkldnn_convolution(gy, flipped, c10::nullopt, inputPadding, ones, ones, 1);
      }
      if (ctx->needs_input_grad(1)) gw = WeightGradientByForward(x, gy, w, ones, padding);
    } else {
      bool pad = x.size(0) == 1;
      at::Tensor xb = pad ? at::cat({x, at::zeros_like(x)}) : x;
      at::Tensor gyb = pad ? at::cat({gy, at::zeros_like(gy)}) : gy;
      bool weightByForward = x.scalar_type() == at::kBFloat16 && groups == 1 && AllOnes(dilation);
      if (weightByForward && ctx->needs_input_grad(1)) gw = WeightGradientByForward(x, gy, w, stride, padding);
      std::array<bool, 3> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1) && !weightByForward, false};
      if (mask[0] || mask[1]) {
        std::vector<int64_t> outputPadding(padding.size(), 0);
        auto result = at::convolution_backward(gyb, xb, w, c10::nullopt, stride, padding, dilation, false, outputPadding,
                                               groups, mask);
        gx = std::get<0>(result);
        if (mask[1]) gw = std::get<1>(result);
        if (pad && gx.defined()) gx = gx.narrow(0, 0, 1);
      }
    }
    return {gx, gw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// torch.nn.functional.pad: `pads` lists (before, after) pairs from the last dimension on.
at::Tensor Pad(Napi::Env env, const at::Tensor& t, std::vector<int64_t> pads, const std::string& mode, double value) {
  if (mode == "reflect" && smml::ReflectPad3dApplies(t, pads)) return smml::ReflectPad3d(t, pads);
  namespace F = torch::nn::functional;
  F::PadFuncOptions opts(std::move(pads));
  if (mode == "constant") opts.mode(torch::kConstant).value(value);
  else if (mode == "reflect") opts.mode(torch::kReflect);
  else if (mode == "replicate") opts.mode(torch::kReplicate);
  else if (mode == "circular") opts.mode(torch::kCircular);
  else throw Napi::TypeError::New(env, "unknown padding mode '" + mode + "'");
  return F::pad(t, opts);
}

// One Adam/AMSGrad update with L2 weight decay, as torch.optim.Adam's single-tensor path computes it:
// g = grad + wd·param; m ← m + (1 − β₁)(g − m); v ← β₂v + (1 − β₂)g²; v̂ ← max(v̂, v) (AMSGrad, else v̂ = v);
// param ← param − lr/(1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + eps).
struct AdamHyperparameters {
  double lr, beta1, beta2, eps, weightDecay, step;
};

// The update in one pass over contiguous CPU tensors of one floating type: each element's parameter, gradient and
// moments are read once and written once, where the composed ATen operations make about 24 passes and 3 temporaries.
template <typename S, bool kDecay, bool kAmsgrad>
void FusedAdamStep(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& expAvg,
                   const at::Tensor& expAvgSq, const at::Tensor& maxExpAvgSq, const AdamHyperparameters& h) {
  S* p = param.data_ptr<S>();
  const S* g = grad.data_ptr<S>();
  S* m = expAvg.data_ptr<S>();
  S* v = expAvgSq.data_ptr<S>();
  S* vMax = kAmsgrad ? maxExpAvgSq.data_ptr<S>() : nullptr;
  const S wd = static_cast<S>(h.weightDecay), oneMinusBeta1 = static_cast<S>(1 - h.beta1);
  const S beta2 = static_cast<S>(h.beta2), oneMinusBeta2 = static_cast<S>(1 - h.beta2), eps = static_cast<S>(h.eps);
  const S stepSize = static_cast<S>(h.lr / (1 - std::pow(h.beta1, h.step)));
  const S bc2Sqrt = static_cast<S>(std::sqrt(1 - std::pow(h.beta2, h.step)));
  // A few hundred kilobytes per task: small tensors stay on one thread.
  at::parallel_for(0, param.numel(), 32768, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const S gi = kDecay ? g[i] + wd * p[i] : g[i];
      const S mi = m[i] + oneMinusBeta1 * (gi - m[i]);
      const S vi = v[i] * beta2 + oneMinusBeta2 * gi * gi;
      S second = vi;
      if constexpr (kAmsgrad) {
        second = std::max(vMax[i], vi);
        vMax[i] = second;
      }
      m[i] = mi;
      v[i] = vi;
      p[i] -= stepSize * mi / (std::sqrt(second) / bc2Sqrt + eps);
    }
  });
}

template <typename S>
void FusedAdamStep(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& expAvg,
                   const at::Tensor& expAvgSq, const at::Tensor& maxExpAvgSq, const AdamHyperparameters& h) {
  const bool decay = h.weightDecay != 0, amsgrad = maxExpAvgSq.defined();
  if (decay && amsgrad) FusedAdamStep<S, true, true>(param, grad, expAvg, expAvgSq, maxExpAvgSq, h);
  else if (decay) FusedAdamStep<S, true, false>(param, grad, expAvg, expAvgSq, maxExpAvgSq, h);
  else if (amsgrad) FusedAdamStep<S, false, true>(param, grad, expAvg, expAvgSq, maxExpAvgSq, h);
  else FusedAdamStep<S, false, false>(param, grad, expAvg, expAvgSq, maxExpAvgSq, h);
}

void AdamStep(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& expAvg, const at::Tensor& expAvgSq,
              const at::Tensor& maxExpAvgSq, const AdamHyperparameters& h) {
  std::vector<at::Tensor> all{param, grad, expAvg, expAvgSq};
  if (maxExpAvgSq.defined()) all.push_back(maxExpAvgSq);
  const bool fusable = std::all_of(all.begin(), all.end(), [&](const at::Tensor& t) {
    return t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == param.scalar_type() && t.numel() == param.numel();
  });
  if (fusable && param.scalar_type() == at::kFloat) return FusedAdamStep<float>(param, grad, expAvg, expAvgSq, maxExpAvgSq, h);
  if (fusable && param.scalar_type() == at::kDouble) return FusedAdamStep<double>(param, grad, expAvg, expAvgSq, maxExpAvgSq, h);
  // Other devices and types: the same update from ATen operations.
  at::Tensor g = h.weightDecay != 0 ? grad.add(param, h.weightDecay) : grad;
  at::Tensor m = expAvg, v = expAvgSq;
  m.lerp_(g, 1 - h.beta1);
  v.mul_(h.beta2).addcmul_(g, g, 1 - h.beta2);
  at::Tensor second = v;
  if (maxExpAvgSq.defined()) {
    at::Tensor vMax = maxExpAvgSq;
    at::maximum_out(vMax, vMax, v);
    second = vMax;
  }
  at::Tensor denom = (second.sqrt() / std::sqrt(1 - std::pow(h.beta2, h.step))).add_(h.eps);
  at::Tensor p = param;
  p.addcdiv_(m, denom, -h.lr / (1 - std::pow(h.beta1, h.step)));
}

void InitTensorOps(Napi::Env env, Napi::Object e) {
  // -- creation --------------------------------------------------------------------------------
  Def(env, e, "fromBuffer", [](Info info) {
    // (typedArray, shape, dtype): copies the bytes of the typed array into a new CPU tensor.
    if (!info[0].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "expected a typed array");
    Napi::TypedArray arr = info[0].As<Napi::TypedArray>();
    auto shape = Ints(info[1]);
    auto dtype = Dtype(info[2]);
    auto data = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    int64_t numel = 1;
    for (auto s : shape) numel *= s;
    size_t need = static_cast<size_t>(numel) * c10::elementSize(dtype);
    if (need != arr.ByteLength())
      throw Napi::RangeError::New(info.Env(), std::to_string(arr.ByteLength()) +
                                                  " bytes given for a tensor of " + std::to_string(need) + " bytes");
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
    if (need > 0) std::memcpy(t.data_ptr(), data, need);
    return Wrap(info.Env(), t);
  });
  Def(env, e, "empty", [](Info info) { return Wrap(info.Env(), at::empty(Ints(info[0]), Options(info[1], info[2]))); });
  Def(env, e, "zeros", [](Info info) { return Wrap(info.Env(), at::zeros(Ints(info[0]), Options(info[1], info[2]))); });
  Def(env, e, "ones", [](Info info) { return Wrap(info.Env(), at::ones(Ints(info[0]), Options(info[1], info[2]))); });
  Def(env, e, "full", [](Info info) {
    return Wrap(info.Env(), at::full(Ints(info[0]), Scalar(info[1]), Options(info[2], info[3])));
  });
  Def(env, e, "arange", [](Info info) {
    return Wrap(info.Env(), at::arange(Scalar(info[0]), Scalar(info[1]), Scalar(info[2]), Options(info[3], info[4])));
  });
  Def(env, e, "linspace", [](Info info) {
    return Wrap(info.Env(), at::linspace(Scalar(info[0]), Scalar(info[1]), Int(info[2]), Options(info[3], info[4])));
  });
  Def(env, e, "eye", [](Info info) {
    return Wrap(info.Env(), at::eye(Int(info[0]), Int(info[1]), Options(info[2], info[3])));
  });
  Def(env, e, "rand", [](Info info) { return Wrap(info.Env(), at::rand(Ints(info[0]), Options(info[1], info[2]))); });
  Def(env, e, "randn", [](Info info) { return Wrap(info.Env(), at::randn(Ints(info[0]), Options(info[1], info[2]))); });
  Def(env, e, "randint", [](Info info) {
    return Wrap(info.Env(), at::randint(Int(info[0]), Int(info[1]), Ints(info[2]), Options(info[3], info[4])));
  });
  Def(env, e, "randperm", [](Info info) { return Wrap(info.Env(), at::randperm(Int(info[0]), Options(info[1], info[2]))); });

  // -- inspection and conversion ---------------------------------------------------------------
  Def(env, e, "shape", [](Info info) {
    auto sizes = T(info[0]).sizes();
    Napi::Array out = Napi::Array::New(info.Env(), sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) out.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), sizes[i]));
    return out;
  });
  Def(env, e, "dtype", [](Info info) { return Napi::String::New(info.Env(), DtypeName(T(info[0]).scalar_type())); });
  Def(env, e, "device", [](Info info) { return Napi::String::New(info.Env(), T(info[0]).device().str()); });
  Def(env, e, "numel", [](Info info) { return Napi::Number::New(info.Env(), static_cast<double>(T(info[0]).numel())); });
  Def(env, e, "isContiguous", [](Info info) { return Napi::Boolean::New(info.Env(), T(info[0]).is_contiguous()); });
  Def(env, e, "isDisposed", [](Info info) {
    if (!IsTensor(info[0])) throw Napi::TypeError::New(info.Env(), "expected a tensor");
    return Napi::Boolean::New(info.Env(), !NativeTensor::Unwrap(info[0].As<Napi::Object>())->tensor_.defined());
  });
  Def(env, e, "dispose", [](Info info) {
    if (!IsTensor(info[0])) throw Napi::TypeError::New(info.Env(), "expected a tensor");
    NativeTensor::Unwrap(info[0].As<Napi::Object>())->Release(info.Env());
    return info.Env().Undefined();
  });
  Def(env, e, "toBuffer", [](Info info) {
    // Copies the values, contiguous, into a new ArrayBuffer (moving them to the CPU first).
    at::Tensor t = T(info[0]).detach().to(at::kCPU).contiguous();
    size_t n = t.numel() * t.element_size();
    Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(info.Env(), n);
    if (n > 0) std::memcpy(buf.Data(), t.data_ptr(), n);
    return buf;
  });
  Def(env, e, "item", [](Info info) -> Napi::Value {
    const at::Tensor& t = T(info[0]);
    if (t.numel() != 1)
      throw Napi::Error::New(info.Env(), "tensor has " + std::to_string(t.numel()) + " elements, not 1");
    if (t.scalar_type() == at::kBool) return Napi::Boolean::New(info.Env(), t.item<bool>());
    return Napi::Number::New(info.Env(), t.item<double>());
  });
  Def(env, e, "to", [](Info info) {
    // (t, dtype | null, device | null, copy)
    const at::Tensor& t = T(info[0]);
    auto dtype = OptDtype(info[1]).value_or(t.scalar_type());
    c10::Device device = info[2].IsString() ? Device(info[2]) : t.device();
    return Wrap(info.Env(), t.to(device, dtype, /*non_blocking=*/false, /*copy=*/Bool(info[3])));
  });
  Def(env, e, "contiguous", [](Info info) {
    std::string fmt = info[1].IsString() ? Str(info[1]) : "contiguous";
    auto format = fmt == "channelsLast" ? (T(info[0]).dim() == 5 ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::ChannelsLast)
                                       : at::MemoryFormat::Contiguous;
    return Wrap(info.Env(), T(info[0]).contiguous(format));
  });
  Def(env, e, "clone", [](Info info) { return Wrap(info.Env(), T(info[0]).clone()); });
  Def(env, e, "strides", [](Info info) {
    auto st = T(info[0]).strides();
    Napi::Array out = Napi::Array::New(info.Env(), st.size());
    for (size_t i = 0; i < st.size(); ++i) out.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), st[i]));
    return out;
  });

  // -- autograd ----------------------------------------------------------------------------------
  Def(env, e, "requiresGrad", [](Info info) { return Napi::Boolean::New(info.Env(), T(info[0]).requires_grad()); });
  Def(env, e, "setRequiresGrad", [](Info info) {
    T(info[0]).set_requires_grad(Bool(info[1]));
    return info.Env().Undefined();
  });
  Def(env, e, "isLeaf", [](Info info) { return Napi::Boolean::New(info.Env(), T(info[0]).is_leaf()); });
  Def(env, e, "grad", [](Info info) -> Napi::Value {
    const at::Tensor& g = T(info[0]).grad();
    if (!g.defined()) return info.Env().Null();
    return Wrap(info.Env(), g);
  });
  Def(env, e, "setGrad", [](Info info) {
    // mutable_grad() is the documented way to replace or clear a leaf's gradient from C++.
    at::Tensor t = T(info[0]);
    t.mutable_grad() = OptT(info[1]).value_or(at::Tensor());
    return info.Env().Undefined();
  });
  Def(env, e, "retainGrad", [](Info info) {
    T(info[0]).retain_grad();
    return info.Env().Undefined();
  });
  Def(env, e, "backward", [](Info info) {
    // (t, gradient | null, retainGraph, createGraph)
    auto grad = OptT(info[1]).value_or(at::Tensor());
    T(info[0]).backward(grad, Bool(info[2]), Bool(info[3]));
    return info.Env().Undefined();
  });
  Def(env, e, "autogradGrad", [](Info info) {
    // (outputs, inputs, gradOutputs | null, retainGraph, createGraph) -> gradients of inputs
    auto outputs = TList(info[0]);
    auto inputs = TList(info[1]);
    std::vector<at::Tensor> grads;
    if (info[2].IsArray()) grads = TList(info[2]);
    auto result = torch::autograd::grad(outputs, inputs, grads, Bool(info[3]), Bool(info[4]), /*allow_unused=*/true);
    Napi::Array out = Napi::Array::New(info.Env(), result.size());
    for (size_t i = 0; i < result.size(); ++i)
      out.Set(static_cast<uint32_t>(i), result[i].defined() ? Wrap(info.Env(), result[i]) : info.Env().Null());
    return out;
  });
  Def(env, e, "setData", [](Info info) {
    // Replaces the values (and possibly dtype/device) behind a tensor while keeping its identity,
    // as `param.data = …` does; used to move modules between devices and dtypes.
    at::Tensor t = T(info[0]);
    t.set_data(T(info[1]));
    return info.Env().Undefined();
  });
  Def(env, e, "detach", [](Info info) { return Wrap(info.Env(), T(info[0]).detach()); });
  Def(env, e, "gradFnName", [](Info info) -> Napi::Value {
    // The autograd node that made the tensor (e.g. "MulBackward0"), or null for leaves and untracked tensors.
    const auto& fn = T(info[0]).grad_fn();
    if (!fn) return info.Env().Null();
    return Napi::String::New(info.Env(), fn->name());
  });
  Def(env, e, "isGradEnabled", [](Info info) { return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled()); });
  Def(env, e, "setGradEnabled", [](Info info) {
    bool previous = at::GradMode::is_enabled();
    at::GradMode::set_enabled(Bool(info[0]));
    return Napi::Boolean::New(info.Env(), previous);
  });

  // -- views and shape ---------------------------------------------------------------------------
  Def(env, e, "reshape", [](Info info) { return Wrap(info.Env(), T(info[0]).reshape(Ints(info[1]))); });
  Def(env, e, "view", [](Info info) { return Wrap(info.Env(), T(info[0]).view(Ints(info[1]))); });
  Def(env, e, "permute", [](Info info) { return Wrap(info.Env(), T(info[0]).permute(Ints(info[1]))); });
  Def(env, e, "transpose", [](Info info) { return Wrap(info.Env(), T(info[0]).transpose(Int(info[1]), Int(info[2]))); });
  Def(env, e, "squeeze", [](Info info) {
    if (info[1].IsNumber()) return Wrap(info.Env(), T(info[0]).squeeze(Int(info[1])));
    return Wrap(info.Env(), T(info[0]).squeeze());
  });
  Def(env, e, "unsqueeze", [](Info info) { return Wrap(info.Env(), T(info[0]).unsqueeze(Int(info[1]))); });
  Def(env, e, "flatten", [](Info info) { return Wrap(info.Env(), T(info[0]).flatten(Int(info[1]), Int(info[2]))); });
  Def(env, e, "expand", [](Info info) { return Wrap(info.Env(), T(info[0]).expand(Ints(info[1]))); });
  Def(env, e, "repeat", [](Info info) { return Wrap(info.Env(), T(info[0]).repeat(Ints(info[1]))); });
  Def(env, e, "cat", [](Info info) { return Wrap(info.Env(), at::cat(TList(info[0]), Int(info[1]))); });
  Def(env, e, "stack", [](Info info) { return Wrap(info.Env(), at::stack(TList(info[0]), Int(info[1]))); });
  Def(env, e, "chunk", [](Info info) { return WrapList(info.Env(), T(info[0]).chunk(Int(info[1]), Int(info[2]))); });
  Def(env, e, "split", [](Info info) {
    if (info[1].IsNumber()) return WrapList(info.Env(), T(info[0]).split(Int(info[1]), Int(info[2])));
    return WrapList(info.Env(), T(info[0]).split_with_sizes(Ints(info[1]), Int(info[2])));
  });
  Def(env, e, "unbind", [](Info info) { return WrapList(info.Env(), T(info[0]).unbind(Int(info[1]))); });
  Def(env, e, "narrow", [](Info info) {
    return Wrap(info.Env(), T(info[0]).narrow(Int(info[1]), Int(info[2]), Int(info[3])));
  });
  Def(env, e, "slice", [](Info info) {
    return Wrap(info.Env(), T(info[0]).slice(Int(info[1]), Int(info[2]), Int(info[3]), Int(info[4])));
  });
  Def(env, e, "select", [](Info info) { return Wrap(info.Env(), T(info[0]).select(Int(info[1]), Int(info[2]))); });
  Def(env, e, "indexSelect", [](Info info) {
    return Wrap(info.Env(), T(info[0]).index_select(Int(info[1]), T(info[2])));
  });
  Def(env, e, "gather", [](Info info) { return Wrap(info.Env(), T(info[0]).gather(Int(info[1]), IndexT(info[2]))); });
  Def(env, e, "scatter", [](Info info) {
    // (t, dim, index, src tensor | value)
    if (IsTensor(info[3])) return Wrap(info.Env(), T(info[0]).scatter(Int(info[1]), IndexT(info[2]), T(info[3])));
    return Wrap(info.Env(), T(info[0]).scatter(Int(info[1]), IndexT(info[2]), Scalar(info[3])));
  });
  Def(env, e, "scatterAdd", [](Info info) {
    return Wrap(info.Env(), T(info[0]).scatter_add(Int(info[1]), IndexT(info[2]), T(info[3])));
  });
  Def(env, e, "maskedFill", [](Info info) {
    if (IsTensor(info[2])) return Wrap(info.Env(), T(info[0]).masked_fill(T(info[1]), T(info[2])));
    return Wrap(info.Env(), T(info[0]).masked_fill(T(info[1]), Scalar(info[2])));
  });
  Def(env, e, "maskedSelect", [](Info info) { return Wrap(info.Env(), T(info[0]).masked_select(T(info[1]))); });
  Def(env, e, "where", [](Info info) {
    const at::Tensor& cond = T(info[0]);
    bool ta = IsTensor(info[1]), tb = IsTensor(info[2]);
    if (ta && tb) return Wrap(info.Env(), at::where(cond, T(info[1]), T(info[2])));
    if (ta) return Wrap(info.Env(), at::where(cond, T(info[1]), Scalar(info[2])));
    if (tb) return Wrap(info.Env(), at::where(cond, Scalar(info[1]), T(info[2])));
    return Wrap(info.Env(), at::where(cond, Scalar(info[1]), Scalar(info[2])));
  });
  Def(env, e, "nonzero", [](Info info) { return Wrap(info.Env(), T(info[0]).nonzero()); });
  Def(env, e, "flip", [](Info info) { return Wrap(info.Env(), T(info[0]).flip(Ints(info[1]))); });
  Def(env, e, "roll", [](Info info) { return Wrap(info.Env(), T(info[0]).roll(Ints(info[1]), Ints(info[2]))); });
  Def(env, e, "pad", [](Info info) {
    // (t, pads as in torch.nn.functional.pad: last dimension first, mode, value)
    std::string mode = Str(info[2]);
    return Wrap(info.Env(), Pad(info.Env(), T(info[0]), Ints(info[1]), mode, mode == "constant" ? Num(info[3]) : 0));
  });
  Def(env, e, "tril", [](Info info) { return Wrap(info.Env(), T(info[0]).tril(Int(info[1]))); });
  Def(env, e, "triu", [](Info info) { return Wrap(info.Env(), T(info[0]).triu(Int(info[1]))); });

  // -- element-wise maths ------------------------------------------------------------------------
  Def(env, e, "add", [](Info info) {
    at::Scalar alpha = info[2].IsNumber() ? Scalar(info[2]) : at::Scalar(1);
    return Binary(
        info, [&](const at::Tensor& a, const at::Tensor& b) { return at::add(a, b, alpha); },
        [&](const at::Tensor& a, const at::Scalar& b) { return at::add(a, b, alpha); });
  });
  Def(env, e, "sub", [](Info info) {
    at::Scalar alpha = info[2].IsNumber() ? Scalar(info[2]) : at::Scalar(1);
    return Binary(
        info, [&](const at::Tensor& a, const at::Tensor& b) { return at::sub(a, b, alpha); },
        [&](const at::Tensor& a, const at::Scalar& b) { return at::sub(a, b, alpha); });
  });
  Def(env, e, "rsub", [](Info info) { return Wrap(info.Env(), at::rsub(T(info[0]), Scalar(info[1]))); });
  Def(env, e, "mul", [](Info info) {
    return Binary(
        info, [](const at::Tensor& a, const at::Tensor& b) { return at::mul(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::mul(a, b); });
  });
  Def(env, e, "div", [](Info info) {
    c10::optional<c10::string_view> mode;
    std::string m = info[2].IsString() ? Str(info[2]) : "";
    if (!m.empty()) mode = m;
    return Binary(
        info, [&](const at::Tensor& a, const at::Tensor& b) { return at::div(a, b, mode); },
        [&](const at::Tensor& a, const at::Scalar& b) { return at::div(a, b, mode); });
  });
  Def(env, e, "rdiv", [](Info info) { return Wrap(info.Env(), at::reciprocal(T(info[0])).mul(Scalar(info[1]))); });
  Def(env, e, "pow", [](Info info) {
    return Binary(
        info, [](const at::Tensor& a, const at::Tensor& b) { return at::pow(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::pow(a, b); });
  });
  Def(env, e, "remainder", [](Info info) {
    return Binary(
        info, [](const at::Tensor& a, const at::Tensor& b) { return at::remainder(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::remainder(a, b); });
  });
  Def(env, e, "minimum", [](Info info) { return Wrap(info.Env(), at::minimum(T(info[0]), T(info[1]))); });
  Def(env, e, "maximum", [](Info info) { return Wrap(info.Env(), at::maximum(T(info[0]), T(info[1]))); });
  Def(env, e, "clamp", [](Info info) {
    // (t, min | null, max | null); a number beside a tensor bound becomes a tensor of t's dtype.
    const at::Tensor& t = T(info[0]);
    auto bound = [&t](const Napi::Value& v) -> c10::optional<at::Tensor> {
      if (v.IsNull() || v.IsUndefined()) return c10::nullopt;
      if (IsTensor(v)) return T(v);
      return at::scalar_tensor(Scalar(v), t.options());
    };
    if (IsTensor(info[1]) || IsTensor(info[2])) return Wrap(info.Env(), at::clamp(t, bound(info[1]), bound(info[2])));
    return Wrap(info.Env(), at::clamp(t, OptScalar(info[1]), OptScalar(info[2])));
  });

#define SMML_COMPARE(NAME, OP)                                                                 \
  Def(env, e, NAME, [](Info info) {                                                            \
    return Binary(                                                                             \
        info, [](const at::Tensor& a, const at::Tensor& b) { return at::OP(a, b); },           \
        [](const at::Tensor& a, const at::Scalar& b) { return at::OP(a, b); });                \
  });
  SMML_COMPARE("eq", eq)
  SMML_COMPARE("ne", ne)
  SMML_COMPARE("lt", lt)
  SMML_COMPARE("le", le)
  SMML_COMPARE("gt", gt)
  SMML_COMPARE("ge", ge)
#undef SMML_COMPARE
  Def(env, e, "logicalAnd", [](Info info) { return Wrap(info.Env(), at::logical_and(T(info[0]), T(info[1]))); });
  Def(env, e, "logicalOr", [](Info info) { return Wrap(info.Env(), at::logical_or(T(info[0]), T(info[1]))); });
  Def(env, e, "logicalXor", [](Info info) { return Wrap(info.Env(), at::logical_xor(T(info[0]), T(info[1]))); });
  Def(env, e, "allclose", [](Info info) {
    return Napi::Boolean::New(info.Env(), at::allclose(T(info[0]), T(info[1]), Num(info[2]), Num(info[3])));
  });
  Def(env, e, "equal", [](Info info) { return Napi::Boolean::New(info.Env(), at::equal(T(info[0]), T(info[1]))); });

#define SMML_UNARY(NAME, OP) \
  Def(env, e, NAME, [](Info info) { return Wrap(info.Env(), at::OP(T(info[0]))); });
  SMML_UNARY("neg", neg)
  SMML_UNARY("abs", abs)
  SMML_UNARY("exp", exp)
  SMML_UNARY("expm1", expm1)
  SMML_UNARY("log", log)
  SMML_UNARY("log1p", log1p)
  SMML_UNARY("log2", log2)
  SMML_UNARY("sqrt", sqrt)
  SMML_UNARY("rsqrt", rsqrt)
  SMML_UNARY("square", square)
  SMML_UNARY("reciprocal", reciprocal)
  SMML_UNARY("sin", sin)
  SMML_UNARY("cos", cos)
  SMML_UNARY("tanh", tanh)
  SMML_UNARY("erf", erf)
  SMML_UNARY("sigmoid", sigmoid)
  SMML_UNARY("relu", relu)
  SMML_UNARY("floor", floor)
  SMML_UNARY("ceil", ceil)
  SMML_UNARY("round", round)
  SMML_UNARY("trunc", trunc)
  SMML_UNARY("sign", sign)
  SMML_UNARY("isnan", isnan)
  SMML_UNARY("isinf", isinf)
  SMML_UNARY("isfinite", isfinite)
  SMML_UNARY("logicalNot", logical_not)
#undef SMML_UNARY

  // -- reductions ------------------------------------------------------------------------------
  // (t, dims | null, keepdim, dtype | null); null dims reduce over every element.
  Def(env, e, "sum", [](Info info) {
    auto dims = OptInts(info[1]);
    auto dtype = OptDtype(info[3]);
    if (!dims) return Wrap(info.Env(), T(info[0]).sum(dtype));
    return Wrap(info.Env(), T(info[0]).sum(*dims, Bool(info[2]), dtype));
  });
  Def(env, e, "mean", [](Info info) {
    auto dims = OptInts(info[1]);
    auto dtype = OptDtype(info[3]);
    if (!dims) return Wrap(info.Env(), T(info[0]).mean(dtype));
    return Wrap(info.Env(), T(info[0]).mean(*dims, Bool(info[2]), dtype));
  });
  Def(env, e, "prod", [](Info info) {
    if (info[1].IsNumber()) return Wrap(info.Env(), T(info[0]).prod(Int(info[1]), Bool(info[2])));
    return Wrap(info.Env(), T(info[0]).prod());
  });
  Def(env, e, "cumsum", [](Info info) { return Wrap(info.Env(), T(info[0]).cumsum(Int(info[1]))); });
  Def(env, e, "amax", [](Info info) {
    return Wrap(info.Env(), T(info[0]).amax(OptInts(info[1]).value_or(std::vector<int64_t>{}), Bool(info[2])));
  });
  Def(env, e, "amin", [](Info info) {
    return Wrap(info.Env(), T(info[0]).amin(OptInts(info[1]).value_or(std::vector<int64_t>{}), Bool(info[2])));
  });
  Def(env, e, "maxDim", [](Info info) {
    auto [values, indices] = T(info[0]).max(Int(info[1]), Bool(info[2]));
    return WrapList(info.Env(), {values, indices});
  });
  Def(env, e, "minDim", [](Info info) {
    auto [values, indices] = T(info[0]).min(Int(info[1]), Bool(info[2]));
    return WrapList(info.Env(), {values, indices});
  });
  Def(env, e, "argmax", [](Info info) {
    c10::optional<int64_t> dim;
    if (info[1].IsNumber()) dim = Int(info[1]);
    return Wrap(info.Env(), T(info[0]).argmax(dim, Bool(info[2])));
  });
  Def(env, e, "argmin", [](Info info) {
    c10::optional<int64_t> dim;
    if (info[1].IsNumber()) dim = Int(info[1]);
    return Wrap(info.Env(), T(info[0]).argmin(dim, Bool(info[2])));
  });
  Def(env, e, "logsumexp", [](Info info) { return Wrap(info.Env(), T(info[0]).logsumexp(Ints(info[1]), Bool(info[2]))); });
  Def(env, e, "var", [](Info info) {
    // (t, dims | null, correction, keepdim)
    auto dims = OptInts(info[1]);
    c10::optional<at::IntArrayRef> d;
    if (dims) d = at::IntArrayRef(*dims);
    return Wrap(info.Env(), at::var(T(info[0]), d, c10::optional<int64_t>(Int(info[2])), Bool(info[3])));
  });
  Def(env, e, "norm", [](Info info) {
    // (t, p, dims | null, keepdim)
    auto dims = OptInts(info[2]);
    if (!dims) return Wrap(info.Env(), at::norm(T(info[0]), Scalar(info[1])));
    return Wrap(info.Env(), at::norm(T(info[0]), Scalar(info[1]), *dims, Bool(info[3])));
  });
  Def(env, e, "all", [](Info info) { return Wrap(info.Env(), T(info[0]).all()); });
  Def(env, e, "any", [](Info info) { return Wrap(info.Env(), T(info[0]).any()); });
  Def(env, e, "bincount", [](Info info) {
    return Wrap(info.Env(), at::bincount(T(info[0]), OptT(info[1]), Int(info[2])));
  });

  // -- linear algebra --------------------------------------------------------------------------
  Def(env, e, "matmul", [](Info info) { return Wrap(info.Env(), at::matmul(T(info[0]), T(info[1]))); });
  Def(env, e, "bmm", [](Info info) { return Wrap(info.Env(), at::bmm(T(info[0]), T(info[1]))); });
  Def(env, e, "einsum", [](Info info) { return Wrap(info.Env(), at::einsum(Str(info[0]), TList(info[1]))); });
  Def(env, e, "linear", [](Info info) { return Wrap(info.Env(), at::linear(T(info[0]), T(info[1]), OptT(info[2]))); });
}

void InitNnOps(Napi::Env env, Napi::Object e) {
  Def(env, e, "convolution", [](Info info) {
    // (x, w, bias | null, stride, padding, dilation, groups, paddingMode: zeros | reflect | replicate | circular)
    at::Tensor x = T(info[0]);
    const at::Tensor& w = T(info[1]);
    auto bias = OptT(info[2]);
    auto stride = Ints(info[3]), padding = Ints(info[4]), dilation = Ints(info[5]);
    int64_t groups = Int(info[6]);
    std::string mode = Str(info[7]);
    // a 1x1x1 kernel pads nothing, so the padding mode does not matter
    if (smml::Conv1x1Applies(x, w, bias, stride, padding, groups)) return Wrap(info.Env(), smml::Conv1x1(x, w, bias));
    if (smml::Conv1x1ByMatmulApplies(x, w, stride, padding, groups)) return Wrap(info.Env(), smml::Conv1x1ByMatmul(x, w, bias));
    if ((mode == "zeros" || mode == "reflect") &&
        smml::ThinConvolutionApplies(x, w, bias, stride, padding, dilation, groups, mode == "reflect",
                                     smml::GradientNeeded(x, w, bias))) {
      return Wrap(info.Env(), smml::ThinConvolution(x, w, bias, mode == "reflect"));
    }
    if (mode != "zeros" && std::any_of(padding.begin(), padding.end(), [](int64_t p) { return p > 0; })) {
      // other padding modes pad the input, then convolve it without padding
      std::vector<int64_t> pads;
      for (auto p = padding.rbegin(); p != padding.rend(); ++p) pads.insert(pads.end(), {*p, *p});
      x = Pad(info.Env(), x, pads, mode, 0);
      std::fill(padding.begin(), padding.end(), 0);
    }
    if (NeedsOneDnnRoute(x, w, stride, padding, dilation, groups)) {
      at::Tensor y = OneDnnConvolution::apply(x, w, stride, padding, dilation, groups);
      if (bias) {
        std::vector<int64_t> shape(y.dim(), 1);
        shape[1] = -1;
        y = y + bias->view(shape);
      }
      return Wrap(info.Env(), y);
    }
    return Wrap(info.Env(), at::convolution(x, w, bias, stride, padding, dilation, false, {0}, groups));
  });
  Def(env, e, "convTranspose", [](Info info) {
    // (x, w, bias | null, stride, padding, outputPadding, groups, dilation)
    const at::Tensor& x = T(info[0]);
    auto stride = Ints(info[3]), padding = Ints(info[4]), outputPadding = Ints(info[5]), dilation = Ints(info[7]);
    return Wrap(info.Env(), at::convolution(x, T(info[1]), OptT(info[2]), stride, padding, dilation, true, outputPadding,
                                            Int(info[6])));
  });
  Def(env, e, "instanceNorm", [](Info info) {
    // (x, weight | null, bias | null, runningMean | null, runningVar | null, useInputStats, momentum, eps)
    return Wrap(info.Env(), at::instance_norm(T(info[0]), OptT(info[1]), OptT(info[2]), OptT(info[3]), OptT(info[4]),
                                              Bool(info[5]), Num(info[6]), Num(info[7]), false));
  });
  Def(env, e, "instanceNormLeakyRelu", [](Info info) {
    // (x, negativeSlope, eps)
    return Wrap(info.Env(), smml::InstanceNormLeakyRelu(T(info[0]), Num(info[1]), Num(info[2])));
  });
  Def(env, e, "batchNorm", [](Info info) {
    // (x, weight | null, bias | null, runningMean | null, runningVar | null, training, momentum, eps)
    return Wrap(info.Env(), at::batch_norm(T(info[0]), OptT(info[1]), OptT(info[2]), OptT(info[3]), OptT(info[4]),
                                           Bool(info[5]), Num(info[6]), Num(info[7]), false));
  });
  Def(env, e, "layerNorm", [](Info info) {
    return Wrap(info.Env(), at::layer_norm(T(info[0]), Ints(info[1]), OptT(info[2]), OptT(info[3]), Num(info[4])));
  });
  Def(env, e, "groupNorm", [](Info info) {
    return Wrap(info.Env(), at::group_norm(T(info[0]), Int(info[1]), OptT(info[2]), OptT(info[3]), Num(info[4])));
  });
  Def(env, e, "softmax", [](Info info) { return Wrap(info.Env(), at::softmax(T(info[0]), Int(info[1]))); });
  Def(env, e, "logSoftmax", [](Info info) { return Wrap(info.Env(), at::log_softmax(T(info[0]), Int(info[1]))); });
  Def(env, e, "leakyRelu", [](Info info) { return Wrap(info.Env(), at::leaky_relu(T(info[0]), Scalar(info[1]))); });
  Def(env, e, "gelu", [](Info info) {
    std::string approximate = info[1].IsString() ? Str(info[1]) : "none";
    return Wrap(info.Env(), at::gelu(T(info[0]), approximate));
  });
  Def(env, e, "dropout", [](Info info) { return Wrap(info.Env(), at::dropout(T(info[0]), Num(info[1]), Bool(info[2]))); });
  Def(env, e, "interpolate", [](Info info) {
    // (x, size, mode, alignCorners | null)
    namespace F = torch::nn::functional;
    std::string mode = Str(info[2]);
    F::InterpolateFuncOptions opts;
    opts.size(Ints(info[1]));
    if (mode == "nearest") opts.mode(torch::kNearest);
    else if (mode == "linear") opts.mode(torch::kLinear);
    else if (mode == "bilinear") opts.mode(torch::kBilinear);
    else if (mode == "trilinear") opts.mode(torch::kTrilinear);
    else if (mode == "bicubic") opts.mode(torch::kBicubic);
    else if (mode == "area") opts.mode(torch::kArea);
    else throw Napi::TypeError::New(info.Env(), "unknown interpolation mode '" + mode + "'");
    if (mode == "trilinear" && info[3].IsBoolean() && Bool(info[3]) && smml::TrilinearAlignedApplies(T(info[0]), Ints(info[1])))
      return Wrap(info.Env(), smml::TrilinearAligned(T(info[0]), Ints(info[1])));
    if (info[3].IsBoolean()) opts.align_corners(Bool(info[3]));
    return Wrap(info.Env(), F::interpolate(T(info[0]), opts));
  });
  Def(env, e, "gridSample", [](Info info) {
    // (x, grid, mode, paddingMode, alignCorners): x (N, C, [D,] H, W), grid (N, [D,] H, W, 2|3) of normalised coordinates
    std::string mode = Str(info[2]), padding = Str(info[3]);
    int64_t modeCode = mode == "bilinear" ? 0 : mode == "nearest" ? 1 : mode == "bicubic" ? 2 : -1;
    int64_t paddingCode = padding == "zeros" ? 0 : padding == "border" ? 1 : padding == "reflection" ? 2 : -1;
    if (modeCode < 0) throw Napi::TypeError::New(info.Env(), "unknown grid-sample mode '" + mode + "'");
    if (paddingCode < 0) throw Napi::TypeError::New(info.Env(), "unknown grid-sample padding '" + padding + "'");
    return Wrap(info.Env(), at::grid_sampler(T(info[0]), T(info[1]), modeCode, paddingCode, Bool(info[4])));
  });
  Def(env, e, "maxPool", [](Info info) {
    // (x, kernel, stride, padding, dilation, ceilMode); 2D or 3D by the kernel's length
    auto k = Ints(info[1]), s = Ints(info[2]), p = Ints(info[3]), d = Ints(info[4]);
    if (k.size() == 3) return Wrap(info.Env(), at::max_pool3d(T(info[0]), k, s, p, d, Bool(info[5])));
    return Wrap(info.Env(), at::max_pool2d(T(info[0]), k, s, p, d, Bool(info[5])));
  });
  Def(env, e, "avgPool", [](Info info) {
    // (x, kernel, stride, padding, ceilMode, countIncludePad)
    auto k = Ints(info[1]), s = Ints(info[2]), p = Ints(info[3]);
    if (k.size() == 3) return Wrap(info.Env(), at::avg_pool3d(T(info[0]), k, s, p, Bool(info[4]), Bool(info[5])));
    return Wrap(info.Env(), at::avg_pool2d(T(info[0]), k, s, p, Bool(info[4]), Bool(info[5])));
  });
  Def(env, e, "adaptiveAvgPool", [](Info info) {
    auto size = Ints(info[1]);
    if (size.size() == 3) return Wrap(info.Env(), at::adaptive_avg_pool3d(T(info[0]), size));
    return Wrap(info.Env(), at::adaptive_avg_pool2d(T(info[0]), size));
  });
  Def(env, e, "oneHot", [](Info info) { return Wrap(info.Env(), at::one_hot(IndexT(info[0]), Int(info[1]))); });
  Def(env, e, "crossEntropy", [](Info info) {
    // (logits, target, weight | null, reduction, ignoreIndex, labelSmoothing)
    return Wrap(info.Env(), at::cross_entropy_loss(T(info[0]), T(info[1]), OptT(info[2]), Reduction(info[3]),
                                                   Int(info[4]), Num(info[5])));
  });
  Def(env, e, "nllLoss", [](Info info) {
    return Wrap(info.Env(), at::nll_loss_nd(T(info[0]), T(info[1]), OptT(info[2]), Reduction(info[3]), Int(info[4])));
  });
  Def(env, e, "klDiv", [](Info info) {
    // (input log-probabilities, target, reduction, logTarget), as torch.nn.functional.kl_div
    return Wrap(info.Env(), at::kl_div(T(info[0]), T(info[1]), Reduction(info[2]), Bool(info[3])));
  });
  Def(env, e, "mseLoss", [](Info info) { return Wrap(info.Env(), at::mse_loss(T(info[0]), T(info[1]), Reduction(info[2]))); });
  Def(env, e, "binaryCrossEntropyWithLogits", [](Info info) {
    return Wrap(info.Env(), at::binary_cross_entropy_with_logits(T(info[0]), T(info[1]), OptT(info[2]), OptT(info[3]),
                                                                 Reduction(info[4])));
  });
}

void InitInPlaceOps(Napi::Env env, Napi::Object e) {
  // In-place updates for optimisers and buffers; they run without recording autograd history.
  Def(env, e, "zero_", [](Info info) {
    at::NoGradGuard guard;
    T(info[0]).zero_();
    return info.Env().Undefined();
  });
  Def(env, e, "fill_", [](Info info) {
    at::NoGradGuard guard;
    T(info[0]).fill_(Scalar(info[1]));
    return info.Env().Undefined();
  });
  Def(env, e, "copy_", [](Info info) {
    at::NoGradGuard guard;
    T(info[0]).copy_(T(info[1]));
    return info.Env().Undefined();
  });
  Def(env, e, "mul_", [](Info info) {
    at::NoGradGuard guard;
    at::Tensor t = T(info[0]);
    if (IsTensor(info[1])) t.mul_(T(info[1]));
    else t.mul_(Scalar(info[1]));
    return info.Env().Undefined();
  });
  Def(env, e, "add_", [](Info info) {
    at::NoGradGuard guard;
    at::Tensor t = T(info[0]);
    at::Scalar alpha = info[2].IsNumber() ? Scalar(info[2]) : at::Scalar(1);
    if (IsTensor(info[1])) t.add_(T(info[1]), alpha);
    else t.add_(Scalar(info[1]), alpha);
    return info.Env().Undefined();
  });
  Def(env, e, "uniform_", [](Info info) {
    at::NoGradGuard guard;
    T(info[0]).uniform_(Num(info[1]), Num(info[2]));
    return info.Env().Undefined();
  });
  Def(env, e, "normal_", [](Info info) {
    at::NoGradGuard guard;
    T(info[0]).normal_(Num(info[1]), Num(info[2]));
    return info.Env().Undefined();
  });
  Def(env, e, "bernoulli", [](Info info) { return Wrap(info.Env(), at::bernoulli(T(info[0]))); });

  Def(env, e, "adamStep", [](Info info) {
    // (param, grad, expAvg, expAvgSq, maxExpAvgSq | null, lr, beta1, beta2, eps, weightDecay, step)
    at::NoGradGuard guard;
    auto maxExpAvgSq = OptT(info[4]);
    AdamHyperparameters h{Num(info[5]), Num(info[6]), Num(info[7]), Num(info[8]), Num(info[9]), Num(info[10])};
    AdamStep(T(info[0]), T(info[1]), T(info[2]), T(info[3]), maxExpAvgSq ? *maxExpAvgSq : at::Tensor(), h);
    return info.Env().Undefined();
  });
}

void InitRuntime(Napi::Env env, Napi::Object e) {
  Def(env, e, "manualSeed", [](Info info) {
    torch::manual_seed(static_cast<uint64_t>(Int(info[0])));
    return info.Env().Undefined();
  });
  Def(env, e, "getRngState", [](Info info) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    return Wrap(info.Env(), gen.get_state());
  });
  Def(env, e, "setRngState", [](Info info) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(T(info[0]));
    return info.Env().Undefined();
  });
  Def(env, e, "setNumThreads", [](Info info) {
    at::set_num_threads(static_cast<int>(Int(info[0])));
    return info.Env().Undefined();
  });
  Def(env, e, "getNumThreads", [](Info info) { return Napi::Number::New(info.Env(), at::get_num_threads()); });
  Def(env, e, "cudaIsAvailable", [](Info info) { return Napi::Boolean::New(info.Env(), torch::cuda::is_available()); });
  Def(env, e, "cudaDeviceCount", [](Info info) {
    return Napi::Number::New(info.Env(), static_cast<double>(torch::cuda::device_count()));
  });
  Def(env, e, "cudaSynchronize", [](Info info) {
    if (torch::cuda::is_available()) torch::cuda::synchronize();
    return info.Env().Undefined();
  });
  Def(env, e, "mkldnnIsAvailable", [](Info info) { return Napi::Boolean::New(info.Env(), at::hasMKLDNN()); });
  Def(env, e, "setMkldnnEnabled", [](Info info) {
    at::globalContext().setUserEnabledMkldnn(Bool(info[0]));
    return info.Env().Undefined();
  });
  Def(env, e, "version", [](Info info) { return Napi::String::New(info.Env(), TORCH_VERSION); });
  Def(env, e, "memoryStats", [](Info info) {
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("handles", Napi::Number::New(info.Env(), static_cast<double>(NativeTensor::liveHandles.load())));
    out.Set("reportedBytes", Napi::Number::New(info.Env(), static_cast<double>(NativeTensor::reportedBytes.load())));
    out.Set("cachedLargeBytes", Napi::Number::New(info.Env(), static_cast<double>(largeBlocks.cachedBytes())));
    return out;
  });
  Def(env, e, "parallelInfo", [](Info info) { return Napi::String::New(info.Env(), at::get_parallel_info()); });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Above the default allocator's priority (0); tensors it already made keep their own deleter.
  c10::SetCPUAllocator(&cpuAllocator, /*priority=*/1);
  // Keep freed blocks up to 32 MiB in the heap instead of returning them to the system: a training
  // step frees and reallocates the same sizes, and re-faulting fresh pages cost ~5 % of a step.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  NativeTensor::Init(env, exports);
  InitTensorOps(env, exports);
  InitNnOps(env, exports);
  InitInPlaceOps(env, exports);
  InitRuntime(env, exports);
  smml::InitDistributed(env, exports);
  smml::InitAutocast(env, exports);
  smml::InitCheckpoint(env, exports);
  return exports;
}

}  // namespace

namespace smml {

std::vector<at::Tensor> TensorListArgument(const Napi::Value& v) { return TList(v); }

const at::Tensor& TensorArgument(const Napi::Value& v) { return T(v); }

Napi::Value TensorValue(Napi::Env env, at::Tensor t) { return Wrap(env, std::move(t)); }
Napi::Array TensorListValue(Napi::Env env, const std::vector<at::Tensor>& list) { return WrapList(env, list); }

void DefineFunction(Napi::Env env, Napi::Object exports, const char* name, std::function<Napi::Value(const Napi::CallbackInfo&)> f) {
  Def(env, exports, name, std::move(f));
}

}  // namespace smml

NODE_API_MODULE(smml_torch, Init)
