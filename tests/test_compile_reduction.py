"""``tritorch.compile``: a pointwise tree read only by a ``sum``/``mean`` over its trailing dims runs as that
reduction's prologue, in one generated reduction kernel (``codegen.Fused(..., reduce=...)``), forward and backward."""
import numpy as np
import pytest

import tritorch
from tritorch import autotune
from tritorch.compiler import codegen, passes
from tritorch.profiler import profile


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITORCH_CACHE_DIR", str(tmp_path))


def forms(x, w):
    return ((x * x).mean(-1, keepdim=True),             # a mean of squares, kept dims
            tritorch.sum(x * w, dim=(-2, -1)),          # two trailing dims, a broadcast operand
            (x - 1.0).sum(),                            # everything
            x.exp().mean(dim=-1),                       # a tree of one node
            tritorch.tanh(x).mean(dim=None, keepdim=True))


def _run(fn, x, w):
    x.grad = w.grad = None
    outs = fn(x, w)
    sum((o.float() * o.float()).sum() for o in outs).backward()
    return [o.detach().cpu().numpy().astype(np.float64) for o in outs] + \
        [t.grad.cpu().numpy().astype(np.float64) for t in (x, w)]


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16])
def test_reductions_with_prologues_match_eager(device, dtype):
    tritorch.manual_seed(5)
    x = tritorch.randn(3, 5, 37, device=device, dtype=dtype, requires_grad=True)
    w = tritorch.randn(37, device=device, dtype=dtype, requires_grad=True)
    c = tritorch.compile(forms)
    want = _run(forms, x, w)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype is tritorch.float32 else dict(rtol=1e-2, atol=2e-2)
    for _ in range(3):                                  # the capture, then two replays
        for a, b in zip(_run(c, x, w), want):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, **tol)
    if device == "cuda":
        assert "5 fused kernels (10 ops): Fused(mul -> mean), Fused(mul -> sum), Fused(sub -> sum), " \
               "Fused(exp -> mean), Fused(tanh -> mean)" in c.explain()
        plain = [t.detach() for t in (x, w)]
        c(*plain)
        with profile() as prof:
            c(*plain)
        assert prof.kernel_launches() == 5              # eagerly 10: each tree's result is never stored


def rms_norm(x, w):
    return x * tritorch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * w


def test_rms_norm_written_in_ops_runs_in_two_kernels():
    x = tritorch.randn(4, 7, 48, device="cuda")
    w = tritorch.randn(48, device="cuda")
    c = tritorch.compile(rms_norm)
    c(x, w)
    with profile() as prof:
        got = c(x, w)
    with profile() as eager:
        want = rms_norm(x, w)
    assert (prof.kernel_launches(), eager.kernel_launches()) == (2, 6)
    assert prof.kernel_bytes() < eager.kernel_bytes() / 2
    np.testing.assert_allclose(got.cpu().numpy(), want.cpu().numpy(), rtol=1e-5, atol=1e-6)
    assert "Fused(mul -> mean), Fused(add -> rsqrt -> mul -> mul)" in c.explain()


def test_what_does_not_fuse():
    """A leading dim, ``dtype=``, a tree also read elsewhere, a reduction of a non-pointwise value: eager as
    before."""
    x = tritorch.randn(6, 8, device="cuda")
    for f in (lambda a: (a * a).sum(0), lambda a: (a * a).sum(-1, dtype=tritorch.float32),
              lambda a: (lambda s: (s.sum(-1), s))(a * a), lambda a: (a @ a.t()).sum(-1)):
        c = tritorch.compile(f)
        c(x)
        assert "Fused(mul -> sum)" not in c.explain()
        got, want = c(x), f(x)
        for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            np.testing.assert_allclose(a.cpu().numpy(), b.cpu().numpy(), rtol=1e-5, atol=1e-5)


def test_reduction_spec_binds_the_arguments():
    g = tritorch.jit.trace(lambda a: (a.sum(), a.mean(-1), a.sum((1, 2), True), a.sum(dim=[0, 2]), a.mean(2, False)),
                           tritorch.randn(2, 3, 4, device="cuda")).graph
    specs = [passes.reduction_spec(n) for n in g.nodes]
    assert [s and s[1:] for s in specs] == [(3, False, False), (1, False, True), (2, True, False), None,
                                            (1, False, True)]


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (1, 1), (2, 1, 3), (5, 700)])
def test_edges(shape):
    """Empty reduced dims (a sum of nothing is 0, a mean NaN), no rows, size-1 dims, rows longer than a block;
    a poisoned output (TRITORCH_POISON=1 in the tests: every row must be written)."""
    f = lambda a: ((a * 2.0).sum(-1), (a - 0.5).mean(-1, keepdim=True))
    x = tritorch.randn(*shape, device="cuda")
    c = tritorch.compile(f)
    c(x)
    for got, want in zip(c(x), f(x)):
        assert tuple(got.shape) == tuple(want.shape)
        np.testing.assert_allclose(got.cpu().numpy(), want.cpu().numpy(), rtol=1e-5, atol=1e-5)


def test_every_candidate_and_small_blocks():
    f = lambda a, b: tritorch.sigmoid(a * b).sum(-1)
    x, y = tritorch.randn(33, 300, device="cuda"), tritorch.randn(300, device="cuda")
    c = tritorch.compile(f)
    c(x, y)
    want = f(x, y).cpu().numpy()
    for i in range(len(codegen.REDUCE_TUNABLE.configs)):
        with autotune.force("compiled_reduce", i):
            np.testing.assert_allclose(c(x, y).cpu().numpy(), want, rtol=1e-5, atol=1e-5)
    small = autotune.Config(num_warps=1, num_stages=1, MAX_N=16, TILE=64)    # 4 rows x 16 columns: 19 chunks a row
    with autotune.force("compiled_reduce", small):
        np.testing.assert_allclose(c(x, y).cpu().numpy(), want, rtol=1e-5, atol=1e-5)


def test_double_backward_through_a_fused_reduction():
    x = tritorch.randn(3, 6, device="cuda", requires_grad=True)
    f = lambda a: tritorch.sigmoid(a * a).mean(-1)
    c = tritorch.compile(f)
    c(x)
    got, = tritorch.autograd.grad(c(x).sum(), x, create_graph=True)
    want, = tritorch.autograd.grad(f(x).sum(), x, create_graph=True)
    np.testing.assert_allclose(got.detach().cpu().numpy(), want.detach().cpu().numpy(), rtol=1e-6, atol=1e-7)
    h1, = tritorch.autograd.grad(got.pow(2).sum(), x)
    h2, = tritorch.autograd.grad(want.pow(2).sum(), x)
    np.testing.assert_allclose(h1.cpu().numpy(), h2.cpu().numpy(), rtol=1e-5, atol=1e-6)


def test_a_mean_of_squares_loss_forward_and_backward():
    """``out.pow(2).mean()`` (the GPT benchmark's loss): forward one kernel; backward the seed's fill and one
    kernel (the spread gradient, the division and the square's derivative fused), against eager's 2 + 3."""
    f = lambda y: y.pow(2).mean()
    x = tritorch.randn(4, 16, 64, device="cuda", requires_grad=True)
    c = tritorch.compile(f)
    res = []
    for fn in (f, c, c, c):
        x.grad = None
        with profile() as prof:
            loss = fn(x)
            loss.backward()
        res.append((prof.kernel_launches(), loss.item(), x.grad.cpu().numpy()))
    assert res[0][0] == 5 and res[-1][0] == 3
    for n, loss, grad in res[1:]:
        np.testing.assert_allclose(loss, res[0][1], rtol=1e-6)
        np.testing.assert_allclose(grad, res[0][2], rtol=1e-6, atol=1e-9)
    assert "Fused(square -> mean)" in c.explain()
    c2 = tritorch.compile(lambda y: (y ** 2).sum(-1))
    c2(x)
    assert "Fused(square -> sum)" in c2.explain()
