"""Kernel launches and kernel bytes per training step, eager vs ``tritorch.compile``, measured with
``tritorch.profiler`` (issue 21).

Training steps (forward, loss, backward, optimizer step): an MLP with SGD, a pre-norm GPT block with a causal mask
and Adam (without dropout, and with 0.1 as in training), the CNN of ``tritorch.train`` with SGD, and a LLaMA-style
block written in tensor ops (RMSNorm, attention spelled out, SwiGLU) with AdamW, and PyTorch's MNIST example (its net
ends in log_softmax, its loss is nll_loss) with Adadelta. Each runs on
``cpu`` (the NumPy references: op calls and host time, no kernels) and ``cuda``, eager, compiled (the model),
compiled+loss (the forward and the loss as one compiled function) and reduce-overhead (compiled+loss with
``mode="reduce-overhead"``: recorded launches replayed without the ops); the model is compiled once, the fourth step
is profiled (the first captures, the second warms up, the third records) and the fifth timed without the profiler:
``host ms`` is its wall time less the time spent inside Triton's launch calls (on ``cuda``; all of it on ``cpu``),
the framework's own cost per step. By default ``cuda`` is Triton's interpreter (TRITORCH_INTERPRET=1, set here
unless already set): its launch counts and bytes are those of a GPU, its kernel times are not. On a GPU machine run
it with TRITORCH_INTERPRET=0.

    python3 bench/compile_counts.py [--devices cpu,cuda] [--workloads mlp,gpt,gpt_dropout,cnn,llama,mnist] [--cnn-size 8]
        [--json OUT]
"""
import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("TRITORCH_INTERPRET", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import tritorch  # noqa: E402
import tritorch.nn as nn  # noqa: E402
import tritorch.nn.functional as F  # noqa: E402
from tritorch import train  # noqa: E402
from tritorch.profiler import profile, record_function  # noqa: E402
from tritorch.profiler._launches import install  # noqa: E402


def _data(shape, device, seed):
    return tritorch.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), device=device)


def _labels(n, device):
    return tritorch.tensor(np.arange(n) % 10, dtype=tritorch.int64, device=device)


def mlp(device, cnn_size):
    """MLP 64-128-10, cross-entropy, SGD, batch 32."""
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)
    x, y = _data((32, 64), device, 1), _labels(32, device)
    return model, tritorch.optim.SGD(model.parameters(), lr=0.1), (x,), lambda out: F.cross_entropy(out, y)


class _Block(nn.Module):
    """A GPT block: one pre-norm encoder layer under a causal mask."""

    def __init__(self, device, dropout=0.0):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=256, batch_first=True,
                                                norm_first=True, activation="gelu", dropout=dropout)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(16))

    def forward(self, x):
        return self.layer(x, src_mask=self.mask, is_causal=True)


def gpt(device, cnn_size):
    """TransformerEncoderLayer(64, 4 heads, ff 256, pre-norm, gelu), causal, (4, 16, 64), mean of squares, Adam."""
    model = _Block(device).to(device)
    x = _data((4, 16, 64), device, 2)
    return model, tritorch.optim.Adam(model.parameters(), lr=1e-3), (x,), lambda out: out.pow(2).mean()


def gpt_dropout(device, cnn_size):
    """The GPT block with dropout 0.1 (TransformerEncoderLayer's default: attention, after the output projection,
    in the feed-forward and after it)."""
    model = _Block(device, 0.1).to(device)
    x = _data((4, 16, 64), device, 2)
    return model, tritorch.optim.Adam(model.parameters(), lr=1e-3), (x,), lambda out: out.pow(2).mean()


def cnn(device, cnn_size):
    """tritorch.train's CNN, batch 32, 1 x size x size, cross-entropy, SGD."""
    model = train.build_model(cnn_size).to(device)
    x, y = _data((32, 1, cnn_size, cnn_size), device, 3), _labels(32, device)
    return model, tritorch.optim.SGD(model.parameters(), lr=0.05), (x,), lambda out: F.cross_entropy(out, y)


class _RMSNorm(nn.Module):
    """RMSNorm written in tensor ops, as LLaMA-style code does."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(tritorch.ones(dim))

    def forward(self, x):
        return x * tritorch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.weight


class _LlamaBlock(nn.Module):
    """A LLaMA-style block written in ops: RMSNorm, attention with the scores, causal mask and softmax spelled out,
    a SwiGLU feed-forward; pre-norm residuals."""

    def __init__(self, dim=64, heads=4, hidden=172, seq=16):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = _RMSNorm(dim), _RMSNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.register_buffer("mask", tritorch.ones(seq, seq).triu(1).bool())

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.heads))
        a = F.softmax(s.masked_fill(self.mask, float("-inf")), dim=-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        h = self.norm2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


def llama(device, cnn_size):
    """_LlamaBlock(64, 4 heads, SwiGLU 172), (4, 16, 64), mean of squares, AdamW."""
    model = _LlamaBlock().to(device)
    x = _data((4, 16, 64), device, 4)
    return model, tritorch.optim.AdamW(model.parameters(), lr=1e-3), (x,), lambda out: out.pow(2).mean()


class _MnistNet(nn.Module):
    """PyTorch's MNIST example net: two 3x3 convs, a max pool, dropout 0.25, a linear, dropout 0.5, a linear and
    log_softmax (its loss is nll_loss)."""

    def __init__(self, size):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(64 * ((size - 4) // 2) ** 2, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = self.dropout2(F.relu(self.fc1(tritorch.flatten(self.dropout1(x), 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def mnist(device, cnn_size):
    """PyTorch's MNIST example: ``_MnistNet``, nll_loss, Adadelta, batch 32, 1 x size x size."""
    model = _MnistNet(cnn_size).to(device)
    x, y = _data((32, 1, cnn_size, cnn_size), device, 5), _labels(32, device)
    return model, tritorch.optim.Adadelta(model.parameters(), lr=1.0), (x,), lambda out: F.nll_loss(out, y)


WORKLOADS = {"mlp": mlp, "gpt": gpt, "gpt_dropout": gpt_dropout, "cnn": cnn, "llama": llama, "mnist": mnist}


MODES = ("eager", "compiled", "compiled+loss", "reduce-overhead")
"""compiled: ``tritorch.compile(model)``, the loss eager; compiled+loss: the forward and the loss compiled as one
function (``tritorch.compile(lambda x: loss_fn(model(x)))``); reduce-overhead: that with
``mode="reduce-overhead"``."""


def _timed(step):
    """(wall seconds of ``step()``, seconds of it inside Triton's launch calls)."""
    inside = [0.0]

    def on_launch(kernel, grid, args, kwargs, go):
        t = time.perf_counter()
        try:
            return go()
        finally:
            inside[0] += time.perf_counter() - t
    restore = install(on_launch)
    try:
        t0 = time.perf_counter()
        step()
        return time.perf_counter() - t0, inside[0]
    finally:
        restore()


def measure(name, device, mode, cnn_size, steps=4):
    """The profile of the ``steps``-th training step, summed up, and the host time of the next."""
    tritorch.manual_seed(0)
    model, opt, inputs, loss_fn = WORKLOADS[name](device, cnn_size)
    if mode in ("compiled+loss", "reduce-overhead"):
        run = tritorch.compile(lambda *xs: loss_fn(model(*xs)), mode="default" if mode == "compiled+loss" else mode)
    else:
        forward = tritorch.compile(model) if mode == "compiled" else model
        run = lambda *xs: loss_fn(forward(*xs))      # noqa: E731

    def step():
        opt.zero_grad()
        loss = run(*inputs)
        loss.backward()
        opt.step()
        return loss

    for _ in range(steps - 1):
        step()
    with profile() as prof:
        with record_function("step"):
            loss = step()
    wall, inside = _timed(step)
    ops = [e for e in prof.events() if e.kind == "op"]
    return {"workload": name, "device": device, "mode": mode,
            "ops": sum(e.depth == 1 for e in ops), "ops_all": len(ops) - 1,
            "launches": prof.kernel_launches(), "bytes": prof.kernel_bytes(), "host_ms": (wall - inside) * 1e3,
            "loss": float(loss.item())}


def table(rows):
    head = f"{'workload':11} {'device':6} {'mode':15} {'ops':>6} {'ops all':>8} {'launches':>9} {'kernel bytes':>13} " \
           f"{'host ms':>9} {'loss':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['workload']:11} {r['device']:6} {r['mode']:15} {r['ops']:6d} {r['ops_all']:8d} "
                     f"{r['launches']:9d} {r['bytes']:13,d} {r['host_ms']:9.1f} {r['loss']:9.4f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--cnn-size", type=int, default=8, help="the CNN's image side (8: the bundled digits, 28: MNIST)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    rows = []
    for name in args.workloads.split(","):
        if name not in WORKLOADS:
            p.error(f"unknown workload {name!r}; expected some of {','.join(WORKLOADS)}")
        for device in args.devices.split(","):
            for mode in MODES:
                rows.append(measure(name, device, mode, args.cnn_size))
                print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(f"per training step (the 4th), tritorch.profiler; cuda {'interpreted' if tritorch._INTERPRET else 'GPU'}")
    print("ops: calls made by the step itself; ops all: with the nested ones; kernel bytes: summed tensor extents; "
          "host ms: the 5th step's wall time outside Triton's launch calls")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
