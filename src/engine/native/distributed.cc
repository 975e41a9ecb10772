// N-API binding of libtorch's distributed engine (c10d): a process group formed through a TCPStore
// rendezvous, on Gloo (CPU tensors) or, where the linked libtorch has it, NCCL (CUDA tensors).
//
// Collectives are synchronous: a call returns once the operation has finished on this rank. Gloo bounds
// every wait by the group's timeout, so a peer that died (its sockets close) or stopped answering (the
// timeout passes) makes the call throw instead of blocking the process for ever.
#include "binding.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef SMML_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef SMML_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace smml {
namespace {

// Tensors are reduced in flat buffers of at most this size: one collective per bucket instead of one per
// parameter (a network has hundreds of small ones), without doubling the memory of a large model at once.
constexpr int64_t kBucketBytes = 25 << 20;

struct ProcessGroupState {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};

using Handle = Napi::External<ProcessGroupState>;

ProcessGroupState& StateOf(const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "expected a process group handle");
  ProcessGroupState* state = v.As<Handle>().Data();
  if (!state->group) throw Napi::TypeError::New(v.Env(), "the process group was destroyed");
  return *state;
}

int64_t IntegerArgument(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an integer");
  return v.As<Napi::Number>().Int64Value();
}

std::string StringArgument(const Napi::Value& v, const char* what) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

#ifdef SMML_WITH_GLOO
bool IsLoopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0; }

// Gloo's own choice resolves this machine's hostname, which may not reach the other ranks; on one machine
// the loopback address always does, and GLOO_SOCKET_IFNAME names the interface on a cluster (as in PyTorch).
std::shared_ptr<::gloo::transport::Device> GlooDevice(const std::string& masterAddr) {
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME")) return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  if (IsLoopback(masterAddr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

c10::intrusive_ptr<c10d::ProcessGroup> CreateGroup(const std::string& backend, const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                   int size, const std::string& masterAddr, std::chrono::milliseconds timeout) {
  if (backend == "gloo") {
#ifdef SMML_WITH_GLOO
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(GlooDevice(masterAddr));
    options->threads = 2;
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
#else
    throw std::runtime_error("this build of the addon has no Gloo (the gloo headers were missing when it was compiled: install libgloo-dev and rebuild)");
#endif
  }
  if (backend == "nccl") {
#ifdef SMML_WITH_NCCL
    // Without blocking wait NCCL ignores the timeout and a dead peer hangs the survivors.
    setenv("NCCL_BLOCKING_WAIT", "1", 0);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
#else
    throw std::runtime_error(
        "the NCCL backend needs a libtorch built with CUDA and NCCL (the linked one has none; Debian's libtorch-dev is CPU-only): "
        "build the addon with LIBTORCH=<a CUDA libtorch> or use the gloo backend");
#endif
  }
  throw std::runtime_error("unknown backend '" + backend + "' (known: gloo, nccl)");
}

// Tensors split into buckets of one dtype and device and at most kBucketBytes (a larger tensor is a bucket of its own).
std::vector<std::vector<at::Tensor>> Buckets(const std::vector<at::Tensor>& tensors) {
  std::vector<std::vector<at::Tensor>> buckets;
  int64_t bytes = 0;
  for (const at::Tensor& t : tensors) {
    const int64_t size = t.numel() * static_cast<int64_t>(t.element_size());
    bool fits = !buckets.empty() && bytes + size <= kBucketBytes && buckets.back().front().scalar_type() == t.scalar_type() &&
                buckets.back().front().device() == t.device();
    if (!fits) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(t);
    bytes += size;
  }
  return buckets;
}

// Runs `collective` on each bucket flattened into one contiguous tensor, and copies the results back.
template <typename Collective>
void OnBuckets(const std::vector<at::Tensor>& tensors, Collective collective) {
  for (const std::vector<at::Tensor>& bucket : Buckets(tensors)) {
    if (bucket.size() == 1 && bucket.front().is_contiguous()) {
      at::Tensor only = bucket.front();
      collective(only);
      continue;
    }
    std::vector<at::Tensor> flat;
    flat.reserve(bucket.size());
    for (const at::Tensor& t : bucket) flat.push_back(t.reshape({-1}));
    at::Tensor buffer = at::cat(flat);
    collective(buffer);
    int64_t offset = 0;
    for (const at::Tensor& t : bucket) {
      t.copy_(buffer.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

void Wait(const c10::intrusive_ptr<c10d::Work>& work) { work->wait(); }

void Init(Napi::Env env, Napi::Object e) {
  // (backend, rank, worldSize, masterAddr, masterPort, timeoutMs) → handle. Rank 0 hosts the store.
  DefineFunction(env, e, "processGroupCreate", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const std::string backend = StringArgument(info[0], "backend");
    const int64_t rank = IntegerArgument(info[1], "rank");
    const int64_t size = IntegerArgument(info[2], "worldSize");
    const std::string masterAddr = StringArgument(info[3], "masterAddr");
    const int64_t port = IntegerArgument(info[4], "masterPort");
    const std::chrono::milliseconds timeout(IntegerArgument(info[5], "timeoutMs"));
    if (size < 1 || rank < 0 || rank >= size) throw Napi::RangeError::New(info.Env(), "rank must be in [0, worldSize)");
    if (port < 1 || port > 65535) throw Napi::RangeError::New(info.Env(), "masterPort must be in [1, 65535]");
    if (timeout.count() < 1) throw Napi::RangeError::New(info.Env(), "the timeout must be positive");
    c10d::TCPStoreOptions storeOptions;
    storeOptions.port = static_cast<std::uint16_t>(port);
    storeOptions.isServer = rank == 0;
    storeOptions.numWorkers = static_cast<std::size_t>(size);
    storeOptions.waitWorkers = false;
    storeOptions.timeout = timeout;
    auto tcpStore = c10::make_intrusive<c10d::TCPStore>(masterAddr, storeOptions);
    auto store = c10::make_intrusive<c10d::PrefixStore>(backend, tcpStore);
    auto state = std::make_unique<ProcessGroupState>();
    state->store = store;
    state->group = CreateGroup(backend, store, static_cast<int>(rank), static_cast<int>(size), masterAddr, timeout);
    return Handle::New(info.Env(), state.release(), [](Napi::Env, ProcessGroupState* s) { delete s; });
  });

  // (handle, tensors, op: 'sum' | 'avg'): every tensor replaced in place by its sum (or mean) over the ranks.
  DefineFunction(env, e, "processGroupAllReduce", [](const Napi::CallbackInfo& info) -> Napi::Value {
    ProcessGroupState& state = StateOf(info[0]);
    const std::vector<at::Tensor> tensors = TensorListArgument(info[1]);
    const std::string op = StringArgument(info[2], "op");
    if (op != "sum" && op != "avg") throw Napi::TypeError::New(info.Env(), "op must be 'sum' or 'avg', got '" + op + "'");
    // Gloo has no mean: sum, then divide.
    const int size = state.group->getSize();
    at::NoGradGuard noGrad;
    OnBuckets(tensors, [&](at::Tensor& flat) {
      std::vector<at::Tensor> one{flat};
      c10d::AllreduceOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      Wait(state.group->allreduce(one, options));
      if (op == "avg") flat.div_(size);
    });
    return info.Env().Undefined();
  });

  // (handle, tensors, root): every tensor replaced in place by root's.
  DefineFunction(env, e, "processGroupBroadcast", [](const Napi::CallbackInfo& info) -> Napi::Value {
    ProcessGroupState& state = StateOf(info[0]);
    const std::vector<at::Tensor> tensors = TensorListArgument(info[1]);
    const int64_t root = IntegerArgument(info[2], "root");
    if (root < 0 || root >= state.group->getSize()) throw Napi::RangeError::New(info.Env(), "root must be a rank of the group");
    at::NoGradGuard noGrad;
    OnBuckets(tensors, [&](at::Tensor& flat) {
      std::vector<at::Tensor> one{flat};
      c10d::BroadcastOptions options;
      options.rootRank = root;
      Wait(state.group->broadcast(one, options));
    });
    return info.Env().Undefined();
  });

  DefineFunction(env, e, "processGroupBarrier", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Wait(StateOf(info[0]).group->barrier());
    return info.Env().Undefined();
  });

  // Closes the connections now (idempotent); the handle's finaliser would otherwise do it at collection.
  DefineFunction(env, e, "processGroupDestroy", [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (!info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "expected a process group handle");
    ProcessGroupState* state = info[0].As<Handle>().Data();
    state->group.reset();
    state->store.reset();
    return info.Env().Undefined();
  });

  DefineFunction(env, e, "processGroupBackends", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Array out = Napi::Array::New(info.Env());
#ifdef SMML_WITH_GLOO
    out.Set(out.Length(), "gloo");
#endif
#ifdef SMML_WITH_NCCL
    out.Set(out.Length(), "nccl");
#endif
    return out;
  });
}

}  // namespace

void InitDistributed(Napi::Env env, Napi::Object exports) { Init(env, exports); }

}  // namespace smml
