"""A layer (RMS) norm in a linear's loads (``launch_linear``'s ``x_norm``, ``linear_chain``'s ``norm``,
``tritorch.compile``'s ``fuse_norm_linear``): the kernel against float64 and against the separate norm then the
plain layer (bit for bit), the chain against the separate ops (outputs, every gradient, the double backward), the
gradients added in the norm's backward kernel, the pass's conditions and a compiled pre-norm block."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.compiler import passes
from tritorch.kernels import linear as KL
from tritorch.kernels._common import empty
from tritorch.kernels.linear_chain import linear_chain
from tritorch.kernels.norm import RowNorm
from tritorch.profiler import profile
from helpers import compiled_equals_eager, make, to_np

F32, F64 = tritorch.float32, tritorch.float64
NORMS = {"layer": (True, True, False), "layer, weight only": (True, False, False), "layer, no affine":
         (False, False, False), "rms": (True, False, True), "rms, no weight": (False, False, True)}


def _ref_norm(x, w, b, eps, rms):
    """float64 NumPy row norm of x (M, K)."""
    mean = np.zeros((x.shape[0], 1)) if rms else x.mean(1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mean) ** 2).mean(1, keepdims=True) + eps)
    y = (x - mean) * rstd
    return (y if w is None else y * w) + (0 if b is None else b), mean[:, 0], rstd[:, 0]


def _params(K, dtype, norm, seed=10):
    has_w, has_b, rms = NORMS[norm]
    w, rw = make((K,), dtype, "cuda", low=0.5, high=1.5, seed=seed) if has_w else (None, None)
    b, rb = make((K,), dtype, "cuda", seed=seed + 1) if has_b else (None, None)
    return w, b, rw, rb, rms


def _launch(x, w, bias, nw, nb, eps, rms):
    """launch_linear with x_norm into outputs poisoned with NaN: (y, xn, mean, rstd)."""
    M, K, N = x.shape[0], x.shape[1], w.shape[0]
    outs = [empty(s, d, x.device) for s, d in (((M, N), x.dtype), ((M, K), x.dtype), ((M,), x.dtype), ((M,), x.dtype))]
    for t in outs:
        t.fill_(float("nan"))
    KL.launch_linear(x, w, bias, outs[0], x_norm=(nw, nb, eps, rms, *outs[1:]))
    return outs


@pytest.mark.parametrize("norm", list(NORMS))
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_x_norm_against_float64(norm, dtype, layout):
    """y, the normalized x, its mean and rstd from float64; several tiles each way (interpreter tiles of 16-32: K
    = 100 is seven, the last partial; N = 70 three, so two columns of programs store nothing), x read through its
    strides; every output written (poisoned with NaN)."""
    M, K, N = 37, 100, 70
    x, rx = make((M, K), dtype, "cuda", layout, low=-3.0, high=5.0, seed=1)
    w, rwl = make((N, K), dtype, "cuda", seed=2, low=-0.3, high=0.3)
    bias, rbias = make((N,), dtype, "cuda", seed=3)
    nw, nb, rw, rb, rms = _params(K, dtype, norm)
    y, xn, mean, rstd = _launch(x, w, bias, nw, nb, 1e-5, rms)
    ref, rmean, rrstd = _ref_norm(rx, rw, rb, 1e-5, rms)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype is F32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_np(xn), ref, **tol)
    np.testing.assert_allclose(to_np(mean), rmean, **tol)
    np.testing.assert_allclose(to_np(rstd), rrstd, **tol)
    np.testing.assert_allclose(to_np(y), ref @ rwl.T + rbias, **tol)


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_x_norm_equals_the_norm_then_the_layer(norm):
    """y is the plain layer's product of the stored normalized x, bit for bit (the dot reads the values xn holds),
    and xn, mean and rstd are the separate norm kernel's to a few ulps (its sums run in another order)."""
    M, K, N = 40, 50, 33
    x, _ = make((M, K), F32, "cuda", seed=4)
    w, _ = make((N, K), F32, "cuda", seed=5)
    nw, nb, _, _, rms = _params(K, F32, norm)
    y, xn, mean, rstd = _launch(x, w, None, nw, nb, 1e-5, rms)
    plain = empty((M, N), F32, x.device)
    KL.launch_linear(xn, w, None, plain)
    np.testing.assert_array_equal(to_np(y), to_np(plain))
    sep = RowNorm.apply(x, nw, nb, 1e-5, K, rms)
    np.testing.assert_allclose(to_np(xn), to_np(sep), rtol=1e-6, atol=1e-6)


def test_x_norm_rejects_what_it_cannot_take():
    x, _ = make((8, 12), F32, "cuda")
    w, _ = make((5, 12), F32, "cuda")
    y = empty((8, 5), F32, x.device)
    ok = (None, None, 1e-5, False, empty((8, 12), F32, x.device), empty((8,), F32, x.device),
          empty((8,), F32, x.device))
    bad = {"a half x": (x.half(), w.half(), y.half(), ok, None),
           "with x_act": (x, w, y, ok, ("gelu", 0.0)),
           "an RMS norm's bias": (x, w, y, (None, x[0], 1e-5, True) + ok[4:], None),
           "a weight of another size": (x, w, y, (x[0, :5],) + ok[1:], None),
           "xn of another shape": (x, w, y, ok[:4] + (empty((8, 11), F32, x.device),) + ok[5:], None),
           "no output column": (x, w[:0], y[:, :0], ok, None)}
    for what, (xx, ww, yy, xn, act) in bad.items():
        with pytest.raises(ValueError, match="x_norm"):
            KL.launch_linear(xx, ww, None, yy, x_act=act, x_norm=xn)


# ---- the chain with a norm ---------------------------------------------------------------------------------------

def _net(x, p, norm, fused, residual=True):
    """norm(x) -> linear -> gelu -> linear (+ x): the chain with ``norm`` (fused), the norm then the chain
    ("chain"), or the separate ops."""
    nw, nb, w1, b1, w2, b2 = p
    rms = norm == "rms"
    layers = [{"activation": "gelu"}, {"residual": x} if residual else {}]
    if fused is True:
        return linear_chain(x, [w1, b1, w2, b2], layers, norm=[nw, None if rms else nb, 1e-5, rms])
    h = RowNorm.apply(x, nw, None if rms else nb, 1e-5, x.shape[-1], rms)
    if fused == "chain":
        return linear_chain(h, [w1, b1, w2, b2], layers)
    y = F.linear(F.gelu(F.linear(h, w1, b1)), w2, b2)
    return y + x if residual else y


def _leaves(device, dtype, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(4, 7, 20), (20,), (20,), (33, 20), (33,), (20, 33), (20,)]
    scale = [2.0, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3]
    vals = [rng.standard_normal(s) * a + (1.0 if i == 1 else 0.0) for i, (s, a) in enumerate(zip(shapes, scale))]
    return [tritorch.tensor(v, dtype=dtype, device=device, requires_grad=True) for v in vals]


@pytest.mark.parametrize("device, dtype", [("cuda", F32), ("cuda", F64), ("cuda", tritorch.float16), ("cpu", F32),
                                           ("cpu", F64)])
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_chain_with_a_norm_equals_the_separate_ops(device, dtype, norm):
    """Outputs and every gradient (x, the norm's parameters, the layers') equal the separate ops', with the
    residual x itself (its gradient added in the norm's backward kernel); float16: the norm's own kernel."""
    got, want = _leaves(device, dtype), _leaves(device, dtype)
    for leaves, fused in ((got, True), (want, False)):
        y = _net(leaves[0], leaves[1:], norm, fused)
        (y.float() * y.float()).sum().backward()
        leaves.append(y)
    tol = {F32: 2e-5, F64: 1e-12, tritorch.float16: 2e-2}[dtype]
    for a, b in zip([got[-1]] + [t.grad for t in got[:-1]], [want[-1]] + [t.grad for t in want[:-1]]):
        if b is None:
            assert a is None
            continue
        np.testing.assert_allclose(to_np(a.float()), to_np(b.float()), rtol=tol, atol=tol * 10)


def _kernels(fn):
    with profile() as prof:
        fn()
    return [e.name for e in prof.events() if e.kind == "kernel"]


def test_chain_with_a_norm_launches_no_norm_forward_nor_add():
    """Forward: the two layers' kernels alone, one launch fewer than the norm then the chain; backward: the
    residual x's gradient added in the norm's backward kernel (no add kernel), as many launches as theirs."""
    launches = {}
    for fused in (True, "chain"):
        leaves = _leaves("cuda", F32)
        names = _kernels(lambda: _net(leaves[0], leaves[1:], "layer", fused))
        assert names == ["_linear_kernel", "_linear_kernel"] if fused is True else \
            ["_ln_fwd_kernel", "_linear_kernel", "_linear_kernel"]
        y = _net(leaves[0], leaves[1:], "layer", fused)
        g = tritorch.ones_like(y)
        back = _kernels(lambda: y.backward(g))
        assert back.count("_ln_bwd_kernel") == 1 and not any("add" in n or "pointwise" in n for n in back), back
        launches[fused] = len(back)
    assert launches[True] == launches["chain"]


def test_chain_with_a_norm_adds_the_waiting_gradient():
    """x read again after the chain: its gradient, waiting when the chain's backward runs, is added in the norm's
    backward kernel (no add kernel), as ``RowNorm`` adds it."""
    got, want = _leaves("cuda", F32), _leaves("cuda", F32)
    for leaves, fused in ((got, True), (want, "chain")):
        x = leaves[0]
        y = _net(x, leaves[1:], "layer", fused, residual=False)
        z = y.sum() + (x * 3.0).sum()
        names = _kernels(z.backward)
        leaves.append(names)
    assert got[-1] == want[-1] and got[-1].count("_ln_bwd_kernel") == 1, got[-1]
    assert not any("add" in n for n in got[-1])      # neither adds x's two gradients in a kernel of its own
    for a, b in zip(got[:-1], want[:-1]):
        np.testing.assert_allclose(to_np(a.grad), to_np(b.grad), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_chain_with_a_norm_double_backward(device):
    """create_graph through the chain: the gradient of the squared gradient norm equals the separate ops'."""
    got, want = _leaves(device, F64, 3), _leaves(device, F64, 3)
    for leaves, fused in ((got, True), (want, False)):
        y = _net(leaves[0], leaves[1:], "layer", fused)
        gs = tritorch.autograd.grad((y * y).sum(), leaves, create_graph=True)
        sum((g * g).sum() for g in gs).backward()
    for a, b in zip(got, want):
        np.testing.assert_allclose(to_np(a.grad), to_np(b.grad), rtol=1e-10, atol=1e-10)


# ---- the pass ----------------------------------------------------------------------------------------------------

def _graph_ops(fn, *xs):
    g = tritorch.jit.trace(fn, xs, check_trace=False).graph
    for p in (passes.fuse_linear_epilogue, passes.fuse_linear_residual, passes.fuse_linear_chain,
              passes.fuse_norm_linear):
        g = p(g)
    return [(n.op, "norm" in n.kwargs) for n in g.nodes]


def test_pass_conditions():
    ln, lin, lin2 = nn.LayerNorm(8), nn.Linear(8, 6), nn.Linear(8, 6)
    for m in (ln, lin, lin2):
        m.to("cuda")
    x = tritorch.randn(3, 8, device="cuda")
    fused = ("linear_chain", True)
    assert _graph_ops(lambda x: lin(ln(x)), x) == [fused]
    assert _graph_ops(lambda x: lin(ln(x)) + x[:, :6], x)[-1] == fused      # a residual of the layer's
    def twice(x, result=False):
        h = ln(x)
        return (lin(h), h) if result else lin(h) + lin2(h)
    assert fused not in _graph_ops(twice, x)                                 # the norm read twice
    assert fused not in _graph_ops(lambda x: twice(x, True), x)              # (and a result)
    for device, dtype in (("cuda", tritorch.float16), ("cpu", F32)):         # float32, float64 on cuda only
        ln2, lin3 = nn.LayerNorm(8).to(device=device, dtype=dtype), nn.Linear(8, 6).to(device=device, dtype=dtype)
        assert fused not in _graph_ops(lambda x: lin3(ln2(x)), x.to(device=device, dtype=dtype))
    assert fused not in _graph_ops(lambda x: lin(F.layer_norm(x, (2, 4)).reshape(3, 8)),
                                   x.reshape(3, 2, 4))                       # over more than the last dim
    assert fused not in _graph_ops(lambda x: lin(ln(x).t().t()), x)          # read through a view
    chain = nn.Sequential(nn.Linear(8, 5), nn.GELU(), nn.Linear(5, 4)).to("cuda")
    assert _graph_ops(lambda x: chain(ln(x)), x) == [fused]                  # a chain's first layer


class Block(nn.Module):
    """A pre-norm transformer block (the GPT block of ``bench/compile_counts.py``), its input x read by the first
    norm and the first skip connection."""

    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model=dim, nhead=heads, dim_feedforward=4 * dim, batch_first=True,
                                                norm_first=True, activation="gelu", dropout=0.0)

    def forward(self, x):
        return self.layer(x)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_compiled_pre_norm_block(dtype):
    """Outputs and gradients equal eager's at capture and replay; both norms run in their linears' loads: no norm
    forward kernel, two launches fewer than eager's norms would take."""
    tritorch.manual_seed(0)
    m = Block().to(device="cuda", dtype=dtype)
    c = tritorch.compile(m)
    x = tritorch.randn(2, 5, 16, device="cuda", dtype=dtype, requires_grad=True)
    tol = dict(rtol=2e-5, atol=2e-5, grad_rtol=1e-4, grad_atol=1e-4) if dtype is F32 else {}
    compiled_equals_eager(m, c, x, **tol)
    assert "2 norms in the loads of the linear reading them" in c.explain()
    with profile() as prof:
        c(x)
    names = [e.name for e in prof.events() if e.kind == "kernel"]
    assert "_ln_fwd_kernel" not in names and names.count("_linear_kernel") == 4


def test_compiled_pre_norm_block_reduce_overhead():
    """Under mode="reduce-overhead" the recorded launches (the norms' in their products') replay, on their own
    buffers, to eager's outputs and gradients."""
    tritorch.manual_seed(1)
    m = Block().to("cuda")
    c = tritorch.compile(m, mode="reduce-overhead")
    x = tritorch.randn(2, 5, 16, device="cuda", requires_grad=True)
    compiled_equals_eager(m, c, x, rtol=2e-5, atol=2e-5, grad_rtol=1e-4, grad_atol=1e-4)
    for scale in (1.5, 0.5, 2.0):          # other values in the same buffers' shapes: no stale replay
        results = []
        for fn in (c, m):
            m.zero_grad()
            y = fn(x * scale)
            (y * y).sum().backward()
            results.append([to_np(y)] + [to_np(p.grad) for p in m.parameters()])
        for a, b in zip(*results):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
