"""Half inputs read in float32 by the kernels themselves, where autocast's float32 policy (and ``dtype=``) used to
make a float32 copy: ``cross_entropy(..., dtype=float32)`` of half logits with class-index targets and
``softmax``/``log_softmax(..., dtype=float32)`` of a half input compute in float32 as they would on the cast input
(the results and gradients equal bit for bit), without the float32 copies forward and backward; and
``tritorch.compile`` folding ``cross_entropy(logits.float(), t)`` likewise."""
import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.compiler import passes
from tritorch.kernels import softmax as SM
from tritorch.profiler import profile
from helpers import pass_ops

HALF = [tritorch.float16, tritorch.bfloat16]


def _case(device, half, shape=(6, 5), seed=0):
    rng = np.random.default_rng(seed)
    x = tritorch.tensor(rng.standard_normal(shape) * 3, device=device).to(half)
    t = tritorch.tensor(rng.integers(0, shape[1], (shape[0],) + shape[2:]), device=device)
    return x, t


def _loss_and_grad(fn, x, *args, **kwargs):
    x = x.detach().requires_grad_(True)
    y = fn(x, *args, **kwargs)
    g = tritorch.ones_like(y) if y.ndim == 0 else tritorch.arange(float(y.numel()), device=y.device).reshape(y.shape)
    y.backward(g / 7)
    return y.detach(), x.grad


@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("extra", ["plain", "weight", "smoothing", "ignore", "spatial"])
def test_dtype_float32_equals_the_cast_input(device, half, reduction, extra):
    x, t = _case(device, half, (4, 5, 3) if extra == "spatial" else (6, 5))
    kw = {"reduction": reduction}
    if extra == "weight":
        kw["weight"] = tritorch.rand(5, device=device) + 0.5
    elif extra == "smoothing":
        kw["label_smoothing"] = 0.2
    elif extra == "ignore":
        kw["ignore_index"] = int(t.reshape(-1)[0].item())
    want, want_dx = _loss_and_grad(lambda x: F.cross_entropy(x.float(), t, **kw), x)
    got, got_dx = _loss_and_grad(lambda x: F.cross_entropy(x, t, **kw, dtype=tritorch.float32), x)
    assert got.dtype is tritorch.float32 and got_dx.dtype is half
    np.testing.assert_array_equal(got.cpu().numpy(), want.cpu().numpy())
    np.testing.assert_array_equal(got_dx.float().cpu().numpy(), want_dx.float().cpu().numpy())


def test_dtype_of_other_inputs_casts_them(device):
    """Probability targets, a float32 input read as float64, the input's own dtype: the loss of ``input.to(dtype)``."""
    x, t = _case(device, tritorch.float16)
    p = tritorch.softmax(tritorch.randn(6, 5, device=device), -1)
    for fn, ref in ((lambda x: F.cross_entropy(x, p, dtype=tritorch.float32),
                     lambda x: F.cross_entropy(x.float(), p)),
                    (lambda x: F.cross_entropy(x.float(), t, dtype=tritorch.float64),
                     lambda x: F.cross_entropy(x.double(), t)),
                    (lambda x: F.cross_entropy(x, t, dtype=tritorch.float16), lambda x: F.cross_entropy(x, t))):
        got, got_dx = _loss_and_grad(fn, x)
        want, want_dx = _loss_and_grad(ref, x)
        assert got.dtype is want.dtype
        np.testing.assert_array_equal(got.cpu().numpy(), want.cpu().numpy())
        np.testing.assert_array_equal(got_dx.float().cpu().numpy(), want_dx.float().cpu().numpy())


@pytest.mark.parametrize("half", HALF)
def test_autocast_reads_the_half_logits(half):
    """Under autocast (float32 policy) the half logits reach the loss kernels as they are: one launch fewer forward
    and backward than the float32 copy, the same loss and gradients."""
    tritorch.manual_seed(0)
    lin = nn.Linear(8, 5).cuda()
    x = tritorch.randn(6, 8, device="cuda")
    t = tritorch.tensor([0, 4, 1, 3, 2, 2], device="cuda")
    w = tritorch.rand(5, device="cuda") + 0.5
    res, launches = [], []
    for cast in (False, True):
        lin.zero_grad()
        with tritorch.autocast("cuda", dtype=half):
            logits = lin(x)
            with profile() as fwd:
                loss = F.cross_entropy(logits.float() if cast else logits, t, weight=w)
        with profile() as bwd:
            loss.backward()
        res.append([loss.detach().cpu().numpy(), lin.weight.grad.cpu().numpy(), lin.bias.grad.cpu().numpy()])
        launches.append((fwd.kernel_launches(), bwd.kernel_launches()))
    assert loss.dtype is tritorch.float32
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)
    assert launches[0] == (launches[1][0] - 1, launches[1][1] - 1), launches


class HalfHead(nn.Module):
    """A half-precision head whose logits the loss reads as float32, as language-model code writes it."""

    def __init__(self, half):
        super().__init__()
        self.proj = nn.Linear(8, 5).to(half)

    def forward(self, x, t):
        return F.cross_entropy(self.proj(x).float(), t)


@pytest.mark.parametrize("half", HALF)
def test_compile_folds_the_cast_into_the_loss(device, half):
    """``cross_entropy(logits.float(), t)`` compiled: the cast folded into the loss (no float32 copy either way),
    the loss and gradients equal eager's bit for bit, at the capture and the replay."""
    tritorch.manual_seed(0)
    m = HalfHead(half).to(device)
    c = tritorch.compile(m)
    x = tritorch.randn(6, 8, device=device).to(half)
    t = tritorch.tensor([0, 4, 1, 3, 2, 2], device=device)
    res, launches = [], []
    for fn in (m, c, c):
        m.zero_grad()
        with profile() as prof:
            loss = fn(x, t)
            loss.backward()
        res.append([loss.detach().cpu().numpy(), m.proj.weight.grad.float().cpu().numpy()])
        launches.append(prof.kernel_launches())
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            np.testing.assert_array_equal(a, b)
    assert "1 float32 casts of half logits read by cross_entropy's kernels" in c.explain()
    if device == "cuda":
        assert launches[2] == launches[0] - 2, launches


def test_loss_cast_pass_conditions():
    """A cast read twice or returned, probability targets, another dtype, float32 logits: left alone."""
    x = tritorch.randn(4, 5).half()
    t, p = tritorch.tensor([0, 1, 2, 3]), tritorch.softmax(tritorch.randn(4, 5), -1)
    kept = {
        "read twice": lambda x: (lambda z: F.cross_entropy(z, t) + z.sum())(x.float()),
        "returned": lambda x: (lambda z: (F.cross_entropy(z, t), z))(x.float()),
        "probabilities": lambda x: F.cross_entropy(x.float(), p),
        "float64": lambda x: F.cross_entropy(x.double(), t),
        "float32 logits": lambda x: F.cross_entropy(x.float().float() * 1.0, t),
    }
    for why, fn in kept.items():
        assert "cross_entropy" in pass_ops(passes.fuse_loss_cast, fn, x) and all(
            "dtype" not in n.kwargs for n in passes.fuse_loss_cast(tritorch.jit.trace(fn, x).graph).nodes), why
    for fn in (lambda x: F.cross_entropy(x.float(), t), lambda x: F.cross_entropy(x.to(tritorch.float32), t),
               lambda x: F.cross_entropy(x.to(dtype=tritorch.float32), t, reduction="sum")):
        graph = passes.fuse_loss_cast(tritorch.jit.trace(fn, x).graph)
        assert [(n.op, n.kwargs.get("dtype")) for n in graph.nodes] == [("cross_entropy", tritorch.float32)]


@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape,dim", [((6, 5), -1), ((3, 70, 4), 1), ((7,), 0)])
def test_softmax_dtype_float32_equals_the_cast_input(device, half, log, shape, dim):
    fn = F.log_softmax if log else F.softmax
    x = tritorch.tensor(np.random.default_rng(1).standard_normal(shape) * 4, device=device).to(half)
    want, want_dx = _loss_and_grad(lambda x: fn(x.float(), dim), x)
    got, got_dx = _loss_and_grad(lambda x: fn(x, dim, dtype=tritorch.float32), x)
    assert got.dtype is tritorch.float32 and got_dx.dtype is half
    np.testing.assert_array_equal(got.cpu().numpy(), want.cpu().numpy())
    np.testing.assert_array_equal(got_dx.float().cpu().numpy(), want_dx.float().cpu().numpy())
    x64 = x.double().detach().requires_grad_()      # float64 asked of float32: a cast, as before
    y = tritorch.softmax(x64.float(), dim, dtype=tritorch.float64)
    assert y.dtype is tritorch.float64


@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_float32_read_tunes_as_the_cast_input(monkeypatch, half, log):
    """The half input read in float32 and its float32 cast look up the same tuned configs, forward and backward
    (the backward keys on y's dtype, float32 in both, not on dx's): on a GPU both then sum their rows in one order."""
    fn = F.log_softmax if log else F.softmax
    keys = []
    for tunable in SM.TUNABLES.values():
        monkeypatch.setattr(tunable, "pick", lambda key, run=None, _pick=tunable.pick: keys.append(key) or
                            _pick(key, run))
    x = tritorch.randn(5, 37, device="cuda").to(half)
    seen = []
    for f in (lambda x: fn(x.float(), -1), lambda x: fn(x, -1, dtype=tritorch.float32)):
        keys.clear()
        _loss_and_grad(f, x)
        seen.append(list(keys))
    assert len(seen[0]) == 2 and seen[0] == seen[1]


def test_softmax_double_backward_through_the_float32_read():
    x = tritorch.randn(4, 6, device="cuda").half().requires_grad_()
    y = F.softmax(x, -1, dtype=tritorch.float32)
    (gx,) = tritorch.autograd.grad((y * y).sum(), x, create_graph=True)
    assert gx.dtype is tritorch.float16
    gx.float().square().sum().backward()
    ref = x.detach().float().requires_grad_()
    yr = F.softmax(ref, -1)
    (gr,) = tritorch.autograd.grad((yr * yr).sum(), ref, create_graph=True)
    gr.square().sum().backward()
    np.testing.assert_allclose(x.grad.float().cpu().numpy(), ref.grad.cpu().numpy(), rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("half", HALF)
def test_autocast_softmax_reads_the_half_scores(half):
    """Attention written in ops under autocast: the softmax reads the half scores (no float32 copy of them forward,
    nor of their gradient backward), with the results of the cast scores."""
    tritorch.manual_seed(0)
    q, k = (tritorch.randn(2, 3, 8, 4, device="cuda").requires_grad_() for _ in range(2))
    res, launches = [], []
    for cast in (False, True):
        q.grad = k.grad = None
        with tritorch.autocast("cuda", dtype=half):
            scores = q @ k.transpose(-2, -1)
            with profile() as fwd:
                att = F.softmax(scores.float() if cast else scores, dim=-1)
        assert att.dtype is tritorch.float32
        with profile() as bwd:
            (att * att).sum().backward()
        res.append([att.detach().cpu().numpy(), q.grad.cpu().numpy(), k.grad.cpu().numpy()])
        launches.append((fwd.kernel_launches(), bwd.kernel_launches()))
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)
    assert launches[0][0] == launches[1][0] - 1 and launches[0][1] == launches[1][1] - 1, launches


@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("shape", [(6, 40), (3, 4, 300)])
def test_layer_norm_dtype_float32_equals_the_cast_input(device, half, affine, shape):
    rng = np.random.default_rng(2)
    x = tritorch.tensor(rng.standard_normal(shape) * 3 + 1, device=device).to(half)
    w, b = (tritorch.tensor(rng.standard_normal(shape[-1:]), dtype=tritorch.float32, device=device,
                            requires_grad=True) if affine else None for _ in range(2))
    res = []
    for fn in (lambda x: F.layer_norm(x.float(), shape[-1:], w, b), lambda x: F.layer_norm(x, shape[-1:], w, b,
                                                                                           dtype=tritorch.float32)):
        for p in (w, b):
            if p is not None:
                p.grad = None
        y, dx = _loss_and_grad(fn, x)
        res.append([y, dx] + ([w.grad, b.grad] if affine else []))
    assert res[1][0].dtype is tritorch.float32 and res[1][1].dtype is half
    for a, c in zip(*res):
        np.testing.assert_array_equal(a.float().cpu().numpy(), c.float().cpu().numpy())


@pytest.mark.parametrize("half", HALF)
def test_autocast_layer_norm_reads_the_half_input(half):
    """A pre-norm block under autocast: the layer norm reads the half residual stream (no float32 copy of it, nor
    of its gradient), with the cast input's results; the skip connection's gradient is added as before."""
    tritorch.manual_seed(0)
    ln, lin = nn.LayerNorm(16).cuda(), nn.Linear(16, 16).cuda()
    x = tritorch.randn(4, 16, device="cuda").requires_grad_()
    res, launches = [], []
    for cast in (False, True):
        for p in (x, *ln.parameters(), *lin.parameters()):
            p.grad = None
        with tritorch.autocast("cuda", dtype=half):
            h = lin(x)                                  # half
            with profile() as fwd:
                y = ln(h.float() if cast else h)
            out = h + lin(y)
        assert y.dtype is tritorch.float32
        with profile() as bwd:
            out.float().square().sum().backward()
        res.append([y.detach(), x.grad] + [p.grad for p in (*ln.parameters(), *lin.parameters())])
        launches.append((fwd.kernel_launches(), bwd.kernel_launches()))
    for a, c in zip(*res):
        np.testing.assert_array_equal(a.float().cpu().numpy(), c.float().cpu().numpy())
    assert launches[0][0] == launches[1][0] - 1 and launches[0][1] == launches[1][1] - 1, launches


@pytest.mark.parametrize("half", HALF)
def test_group_norm_reads_the_half_input(device, half):
    """group_norm(..., dtype=float32), and under autocast: the cast input's results without its float32 copies."""
    rng = np.random.default_rng(3)
    x = tritorch.tensor(rng.standard_normal((2, 6, 5, 3)) * 2, device=device).to(half)
    w = tritorch.tensor(rng.standard_normal(6), dtype=tritorch.float32, device=device, requires_grad=True)
    want, want_dx = _loss_and_grad(lambda x: F.group_norm(x.float(), 3, w, w), x)
    want_dw, w.grad = w.grad, None
    got, got_dx = _loss_and_grad(lambda x: F.group_norm(x, 3, w, w, dtype=tritorch.float32), x)
    assert got.dtype is tritorch.float32 and got_dx.dtype is half
    for a, c in ((got, want), (got_dx, want_dx), (w.grad, want_dw)):
        np.testing.assert_array_equal(a.float().cpu().numpy(), c.float().cpu().numpy())
    if device == "cuda":
        gn = nn.GroupNorm(3, 6).cuda()
        launches = []
        for cast in (False, True):
            with tritorch.autocast("cuda", dtype=half), profile() as prof:
                y = gn(x.float() if cast else x)
            assert y.dtype is tritorch.float32
            launches.append(prof.kernel_launches())
        assert launches[0] == launches[1] - 1, launches
