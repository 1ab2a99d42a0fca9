"""``tritorch.compile``: independent pointwise trees of one shape in a derived backward program run side by side in
one generated kernel with a result each (``fuse_pointwise(horizontal=True)``, ``Fused(roots=...)``), and a GLU's
gate activation joins the product's fused tree instead of the linear's epilogue (``epilogues._gates``), so that a
SwiGLU's backward takes one generated kernel for the product's and the activation's derivatives."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.compiler import codegen, passes
from tritorch.jit import TracedModule, op_table
from tritorch.profiler import profile
from helpers import compiled_equals_eager, make, to_np


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(tmp_path))


def _fused(fn, *xs, horizontal=True):
    """(ops of the graph after pointwise fusion, its replay)."""
    graph = tritorch.jit.trace(fn, xs, check_trace=False, strict=False).graph
    graph, kernels = passes.fuse_pointwise(graph, codegen.Fused, horizontal=horizontal)
    return [n.op.split(":")[0] for n in graph.nodes], TracedModule(graph, "T", table={**op_table(), **kernels})


def two_trees(a, b, bias):
    return (a * b + bias).sigmoid(), (a - b) * bias.exp()


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_side_by_side_trees_equal_eager_in_one_launch(layout):
    """Two trees reading shared inputs (one transposed, a broadcast bias, 37 x 23 elements: partial blocks) give
    eager's results from one launch; both outputs are poisoned until written (TRITORCH_POISON)."""
    a, _ = make((37, 23), tritorch.float32, "cuda", layout, seed=1)
    b, _ = make((37, 23), tritorch.float32, "cuda", seed=2)
    bias, _ = make((23,), tritorch.float32, "cuda", seed=3)
    ops, run = _fused(two_trees, a, b, bias)
    assert ops == ["fused"]
    with profile() as prof:
        got = run(a, b, bias)
    assert prof.kernel_launches() == 1
    for g, w in zip(got, two_trees(a, b, bias)):
        np.testing.assert_allclose(to_np(g), to_np(w), rtol=1e-6, atol=1e-6)
    assert _fused(two_trees, a, b, bias, horizontal=False)[0] == ["fused", "fused"]


def test_side_by_side_conditions():
    a, b = tritorch.randn(4, 5, device="cuda"), tritorch.randn(4, 5, device="cuda")
    read_between = lambda a, b: (lambda u: (u, (a - b).exp() * u.sum()))((a * b).sigmoid())  # noqa: E731
    assert _fused(read_between, a, b)[0] == ["fused", "sum", "fused"]     # u is read before the second tree's root
    shapes = lambda a, b: ((a * b).exp(), (a[0] - b[0]).exp())              # noqa: E731
    assert _fused(shapes, a, b)[0].count("fused") == 2                     # another shape
    reduced = lambda a, b: ((a * b).exp().sum(-1), (a - b).exp())          # noqa: E731
    assert _fused(reduced, a, b)[0] == ["fused", "fused"]                  # a reduction's prologue stays apart

    def in_place(a, b):
        u = (a * b).exp()
        a.add_(1.0)
        return u, (a - b).exp()
    assert _fused(in_place, a.clone(), b)[0].count("fused") == 2


def test_several_roots_under_autograd_run_the_ops():
    """A kernel with several results called on inputs that require grad returns them by the published ops, so
    create_graph through a backward program still records."""
    a = tritorch.randn(6, 3, device="cuda", requires_grad=True)
    b = tritorch.randn(6, 3, device="cuda")
    _, run = _fused(lambda a, b: two_trees(a, b, b[0]), a.detach(), b)
    u, v = run(a, b)
    (gu,) = tritorch.autograd.grad((u * v).sum(), (a,))
    u2, v2 = two_trees(a, b, b[0])
    (want,) = tritorch.autograd.grad((u2 * v2).sum(), (a,))
    np.testing.assert_allclose(to_np(gu), to_np(want), rtol=1e-6, atol=1e-6)


class SwiGLU(nn.Module):
    def __init__(self, dim=12, hidden=20):
        super().__init__()
        self.w1, self.w2, self.w3 = nn.Linear(dim, hidden, False), nn.Linear(hidden, dim, False), \
            nn.Linear(dim, hidden, False)

    def forward(self, x):
        return x + self.w2(F.silu(self.w1(x)) * self.w3(x))


def test_glu_gate_joins_the_product_and_its_backward_is_one_kernel(device):
    tritorch.manual_seed(4)
    m = SwiGLU().to(device)
    c = tritorch.compile(m)
    prof = compiled_equals_eager(m, c, tritorch.randn(3, 7, 12, device=device), grad_atol=1e-5)
    graph = next(iter(c._entries.values())).graph           # after the passes
    kinds = [n.op.split(":")[0] for n in graph.nodes]
    if device == "cuda":          # silu stays out of w1's epilogue and joins the product's tree
        assert kinds.count("fused") == 1 and not any("activation" in n.kwargs for n in graph.nodes)
        names = [e.name for e in prof.events() if e.kind == "kernel"]
        assert "_act_grad_kernel" not in names
        assert names.count("_linear_grad_kernel") == 3 and names.count("fused_kernel") == 1
    else:                         # no pointwise fusion on cpu: the activation stays in the epilogue
        assert graph.nodes[0].kwargs.get("activation") == "silu"
