"""A layer norm over the last dim written in ops runs as the layer norm kernels (``tritorch.compile``'s
``fuse_layer_norm``, ``compiler/passes/norms.py``): the pass's spellings and conditions, and compiled models
against eager (outputs, input and parameter gradients) with fewer launches."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
from tritorch.compiler import passes
from tritorch.profiler import profile
from helpers import pass_ops

EPS = 1e-5


class LayerNorm(nn.Module):
    """A layer norm written in ops, in the spellings of hand-written models."""

    def __init__(self, dim, spelling=0):
        super().__init__()
        self.weight, self.bias = nn.Parameter(tritorch.rand(dim) + 0.5), nn.Parameter(tritorch.randn(dim) * 0.1)
        self.spelling = spelling

    def forward(self, x):
        mu = x.mean(-1, keepdim=True) if self.spelling < 3 else None
        if self.spelling == 0:                  # ((x - mu) ** 2).mean, / sqrt, then * w + b
            var = (x - mu).pow(2).mean(-1, keepdim=True)
            return (x - mu) / tritorch.sqrt(var + EPS) * self.weight + self.bias
        if self.spelling == 1:                  # one centred value read twice, var(unbiased=False), rsqrt, b + w *
            xc = x - mu
            return self.bias + self.weight * (xc * tritorch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + EPS))
        if self.spelling == 2:                  # square, correction=0, eps first, weight only
            xc = x - mu
            return tritorch.rsqrt(EPS + xc.square().mean(dim=(-1,), keepdim=True)) * xc * self.weight
        xc = x - x.mean(x.ndim - 1, keepdim=True)           # no affine
        return xc / (tritorch.var(x, x.ndim - 1, correction=0, keepdim=True) + EPS).sqrt()


def _ops(fn, *xs):
    return pass_ops(passes.fuse_layer_norm, fn, *xs)


@pytest.mark.parametrize("spelling", [0, 1, 2, 3])
def test_pass_spellings(spelling):
    assert _ops(LayerNorm(6, spelling), tritorch.randn(2, 3, 6)) == ["layer_norm"]


def test_pass_conditions():
    x = tritorch.randn(3, 6)

    def norm(x, centre=None, stats=None, dim=-1, unbiased=False, extra=False):
        mu = x.mean(dim, keepdim=True)
        xc = x - (mu if centre is None else centre)
        var = (stats if stats is not None else x).var(dim, keepdim=True, unbiased=unbiased)
        y = xc * tritorch.rsqrt(var + EPS)
        return (y, mu) if extra else y
    assert _ops(norm, x) == ["layer_norm"]
    assert "layer_norm" not in _ops(lambda x: norm(x, unbiased=True), x)        # Bessel's correction
    assert "layer_norm" not in _ops(lambda x: norm(x, dim=0), x)                # not the last dim
    assert "layer_norm" not in _ops(lambda x: norm(x, extra=True), x)           # the mean is returned too
    assert "layer_norm" not in _ops(lambda x: norm(x, centre=x.mean(0, keepdim=True)), x)     # another centre
    assert "layer_norm" not in _ops(lambda x, y: norm(x, stats=y), x, x + 1)    # another tensor's variance
    assert _ops(lambda x, w: norm(x) * w, x, tritorch.randn(3, 6))[-1] in ("mul", "__mul__")  # w not (N,)
    assert _ops(lambda x, w: norm(x) * w, x, tritorch.randn(6)) == ["layer_norm"]


@pytest.mark.parametrize("spelling", [0, 1, 2, 3])
def test_compiled_model_equals_eager(device, spelling):
    tritorch.manual_seed(5)
    m = nn.Sequential(LayerNorm(12, spelling), nn.Linear(12, 12), LayerNorm(12, 0)).to(device)
    x = tritorch.randn(2, 5, 12, device=device, requires_grad=True)
    c = tritorch.compile(m)
    res, launches = [], []
    for fn in (m, c, c):
        m.zero_grad()
        x.grad = None
        with profile() as prof:
            y = fn(x)
            (y * y).sum().backward()
        res.append([y.detach().cpu().numpy(), x.grad.cpu().numpy()] +
                   [p.grad.cpu().numpy() for p in m.parameters() if p.grad is not None])   # spelling 2: no bias
        launches.append(prof.kernel_launches())
    for got in res[1:]:
        assert len(got) == len(res[0])
        for a, b in zip(got, res[0]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    assert "2 layer norms written in ops" in c.explain()
    if device == "cuda":
        assert launches[2] < launches[0] / 2


def test_not_under_autocast():
    """Under autocast ``layer_norm`` runs in float32 and the ops it would replace in their own dtypes: the pass
    leaves them alone there."""
    m = nn.Sequential(LayerNorm(12, 0), nn.Linear(12, 12), LayerNorm(12, 1)).to("cuda")
    x = tritorch.randn(2, 5, 12, device="cuda")
    c = tritorch.compile(m)
    with tritorch.autocast("cuda", dtype=tritorch.float16):
        y, want = c(x), m(x)
    assert y.dtype == want.dtype and "0 layer norms written in ops" in c.explain()
    np.testing.assert_allclose(y.float().detach().cpu().numpy(), want.float().detach().cpu().numpy(), atol=1e-2)
