"""The engine benchmarks' workloads in PyTorch, driven from Python, for comparison with bench/engine.ts.

bench/run.ts starts this script and sends one JSON request per line on stdin; each gets one JSON line
on stdout. {"op": "setup", "workload": NAME, "threads": N, ...shape} prepares a workload with the same
shapes and thread count that engine.ts uses; {"op": "run"} runs it once and answers {"ms": wall-clock
milliseconds, "value": the loss or null}. Errors answer {"error": message}. The workloads mirror
engine.ts layer for layer so that the two sides do the same work.
"""


import torch
import torch.nn.functional as F
from torch import nn

from reference_protocol import run_once, serve


def conv3d_tensors(spec):
    b, c, s, k = spec["batch"], spec["channels"], spec["size"], spec["kernel"]
    x = torch.randn(b, c, s, s, s, requires_grad=True)
    w = torch.randn(c, c, k, k, k, requires_grad=True)
    return x, w, torch.randn(b, c, s, s, s)


def conv3d_forward(spec):
    x, w, _ = conv3d_tensors(spec)

    def run():
        with torch.no_grad():
            F.conv3d(x, w, None, padding=w.shape[-1] // 2)

    return run


def conv3d_forward_backward(spec):
    x, w, grad_output = conv3d_tensors(spec)

    def run():
        F.conv3d(x, w, None, padding=w.shape[-1] // 2).backward(grad_output)
        x.grad = None
        w.grad = None

    return run


def conv_norm_act(in_channels, out_channels):
    """3x3x3 convolution (with bias), InstanceNorm with affine parameters, LeakyReLU(0.01)."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, padding=1),
        nn.InstanceNorm3d(out_channels, affine=True),
        nn.LeakyReLU(0.01),
    )


class UNet(nn.Module):
    """The two-level 3D U-Net of engine.ts, with its layers built in the same order."""

    def __init__(self, spec):
        super().__init__()
        c1, c2 = spec["channels"]
        self.encoder = nn.Sequential(conv_norm_act(spec["inChannels"], c1), conv_norm_act(c1, c1))
        self.bottom = nn.Sequential(conv_norm_act(c1, c2), conv_norm_act(c2, c2))
        self.up = nn.ConvTranspose3d(c2, c1, 2, stride=2)
        self.decoder = nn.Sequential(conv_norm_act(2 * c1, c1), conv_norm_act(c1, c1))
        self.head = nn.Conv3d(c1, spec["classes"], 1)

    def forward(self, x):
        skip = self.encoder(x)
        low = self.bottom(F.max_pool3d(skip, 2))
        return self.head(self.decoder(torch.cat([skip, self.up(low)], 1)))


def unet_step(spec):
    torch.manual_seed(0)
    b, s = spec["batch"], spec["size"]
    net = UNet(spec)
    optimizer = torch.optim.SGD(net.parameters(), lr=spec["learningRate"])
    x = torch.randn(b, spec["inChannels"], s, s, s)
    target = torch.randint(0, spec["classes"], (b, s, s, s))

    def run():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), target)
        loss.backward()
        optimizer.step()
        return loss.item()

    return run


WORKLOADS = {
    "conv3d_forward": conv3d_forward,
    "conv3d_forward_backward": conv3d_forward_backward,
    "unet_step": unet_step,
}


def answer(request, state):
    op = request.get("op")
    if op == "setup":
        if request.get("workload") not in WORKLOADS:
            raise ValueError(f"unknown workload {request.get('workload')!r}; expected one of {sorted(WORKLOADS)}")
        torch.set_num_threads(request["threads"])
        state["run"] = None  # frees the previous workload's tensors before allocating the next
        state["run"] = WORKLOADS[request["workload"]](request)
        return {"torch_version": torch.__version__, "threads": torch.get_num_threads()}
    if op == "run":
        return run_once(state)
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    serve(answer)
