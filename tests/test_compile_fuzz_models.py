"""A seeded, bounded fuzzer for ``tritorch.compile``'s model passes: random models over a pool of (B, T, width)
values built from linears (bias or not), the epilogue activations, training-mode dropout, residual adds, gated
products, layer norms, RMS norms written in ops, attention written in ops (scaled scores, an optional causal
``masked_fill``, softmax, an optional dropout on the weights) and values read twice or returned besides the result:
exactly the places where a pass must check that an intermediate has no other reader. The compiled model's outputs
and every gradient (input and parameters) must equal eager's with the same random seed, on the replay after the
capture and under ``mode="reduce-overhead"``. ``TRITORCH_FUZZ_SEEDS=200`` widens it (16 seeds by default)."""
import math
import os

import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F

SEEDS = int(os.environ.get("TRITORCH_FUZZ_SEEDS", 16))
B, T = 2, 5
ACTS = [F.relu, F.gelu, lambda a: F.gelu(a, approximate="tanh"), F.silu, tritorch.sigmoid, tritorch.tanh,
        lambda a: F.leaky_relu(a, 0.2), lambda a: F.elu(a, alpha=0.5)]


def _program(rng):
    """Steps over a value pool of widths; the first value is the input, (B, T, width)."""
    widths = [int(rng.choice([8, 12]))]
    steps = []
    for _ in range(int(rng.integers(3, 10))):
        i = int(rng.integers(len(widths)))
        w = widths[i]
        same = [j for j, v in enumerate(widths) if v == w and j != i]
        kind = rng.choice(["lin", "lin", "lin", "act", "act", "drop", "add", "mul", "ln", "rms", "attn", "roll",
                           "inplace"])
        if kind in ("add", "mul", "inplace") and not same:
            kind = "lin"
        if kind == "lin":
            out = int(rng.choice([8, 12, 16]))
            steps.append(("lin", i, w, out, bool(rng.integers(2))))
            widths.append(out)
            continue
        if kind == "act":
            steps.append(("act", i, int(rng.integers(len(ACTS)))))
        elif kind == "drop":
            steps.append(("drop", i))
        elif kind in ("add", "mul", "inplace"):
            steps.append((kind, i, same[int(rng.integers(len(same)))]))
        elif kind == "roll":
            steps.append(("roll", i, int(rng.integers(1, w))))
        elif kind in ("ln", "rms"):
            steps.append((kind, i, w))
        else:
            pick = lambda: same[int(rng.integers(len(same)))] if same and rng.random() < 0.5 else i  # noqa: E731
            steps.append(("attn", i, pick(), pick(), bool(rng.integers(2)), bool(rng.integers(2)),
                          int(rng.choice([1, 2]))))
        widths.append(w)
    extra = int(rng.integers(1, len(widths) - 1)) if len(widths) > 2 and rng.random() < 0.4 else None
    return steps, widths, extra


class _Net(nn.Module):
    def __init__(self, program):
        super().__init__()
        self.steps, widths, self.extra = program
        self.lins, self.norms = nn.ModuleList(), nn.ModuleList()
        self.rms = nn.ParameterList()
        for s in self.steps:
            if s[0] == "lin":
                self.lins.append(nn.Linear(s[2], s[3], bias=s[4]))
            elif s[0] == "ln":
                self.norms.append(nn.LayerNorm(s[2]))
            elif s[0] == "rms":
                self.rms.append(nn.Parameter(tritorch.rand(s[2]) + 0.5))
        self.register_buffer("causal", tritorch.ones(T, T).triu(1).bool())

    def forward(self, x):
        vals = [x]
        lins, norms, rms = iter(self.lins), iter(self.norms), iter(self.rms)
        for s in self.steps:
            v = vals[s[1]]
            if s[0] == "lin":
                v = next(lins)(v)
            elif s[0] == "act":
                v = ACTS[s[2]](v)
            elif s[0] == "drop":
                v = F.dropout(v, 0.3, self.training)
            elif s[0] == "add":
                v = v + vals[s[2]]
            elif s[0] == "mul":
                v = v * vals[s[2]]
            elif s[0] == "inplace":                    # in-place ops on a fresh value
                v = (v + 0.0).add_(vals[s[2]], alpha=0.5).relu_()
            elif s[0] == "roll":                       # slices of the last dim, concatenated the other way round
                v = tritorch.cat([v[..., s[2]:], v[..., :s[2]]], -1)
            elif s[0] == "ln":
                v = next(norms)(v)
            elif s[0] == "rms":
                v = v * tritorch.rsqrt((v * v).mean(-1, keepdim=True) + 1e-6) * next(rms)
            else:
                v = self._attention(v, vals[s[2]], vals[s[3]], *s[4:])
            vals.append(v)
        return (vals[-1],) if self.extra is None else (vals[-1], vals[self.extra])

    def _attention(self, q, k, v, causal, drop, heads):
        w = q.shape[-1]
        q, k, v = (z.reshape(B, T, heads, w // heads).transpose(1, 2) for z in (q, k, v))
        s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(w // heads))
        if causal:
            s = s.masked_fill(self.causal, float("-inf"))
        a = F.softmax(s, dim=-1)
        if drop:
            a = F.dropout(a, 0.25, self.training)
        return (a @ v).transpose(1, 2).reshape(B, T, w)


def _results(run, model, x, seed):
    """The outputs, the gradients of their summed squares with respect to x and every parameter, and the numbers
    drawn after them (a compiled call must leave the generator where eager leaves it)."""
    x.grad = None
    model.zero_grad()
    tritorch.manual_seed(seed)
    outs = run(x)
    sum((o * o).sum() for o in outs).backward()
    return [o.detach().cpu().numpy() for o in outs] + [x.grad.cpu().numpy()] + \
        [p.grad.cpu().numpy() if p.grad is not None else None for p in model.parameters()] + \
        [tritorch.rand(3, device=x.device).cpu().numpy()]


def _agree(got, want, what, tol=1e-4):
    """Equal dtypes and shapes, values to ``tol`` (float32 sums reordered by fusion; float16 under autocast, where
    a fused kernel keeps float32 between ops that eager rounds to float16)."""
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        assert (a is None) == (b is None), (what, k)
        if a is not None:
            assert a.dtype == b.dtype, (what, k, a.dtype, b.dtype)
            a, b = a.astype(np.float64), b.astype(np.float64)
            scale = max(1.0, float(np.nanmax(np.abs(b), initial=0.0)))
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol / 5 * scale, equal_nan=True,
                                       err_msg=f"{what}: result {k}")


def _case(seed, device="cuda", dtype=tritorch.float32):
    rng = np.random.default_rng(5000 + seed)
    program = _program(rng)
    tritorch.manual_seed(seed)
    model = _Net(program).to(device, dtype)
    x = tritorch.tensor(rng.standard_normal((B, T, program[1][0])), dtype=dtype, device=device, requires_grad=True)
    return program, model, x


CASES = [(seed, "cuda", tritorch.float32) for seed in range(SEEDS)] + \
    [(seed, "cpu", tritorch.float32) for seed in range(SEEDS // 2)] + \
    [(seed, "cuda", tritorch.float64) for seed in range(SEEDS // 4)]


@pytest.mark.parametrize("seed", range(SEEDS // 4))
def test_fuzz_compiled_model_under_autocast_matches_eager(seed):
    """Under float16 autocast (a signature of its own, without the attention pass): the dtypes eager gives, the
    values to float16's tolerance."""
    program, model, x = _case(seed + 3000)
    c = tritorch.compile(model)

    def results(run):
        with tritorch.autocast("cuda", dtype=tritorch.float16):
            return _results(run, model, x, seed)
    want = results(model)
    for call in range(2):
        _agree(results(c), want, f"program {program}, call {call}", tol=1e-2)


@pytest.mark.parametrize("seed,device,dtype", CASES)
def test_fuzz_compiled_model_matches_eager(seed, device, dtype):
    """On cuda (generated kernels, every pass) in float32 and float64, and on cpu (the NumPy references, the passes
    that do not generate kernels)."""
    program, model, x = _case(seed, device, dtype)
    c = tritorch.compile(model)
    want = _results(model, model, x, seed)
    for call in range(2):                               # the capture, then the replay of the optimised graph
        _agree(_results(c, model, x, seed), want, f"program {program}, call {call}")
    model.eval()                                        # a failed guard (training mode) re-captures
    _agree(_results(c, model, x, seed), _results(model, model, x, seed), f"program {program}, eval")


@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_fuzz_reduce_overhead_model_matches_eager(seed):
    program, model, x = _case(seed + 1000)
    c = tritorch.compile(model, mode="reduce-overhead")
    rng = np.random.default_rng(seed)
    for call in range(4):                               # capture, warm-up, record, replay
        with tritorch.no_grad():
            x.copy_(tritorch.tensor(rng.standard_normal(x.shape).astype(np.float32), device="cuda"))
        _agree(_results(c, model, x, seed + call), _results(model, model, x, seed + call),
               f"program {program}, call {call}")
    for call in range(4):                               # without gradients: a signature recording its forward only
        tritorch.manual_seed(call)
        with tritorch.no_grad():
            got = [o.cpu().numpy() for o in c(x)] + [tritorch.rand(3, device="cuda").cpu().numpy()]
            tritorch.manual_seed(call)
            want = [o.cpu().numpy() for o in model(x)] + [tritorch.rand(3, device="cuda").cpu().numpy()]
        _agree(got, want, f"program {program}, no_grad call {call}")


IMAGE_ACTS = [F.relu, tritorch.sigmoid, tritorch.tanh, F.gelu, F.silu]


def _image_program(rng):
    """Steps over a pool of (channels, size) values of square (B, channels, size, size) images."""
    shapes = [(int(rng.choice([3, 4])), 8)]
    steps = []
    for _ in range(int(rng.integers(3, 9))):
        i = int(rng.integers(len(shapes)))
        c, n = shapes[i]
        same = [j for j, v in enumerate(shapes) if v == (c, n) and j != i]
        kind = rng.choice(["conv", "conv", "act", "act", "pool", "pool", "bn", "add", "drop"])
        if kind == "add" and not same or kind == "pool" and n < 3:
            kind = "conv"
        if kind == "conv":
            k, stride = int(rng.choice([1, 3])), int(rng.choice([1, 1, 2]))
            out = (int(rng.choice([4, 6])), (n + 2 * (k // 2) - k) // stride + 1)
            steps.append(("conv", i, c, out[0], k, stride, bool(rng.integers(2))))
        elif kind == "pool":
            k, s, p = [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)][int(rng.integers(4))]
            out = (c, (n + 2 * p - k) // s + 1)
            steps.append(("pool", i, k, s, p, bool(rng.integers(4) == 0)))
        else:
            out = (c, n)
            steps.append(("act", i, int(rng.integers(len(IMAGE_ACTS)))) if kind == "act" else
                         ("bn", i, c) if kind == "bn" else ("add", i, same[int(rng.integers(len(same)))])
                         if kind == "add" else ("drop", i, bool(rng.integers(2))))
        shapes.append(out)
    return steps, shapes


class _ImageNet(nn.Module):
    def __init__(self, program):
        super().__init__()
        self.steps, _ = program
        self.convs, self.bns = nn.ModuleList(), nn.ModuleList()
        for s in self.steps:
            if s[0] == "conv":
                self.convs.append(nn.Conv2d(s[2], s[3], s[4], stride=s[5], padding=s[4] // 2, bias=s[6]))
            elif s[0] == "bn":
                self.bns.append(nn.BatchNorm2d(s[2]))

    def forward(self, x):
        vals = [x]
        convs, bns = iter(self.convs), iter(self.bns)
        for s in self.steps:
            v = vals[s[1]]
            if s[0] == "conv":
                v = next(convs)(v)
            elif s[0] == "act":
                v = IMAGE_ACTS[s[2]](v)
            elif s[0] == "pool":
                v = F.avg_pool2d(v, s[2], s[3], s[4]) if s[5] else F.max_pool2d(v, s[2], s[3], s[4])
            elif s[0] == "bn":
                v = next(bns)(v)
            elif s[0] == "add":
                v = v + vals[s[2]]
            else:
                v = F.dropout2d(v, 0.3, self.training) if s[2] else F.dropout(v, 0.3, self.training)
            vals.append(v)
        return (vals[-1],)


@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_fuzz_compiled_image_model_matches_eager(seed):
    """Convolutions (1x1 and 3x3, strided or not, with and without bias), their activations, max pooling that
    does and does not overlap, average pooling, batch norm in training, residual adds and both dropouts."""
    rng = np.random.default_rng(7000 + seed)
    program = _image_program(rng)
    tritorch.manual_seed(seed)
    model = _ImageNet(program).to("cuda")
    x = tritorch.tensor(rng.standard_normal((B, program[1][0][0], 8, 8)).astype(np.float32), device="cuda",
                        requires_grad=True)
    c = tritorch.compile(model)
    for call in range(2):
        want = _results(model, model, x, seed + call)
        _agree(_results(c, model, x, seed + call), want, f"program {program}, call {call}")


@pytest.mark.parametrize("seed", range(SEEDS // 4))
def test_fuzz_compiled_recurrent_model_matches_eager(seed):
    """A recurrent layer (LSTM, GRU or RNN; 1-2 layers, dropout between them, one or two directions) under a linear
    and an activation, captured as one node: as eager, including the generator's state after the call."""
    rng = np.random.default_rng(9000 + seed)
    kind = [nn.LSTM, nn.GRU, nn.RNN][int(rng.integers(3))]
    layers, bidirectional, batch_first = int(rng.integers(1, 3)), bool(rng.integers(2)), bool(rng.integers(2))
    tritorch.manual_seed(seed)

    class _Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = kind(6, 5, num_layers=layers, dropout=0.3 if layers > 1 else 0.0, bidirectional=bidirectional,
                            batch_first=batch_first)
            self.head = nn.Linear(10 if bidirectional else 5, 3)

        def forward(self, x):
            return (F.gelu(self.head(F.dropout(self.rnn(x)[0], 0.2, self.training))),)

    model = _Recurrent().to("cuda")
    x = tritorch.tensor(rng.standard_normal((B, T, 6) if batch_first else (T, B, 6)).astype(np.float32),
                        device="cuda", requires_grad=True)
    c = tritorch.compile(model)
    for call in range(2):
        want = _results(model, model, x, seed + call)
        _agree(_results(c, model, x, seed + call), want, f"{kind.__name__} {layers} {bidirectional}, call {call}")
