"""Random models for the fuzzers of ``tritorch.compile`` and of export (tests/test_compile_fuzz_models.py,
tests/test_export_fuzz.py): a program is a list of steps over a pool of values, each step reading earlier values,
so that values are read twice, returned besides the result or not read at all.

- ``program(rng)`` / ``Net``: (B, T, width) values; linears (``nn.Linear`` or ``x @ w [+ b]``, bias or not),
  activations, dropout, residual adds, gated products, in-place ops, slices concatenated, layer norms (modules and
  written in ops), RMS norms written in ops, attention written in ops (scaled scores, an optional causal
  ``masked_fill``, softmax, an optional dropout on the weights).
- ``image_program(rng)`` / ``ImageNet``: (B, channels, size, size) images; convolutions (1x1 and 3x3, strided or
  not, bias or not), activations, max pooling that does and does not overlap, average pooling, batch norm,
  residual adds, dropout and dropout2d.
"""
import math

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F

__all__ = ["B", "T", "program", "Net", "image_program", "ImageNet"]

B, T = 2, 5
ACTS = [F.relu, F.gelu, lambda a: F.gelu(a, approximate="tanh"), F.silu, tritorch.sigmoid, tritorch.tanh,
        lambda a: F.leaky_relu(a, 0.2), lambda a: F.elu(a, alpha=0.5)]


def program(rng):
    """Steps over a value pool of widths; the first value is the input, (B, T, width)."""
    widths = [int(rng.choice([8, 12]))]
    steps = []
    for _ in range(int(rng.integers(3, 10))):
        i = int(rng.integers(len(widths)))
        w = widths[i]
        same = [j for j, v in enumerate(widths) if v == w and j != i]
        kind = rng.choice(["lin", "lin", "lin", "act", "act", "drop", "add", "mul", "ln", "rms", "attn", "roll",
                           "inplace", "lnops", "clobber"])
        if kind in ("add", "mul", "inplace", "clobber") and not same:
            kind = "lin"
        if kind == "lin":
            out = int(rng.choice([8, 12, 16]))
            steps.append(("lin", i, w, out, bool(rng.integers(2)), int(rng.integers(3))))
            widths.append(out)
            continue
        if kind == "act":
            steps.append(("act", i, int(rng.integers(len(ACTS)))))
        elif kind == "drop":
            steps.append(("drop", i))
        elif kind in ("add", "mul", "inplace", "clobber"):
            steps.append((kind, i, same[int(rng.integers(len(same)))]))
        elif kind == "roll":
            steps.append(("roll", i, int(rng.integers(1, w))))
        elif kind in ("ln", "rms"):
            steps.append((kind, i, w))
        elif kind == "lnops":
            steps.append(("lnops", i, w, int(rng.integers(2))))
        else:
            pick = lambda: same[int(rng.integers(len(same)))] if same and rng.random() < 0.5 else i  # noqa: E731
            steps.append(("attn", i, pick(), pick(), bool(rng.integers(2)), bool(rng.integers(2)),
                          int(rng.choice([1, 2]))))
        widths.append(w)
    extra = int(rng.integers(1, len(widths) - 1)) if len(widths) > 2 and rng.random() < 0.4 else None
    return steps, widths, extra


class Net(nn.Module):
    def __init__(self, program):
        super().__init__()
        self.steps, widths, self.extra = program
        self.lins, self.norms = nn.ModuleList(), nn.ModuleList()
        self.rms, self.mats = nn.ParameterList(), nn.ParameterList()
        for s in self.steps:
            if s[0] == "lin" and s[5]:                 # written as a product: (in, out) weight, (out,) bias
                self.mats.append(nn.Parameter(tritorch.randn(s[2], s[3]) / math.sqrt(s[2])))
                if s[4]:
                    self.mats.append(nn.Parameter(tritorch.randn(s[3]) * 0.1))
            elif s[0] == "lin":
                self.lins.append(nn.Linear(s[2], s[3], bias=s[4]))
            elif s[0] == "ln":
                self.norms.append(nn.LayerNorm(s[2]))
            elif s[0] == "rms":
                self.rms.append(nn.Parameter(tritorch.rand(s[2]) + 0.5))
            elif s[0] == "lnops":                      # weight and bias of a layer norm written in ops
                self.mats.append(nn.Parameter(tritorch.rand(s[2]) + 0.5))
                self.mats.append(nn.Parameter(tritorch.randn(s[2]) * 0.1))
        self.register_buffer("causal", tritorch.ones(T, T).triu(1).bool())

    def forward(self, x):
        vals = [x]
        lins, norms, rms, mats = iter(self.lins), iter(self.norms), iter(self.rms), iter(self.mats)
        for s in self.steps:
            v = vals[s[1]]
            if s[0] == "lin" and s[5]:
                v = v @ next(mats) if s[5] == 1 else tritorch.matmul(v, next(mats))
                if s[4]:
                    v = v + next(mats) if s[5] == 1 else next(mats) + v
            elif s[0] == "lin":
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
            elif s[0] == "clobber":                    # a value read by an op, then written in place: that op's
                t = v * 1.0                            # read (fused where its reader is) must see the old values
                u = tritorch.tanh(t) + vals[s[2]]
                t.mul_(0.5)
                v = u * t
            elif s[0] == "roll":                       # slices of the last dim, concatenated the other way round
                v = tritorch.cat([v[..., s[2]:], v[..., :s[2]]], -1)
            elif s[0] == "ln":
                v = next(norms)(v)
            elif s[0] == "rms":
                v = v * tritorch.rsqrt((v * v).mean(-1, keepdim=True) + 1e-6) * next(rms)
            elif s[0] == "lnops":
                vc = v - v.mean(-1, keepdim=True)
                var = vc.pow(2).mean(-1, keepdim=True) if s[3] else v.var(-1, keepdim=True, unbiased=False)
                v = vc * tritorch.rsqrt(var + 1e-5) * next(mats) + next(mats)
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


IMAGE_ACTS = [F.relu, tritorch.sigmoid, tritorch.tanh, F.gelu, F.silu]


def image_program(rng):
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


class ImageNet(nn.Module):
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
