#!/usr/bin/env python3
"""PyTorch peer for the side-network training benchmark: the seven Sidecar heads written in
PyTorch with the Swift heads' modules, shapes, initialisations and defaults, trained on the same
cached activations held in RAM, on the same thread count. It measures training throughput only
(no validation), so the bench can set it beside the Swift trainer's in-memory epochs.

The bench writes a folder DIR (meta.json, z{l}.npy [N, T, D] zero-padded, attn{l}.npy and
mlp{l}.npy when the cache has streams, mask.npy uint8 [N, T], labels.npy int64 [N]) and calls
    torch_heads.py --data DIR --head NAME --threads 2 --epochs 1 --batch-size 32 [--lr X] [--frozen-bf16]
with NAME one of linear, mlp, losa, lst, unipt, e3va, consolidator (--frozen-bf16: the consolidator's
frozen products in bf16 under autocast, as the Swift head computes them on a bf16 cache where the
CPU has bf16 instructions). It prints one JSON line:
head, parameters (trainable), examples, epochs, seconds_per_epoch, examples_per_s,
peak_rss_bytes, data_bytes (bytes of the arrays held in RAM: the ones the head reads).

    torch_heads.py --make-fake DIR [--examples 2000] [--tokens 64] [--classes 10]
writes such a folder of random data, to try the script before the Swift side exists.
"""
import argparse
import json
import math
import os
import resource
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

WIDTH = 384
HEADS = 12
BERT_EPS = 1e-12  # MiniLM's layer_norm_eps, which the cached block copies carry
LAYERS = 6

# The Swift heads' default learning rates (defaultLearningRate in each head).
DEFAULT_LR = {"linear": 1e-2, "mlp": 1e-3, "losa": 1e-3, "lst": 1e-3, "unipt": 5e-4, "e3va": 1e-3, "consolidator": 5e-3}


def masked_mean(x, mask):
    """x [B, n, W], mask [B, n, 1] float → [B, W], averaging real tokens only."""
    return (x * mask).sum(1) / mask.sum(1).clamp_min(1)


def zero_linear(inputs, out):
    layer = nn.Linear(inputs, out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def normal_linear(inputs, out, std):
    layer = nn.Linear(inputs, out)
    nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)
    return layer


def attention(q, k, v, heads, key_mask):
    """Multi-head attention on [B, n, W] with padded keys excluded (key_mask [B, n] bool)."""
    b, n, w = q.shape
    split = lambda t: t.view(b, n, heads, w // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=key_mask[:, None, None, :])
    return out.transpose(1, 2).reshape(b, n, w)


class PostLNBlock(nn.Module):
    """A BERT block, h = LN(x + Attn(x)), z = LN(h + FFN(h)). `linear` builds each of the six
    linears so the consolidator can swap in its frozen-plus-branches layer."""

    def __init__(self, width, heads, ffn, linear=nn.Linear):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.output_attn = (linear(width, width) for _ in range(4))
        self.intermediate = linear(width, ffn)
        self.output = linear(ffn, width)
        self.norm1 = nn.LayerNorm(width, eps=BERT_EPS)
        self.norm2 = nn.LayerNorm(width, eps=BERT_EPS)

    def forward(self, x, key_mask):
        a = attention(self.query(x), self.key(x), self.value(x), self.heads, key_mask)
        h = self.norm1(x + self.output_attn(a))
        return self.norm2(h + self.output(F.gelu(self.intermediate(h))))


class Linear(nn.Module):
    """Linear probe on the mean-pooled last layer, zero-initialised."""
    reads = ["z6"]

    def __init__(self, classes, tokens):
        super().__init__()
        self.classifier = zero_linear(WIDTH, classes)

    def forward(self, f, mask):
        return self.classifier(masked_mean(f["z6"], mask))


class MLP(nn.Module):
    """Pooled last layer → LN → dense 256 → GELU → dropout 0.1 → classifier."""
    reads = ["z6"]

    def __init__(self, classes, tokens, hidden=256, dropout=0.1):
        super().__init__()
        self.norm = nn.LayerNorm(WIDTH)
        self.hidden = nn.Linear(WIDTH, hidden)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, classes)

    def forward(self, f, mask):
        h = self.drop(F.gelu(self.hidden(self.norm(masked_mean(f["z6"], mask)))))
        return self.classifier(h)


class LoSA(nn.Module):
    """a_l = a_{l-1} + g_l(z_l + a_{l-1}) over blocks 1..6, f = z_6 + a_6; g = low-rank token
    mixing along positions (weights sized for T, sliced to the batch's longest) then low-rank
    channel mixing, the up-projections zero so training starts as a probe."""
    reads = [f"z{l}" for l in range(1, LAYERS + 1)]

    def __init__(self, classes, tokens, rank_tokens=16, rank_channels=32, dropout=0.1):
        super().__init__()
        self.mixers = nn.ModuleList()
        for _ in range(LAYERS):
            m = nn.Module()
            m.token_norm = nn.LayerNorm(WIDTH)
            m.token_down = nn.Linear(tokens, rank_tokens)
            m.token_up = zero_linear(rank_tokens, tokens)
            m.channel_norm = nn.LayerNorm(WIDTH)
            m.channel_down = nn.Linear(WIDTH, rank_channels)
            m.channel_up = zero_linear(rank_channels, WIDTH)
            self.mixers.append(m)
        self.head_norm = nn.LayerNorm(WIDTH)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(WIDTH, classes)

    def update(self, u, m, mask):
        n = u.shape[1]
        # Padding rows must be zero before mixing along positions, or they would leak into real
        # tokens (the Swift head pads after the norm).
        t = (m.token_norm(u) * mask).transpose(1, 2)  # [B, D, n]
        h = F.gelu(F.linear(t, m.token_down.weight[:, :n], m.token_down.bias))
        token = F.linear(h, m.token_up.weight[:n], m.token_up.bias[:n]).transpose(1, 2) * mask
        v = u + token
        channel = m.channel_up(F.gelu(m.channel_down(m.channel_norm(v))))
        return (token + channel) * mask

    def forward(self, f, mask):
        a = None
        for l, m in enumerate(self.mixers, start=1):
            z = f[f"z{l}"]
            a = self.update(z, m, mask) if a is None else a + self.update(z + a, m, mask)
        x = self.head_norm(f["z6"] + a)
        return self.classifier(self.drop(masked_mean(x, mask)))


class LST(nn.Module):
    """Ladder side-tuning: side width D/8 = 48 with 12 heads and FFN 192, gated ladders
    s = μ·s + (1 − μ)·W_l z_l with μ = sigmoid(α/0.1). The Swift head starts its side blocks from
    pruned backbone copies; random weights cost the same to train."""
    reads = [f"z{l}" for l in range(LAYERS + 1)]

    def __init__(self, classes, tokens, reduction=8, temperature=0.1, dropout=0.1):
        super().__init__()
        side = WIDTH // reduction
        self.temperature = temperature
        self.first_downsample = normal_linear(WIDTH, side, 0.01)
        self.ladders = nn.ModuleList(normal_linear(WIDTH, side, 0.01) for _ in range(LAYERS))
        self.gates = nn.ParameterList(nn.Parameter(torch.zeros(1)) for _ in range(LAYERS))
        self.blocks = nn.ModuleList(PostLNBlock(side, HEADS, 4 * WIDTH // reduction) for _ in range(LAYERS))
        self.upsample = normal_linear(side, WIDTH, 0.01)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(WIDTH, classes)

    def forward(self, f, mask):
        key_mask = mask[..., 0] > 0
        s = self.first_downsample(self.drop(f["z0"]))
        for l in range(LAYERS):
            mu = torch.sigmoid(self.gates[l] / self.temperature)
            s = mu * s + (1 - mu) * self.ladders[l](f[f"z{l + 1}"])
            s = self.blocks[l](s, key_mask)
        y = self.upsample(self.drop(s))
        return self.classifier(self.drop(masked_mean(y, mask)))


class UniPT(nn.Module):
    """Layers 0..6 downsampled to D/4 (the Swift head's default reduction) and normalised; the
    last is the anchor; each earlier layer interacts with it through a ReLU'd, L1-normalised
    token-to-token matrix plus the identity; a per-example softmax over gate confidences mixes
    them before a projection and an upsample, applied after pooling as the Swift head does (an
    affine map commutes with the mean)."""
    reads = [f"z{l}" for l in range(LAYERS + 1)]

    def __init__(self, classes, tokens, reduction=4, dropout=0.1):
        super().__init__()
        m = WIDTH // reduction
        self.down = nn.ModuleList(nn.Linear(WIDTH, m) for _ in range(LAYERS + 1))
        self.down_norm = nn.ModuleList(nn.LayerNorm(m) for _ in range(LAYERS + 1))
        self.gate = nn.Linear(m, 1)
        self.proj_up = nn.Linear(m, WIDTH)
        self.proj_down = nn.Linear(WIDTH, m)
        self.proj_norm = nn.LayerNorm(m)
        self.up = nn.Linear(m, WIDTH)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(WIDTH, classes)

    def forward(self, f, mask):
        # The Swift head downsamples real rows only and pads with zeros afterwards; the mask
        # reproduces those zero rows (a LayerNorm of a zero row is its bias, not zero).
        reduced = [norm(down(f[f"z{l}"])) * mask for l, (down, norm) in enumerate(zip(self.down, self.down_norm))]
        anchor = reduced[-1]
        anchor_mean = masked_mean(anchor, mask)
        key_mask = mask.transpose(1, 2)  # [B, 1, n]
        interacted, confidences = [], []
        for x in reduced[:-1]:
            similarity = F.relu(anchor @ x.transpose(1, 2) * key_mask)
            mixing = similarity / (similarity.sum(-1, keepdim=True) + 1e-6)
            interacted.append(mixing @ x + x)
            confidences.append(self.gate(anchor_mean * masked_mean(x, mask)))
        weights = torch.softmax(torch.cat(confidences, 1), 1)  # [B, layers − 1]
        aggregated = sum(weights[:, i, None, None] * x for i, x in enumerate(interacted))
        projected = self.proj_norm(self.proj_down(F.relu(self.proj_up(aggregated))))
        out = self.up(masked_mean(anchor + projected, mask))
        return self.classifier(self.drop(out))


class E3VA(nn.Module):
    """Parallel rank-16 adapters on each block's attention- and MLP-branch outputs (up-projections
    zero), summed into a highway: f = z_6 + LN(Σ adapters), then LN, pool, classifier."""
    reads = [f"{s}{l}" for l in range(1, LAYERS + 1) for s in ("attn", "mlp")] + ["z6"]

    def __init__(self, classes, tokens, rank=16, dropout=0.1):
        super().__init__()
        self.inputs = self.reads[:-1]
        self.down = nn.ModuleList(nn.Linear(WIDTH, rank) for _ in self.inputs)
        self.up = nn.ModuleList(zero_linear(rank, WIDTH) for _ in self.inputs)
        self.highway_norm = nn.LayerNorm(WIDTH)
        self.head_norm = nn.LayerNorm(WIDTH)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(WIDTH, classes)

    def forward(self, f, mask):
        highway = sum(up(F.gelu(down(f[name]))) for name, down, up in zip(self.inputs, self.down, self.up))
        x = self.head_norm(f["z6"] + self.highway_norm(highway))
        return self.classifier(self.drop(masked_mean(x, mask)))


class ConsolidatedLinear(nn.Module):
    """A frozen weight with a tuned bias plus grouped-connection branches, each dropped per
    example with probability branch_drop (inverted scaling, as the Swift head)."""

    def __init__(self, inputs, out, groups, branch_drop, frozen_bf16=False):
        super().__init__()
        frozen = nn.Linear(inputs, out)
        self.register_buffer("weight", frozen.weight.detach().clone())
        self.frozen_bf16 = frozen_bf16
        self.bias = nn.Parameter(frozen.bias.detach().clone())
        self.groups = [groups] if isinstance(groups, int) else list(groups)
        self.branch_weights = nn.ParameterList(
            nn.Parameter(torch.empty(g, out // g, inputs // g).uniform_(-1e-3, 1e-3)) for g in self.groups)
        self.branch_biases = nn.ParameterList(nn.Parameter(torch.empty(out).uniform_(-1e-3, 1e-3)) for _ in self.groups)
        self.branch_drop = branch_drop

    def forward(self, x):
        if self.frozen_bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = F.linear(x, self.weight)
            y = y.float() + self.bias
        else:
            y = F.linear(x, self.weight, self.bias)
        for g, w, b in zip(self.groups, self.branch_weights, self.branch_biases):
            branch = torch.einsum("bngi,goi->bngo", x.unflatten(-1, (g, -1)), w).flatten(-2) + b
            if self.training and self.branch_drop > 0:
                keep = (torch.rand(x.shape[0], 1, 1) >= self.branch_drop).to(x.dtype) / (1 - self.branch_drop)
                branch = branch * keep
            y = y + branch
        return y


class Consolidator(nn.Module):
    """Top-1 consolidator: the cache's z_5 goes through a copy of block 6 whose six linears are
    frozen with grouped branches (48 groups, branch drop 0.1) and whose biases and norms are tuned.
    The Swift head loads the block from the cache; random frozen weights cost the same."""
    reads = ["z5"]

    def __init__(self, classes, tokens, groups=48, branch_drop=0.1, dropout=0.0, frozen_bf16=False):
        super().__init__()
        self.block = PostLNBlock(WIDTH, HEADS, 4 * WIDTH,
                                 linear=lambda i, o: ConsolidatedLinear(i, o, groups, branch_drop, frozen_bf16))
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(WIDTH, classes)

    def forward(self, f, mask):
        x = self.block(f["z5"], mask[..., 0] > 0)
        return self.classifier(self.drop(masked_mean(x, mask)))


HEAD_TYPES = {"linear": Linear, "mlp": MLP, "losa": LoSA, "lst": LST, "unipt": UniPT, "e3va": E3VA,
              "consolidator": Consolidator}


def make_fake(folder, examples, tokens, classes, seed=0):
    """Random activations in the bench's layout, with random lengths and zeros past them."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    lengths = rng.integers(4, tokens + 1, size=examples)
    mask = (np.arange(tokens)[None, :] < lengths[:, None]).astype(np.uint8)
    np.save(os.path.join(folder, "mask.npy"), mask)
    np.save(os.path.join(folder, "labels.npy"), rng.integers(0, classes, size=examples).astype(np.int64))
    names = [f"z{l}" for l in range(LAYERS + 1)] + [f"{s}{l}" for s in ("attn", "mlp") for l in range(1, LAYERS + 1)]
    for name in names:
        x = rng.standard_normal((examples, tokens, WIDTH), dtype=np.float32)
        x *= mask[..., None]
        np.save(os.path.join(folder, name + ".npy"), x)
    meta = {"layers": list(range(LAYERS + 1)), "width": WIDTH, "classes": classes, "max_tokens": tokens,
            "streams": ["attn", "mlp"]}
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f)


def decay_groups(model, weight_decay):
    """Weight decay on matrices only: the Swift parameter sets mark biases, norms and gates as
    not decaying."""
    decay, rest = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with open(os.path.join(args.data, "meta.json")) as f:
        meta = json.load(f)
    if meta["width"] != WIDTH:
        raise SystemExit(f"torch_heads.py: width {meta['width']}, but the heads are written for MiniLM's {WIDTH}")
    head_type = HEAD_TYPES[args.head]
    if head_type is E3VA and not {"attn", "mlp"} <= set(meta.get("streams", [])):
        raise SystemExit("torch_heads.py: head e3va needs the attn and mlp streams, which this folder lacks")

    # Only the arrays the head reads are held, as the Swift trainer decodes only its head's features.
    arrays = {name: torch.from_numpy(np.load(os.path.join(args.data, name + ".npy"))) for name in head_type.reads}
    # The Swift bench writes every .npy as float32; the dtypes here are what the heads index with.
    mask = torch.from_numpy(np.load(os.path.join(args.data, "mask.npy"))).to(torch.uint8)
    labels = torch.from_numpy(np.load(os.path.join(args.data, "labels.npy"))).long()
    data_bytes = sum(a.numel() * a.element_size() for a in [*arrays.values(), mask, labels])
    lengths = mask.sum(1)
    n_examples, tokens = mask.shape

    model = head_type(meta["classes"], tokens, **({"frozen_bf16": True} if args.frozen_bf16 and head_type is Consolidator else {}))
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.head]
    optimizer = torch.optim.AdamW(decay_groups(model, 0.01), lr=lr)
    # The Swift trainer's schedule (6 % linear warm-up, cosine to zero) and global clip at 1.
    steps = args.epochs * math.ceil(n_examples / args.batch_size)
    warmup = max(1, int(0.06 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))

    model.train()

    def step(idx):
        # Cut the batch to its longest sequence: the Swift side works on packed real tokens,
        # so computing over the whole padded width would handicap this peer.
        n = max(int(lengths[idx].max()), 1)
        batch = {name: a[idx, :n] for name, a in arrays.items()}
        batch_mask = mask[idx, :n, None].float()
        loss = F.cross_entropy(model(batch, batch_mask), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()

    # One untimed step first: the optimiser's state, the thread pool and the kernels' first
    # calls would otherwise be timed in an epoch of a few dozen steps.
    step(torch.arange(min(args.batch_size, n_examples)))
    epoch_seconds = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(n_examples)
        for i in range(0, n_examples, args.batch_size):
            step(order[i:i + args.batch_size])
        epoch_seconds.append(time.perf_counter() - start)

    seconds = sum(epoch_seconds) / len(epoch_seconds)
    print(json.dumps({
        "head": args.head, "parameters": parameters, "examples": n_examples, "epochs": args.epochs,
        "seconds_per_epoch": round(seconds, 4), "examples_per_s": round(n_examples / seconds, 2),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "data_bytes": data_bytes,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data")
    parser.add_argument("--head", choices=sorted(HEAD_TYPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frozen-bf16", action="store_true")
    parser.add_argument("--make-fake", metavar="DIR")
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    if args.make_fake:
        make_fake(args.make_fake, args.examples, args.tokens, args.classes)
    elif args.data and args.head:
        train(args)
    else:
        parser.error("give --data DIR --head NAME, or --make-fake DIR")


if __name__ == "__main__":
    main()
