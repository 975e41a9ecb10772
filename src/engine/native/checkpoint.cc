// Activation recomputation (gradient checkpointing): a block of JavaScript operations whose forward keeps
// only its inputs, and whose backward runs the block again under grad mode to differentiate it.
//
// The block is one custom autograd Function. Its forward calls the JavaScript block with gradients off,
// saves the inputs and the CPU generator's state, and returns the outputs. Its backward detaches the saved
// inputs, restores the generator state (so that dropout draws the same masks), calls the block again with
// gradients on, and differentiates the recomputed outputs with torch::autograd::grad against the inputs and
// the block's parameters, which are inputs of the Function as well: the engine then accumulates the parameter
// gradients exactly as without recomputation, and torch.grad through a block works.
//
// Calling JavaScript from a backward is legal because libtorch's engine runs CPU nodes on the thread that
// called backward() (Engine::execute_with_graph_task drives the graph task on the calling thread, and a
// backward started inside a node runs there as well, reentrantly); that thread is the JavaScript thread,
// inside the addon's `backward` call. The node checks the thread anyway and refuses to call JavaScript
// from any other. Nodes of other devices run on the engine's device threads, so only CPU blocks are
// accepted. An exception thrown by the block (a JavaScript error included) leaves the node, the engine
// stores it and rethrows it from the backward() call that JavaScript made.
#include <ATen/SequenceNumber.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>

#include <thread>
#include <unordered_set>

#include "binding.h"

namespace smml {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The JavaScript block, kept alive by the autograd node that may call it again.
struct JsBlock : torch::CustomClassHolder {
  JsBlock(Napi::Env env, Napi::Function fn) : env(env), fn(Napi::Persistent(fn)), thread(std::this_thread::get_id()) {}

  // Calls the block on `inputs`. It returns engine tensors (objects with `handle` and `dispose()`); their
  // tensors are taken and the objects disposed, so that the JavaScript scopes hold nothing of the block.
  variable_list Run(const variable_list& inputs) {
    TORCH_CHECK(std::this_thread::get_id() == thread,
                "checkpoint: a recomputed block was reached from a thread other than the JavaScript thread that made it");
    Napi::HandleScope scope(env);
    Napi::Value result = fn.Call({TensorListValue(env, inputs)});
    if (!result.IsArray()) throw Napi::TypeError::New(env, "a recomputed block must return an array of tensors");
    Napi::Array tensors = result.As<Napi::Array>();
    Napi::Array handles = Napi::Array::New(env, tensors.Length());
    for (uint32_t i = 0; i < tensors.Length(); ++i) {
      Napi::Value t = tensors.Get(i);
      if (!t.IsObject()) throw Napi::TypeError::New(env, "a recomputed block must return tensors");
      handles.Set(i, t.As<Napi::Object>().Get("handle"));
    }
    variable_list outputs = TensorListArgument(handles);
    for (uint32_t i = 0; i < tensors.Length(); ++i) {
      Napi::Object t = tensors.Get(i).As<Napi::Object>();
      t.Get("dispose").As<Napi::Function>().Call(t, {});
    }
    return outputs;
  }

  Napi::Env env;
  Napi::FunctionReference fn;
  std::thread::id thread;
};

at::Tensor CpuGeneratorState() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void SetCpuGeneratorState(const at::Tensor& state) {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

// Throws unless every path back from `outputs` ends at one of `allowed` (the detached inputs and the
// parameters) or at a tensor that needs no gradient. A leaf outside `allowed` would get no gradient, and a
// node made before the recomputation began (sequence number below `firstNode`) belongs to the graph around the
// block: both mean the block read a tensor that requires grad without receiving it as an input.
void CheckClosed(const variable_list& outputs, const std::unordered_set<const c10::TensorImpl*>& allowed, uint64_t firstNode) {
  std::vector<torch::autograd::Node*> pending;
  std::unordered_set<torch::autograd::Node*> seen;
  for (const at::Tensor& out : outputs)
    if (out.grad_fn()) pending.push_back(out.grad_fn().get());
  while (!pending.empty()) {
    torch::autograd::Node* node = pending.back();
    pending.pop_back();
    if (!seen.insert(node).second) continue;
    if (auto* leaf = dynamic_cast<torch::autograd::AccumulateGrad*>(node)) {
      TORCH_CHECK(allowed.count(leaf->variable.unsafeGetTensorImpl()) > 0,
                  "checkpoint: the block uses a tensor that requires grad but is neither one of its inputs nor one of its "
                  "parameters (its gradient would be lost); pass it among the inputs or parameters");
      continue;
    }
    TORCH_CHECK(node->sequence_nr() >= firstNode,
                "checkpoint: the block uses a tensor computed outside it that requires grad (", node->name(),
                "); pass it among the block's inputs");
    for (const auto& edge : node->next_edges())
      if (edge.function) pending.push_back(edge.function.get());
  }
}

struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs, at::TensorList parameters, c10::intrusive_ptr<JsBlock> block) {
    for (const at::TensorList list : {inputs, parameters})
      for (const at::Tensor& t : list) TORCH_CHECK(t.device().is_cpu(), "only CPU tensors can be recomputed, got one on ", t.device());
    ctx->saved_data["generator"] = CpuGeneratorState();
    variable_list outputs = block->Run(inputs.vec());
    ctx->saved_data["block"] = c10::IValue::make_capsule(block);
    ctx->saved_data["inputs"] = static_cast<int64_t>(inputs.size());
    std::vector<at::Tensor> saved = inputs.vec();
    saved.insert(saved.end(), parameters.begin(), parameters.end());
    ctx->save_for_backward(saved);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(), "checkpoint: a recomputed block cannot be differentiated twice (backward with createGraph)");
    auto block = c10::static_intrusive_pointer_cast<JsBlock>(ctx->saved_data["block"].toCapsule());
    const size_t inputCount = static_cast<size_t>(ctx->saved_data["inputs"].toInt());
    const variable_list saved = ctx->get_saved_variables();
    variable_list inputs;
    std::unordered_set<const c10::TensorImpl*> allowed;
    variable_list differentiated;  // the inputs and parameters that require grad, in that order
    for (size_t i = 0; i < saved.size(); ++i) {
      at::Tensor t = i < inputCount ? saved[i].detach().requires_grad_(saved[i].requires_grad()) : saved[i];
      if (i < inputCount) inputs.push_back(t);
      allowed.insert(t.unsafeGetTensorImpl());
      if (t.requires_grad()) differentiated.push_back(t);
    }

    const at::Tensor current = CpuGeneratorState();
    SetCpuGeneratorState(ctx->saved_data["generator"].toTensor());
    const uint64_t firstNode = at::sequence_number::peek();
    variable_list outputs;
    try {
      at::AutoGradMode gradients(true);
      outputs = block->Run(inputs);
    } catch (...) {
      SetCpuGeneratorState(current);
      throw;
    }
    SetCpuGeneratorState(current);
    CheckClosed(outputs, allowed, firstNode);

    variable_list roots, rootGrads;
    for (size_t i = 0; i < outputs.size() && i < grads.size(); ++i) {
      if (outputs[i].requires_grad() && grads[i].defined()) {
        roots.push_back(outputs[i]);
        rootGrads.push_back(grads[i]);
      }
    }
    variable_list found;
    if (!roots.empty() && !differentiated.empty())
      found = torch::autograd::grad(roots, differentiated, rootGrads, /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true);
    outputs.clear();
    roots.clear();

    // One gradient per input of the Function: each tensor of both lists, then the block (none).
    variable_list result;
    size_t next = 0;
    for (const at::Tensor& t : saved) result.push_back(t.requires_grad() && next < found.size() ? found[next++] : at::Tensor());
    result.emplace_back();
    return result;
  }
};

}  // namespace

void InitCheckpoint(Napi::Env env, Napi::Object exports) {
  // (inputs, parameters, block) -> outputs. `block(inputHandles)` returns an array of engine tensors.
  DefineFunction(env, exports, "checkpoint", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const std::vector<at::Tensor> inputs = TensorListArgument(info[0]);
    const std::vector<at::Tensor> parameters = TensorListArgument(info[1]);
    if (!info[2].IsFunction()) throw Napi::TypeError::New(info.Env(), "expected the block as a function");
    auto block = c10::make_intrusive<JsBlock>(info.Env(), info[2].As<Napi::Function>());
    return TensorListValue(info.Env(), CheckpointFunction::apply(at::TensorList(inputs), at::TensorList(parameters), block));
  });
}

}  // namespace smml
