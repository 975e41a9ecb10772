// What the addon's source files share to define JavaScript functions (implemented in torch.cc): tensor
// arguments, and registration that turns libtorch and C++ errors into JavaScript errors naming the function.
#pragma once

#include <napi.h>
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace smml {

// The tensors of a JavaScript array of tensor handles (a TypeError for anything else or a disposed tensor).
std::vector<at::Tensor> TensorListArgument(const Napi::Value& v);

// The tensor of a JavaScript tensor handle (a TypeError for anything else or a disposed tensor).
const at::Tensor& TensorArgument(const Napi::Value& v);

// A new JavaScript tensor handle owning `t`.
Napi::Value TensorValue(Napi::Env env, at::Tensor t);
// A JavaScript array of new tensor handles on `list`.
Napi::Array TensorListValue(Napi::Env env, const std::vector<at::Tensor>& list);

// Adds `name` to `exports`; errors thrown by `f` reach JavaScript as Errors prefixed with `name`.
void DefineFunction(Napi::Env env, Napi::Object exports, const char* name, std::function<Napi::Value(const Napi::CallbackInfo&)> f);

// The process-group functions of distributed.cc.
void InitDistributed(Napi::Env env, Napi::Object exports);

// The autocast functions of autocast.cc.
void InitAutocast(Napi::Env env, Napi::Object exports);
// The activation recomputation of checkpoint.cc.
void InitCheckpoint(Napi::Env env, Napi::Object exports);

}  // namespace smml
