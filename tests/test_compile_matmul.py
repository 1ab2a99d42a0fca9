"""``tritorch.compile``'s ``matmul_as_linear`` (``compiler/passes/matmul.py``): a layer written as ``x @ w [+ b]``
runs as a linear, so its activation, dropout and residual add join the linear kernel's epilogue; results and
gradients as eager's (the model fuzzer writes a third of its linears as products too)."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.compiler.passes import matmul_as_linear
from tritorch.profiler import profile
from helpers import pass_ops


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(tmp_path))


class MLP(nn.Module):
    """Two layers written as products: gelu(x @ w1 + b1), dropout, then a residual x + h @ w2."""

    def __init__(self, dropout=0.0):
        super().__init__()
        self.w1, self.b1 = nn.Parameter(tritorch.randn(6, 8) / 3), nn.Parameter(tritorch.randn(8) / 3)
        self.w2, self.p = nn.Parameter(tritorch.randn(8, 6) / 3), dropout

    def forward(self, x):
        return x + F.dropout(F.gelu(x @ self.w1 + self.b1), self.p, self.training) @ self.w2


def _run(fn, model, x, seed=0):
    tritorch.manual_seed(seed)
    model.zero_grad()
    x.grad = None
    with profile() as prof:
        y = fn(x)
        y.pow(2).sum().backward()
    return [y.detach().cpu().numpy(), x.grad.cpu().numpy()] + [p.grad.cpu().numpy() for p in model.parameters()], \
        prof.kernel_launches()


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_products_run_as_linears(device, dropout):
    tritorch.manual_seed(1)
    model = MLP(dropout).to(device)
    x = tritorch.randn(4, 3, 6, device=device, requires_grad=True)
    c = tritorch.compile(model)
    want, eager = _run(model, model, x)
    for _ in range(2):
        got, compiled = _run(c, model, x)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert "2 products x @ w as linears" in c.explain()
    assert "1 activations" in c.explain() and "1 residual adds" in c.explain()
    assert ("1 dropouts" in c.explain()) == (dropout > 0)
    if device == "cuda":
        assert compiled < eager


def _ops(fn, *shapes):
    return pass_ops(matmul_as_linear, fn, *(tritorch.randn(*s) for s in shapes))


def test_pass_conditions():
    assert _ops(lambda x, w: x @ w, (3, 4), (4, 5)) == ["t", "linear"]
    assert _ops(lambda x, w, b: x @ w + b, (2, 3, 4), (4, 5), (5,)) == ["t", "linear"]
    assert _ops(lambda x, w, b: b + tritorch.matmul(x, w), (3, 4), (4, 5), (5,)) == ["t", "linear"]
    # the bias computed after the product: the linear takes the add's place
    assert _ops(lambda x, w, b: x @ w + b * 2, (3, 4), (4, 5), (5,)) == ["t", "__mul__", "linear"]
    # not a linear: a batched or 1-d weight, a 1-d input
    assert _ops(lambda x, w: x @ w, (2, 3, 4), (2, 4, 5)) == ["__matmul__"]
    assert _ops(lambda x, w: x @ w, (3, 4), (4,)) == ["__matmul__"]
    assert _ops(lambda x, w: x @ w, (4,), (4, 5)) == ["__matmul__"]
    # the product kept, so the add stays: read twice, returned, a bias of another shape
    assert _ops(lambda x, w, b: (lambda y: (y + b) * y[0, 0])(x @ w), (3, 4), (4, 5), (5,)) == \
        ["t", "linear", "__add__", "__getitem__", "__mul__"]
    assert _ops(lambda x, w, b: (lambda y: (y + b, y))(x @ w), (3, 4), (4, 5), (5,)) == ["t", "linear", "__add__"]
    assert _ops(lambda x, w, b: x @ w + b, (3, 4), (4, 5), (3, 5)) == ["t", "linear", "__add__"]


def test_not_under_autocast():
    model = MLP().to("cuda")
    x = tritorch.randn(4, 6, device="cuda")
    c = tritorch.compile(model)
    with tritorch.autocast("cuda", dtype=tritorch.float16):
        y, want = c(x), model(x)
    assert y.dtype == want.dtype and "0 products x @ w as linears" in c.explain()
    np.testing.assert_allclose(y.float().detach().cpu().numpy(), want.float().detach().cpu().numpy(), atol=1e-2)
