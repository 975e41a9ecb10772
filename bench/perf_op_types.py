"""Splits a `perf` recording of our training step (bench/profile-step.ts) by operation type, forward and backward.

Record with DWARF call chains, one libtorch thread (so every sample's chain reaches the operation that asked for the
work; with more threads the OpenMP workers' chains stop at the parallel region), then read the samples:

    mkfifo perf.ctl
    perf record -F 500 --call-graph dwarf,12288 -k CLOCK_MONOTONIC -D -1 --control fifo:perf.ctl -o step.data -- \
        node --perf-basic-prof --import tsx bench/profile-step.ts --preset paper --patch 32 --threads 1 --perf-control perf.ctl
    perf script --no-inline -i step.data -F tid,time,ip,sym,dso | python3 bench/perf_op_types.py perf.ctl.phases

profile-step.ts switches the recording on for its timed steps only and writes when each phase began (forward,
objective, backward, optimiser) to perf.ctl.phases: a sample's phase is the one running at its time.

Only the busiest thread counts (the main thread: at one libtorch thread it does all the tensor work; the others are
Node's and esbuild's). A sample belongs to the backward when its chain passes through the autograd engine; its operation is then the
autograd node nearest the leaf (ConvolutionBackward0, CppNode<ThinConvolutionFunction>, …). Otherwise it is the
outermost ATen operation or addon function under the JavaScript call. The optimiser's fused Adam step runs in-place
operations of the addon's InitInPlaceOps group. oneDNN's convolution kernels (more than 16 channels; the engine's
direct kernels take the thinner ones) are generated at run time: perf cannot unwind them, so their samples count as
one type. Node's --perf-basic-prof names V8's generated code, which would otherwise look the same.
"""

import bisect
import collections
import json
import re
import sys

NODE = re.compile(r"torch::autograd::(?:generated::(\w+)|CppNode<smml::\(anonymous namespace\)::(\w+)>|(AccumulateGrad))::apply")
ATEN_OP = re.compile(r"at::_ops::(\w+)::call")
ADDON_OP = re.compile(r"smml::\(anonymous namespace\)::(\w+Function)::forward|smml::(TrilinearAligned)\b")

CATEGORIES = [
    ("convolution", {"convolution", "_convolution", "mkldnn_convolution", "slow_conv3d", "slow_conv3d_forward", "conv3d", "convolution_backward",
                     "ThinConvolutionFunction", "Conv1x1Function", "convtranspose", "conv_transpose3d", "slow_conv_transpose3d"}),
    ("norm + activation", {"InstanceNormLeakyReluFunction", "instance_norm", "batch_norm", "native_batch_norm", "_batch_norm_impl_index", "layer_norm",
                           "native_layer_norm", "relu", "leaky_relu", "gelu", "sigmoid", "threshold"}),
    ("matrix products (attention, linear)", {"mm", "bmm", "addmm", "matmul", "linear", "einsum", "baddbmm"}),
    ("softmax, log-softmax, KL", {"softmax", "_softmax", "log_softmax", "_log_softmax", "kl_div"}),
    ("trilinear upsampling", {"TrilinearFunction", "TrilinearAdjoint", "TrilinearAligned", "upsample_trilinear3d"}),
    ("dropout", {"dropout", "native_dropout", "bernoulli", "bernoulli_", "fused_dropout"}),
    ("copies (cat, stack, index, one-hot, layout)", {"cat", "stack", "contiguous", "clone", "copy_", "to", "_to_copy", "index_select", "one_hot", "reshape",
                                                      "view", "permute", "transpose", "unbind", "narrow", "slice", "select", "expand", "pad",
                                                      "reflection_pad3d", "reflection_pad3_d", "_pad", "unsqueeze", "squeeze", "flatten", "unsafe_view", "_unsafe_view", "alias",
                                                      "index", "gather", "_reshape_alias"}),
    ("fills and random draws (zeros, ones, randn)", {"randn", "rand", "randint", "zeros", "ones", "full", "zero_", "fill_", "empty", "empty_like", "zeros_like", "ones_like", "new_zeros"}),
    ("reductions (sum, mean)", {"sum", "mean", "amax", "amin"}),
    ("gradient accumulation", {"AccumulateGrad"}),
]
CATEGORY_OF = {name.lower(): category for category, names in CATEGORIES for name in names}
ELEMENTWISE = "elementwise (add, mul, div, clamp, log, …)"
GENERATED = "oneDNN convolution kernels (generated code)"


def node_op(name):
    """ConvolutionBackward0 -> convolution, NativeLayerNormBackward0 -> native_layer_norm, CppNode classes stay."""
    if name.endswith("Function") or name in ("TrilinearAdjoint", "AccumulateGrad"):
        return name
    base = re.sub(r"Backward\d*$", "", name)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower()


def category(op):
    """An ATen operation's name carries its overload (mul_Tensor, log_softmax_int): try it shorter until one is known."""
    parts = op.lower().split("_")
    for end in range(len(parts), 0, -1):
        known = CATEGORY_OF.get("_".join(parts[:end]))
        if known:
            return known
    return ELEMENTWISE


def classify(frames):
    """(operation type, operation or autograd node) of one sample; frames run from the leaf to the root."""
    if len(frames) == 1 and "[unknown] (/tmp/perf-" in frames[0]:
        return GENERATED, None
    if any("torch::autograd::Engine::" in f for f in frames):
        for f in frames:
            match = NODE.search(f)
            if match:
                name = next(g for g in match.groups() if g)
                op = node_op(name)
                return category(op), name
        return "autograd engine", None
    if any("InitInPlaceOps" in f for f in frames):
        return "optimiser step (fused Adam)", None
    for f in reversed(frames):
        match = ADDON_OP.search(f) or ATEN_OP.search(f)
        if match:
            op = next(g for g in match.groups() if g)
            return category(op), op
    if any("node::" in f or "v8::" in f or "Builtins_" in f or "/tmp/perf-" in f or "(/usr/bin/node)" in f for f in frames):
        return "JavaScript, V8 and Node", None
    return "other (kernel, libraries)", None


def samples(lines):
    """(thread id, time in seconds, frames from the leaf to the root) per sample."""
    header, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield header[0], float(header[1].rstrip(":")), frames
            header, frames = None, []
        elif header is None:
            header = line.split()
        else:
            frames.append(line.strip())
    if frames:
        yield header[0], float(header[1].rstrip(":")), frames


def phase_at(starts, times, time):
    """The phase that began last before `time`."""
    index = bisect.bisect_right(times, time) - 1
    return starts[index][0] if index >= 0 else starts[0][0]


def main():
    by_category = collections.Counter()
    by_operation = collections.Counter()
    total = 0
    if len(sys.argv) != 2:
        sys.exit("usage: perf script --no-inline -F tid,time,ip,sym,dso | python3 bench/perf_op_types.py PHASES_JSON")
    with open(sys.argv[1]) as file:
        starts = json.load(file)
    times = [start for _, start in starts]
    recorded = list(samples(sys.stdin))
    main_thread = collections.Counter(tid for tid, _, _ in recorded).most_common(1)[0][0] if recorded else None
    for tid, time, frames in recorded:
        if tid != main_thread:
            continue
        cat, op = classify(frames)
        phase = phase_at(starts, times, time)
        by_category[(cat, phase)] += 1
        if op:
            by_operation[(phase, op)] += 1
        total += 1
    if total == 0:
        sys.exit("no samples on stdin (expected `perf script -F tid,time,ip,sym,dso` output with call chains)")
    phases = ["forward", "objective", "backward", "optimiser"]
    rows = collections.defaultdict(collections.Counter)
    for (cat, phase), n in by_category.items():
        rows[cat][phase] += n
    print(f"{total} samples of thread {main_thread}\n")
    print("| operation type | " + " | ".join(phases) + " | all |")
    print("|---|" + "---:|" * (len(phases) + 1))
    for cat, counts in sorted(rows.items(), key=lambda item: -sum(item[1].values())):
        cells = [f"{100 * counts[p] / total:.1f}%" if counts[p] else "" for p in phases]
        print(f"| {cat} | " + " | ".join(cells) + f" | {100 * sum(counts.values()) / total:.1f}% |")
    print("\n| phase: operation or autograd node | share |")
    print("|---|---:|")
    for (phase, op), n in by_operation.most_common(25):
        print(f"| {phase}: {op} | {100 * n / total:.1f}% |")


if __name__ == "__main__":
    main()
