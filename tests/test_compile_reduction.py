"""``tritorch.compile``: a pointwise tree read only by a ``sum``/``mean`` over its trailing dims runs as that
reduction's prologue, in one generated reduction kernel (``codegen.Fused(..., reduce=...)``), forward and backward."""
import contextlib

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
            tritorch.tanh(x).mean(dim=None, keepdim=True),
            (x * w).sum(0),                                 # a leading dim
            tritorch.sigmoid(x).mean((0, 1), keepdim=True))


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
        assert "7 fused kernels (14 ops): Fused(mul -> mean), Fused(mul -> sum), Fused(sub -> sum), " \
               "Fused(exp -> mean), Fused(tanh -> mean), Fused(mul -> sum(leading)), Fused(sigmoid -> mean(leading))" \
               in c.explain()
        plain = [t.detach() for t in (x, w)]
        c(*plain)
        with profile() as prof:
            c(*plain)
        assert prof.kernel_launches() == 7              # eagerly 14: each tree's result is never stored


def rms_norm(x, w):
    return x * tritorch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * w


def test_rms_norm_written_in_ops_runs_as_the_row_norm_kernels():
    """Forward 1 kernel (eager 6); backward 1 (eager 9): ``fuse_rms_norm`` takes the whole tree, its reduction
    included, to the row-norm kernels (dx and the weight's gradient in one: the 28 rows fit one tile)."""
    x = tritorch.randn(4, 7, 48, device="cuda", requires_grad=True)
    w = tritorch.randn(48, device="cuda", requires_grad=True)
    g = tritorch.randn(4, 7, 48, device="cuda")
    c = tritorch.compile(rms_norm)
    for _ in range(2):                                  # the capture, then the backward programs' own
        c(x, w).backward(g)
    counts, grads = [], []
    for fn in (c, rms_norm):
        x.grad = w.grad = None
        with profile() as fwd:
            out = fn(x, w)
        with profile() as bwd:
            out.backward(g)
        counts.append((fwd.kernel_launches(), bwd.kernel_launches(), fwd.kernel_bytes()))
        grads.append([t.detach().cpu().numpy() for t in (out, x.grad, w.grad)])
    assert [c[:2] for c in counts] == [(1, 1), (6, 9)]
    assert counts[0][2] < counts[1][2] / 2
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert "1 RMS norms as row-norm kernels" in c.explain()


def test_what_does_not_fuse():
    """A middle dim, ``dtype=``, a tree also read elsewhere, a reduction of a non-pointwise value: eager as
    before."""
    x = tritorch.randn(6, 8, device="cuda")
    for f in (lambda a: (a * a).unsqueeze(0).sum(1), lambda a: (a * a).sum(-1, dtype=tritorch.float32),
              lambda a: (lambda s: (s.sum(-1), s))(a * a), lambda a: (a @ a.t()).sum(-1)):
        c = tritorch.compile(f)
        c(x)
        assert "Fused(mul -> sum)" not in c.explain()
        got, want = c(x), f(x)
        for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            np.testing.assert_allclose(a.cpu().numpy(), b.cpu().numpy(), rtol=1e-5, atol=1e-5)


def test_reduction_spec_binds_the_arguments():
    F = tritorch.nn.functional
    g = tritorch.jit.trace(lambda a: (a.sum(), a.mean(-1), a.sum((1, 2), True), a.sum(dim=[0, 2]), a.mean(2, False),
                                      F.softmax(a, -1), F.log_softmax(a, dim=2), F.softmax(a, 1)),
                           tritorch.randn(2, 3, 4, device="cuda")).graph
    specs = [passes.reduction_spec(n) for n in g.nodes]
    assert [s and s[1:] for s in specs] == [("sum", 3, False, False), ("mean", 1, False, False),
                                            ("sum", 2, True, False), None, ("mean", 1, False, False),
                                            ("softmax", 1, False, False), ("log_softmax", 1, False, False), None]
    lead = tritorch.jit.trace(lambda a: (a.sum(0), a.mean((1, 0), True)), tritorch.randn(2, 3, 4, device="cuda"))
    assert [passes.reduction_spec(n)[1:] for n in lead.graph.nodes] == [("sum", 1, False, True),
                                                                        ("mean", 2, True, True)]


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (1, 1), (2, 1, 3), (5, 700)])
def test_edges(shape):
    """Empty reduced dims (a sum of nothing is 0, a mean NaN), no rows, size-1 dims, rows longer than a block;
    a poisoned output (TRITORCH_POISON=1 in the tests: every row must be written)."""
    f = lambda a: ((a * 2.0).sum(-1), (a - 0.5).mean(-1, keepdim=True), (a + 1.0).sum(0), (a * a).mean(0, True))
    x = tritorch.randn(*shape, device="cuda")
    c = tritorch.compile(f)
    c(x)
    for got, want in zip(c(x), f(x)):
        assert tuple(got.shape) == tuple(want.shape)
        np.testing.assert_allclose(got.cpu().numpy(), want.cpu().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("leading", [False, True])
def test_every_candidate_and_small_blocks(leading):
    f = (lambda a, b: tritorch.sigmoid(a * b).sum(0)) if leading else (lambda a, b: tritorch.sigmoid(a * b).sum(-1))
    x, y = tritorch.randn(300, 33, device="cuda"), tritorch.randn(33, device="cuda")
    if not leading:
        x, y = tritorch.randn(33, 300, device="cuda"), tritorch.randn(300, device="cuda")
    c = tritorch.compile(f)
    c(x, y)
    want = f(x, y).cpu().numpy()
    name, tunable = ("compiled_reduce_leading", codegen.REDUCE_LEADING_TUNABLE) if leading else \
        ("compiled_reduce", codegen.REDUCE_TUNABLE)
    for i in range(len(tunable.configs)):
        with autotune.force(name, i):
            np.testing.assert_allclose(c(x, y).cpu().numpy(), want, rtol=1e-5, atol=1e-5)
    # 16 reduced x 4 kept (19 chunks of the 300), and 4 x 16 the other way
    small = autotune.Config(num_warps=1, num_stages=1, MAX_B=16, TILE=64) if leading else \
        autotune.Config(num_warps=1, num_stages=1, MAX_N=16, TILE=64)
    with autotune.force(name, small):
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


def attention_scores(s, mask):
    """A hand-written attention's probabilities: scaled, masked with -inf, softmax over the keys (and the
    log-probabilities of a sharpened copy)."""
    s = s * 0.35
    s = s.masked_fill(mask, float("-inf"))
    return tritorch.nn.functional.softmax(s, dim=-1), tritorch.nn.functional.log_softmax(s * 2.0 + 1.0, -1)


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16])
def test_softmax_with_a_prologue_matches_eager(device, dtype):
    """scale, masked_fill and (log_)softmax: one kernel each softmax (the shared masked scores recomputed in both),
    the backward from the saved result; forward and gradients equal eager's."""
    x = tritorch.randn(2, 3, 5, 37, device=device, dtype=dtype, requires_grad=True)
    mask = tritorch.ones(5, 37, device=device).triu(1).bool()
    c = tritorch.compile(attention_scores)
    res = []
    for fn in (attention_scores, c, c, c):
        x.grad = None
        p, logp = fn(x, mask)
        ((p.float() * p.float()).sum() + (logp.float().clamp(min=-30) * 0.1).sum()).backward()
        res.append([t.detach().cpu().numpy().astype(np.float64) for t in (p, logp, x.grad)])
    tol = dict(rtol=1e-5, atol=1e-6) if dtype is tritorch.float32 else dict(rtol=1e-2, atol=1e-3)
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            np.testing.assert_allclose(a, b, **tol)
    if device == "cuda":
        assert "Fused(mul -> where -> softmax), Fused(mul -> where -> mul -> add -> log_softmax)" in c.explain()
        plain = x.detach()
        c(plain, mask)
        with profile() as prof:
            c(plain, mask)
        assert prof.kernel_launches() == 2                  # eagerly 6


def test_softmax_rows_of_minus_inf_and_long_rows():
    """A row of only -inf gives NaN (as eager and PyTorch); a row whose first chunks are all -inf does not; rows
    longer than a block stream in chunks."""
    f = lambda a, m: (tritorch.nn.functional.softmax(a.masked_fill(m, float("-inf")) * 1.0, -1),
                      tritorch.nn.functional.log_softmax(a.masked_fill(m, float("-inf")) + 0.0, -1))
    x = tritorch.randn(4, 300, device="cuda")
    m = tritorch.zeros(4, 300, device="cuda").bool()
    m[0] = True                                         # a row of only -inf
    m[1, :290] = True                                   # -inf but for the last 10
    c = tritorch.compile(f)
    c(x, m)
    want = [t.cpu().numpy() for t in f(x, m)]
    assert np.isnan(want[0][0]).all()
    small = autotune.Config(num_warps=1, num_stages=1, MAX_N=16, TILE=64)
    for forced in (None, small):
        with autotune.force("compiled_softmax", forced) if forced else contextlib.nullcontext():
            for a, b in zip(c(x, m), want):
                np.testing.assert_allclose(a.cpu().numpy(), b, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert "log_softmax)" in c.explain()


def test_softmax_double_backward():
    x = tritorch.randn(3, 7, device="cuda", requires_grad=True)
    f = lambda a: tritorch.nn.functional.softmax(a * 1.5, -1)
    c = tritorch.compile(f)
    c(x)
    got, = tritorch.autograd.grad((c(x) ** 2).sum(), x, create_graph=True)
    want, = tritorch.autograd.grad((f(x) ** 2).sum(), x, create_graph=True)
    np.testing.assert_allclose(got.detach().cpu().numpy(), want.detach().cpu().numpy(), rtol=1e-5, atol=1e-7)
    h1, = tritorch.autograd.grad(got.pow(2).sum(), x)
    h2, = tritorch.autograd.grad(want.pow(2).sum(), x)
    np.testing.assert_allclose(h1.cpu().numpy(), h2.cpu().numpy(), rtol=1e-4, atol=1e-6)
