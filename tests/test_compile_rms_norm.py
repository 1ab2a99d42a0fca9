"""A root-mean-square norm written in ops runs as the row-norm kernels with the mean fixed at 0
(``kernels/norm.py``'s ``RowNorm(rms=True)``, ``tritorch.compile``'s ``fuse_rms_norm``): the kernels against float64
on both backward paths (rows in one block, wider rows), the pending-gradient epilogue, double backward, the pass's
spellings and conditions, and a compiled model against eager."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.compiler import passes
from tritorch.kernels.norm import RowNorm
from tritorch.profiler import profile
from helpers import assert_close, compiled_equals_eager, make, pass_ops, to_np

EPS = 1e-5


def _reference(x, w, g):
    """(y, dx, dw) of x * rsqrt(mean(x * x) + eps) * w over the last dim, float64."""
    r = 1 / np.sqrt((x * x).mean(-1, keepdims=True) + EPS)
    xh = x * r
    wg = g * w
    dx = r * (wg - xh * (wg * xh).mean(-1, keepdims=True))
    return xh * w, dx, (g * xh).reshape(-1, x.shape[-1]).sum(0)


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16, tritorch.bfloat16, tritorch.float64])
@pytest.mark.parametrize("n", [37, 4100])         # one block per row (dx and dw in one kernel), or wider rows
def test_kernels_against_float64(device, dtype, n):
    rows = (2, 3) if n < 4096 else (3,)
    x, rx = make(rows + (n,), dtype, device, seed=1, requires_grad=True)
    w, rw = make((n,), dtype, device, seed=2, requires_grad=True)
    g, rg = make(rows + (n,), dtype, device, seed=3)
    y = RowNorm.apply(x, w, None, EPS, n, True)
    dx, dw = tritorch.autograd.grad(y, (x, w), g)
    want = _reference(rx, rw, rg)
    for got, ref in zip((y, dx, dw), want):
        assert_close(got, ref, dtype, atol=None if n < 4096 else {tritorch.float16: 1e-1,
                                                                 tritorch.bfloat16: 5e-1}.get(dtype))


def test_pending_gradient_is_added_in_the_kernel():
    """x read by the norm and a skip connection: the norm's backward adds the skip's gradient in its epilogue
    (one launch for dx), equal to the separate add."""
    x, rx = make((4, 24), tritorch.float32, "cuda", seed=4, requires_grad=True)
    w, rw = make((24,), tritorch.float32, "cuda", seed=5)
    g, rg = make((4, 24), tritorch.float32, "cuda", seed=6)
    y = RowNorm.apply(x, w, None, EPS, 24, True) + x * 2.0     # the skip's gradient is ready first
    with profile() as prof:
        dx, = tritorch.autograd.grad(y, (x,), g)
    np.testing.assert_allclose(to_np(dx), 2 * rg + _reference(rx, rw, rg)[1], rtol=1e-5, atol=1e-5)
    assert [e.name for e in prof.events() if e.kind == "kernel"] == ["_pointwise_kernel", "_ln_bwd_dx_kernel"]


def test_double_backward():
    x, _ = make((3, 5), tritorch.float64, "cpu", seed=7, requires_grad=True)
    w, _ = make((5,), tritorch.float64, "cpu", seed=8, requires_grad=True)
    f = lambda x, w: RowNorm.apply(x, w, None, EPS, 5, True)    # noqa: E731
    assert tritorch.autograd.gradcheck(f, (x, w))
    assert tritorch.autograd.gradgradcheck(f, (x, w))


class RMSNorm(nn.Module):
    def __init__(self, dim, spelling=0):
        super().__init__()
        self.weight, self.spelling = nn.Parameter(tritorch.rand(dim) + 0.5), spelling

    def forward(self, x):
        if self.spelling == 0:                               # LLaMA's
            return x * tritorch.rsqrt((x * x).mean(-1, keepdim=True) + EPS) * self.weight
        if self.spelling == 1:                               # F.rms_norm's own decomposition
            return F.rms_norm(x, (x.shape[-1],), self.weight, EPS)
        if self.spelling == 2:                               # the weight first, x ** 2, eps first
            return self.weight * (tritorch.rsqrt(EPS + x.pow(2).mean(dim=(-1,), keepdim=True)) * x)
        return x * (x.square().mean(x.ndim - 1, keepdim=True) + EPS).rsqrt()   # no weight


def _ops(fn, *xs):
    return pass_ops(passes.fuse_rms_norm, fn, *xs)


@pytest.mark.parametrize("spelling", [0, 1, 2, 3])
def test_pass_spellings(spelling):
    assert _ops(RMSNorm(6, spelling), tritorch.randn(2, 3, 6)) == ["rms_norm_rows"]


def test_pass_conditions():
    x, w = tritorch.randn(3, 6), tritorch.randn(6)
    shared = lambda x: (lambda ms: x * tritorch.rsqrt(ms + EPS) + ms)((x * x).mean(-1, keepdim=True))  # noqa: E731
    assert "rms_norm_rows" not in _ops(shared, x)                             # the mean is read again
    dim0 = lambda x: x * tritorch.rsqrt((x * x).mean(0, keepdim=True) + EPS)  # noqa: E731
    assert "rms_norm_rows" not in _ops(dim0, x)                               # not the last dim
    other = lambda x, y: x * tritorch.rsqrt((y * y).mean(-1, keepdim=True) + EPS)   # noqa: E731
    assert "rms_norm_rows" not in _ops(other, x, x + 1)                       # another tensor's statistics
    wide = lambda x, w: x * tritorch.rsqrt((x * x).mean(-1, keepdim=True) + EPS) * w  # noqa: E731
    assert _ops(wide, x, tritorch.randn(3, 6))[-1] in ("mul", "__mul__")     # not a weight of the last dim
    assert _ops(wide, x, w) == ["rms_norm_rows"]


def test_compiled_model_equals_eager(device):
    tritorch.manual_seed(5)
    m = nn.Sequential(RMSNorm(12), nn.Linear(12, 12), RMSNorm(12, 2)).to(device)
    c = tritorch.compile(m)
    prof = compiled_equals_eager(m, c, tritorch.randn(2, 5, 12, device=device), atol=1e-5, grad_rtol=1e-4,
                                 grad_atol=1e-5)
    assert "2 RMS norms as row-norm kernels" in c.explain()
    if device == "cuda":
        names = [e.name for e in prof.events() if e.kind == "kernel"]
        assert names.count("_ln_bwd_kernel") == 2 and not any(n.startswith("fused") for n in names)
