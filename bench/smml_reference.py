"""One SMML dual-branch training step in plain torch.nn, driven from Python, for comparison with bench/smml-step.ts.

The network mirrors src/models layer for layer (modules built in the same order, initialised the same way) and the
objective mirrors src/losses with every term on and the KL terms past their warm-up (docs/method.md §3, §5). One step
is what the trainer does: forward of both branches under their modality masks, the objective, one backward, and an
AMSGrad Adam step of each branch.

Protocol (bench/harness.ts, PythonReference): one JSON request per line on stdin, one JSON line back.
{"op": "setup", "workload": "smml_step", "threads": N, "config": SmmlModelConfig, "batch": B, "optimizer": {...}}
builds the model and the random batch and answers {"parameters": trainable scalars, "forwardFlops": the multiply-adds
x2 of the convolutions, linear layers and attention products in one forward of every branch, counted while running
it}; {"op": "run"} runs one step and
answers {"ms": wall-clock milliseconds, "value": the loss}; {"op": "peak"} answers {"peakRssMiB": this process's peak
resident memory}. Errors answer {"error": message}.
"""

import math
import resource

import torch
import torch.nn.functional as F
from torch import nn

from reference_protocol import run_once, serve

LEAKY_SLOPE = 0.2
PROBABILITY_FLOOR = 0.005
DICE_EPSILON = 1e-7
NORM_FLOOR = 1e-8


# -- the network (src/models) ------------------------------------------------------------------------------------


class FlopCount:
    """Multiply-adds x2 of the layers that src/models/cost.ts counts, summed while `counting`."""

    def __init__(self):
        self.counting = False
        self.total = 0

    def add(self, flops):
        if self.counting:
            self.total += flops

    def hook(self, module, inputs, output):
        if isinstance(module, nn.Conv3d):
            self.add(2 * module.in_channels // module.groups * math.prod(module.kernel_size) * output.numel())
        elif isinstance(module, nn.ConvTranspose3d):
            self.add(2 * inputs[0].numel() * module.out_channels // module.groups * math.prod(module.kernel_size))
        elif isinstance(module, nn.Linear):
            self.add(2 * module.in_features * output.numel())


FLOP_COUNT = FlopCount()


def kaiming_conv3d(in_channels, out_channels, kernel, stride=1, bias=True, padding_mode="zeros"):
    """Conv3d with kaiming-normal weights (fan_in, gain sqrt 2); a 3x3x3 kernel pads by 1, a 1x1x1 kernel not at all."""
    conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=1 if kernel == 3 else 0, bias=bias, padding_mode=padding_mode)
    nn.init.kaiming_normal_(conv.weight)
    return conv


def upsample(x, factor):
    if factor == 1:
        return x
    return F.interpolate(x, size=[s * factor for s in x.shape[2:]], mode="trilinear", align_corners=True)


class PreNormConv(nn.Module):
    """InstanceNorm (no affine) -> LeakyReLU(0.2) -> Conv3d with reflect padding."""

    def __init__(self, in_channels, out_channels, kernel=3, stride=1):
        super().__init__()
        self.conv = kaiming_conv3d(in_channels, out_channels, kernel, stride=stride, padding_mode="reflect")

    def forward(self, x):
        return self.conv(F.leaky_relu(F.instance_norm(x, eps=1e-5), LEAKY_SLOPE))


class ResidualPair(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.first = PreNormConv(channels, channels)
        self.second = PreNormConv(channels, channels)

    def forward(self, x):
        return x + self.second(self.first(x))


class UpStep(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.reduce = PreNormConv(in_channels, out_channels)
        self.merge = PreNormConv(2 * out_channels, out_channels)
        self.project = PreNormConv(out_channels, out_channels, kernel=1)

    def forward(self, below, skip):
        up = self.reduce(upsample(below, 2))
        return self.project(self.merge(torch.cat([skip, up], 1)))


class ConvBnRelu(nn.Module):
    """The refinement U-Net's block: conv without bias (zero padding) -> BatchNorm -> ReLU."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv = kaiming_conv3d(in_channels, out_channels, 3, stride=stride, bias=False)
        self.norm = nn.BatchNorm3d(out_channels)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


def mask_modalities(features, mask):
    """Zeroes features (B, K, ...) where mask (B, K) is false."""
    return features * mask.to(features.dtype).reshape(mask.shape[0], mask.shape[1], *([1] * (features.dim() - 2)))


class ModalityEncoder(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.stem = kaiming_conv3d(1, channels[0], 3, padding_mode="reflect")
        self.downs = nn.ModuleList(PreNormConv(channels[i], c, stride=2) for i, c in enumerate(channels[1:]))
        self.pairs = nn.ModuleList(ResidualPair(c) for c in channels)

    def forward(self, image):
        levels = [self.pairs[0](self.stem(image))]
        for down, pair in zip(self.downs, self.pairs[1:]):
            levels.append(pair(down(levels[-1])))
        return levels


class SelfAttention(nn.Module):
    def __init__(self, dim, heads, dropout):
        super().__init__()
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, _ = x.shape
        head_dim = self.dim // self.heads
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        weights = (q * (1 / math.sqrt(head_dim))).matmul(k.transpose(-2, -1)).softmax(-1)
        attended = F.dropout(weights, self.dropout, self.training).matmul(v)
        FLOP_COUNT.add(2 * 2 * batch * tokens * tokens * self.dim)  # q·kᵀ and weights·v
        return self.proj(attended.transpose(1, 2).reshape(batch, tokens, self.dim))


class TransformerBlock(nn.Module):
    """Pre-LN: x + pos; x + Dropout(MHSA(LN(x))); x + Dropout(Linear(Dropout(GELU(Linear(LN(x))))))."""

    def __init__(self, dim, heads, ffn_hidden, dropout):
        super().__init__()
        self.dropout = dropout
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn_in = nn.Linear(dim, ffn_hidden)
        self.ffn_out = nn.Linear(ffn_hidden, dim)

    def forward(self, tokens, position):
        def drop(t):
            return F.dropout(t, self.dropout, self.training)

        x = tokens + position
        attended = x + drop(self.attention(self.attention_norm(x)))
        hidden = drop(F.gelu(self.ffn_in(self.ffn_norm(attended))))
        return attended + drop(self.ffn_out(hidden))


class IntraModalTransformer(nn.Module):
    def __init__(self, in_channels, dim, tokens, heads, ffn_hidden, dropout):
        super().__init__()
        self.embed = kaiming_conv3d(in_channels, dim, 1)
        self.position = nn.Parameter(torch.zeros(1, tokens, dim))
        self.block = TransformerBlock(dim, heads, ffn_hidden, dropout)

    def forward(self, level5):
        return self.block(self.embed(level5).flatten(2).transpose(1, 2), self.position)


class InterModalTransformer(nn.Module):
    def __init__(self, modalities, dim, out_channels, heads, ffn_hidden, dropout):
        super().__init__()
        self.block = TransformerBlock(dim, heads, ffn_hidden, dropout)
        self.project = kaiming_conv3d(modalities * dim, out_channels, 1)

    def forward(self, tokens, positions):
        batch, modalities, count, dim = tokens.shape
        grid = round(count ** (1 / 3))
        mixed = self.block(tokens.reshape(batch, modalities * count, dim), torch.cat(positions, 1))
        return self.project(mixed.reshape(batch, modalities, count, dim).transpose(2, 3).reshape(batch, modalities * dim, grid, grid, grid))


class FusionUnit(nn.Module):
    def __init__(self, modalities, channels):
        super().__init__()
        self.reduce = PreNormConv(modalities * channels, channels, kernel=1)
        self.mix = PreNormConv(channels, channels)
        self.project = PreNormConv(channels, channels, kernel=1)

    def forward(self, stacked):
        return self.project(self.mix(self.reduce(stacked)))


class FusionDecoder(nn.Module):
    def __init__(self, modalities, channels, classes):
        super().__init__()
        self.fusion = nn.ModuleList(FusionUnit(modalities, c) for c in channels)
        self.ups = nn.ModuleList(UpStep(channels[i + 1], c) for i, c in enumerate(channels[:-1]))
        self.heads = nn.ModuleList(kaiming_conv3d(channels[l - 1], classes, 1) for l in range(len(channels), 1, -1))
        self.classifier = kaiming_conv3d(channels[0], classes, 1)

    def forward(self, levels):
        top = len(levels) - 1
        deep_supervision = []

        def supervise(decoded, level):
            deep_supervision.append(upsample(self.heads[top - level](decoded).softmax(1), 2**level))

        decoded = self.fusion[top](levels[top])
        supervise(decoded, top)
        for level in range(top - 1, -1, -1):
            decoded = self.ups[level](decoded, self.fusion[level](levels[level]))
            if level > 0:
                supervise(decoded, level)
        return self.classifier(decoded), deep_supervision


class SeparateDecoder(nn.Module):
    def __init__(self, channels, classes):
        super().__init__()
        self.ups = nn.ModuleList(UpStep(channels[i + 1], c) for i, c in enumerate(channels[:-1]))
        self.classifier = kaiming_conv3d(channels[0], classes, 1)

    def forward(self, levels):
        batch, modalities = levels[0].shape[:2]
        flat = [t.flatten(0, 1) for t in levels]
        decoded = flat[-1]
        for level in range(len(flat) - 2, -1, -1):
            decoded = self.ups[level](decoded, flat[level])
        probabilities = self.classifier(decoded).softmax(1)
        return probabilities.reshape(batch, modalities, *probabilities.shape[1:]).unbind(1)


def region_statistics(priors, onehot):
    """(B, K + 1, C): per class the mean prior of each modality inside the class's region, then the region's fraction."""
    batch, classes = onehot.shape[:2]
    modalities = priors.shape[1] // classes
    region = onehot.flatten(2)
    voxels = region.shape[2]
    counts = region.sum(2)
    inside = (priors.reshape(batch, classes, modalities, voxels) * region.unsqueeze(2)).sum(3)
    mean_inside = inside / counts.clamp_min(1).unsqueeze(2)
    fraction = (counts / voxels).unsqueeze(2)
    return torch.cat([mean_inside, fraction], 2).transpose(1, 2)


class ModalityReweighting(nn.Module):
    def __init__(self, modalities, hidden):
        super().__init__()
        widths = [modalities + 1, *hidden, modalities]
        self.layers = nn.ModuleList(kaiming_conv3d(widths[i], w, 1) for i, w in enumerate(widths[1:]))

    def forward(self, priors, onehot):
        batch, classes = onehot.shape[:2]
        statistics = region_statistics(priors, onehot)
        x = statistics.reshape(*statistics.shape, 1, 1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.leaky_relu(x, LEAKY_SLOPE)
        weights = x.sigmoid().reshape(batch, -1, classes).transpose(1, 2)
        modalities = weights.shape[2]
        return (priors.reshape(batch, classes, modalities, -1) * weights.unsqueeze(3)).reshape(priors.shape)


class RefinementUNet(nn.Module):
    def __init__(self, in_channels, filters, classes):
        super().__init__()
        self.down = nn.ModuleList(
            nn.ModuleList([ConvBnRelu(in_channels, f) if l == 0 else ConvBnRelu(filters[l - 1], f, 2), ConvBnRelu(f, f)]) for l, f in enumerate(filters)
        )
        self.up = nn.ModuleList(nn.ConvTranspose3d(filters[l + 1], f, 2, stride=2) for l, f in enumerate(filters[:-1]))
        self.merge = nn.ModuleList(nn.ModuleList([ConvBnRelu(2 * f, f), ConvBnRelu(f, f)]) for f in filters[:-1])
        self.classifier = kaiming_conv3d(filters[0], classes, 1)

    def forward(self, x):
        skips = []
        h = x
        for a, b in self.down:
            h = b(a(h))
            skips.append(h)
        for l in range(len(self.up) - 1, -1, -1):
            a, b = self.merge[l]
            h = b(a(torch.cat([skips[l], self.up[l](h)], 1)))
        return self.classifier(h)


class RefinementNetwork(nn.Module):
    def __init__(self, modalities, classes, filters, reweight_hidden):
        super().__init__()
        self.modalities, self.classes = modalities, classes
        self.reweighting = ModalityReweighting(modalities, reweight_hidden)
        self.unet = RefinementUNet(classes * modalities + classes, filters, classes)

    def forward(self, priors, mask, onehot, initial_logits):
        batch = priors.shape[0]
        present = mask.to(priors.dtype).reshape(batch, 1, self.modalities, 1)
        masked = (priors.reshape(batch, self.classes, self.modalities, -1) * present).reshape(priors.shape)
        reweighted = self.reweighting(masked, onehot)
        return self.unet(torch.cat([reweighted, initial_logits.detach().softmax(1)], 1))


class Branch(nn.Module):
    def __init__(self, config):
        super().__init__()
        modalities, classes, base = config["modalities"], config["classes"], config["baseChannels"]
        embed, heads, ffn, dropout = config["embedDim"], config["heads"], config["ffnHidden"], config["dropout"]
        channels = [m * base for m in (1, 2, 4, 8, 16)]
        top = channels[-1]
        tokens = (config["patch"] // 16) ** 3
        self.classes = classes
        self.encoders = nn.ModuleList(ModalityEncoder(channels) for _ in range(modalities))
        self.intra_modal = nn.ModuleList(IntraModalTransformer(top, embed, tokens, heads, ffn, dropout) for _ in range(modalities))
        self.inter_modal = InterModalTransformer(modalities, embed, modalities * top, heads, ffn, dropout)
        self.fusion_decoder = FusionDecoder(modalities, channels, classes)
        self.separate_decoder = SeparateDecoder(channels, classes)
        refinement = config["refinement"]
        self.refinement = RefinementNetwork(modalities, classes, refinement["filters"], refinement["reweightHidden"])

    def forward(self, images, mask, priors, labels):
        per_modality = []
        for k, (encoder, intra) in enumerate(zip(self.encoders, self.intra_modal)):
            levels = encoder(images[:, k : k + 1])
            per_modality.append((levels, intra(levels[-1])))
        levels = [torch.stack([m[0][l] for m in per_modality], 1) for l in range(len(per_modality[0][0]))]
        tokens = torch.stack([m[1] for m in per_modality], 1)
        masked = [mask_modalities(level, mask).flatten(1, 2) for level in levels[:-1]]
        bottleneck = self.inter_modal(mask_modalities(tokens, mask), [t.position for t in self.intra_modal])
        logits, deep_supervision = self.fusion_decoder([*masked, bottleneck])
        separate = self.separate_decoder(levels)
        onehot = F.one_hot(labels.long(), self.classes).permute(0, 4, 1, 2, 3).to(priors.dtype)
        refined = self.refinement(priors, mask, onehot, logits)
        return {"logits": logits, "deep_supervision": deep_supervision, "separate": separate, "bottleneck": bottleneck, "refined": refined}


# -- the objective (src/losses) ----------------------------------------------------------------------------------


def weighted_cross_entropy(probs, onehot):
    dims = list(range(2, onehot.dim()))
    voxels = math.prod(onehot.shape[2:])
    class_weights = 1 - onehot.sum(dims, keepdim=True) / voxels
    return -(class_weights * onehot * probs.clamp(PROBABILITY_FLOOR, 1).log()).sum(1).mean()


def dice_loss(probs, onehot):
    dims = [0, *range(2, onehot.dim())]
    overlap = (probs * onehot).sum(dims)
    size = probs.sum(dims) + onehot.sum(dims)
    return 1 - (2 * overlap / (size + DICE_EPSILON)).mean()


def task_loss(probs, onehot):
    return weighted_cross_entropy(probs, onehot) + dice_loss(probs, onehot)


def kl_divergence_per_voxel(teacher_logits, student_logits, temperature=1.0):
    teacher = (teacher_logits.detach() / temperature).log_softmax(1)
    student = (student_logits / temperature).log_softmax(1)
    return F.kl_div(student, teacher, reduction="none", log_target=True).sum(1)


def pixel_bidirectional_loss(logits1, logits2, onehot, tau):
    with torch.no_grad():
        cross_entropy1 = -(logits1.log_softmax(1) * onehot).sum(1)
        cross_entropy2 = -(logits2.log_softmax(1) * onehot).sum(1)
        branch2_better = (cross_entropy1 > cross_entropy2).to(logits1.dtype)
    branch1_better = 1 - branch2_better

    def masked_mean(values, where):
        return (values * where).sum() / where.sum().clamp_min(1)

    return (
        masked_mean(kl_divergence_per_voxel(logits2, logits1, tau), branch2_better),
        masked_mean(kl_divergence_per_voxel(logits1, logits2, tau), branch1_better),
    )


def nearest_label_downsample(labels, size):
    resampled = labels
    for axis, out_size in enumerate(size):
        in_size = labels.shape[axis + 1]
        if in_size != out_size:
            source = torch.tensor([(i * in_size) // out_size for i in range(out_size)], dtype=torch.long)
            resampled = resampled.index_select(axis + 1, source)
    return resampled


def class_entropy(logits):
    with torch.no_grad():
        probs = logits.softmax(1)
        terms = torch.where(probs > 0, -(probs * logits.log_softmax(1)), torch.zeros((), dtype=probs.dtype))
        return terms.flatten(2).mean(2)


def prototypes(features, membership, counts, present):
    sums = features.flatten(2).bmm(membership).transpose(1, 2)
    means = sums / counts.clamp_min(1).unsqueeze(2)
    return means.reshape(-1, features.shape[1]).index_select(0, present)


def cosine_similarity_matrix(rows):
    unit = rows / rows.square().sum(1, keepdim=True).clamp_min(NORM_FLOOR * NORM_FLOOR).sqrt()
    return unit.matmul(unit.transpose(0, 1))


def feature_relational_loss(feat1, feat2, logits1, logits2, labels):
    classes = logits1.shape[1]
    grid_labels = nearest_label_downsample(labels.long(), list(feat1.shape[2:]))
    membership = F.one_hot(grid_labels.flatten(1), classes).to(feat1.dtype)
    counts = membership.sum(1)
    present = (counts.reshape(-1) > 0).nonzero().flatten()
    if present.numel() < 2:
        return torch.zeros((), dtype=feat1.dtype)
    similarity1 = cosine_similarity_matrix(prototypes(feat1, membership, counts, present))
    similarity2 = cosine_similarity_matrix(prototypes(feat2, membership, counts, present))
    discrepancy = (similarity1 - similarity2).square().sum(1)
    uncertainty = ((class_entropy(logits1) + class_entropy(logits2)) * 0.5).reshape(-1).index_select(0, present)
    return (discrepancy * uncertainty).sum()


def own_terms(out, onehot):
    """Task, deep supervision, separate decoder, refined task and refinement KL of one branch (all weights 1)."""
    zero = torch.zeros(())
    deep_supervision = zero
    for probs in out["deep_supervision"]:
        deep_supervision = deep_supervision + task_loss(probs, onehot)
    separate = zero
    for probs in out["separate"]:
        separate = separate + task_loss(probs, onehot)
    return [
        task_loss(out["logits"].softmax(1), onehot),
        deep_supervision,
        separate,
        task_loss(out["refined"].softmax(1), onehot),
        kl_divergence_per_voxel(out["refined"], out["logits"]).mean(),
    ]


def objective(out1, out2, onehot, labels, tau):
    """L_1 + L_2 - L_fc: both branches' own terms and PBC, and the shared L_fc once."""
    pbc1, pbc2 = pixel_bidirectional_loss(out1["logits"], out2["logits"], onehot, tau)
    own1 = sum([*own_terms(out1, onehot), pbc1], torch.zeros(()))
    own2 = sum([*own_terms(out2, onehot), pbc2], torch.zeros(()))
    fc = feature_relational_loss(out1["bottleneck"], out2["bottleneck"], out1["logits"], out2["logits"], labels)
    return own1 + own2 + fc


# -- the workload ----------------------------------------------------------------------------------------------


def smml_step(request):
    """Builds the model, one optimiser per branch and a random batch as bench/smml-step.ts does; returns the step."""
    config, batch = request["config"], request["batch"]
    modalities, classes, patch = config["modalities"], config["classes"], config["patch"]
    torch.manual_seed(1024)
    branches = [Branch(config) for _ in range(config["branches"])]
    for branch in branches:
        branch.train()
    opt = request["optimizer"]
    optimizers = [
        torch.optim.Adam(b.parameters(), lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"], weight_decay=opt["weightDecay"], amsgrad=opt["amsgrad"])
        for b in branches
    ]
    masks = [torch.tensor([[(k + b + i) % 3 != 0 for k in range(modalities)] for b in range(batch)]) for i in range(len(branches))]
    images = torch.randn(batch, modalities, patch, patch, patch)
    labels = torch.randint(0, classes, (batch, patch, patch, patch))
    priors = torch.rand(batch, classes * modalities, patch, patch, patch)
    onehot = F.one_hot(labels, classes).permute(0, 4, 1, 2, 3).float().contiguous()

    def run():
        outputs = [branch(images, mask, priors, labels) for branch, mask in zip(branches, masks)]
        total = objective(outputs[0], outputs[1], onehot, labels, request["tau"])
        loss = total.item()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        total.backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss

    run.parameters = sum(p.numel() for b in branches for p in b.parameters())
    run.forward_flops = count_forward_flops(branches, masks, images, priors, labels)
    return run


def count_forward_flops(branches, masks, images, priors, labels):
    """One forward of every branch in eval mode (no dropout draws, so the steps' random stream is untouched)."""
    handles = [m.register_forward_hook(FLOP_COUNT.hook) for b in branches for m in b.modules()]
    FLOP_COUNT.counting, FLOP_COUNT.total = True, 0
    try:
        with torch.no_grad():
            for branch, mask in zip(branches, masks):
                branch.eval()
                branch(images, mask, priors, labels)
                branch.train()
    finally:
        FLOP_COUNT.counting = False
        for handle in handles:
            handle.remove()
    return FLOP_COUNT.total


def answer(request, state):
    op = request.get("op")
    if op == "setup":
        if request.get("workload") != "smml_step":
            raise ValueError(f"unknown workload {request.get('workload')!r}; expected 'smml_step'")
        torch.set_num_threads(request["threads"])
        state["run"] = None  # frees the previous workload before allocating the next
        state["run"] = smml_step(request)
        run = state["run"]
        return {"parameters": run.parameters, "forwardFlops": run.forward_flops, "torch_version": torch.__version__, "threads": torch.get_num_threads()}
    if op == "run":
        return run_once(state)
    if op == "peak":
        return {"peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    serve(answer)
