"""Losses: forward and backward of every loss and reduction on cpu and cuda (interpreter) against float64 NumPy
references written here (gradients: central differences of the reference), class counts that are not multiples
of the block (C = 37 spans two blocks in the interpreter, C = 1), N = 0, ignore_index, weights, label smoothing,
probability targets, non-contiguous inputs, half types; gradcheck / gradgradcheck in float64 on cpu; the errors."""
import warnings

import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.autograd import gradcheck, gradgradcheck
from tritorch.kernels import loss as L
from tritorch.profiler import profile
from helpers import assert_close, make, to_np

F32, F64 = tritorch.float32, tritorch.float64
REDUCTIONS = pytest.mark.parametrize("reduction", ["none", "mean", "sum"])


# ---- float64 references ------------------------------------------------------------------------------------------
def _log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _rows(a, cd):
    return np.moveaxis(a, cd, -1).reshape(-1, a.shape[cd])


def _reduce(loss, reduction, den=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return loss.sum() / (loss.size if den is None else den)


def ref_cross_entropy(x, t, w=None, ignore_index=-100, eps=0.0, reduction="mean"):
    """PyTorch's definition: (1 - eps) * nll(log_softmax) + eps / C * smoothing term, 'mean' over target weights."""
    cd = 1 if x.ndim > 1 else 0
    C = x.shape[cd]
    lp = _rows(_log_softmax(x, cd), cd)
    tt = np.asarray(t).reshape(-1)
    wv = np.ones(C) if w is None else w
    valid = tt != ignore_index
    tc = np.where(valid, tt, 0)
    nll = np.where(valid, -wv[tc] * lp[np.arange(len(tt)), tc], 0.0)
    smooth = np.where(valid, -(lp * wv).sum(axis=1), 0.0)
    loss = ((1 - eps) * nll + eps / C * smooth).reshape(np.shape(t))
    return _reduce(loss, reduction, np.where(valid, wv[tc], 0.0).sum())


def ref_cross_entropy_prob(x, p, w=None, eps=0.0, reduction="mean"):
    cd = 1 if x.ndim > 1 else 0
    C = x.shape[cd]
    q = (1 - eps) * p + eps / C
    wshape = [1] * x.ndim
    wshape[cd] = C
    wv = np.ones(wshape) if w is None else w.reshape(wshape)
    loss = -(_log_softmax(x, cd) * q * wv).sum(axis=cd)
    return _reduce(loss, reduction, loss.size)


def ref_nll(x, t, w=None, ignore_index=-100, reduction="mean"):
    cd = 1 if x.ndim > 1 else 0
    C = x.shape[cd]
    x2 = _rows(x, cd)
    tt = np.asarray(t).reshape(-1)
    wv = np.ones(C) if w is None else w
    valid = tt != ignore_index
    tc = np.where(valid, tt, 0)
    loss = np.where(valid, -wv[tc] * x2[np.arange(len(tt)), tc], 0.0).reshape(np.shape(t))
    return _reduce(loss, reduction, np.where(valid, wv[tc], 0.0).sum())


def _xlogy(y):
    return np.where(y == 0, 0.0, y * np.log(np.where(y == 0, 1.0, y)))


POINTWISE_REF = {
    "mse": lambda x, y, k: (x - y) ** 2,
    "l1": lambda x, y, k: np.abs(x - y),
    "smooth_l1": lambda x, y, k: np.where(np.abs(x - y) < k["beta"], 0.5 * (x - y) ** 2 / k["beta"],
                                          np.abs(x - y) - 0.5 * k["beta"]),
    "huber": lambda x, y, k: np.where(np.abs(x - y) < k["delta"], 0.5 * (x - y) ** 2,
                                      k["delta"] * (np.abs(x - y) - 0.5 * k["delta"])),
    "bce": lambda x, y, k: -(y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log(1 - x), -100))
    * k.get("weight", 1.0),
    "bce_logits": lambda x, y, k: -(k.get("pos_weight", 1.0) * y * np.log(1 / (1 + np.exp(-x)))
                                    + (1 - y) * np.log(1 - 1 / (1 + np.exp(-x)))) * k.get("weight", 1.0),
    "kl_div": lambda x, y, k: (np.exp(y) * (y - x)) if k.get("log_target") else _xlogy(y) - y * x,
}

POINTWISE_FN = {
    "mse": lambda x, y, r, k: F.mse_loss(x, y, reduction=r),
    "l1": lambda x, y, r, k: F.l1_loss(x, y, reduction=r),
    "smooth_l1": lambda x, y, r, k: F.smooth_l1_loss(x, y, reduction=r, beta=k["beta"]),
    "huber": lambda x, y, r, k: F.huber_loss(x, y, reduction=r, delta=k["delta"]),
    "bce": lambda x, y, r, k: F.binary_cross_entropy(x, y, weight=k.get("weight_t"), reduction=r),
    "bce_logits": lambda x, y, r, k: F.binary_cross_entropy_with_logits(x, y, weight=k.get("weight_t"),
                                                                        pos_weight=k.get("pos_weight_t"),
                                                                        reduction=r),
    "kl_div": lambda x, y, r, k: F.kl_div(x, y, reduction=r, log_target=k.get("log_target", False)),
}


def num_grad(f, a, h=1e-6):
    """Central differences of the scalar f at a (float64)."""
    a = np.array(a, dtype=np.float64)
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + h
        fp = f(a)
        a[i] = old - h
        fm = f(a)
        a[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


def upstream(out_shape, seed=3):
    """A random upstream gradient for reduction 'none' (a scalar 1 otherwise)."""
    if out_shape == ():
        return np.float64(1.0)
    return np.random.default_rng(seed).uniform(0.5, 1.5, size=out_shape)


def backward_with(out, G, device):
    if out.ndim == 0:
        out.backward()
    else:
        out.backward(tritorch.tensor(G, dtype=out.dtype, device=device))


# ---- cross-entropy with class indices ----------------------------------------------------------------------------
def _targets(tshape, C, seed, ignore=True):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, C, size=tshape)
    if ignore and t.size > 2:
        t.reshape(-1)[1] = -100
    return t


# (input shape, target shape, reduction, weighted, label_smoothing): every shape and reduction, every option
CE_CASES = [
    ((5, 37), (5,), "mean", False, 0.0), ((5, 37), (5,), "sum", True, 0.15), ((5, 37), (5,), "none", True, 0.0),
    ((5, 37), (5,), "mean", True, 0.15), ((5, 37), (5,), "none", False, 0.15),
    ((4, 1), (4,), "mean", False, 0.0), ((4, 1), (4,), "none", True, 0.15),
    ((3, 5, 7), (3, 7), "none", False, 0.0), ((3, 5, 7), (3, 7), "mean", True, 0.15),
    ((3, 5, 7), (3, 7), "sum", False, 0.15),
    ((6,), (), "none", True, 0.15), ((6,), (), "mean", False, 0.0), ((6,), (), "sum", True, 0.0),
    ((2, 4, 3, 2), (2, 3, 2), "mean", True, 0.0), ((2, 4, 3, 2), (2, 3, 2), "none", False, 0.15),
]


def _case_id(c):
    return "x".join(map(str, c[0])) + f"-{c[2]}" + ("-weight" if c[3] else "") + ("-smooth" if c[4] else "")


@pytest.mark.parametrize("shapes,tshape,reduction,weighted,eps", CE_CASES, ids=[_case_id(c) for c in CE_CASES])
def test_cross_entropy(device, shapes, tshape, reduction, weighted, eps):
    xshape = shapes
    C = xshape[1 if len(xshape) > 1 else 0]
    x, rx = make(xshape, F32, device, low=-3, high=3, requires_grad=True)
    t = _targets(tshape, C, seed=len(xshape) + C)
    w = np.random.default_rng(1).uniform(0.5, 2.0, C) if weighted else None
    out = F.cross_entropy(x, tritorch.tensor(t, device=device), weight=None if w is None else
                          tritorch.tensor(w, dtype=F32, device=device), reduction=reduction, label_smoothing=eps)
    expected = ref_cross_entropy(rx, t, w, eps=eps, reduction=reduction)
    assert out.dtype is F32
    assert_close(out, np.asarray(expected), F32, rtol=1e-5, atol=1e-6)
    G = upstream(np.shape(expected))
    backward_with(out, G, device)
    dx = num_grad(lambda a: (ref_cross_entropy(a, t, w, eps=eps, reduction=reduction) * G).sum(), rx)
    assert_close(x.grad, dx, F32, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_cross_entropy_non_contiguous(device, layout):
    x, rx = make((6, 37), F32, device, layout, requires_grad=True)
    t = _targets((6,), 37, 0)
    out = F.cross_entropy(x, tritorch.tensor(t, device=device), label_smoothing=0.1)
    assert_close(out, ref_cross_entropy(rx, t, eps=0.1), F32, rtol=1e-5)
    out.backward()
    assert_close(x.grad, num_grad(lambda a: ref_cross_entropy(a, t, eps=0.1), rx), F32, rtol=1e-4, atol=1e-6)


def test_cross_entropy_spatial_permuted(device):
    # (N, C, d1, d2) whose trailing dims do not merge into one stride: the input is made contiguous first
    base, _ = make((2, 3, 4, 5), F32, device)
    x = base.permute(0, 3, 2, 1)                         # (2, 5, 4, 3), C = 5
    x.requires_grad_(True)
    rx = to_np(x)
    t = _targets((2, 4, 3), 5, 2)
    out = F.cross_entropy(x, tritorch.tensor(t, device=device), reduction="sum")
    assert_close(out, ref_cross_entropy(rx, t, reduction="sum"), F32, rtol=1e-5)
    out.backward()
    assert_close(x.grad, num_grad(lambda a: ref_cross_entropy(a, t, reduction="sum"), rx), F32, rtol=1e-4,
                 atol=1e-6)


def test_cross_entropy_target_non_contiguous(device):
    x, rx = make((4, 9), F32, device)
    t = np.array([[1, 0], [8, 0], [3, 0], [5, 0]])
    tt = tritorch.tensor(t, device=device)[:, 0]
    assert_close(F.cross_entropy(x, tt), ref_cross_entropy(rx, t[:, 0]), F32, rtol=1e-5)


@REDUCTIONS
def test_cross_entropy_empty_batch(device, reduction):
    x = tritorch.zeros(0, 5, device=device, requires_grad=True)
    out = F.cross_entropy(x, tritorch.zeros(0, dtype=tritorch.int64, device=device), reduction=reduction)
    if reduction == "none":
        assert out.shape == (0,)
        out.sum().backward()
    else:
        assert out.shape == ()
        assert np.isnan(out.item()) if reduction == "mean" else out.item() == 0.0   # PyTorch: mean of nothing
        out.backward()
    assert x.grad.shape == (0, 5)


def test_cross_entropy_all_ignored_is_nan(device):
    x, _ = make((3, 4), F32, device)
    t = tritorch.tensor([-100, -100, -100], device=device)
    assert np.isnan(F.cross_entropy(x, t).item())
    assert F.cross_entropy(x, t, reduction="sum").item() == 0.0


def test_cross_entropy_custom_ignore_index(device):
    x, rx = make((5, 6), F32, device, requires_grad=True)
    t = np.array([2, 3, 3, 0, 5])
    out = F.cross_entropy(x, tritorch.tensor(t, device=device), ignore_index=3, label_smoothing=0.2)
    assert_close(out, ref_cross_entropy(rx, t, ignore_index=3, eps=0.2), F32, rtol=1e-5)
    out.backward()
    g = to_np(x.grad)
    assert np.all(g[1:3] == 0)
    assert_close(x.grad, num_grad(lambda a: ref_cross_entropy(a, t, ignore_index=3, eps=0.2), rx), F32,
                 rtol=1e-4, atol=1e-6)


def test_cross_entropy_large_logits(device):
    # computed relative to the row max (as log_softmax does): no cancellation against lse for large logits
    rx = np.array([[1e4, 0.0, -1e4], [3e3, 3e3 + 1, 3e3 - 2]])
    x = tritorch.tensor(rx, dtype=F32, device=device)
    t = np.array([1, 2])
    for eps in (0.0, 0.3):
        out = F.cross_entropy(x, tritorch.tensor(t, device=device), reduction="none", label_smoothing=eps)
        assert_close(out, ref_cross_entropy(rx, t, eps=eps, reduction="none"), F32, rtol=1e-6)
    p = np.array([[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]])
    out = F.cross_entropy(x, tritorch.tensor(p, dtype=F32, device=device), reduction="none", label_smoothing=0.1)
    assert_close(out, ref_cross_entropy_prob(rx, p, eps=0.1, reduction="none"), F32, rtol=1e-6)


@pytest.mark.parametrize("dtype", [tritorch.float16, tritorch.bfloat16, tritorch.float64])
def test_cross_entropy_dtypes(device, dtype):
    x, rx = make((4, 37), dtype, device, requires_grad=True)
    t = _targets((4,), 37, 5)
    w = np.linspace(0.5, 1.5, 37)
    out = F.cross_entropy(x, tritorch.tensor(t, device=device), weight=tritorch.tensor(w, dtype=dtype, device=device),
                          label_smoothing=0.1)
    assert out.dtype is dtype
    rw = to_np(tritorch.tensor(w, dtype=dtype))
    tol = {tritorch.float16: 3e-3, tritorch.bfloat16: 2e-2, tritorch.float64: 1e-10}[dtype]
    assert_close(out, ref_cross_entropy(rx, t, rw, eps=0.1), dtype, rtol=tol, atol=tol)
    out.backward()
    assert x.grad.dtype is dtype
    dx = num_grad(lambda a: ref_cross_entropy(a, t, rw, eps=0.1), rx)
    assert_close(x.grad, dx, dtype, rtol=tol * 10, atol=tol * 0.1 if dtype is not F64 else 1e-9)


# ---- cross-entropy with class probabilities ----------------------------------------------------------------------
PROB_CASES = [((5, 37), "mean", False, 0.0), ((5, 37), "none", True, 0.25), ((5, 37), "sum", False, 0.25),
              ((3, 4, 5), "none", False, 0.0), ((3, 4, 5), "mean", True, 0.25), ((6,), "none", True, 0.0),
              ((6,), "mean", False, 0.25)]


@pytest.mark.parametrize("xshape,reduction,weighted,eps", PROB_CASES,
                         ids=[_case_id((c[0], None) + c[1:]) for c in PROB_CASES])
def test_cross_entropy_probabilities(device, xshape, reduction, weighted, eps):
    cd = 1 if len(xshape) > 1 else 0
    C = xshape[cd]
    x, rx = make(xshape, F32, device, requires_grad=True)
    raw = np.random.default_rng(4).uniform(0.0, 1.0, size=xshape)
    p = raw / raw.sum(axis=cd, keepdims=True)
    pt = tritorch.tensor(p, dtype=F32, device=device, requires_grad=True)
    rp = to_np(pt)
    w = np.random.default_rng(5).uniform(0.5, 2.0, C) if weighted else None
    out = F.cross_entropy(x, pt, weight=None if w is None else tritorch.tensor(w, dtype=F32, device=device),
                          reduction=reduction, label_smoothing=eps)
    expected = ref_cross_entropy_prob(rx, rp, w, eps, reduction)
    assert_close(out, np.asarray(expected), F32, rtol=1e-5, atol=1e-6)
    G = upstream(np.shape(expected))
    backward_with(out, G, device)
    dx = num_grad(lambda a: (ref_cross_entropy_prob(a, rp, w, eps, reduction) * G).sum(), rx)
    dp = num_grad(lambda a: (ref_cross_entropy_prob(rx, a, w, eps, reduction) * G).sum(), rp)
    assert_close(x.grad, dx, F32, rtol=1e-4, atol=1e-6)
    assert_close(pt.grad, dp, F32, rtol=1e-4, atol=1e-6)


def test_cross_entropy_probabilities_non_contiguous(device):
    x, rx = make((5, 9), F32, device, "transposed", requires_grad=True)
    p, rp = make((5, 9), F32, device, "strided", low=0, high=1)
    out = F.cross_entropy(x, p, reduction="sum")
    assert_close(out, ref_cross_entropy_prob(rx, rp, reduction="sum"), F32, rtol=1e-5)
    out.backward()
    assert_close(x.grad, num_grad(lambda a: ref_cross_entropy_prob(a, rp, reduction="sum"), rx), F32, rtol=1e-4,
                 atol=1e-6)


@pytest.mark.parametrize("wlayout", ["strided", "expanded"])
def test_class_weight_non_contiguous(device, wlayout):
    """A sliced or expanded class weight (the kernels read it with stride 1: it must be copied; issue 14), in
    nll_loss and both forms of cross_entropy, forward and backward."""
    C = 7
    if wlayout == "strided":
        base = np.random.default_rng(4).uniform(0.5, 2.0, 2 * C)
        w, rw = tritorch.tensor(base, dtype=F64, device=device)[::2], base[::2]
    else:
        w, rw = tritorch.tensor([1.5], dtype=F64, device=device).expand(C), np.full(C, 1.5)
    assert not w.is_contiguous()
    t = _targets((6,), C, 5)
    tt = tritorch.tensor(t, device=device)
    x, rx = make((6, C), F64, device, requires_grad=True)
    out = F.nll_loss(x, tt, weight=w)
    assert_close(out, ref_nll(rx, t, rw))
    out.backward()
    assert_close(x.grad, num_grad(lambda a: ref_nll(a, t, rw), rx), rtol=1e-6, atol=1e-8)
    x.grad = None
    out = F.cross_entropy(x, tt, weight=w, label_smoothing=0.1)
    assert_close(out, ref_cross_entropy(rx, t, rw, eps=0.1))
    out.backward()
    assert_close(x.grad, num_grad(lambda a: ref_cross_entropy(a, t, rw, eps=0.1), rx), rtol=1e-6, atol=1e-8)
    x.grad = None
    p, rp = make((6, C), F64, device, low=0, high=1, seed=6)
    out = F.cross_entropy(x, p, weight=w, label_smoothing=0.2)
    assert_close(out, ref_cross_entropy_prob(rx, rp, rw, eps=0.2))
    out.backward()
    assert_close(x.grad, num_grad(lambda a: ref_cross_entropy_prob(a, rp, rw, eps=0.2), rx), rtol=1e-6, atol=1e-8)


# ---- nll_loss ----------------------------------------------------------------------------------------------------
NLL_CASES = [((5, 37), (5,), "mean", False, 0), ((5, 37), (5,), "none", True, 0), ((5, 37), (5,), "sum", True, 0),
             ((3, 1), (3,), "mean", True, 0), ((2, 4, 5), (2, 5), "none", False, 0),
             ((2, 4, 5), (2, 5), "mean", True, 0), ((7,), (), "none", True, 0), ((7,), (), "sum", False, 0)]


@pytest.mark.parametrize("xshape,tshape,reduction,weighted,_", NLL_CASES, ids=[_case_id(c) for c in NLL_CASES])
def test_nll_loss(device, xshape, tshape, reduction, weighted, _):
    C = xshape[1 if len(xshape) > 1 else 0]
    x, rx = make(xshape, F32, device, "transposed" if len(xshape) == 2 else "contiguous", requires_grad=True)
    t = _targets(tshape, C, 7)
    w = np.random.default_rng(2).uniform(0.5, 2.0, C) if weighted else None
    out = F.nll_loss(x, tritorch.tensor(t, device=device), weight=None if w is None else
                     tritorch.tensor(w, dtype=F32, device=device), reduction=reduction)
    expected = ref_nll(rx, t, w, reduction=reduction)
    assert_close(out, np.asarray(expected), F32, rtol=1e-5, atol=1e-6)
    G = upstream(np.shape(expected))
    backward_with(out, G, device)
    assert_close(x.grad, num_grad(lambda a: (ref_nll(a, t, w, reduction=reduction) * G).sum(), rx), F32,
                 rtol=1e-4, atol=1e-6)


def test_nll_of_log_softmax_is_cross_entropy(device):
    x, _ = make((4, 10), F32, device)
    t = tritorch.tensor([0, 9, 3, 3], device=device)
    assert_close(F.nll_loss(F.log_softmax(x, 1), t), to_np(F.cross_entropy(x, t)), F32, rtol=1e-5)


@REDUCTIONS
def test_nll_empty_batch(device, reduction):
    x = tritorch.zeros(0, 3, device=device, requires_grad=True)
    out = F.nll_loss(x, tritorch.zeros(0, dtype=tritorch.int64, device=device), reduction=reduction)
    if reduction == "mean":
        assert np.isnan(out.item())
    (out.sum() if reduction == "none" else out).backward()
    assert x.grad.shape == (0, 3)


# ---- pointwise losses --------------------------------------------------------------------------------------------
POINTWISE_CASES = [
    ("mse", {}), ("l1", {}), ("smooth_l1", {"beta": 0.5}), ("smooth_l1", {"beta": 1.0}), ("huber", {"delta": 0.7}),
    ("bce", {}), ("bce", {"weight": True}), ("bce_logits", {}), ("bce_logits", {"weight": True, "pos_weight": True}),
    ("kl_div", {}), ("kl_div", {"log_target": True}),
]


def _pointwise_inputs(name, shape, device, layout="contiguous"):
    if name == "bce":
        x, rx = make(shape, F32, device, layout, low=0.05, high=0.95, requires_grad=True)
        y, ry = make(shape, F32, device, low=0.0, high=1.0, seed=1, requires_grad=True)
    elif name == "kl_div":
        x, rx = make(shape, F32, device, layout, low=-3, high=0, requires_grad=True)
        y, ry = make(shape, F32, device, low=0.05, high=1.0, seed=1, requires_grad=True)
    else:
        x, rx = make(shape, F32, device, layout, requires_grad=True)
        y, ry = make(shape, F32, device, low=-2, high=2, seed=1, requires_grad=True)
    return x, rx, y, ry


def _pointwise_kw(name, kw, shape, device):
    kw = dict(kw)
    rng = np.random.default_rng(9)
    if kw.pop("weight", False):
        kw["weight"] = rng.uniform(0.5, 2.0, shape[-1:])
        kw["weight_t"] = tritorch.tensor(kw["weight"], dtype=F32, device=device)
    if kw.pop("pos_weight", False):
        kw["pos_weight"] = rng.uniform(0.5, 3.0, shape[-1:])
        kw["pos_weight_t"] = tritorch.tensor(kw["pos_weight"], dtype=F32, device=device)
    if kw.get("log_target"):
        kw["log_target"] = True
    return kw


def _pointwise_cases():
    """Every loss with reduction 'none' (a random upstream gradient checks every element), and 'mean' / 'sum' for
    a few."""
    cases = [(name, kw, "none") for name, kw in POINTWISE_CASES]
    for name, kw in (("mse", {}), ("bce", {"weight": True}), ("huber", {"delta": 0.7}), ("kl_div", {})):
        cases += [(name, kw, "mean"), (name, kw, "sum")]
    return cases


@pytest.mark.parametrize("name,kw,reduction", _pointwise_cases(),
                         ids=lambda v: v if isinstance(v, str) else "-".join(v) if v else "")
def test_pointwise(device, name, kw, reduction):
    shape = (3, 37)
    x, rx, y, ry = _pointwise_inputs(name, shape, device, "transposed" if name in ("mse", "bce_logits") else
                                     "contiguous")
    kw = _pointwise_kw(name, kw, shape, device)
    ref = POINTWISE_REF[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = POINTWISE_FN[name](x, y, reduction, kw)
    expected = _reduce(ref(rx, ry, kw), reduction)
    assert out.dtype is F32
    assert_close(out, np.asarray(expected), F32, rtol=1e-5, atol=1e-6)
    G = upstream(np.shape(expected))
    backward_with(out, G, device)
    dx = num_grad(lambda a: (_reduce(ref(a, ry, kw), reduction) * G).sum(), rx)
    dy = num_grad(lambda a: (_reduce(ref(rx, a, kw), reduction) * G).sum(), ry)
    assert_close(x.grad, dx, F32, rtol=1e-4, atol=1e-5)
    assert_close(y.grad, dy, F32, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mse", "l1", "smooth_l1", "huber", "bce", "bce_logits", "kl_div"])
def test_pointwise_empty(device, name):
    x = tritorch.zeros(0, 4, device=device, requires_grad=True)
    y = tritorch.zeros(0, 4, device=device)
    kw = {"beta": 1.0, "delta": 1.0}
    out = POINTWISE_FN[name](x, y, "mean", kw)
    assert np.isnan(out.item())
    out.backward()
    assert x.grad.shape == (0, 4)
    assert POINTWISE_FN[name](x, y, "sum", kw).item() == 0.0
    assert POINTWISE_FN[name](x, y, "none", kw).shape == (0, 4)


def test_mse_broadcast_target_warns(device):
    x, rx = make((4, 5), F32, device, requires_grad=True)
    y, ry = make((5,), F32, device, seed=2, requires_grad=True)
    with pytest.warns(UserWarning, match=r"target size \(\[5\]\) that is different to the input size \(\[4, 5\]\)"):
        out = F.mse_loss(x, y)
    assert_close(out, ((rx - ry) ** 2).mean(), F32, rtol=1e-5)
    out.backward()
    assert_close(y.grad, (-2 * (rx - ry)).sum(0) / 20, F32, rtol=1e-5, atol=1e-6)


def test_smooth_l1_beta_zero_is_l1(device):
    x, rx = make((3, 5), F32, device)
    y, ry = make((3, 5), F32, device, seed=1)
    assert_close(F.smooth_l1_loss(x, y, beta=0.0), np.abs(rx - ry).mean(), F32, rtol=1e-5)


def test_bce_logits_extreme(device):
    x = tritorch.tensor([-200.0, -30.0, 0.0, 30.0, 200.0], device=device)
    y = tritorch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], device=device)
    assert_close(F.binary_cross_entropy_with_logits(x, y, reduction="none"),
                 [200.0, np.log1p(np.exp(-30.0)), np.log(2), np.log1p(np.exp(-30.0)), 200.0], F32, rtol=1e-5)


def test_bce_log_clamp(device):
    x = tritorch.tensor([0.0, 1.0, 0.5], device=device)
    y = tritorch.tensor([1.0, 0.0, 1.0], device=device)
    assert_close(F.binary_cross_entropy(x, y, reduction="none"), [100.0, 100.0, np.log(2)], F32, rtol=1e-6)


@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_batchmean(device, log_target):
    x, rx = make((4, 6), F32, device, low=-3, high=0, requires_grad=True)
    y, ry = make((4, 6), F32, device, low=0.05, high=1.0, seed=1)
    out = F.kl_div(x, y, reduction="batchmean", log_target=log_target)
    ref = POINTWISE_REF["kl_div"]
    assert_close(out, ref(rx, ry, {"log_target": log_target}).sum() / 4, F32, rtol=1e-5)
    out.backward()
    dx = num_grad(lambda a: ref(a, ry, {"log_target": log_target}).sum() / 4, rx)
    assert_close(x.grad, dx, F32, rtol=1e-4, atol=1e-6)


def test_kl_div_zero_target_and_mean_warning(device):
    x = tritorch.tensor([[-1.0, -2.0]], device=device)
    y = tritorch.tensor([[0.0, 1.0]], device=device)
    assert_close(F.kl_div(x, y, reduction="none"), [[0.0, 2.0]], F32)
    with pytest.warns(UserWarning, match="batchmean"):
        F.kl_div(x, y, reduction="mean")


@pytest.mark.parametrize("dtype", [tritorch.float16, tritorch.bfloat16])
def test_pointwise_half(device, dtype):
    x, rx = make((5, 7), dtype, device, requires_grad=True)
    y, ry = make((5, 7), dtype, device, seed=1)
    out = F.smooth_l1_loss(x, y, beta=0.5)
    assert out.dtype is dtype
    tol = 5e-3 if dtype is tritorch.float16 else 3e-2
    ref = POINTWISE_REF["smooth_l1"]
    assert_close(out, ref(rx, ry, {"beta": 0.5}).mean(), dtype, rtol=tol, atol=tol)
    out.backward()
    assert_close(x.grad, num_grad(lambda a: ref(a, ry, {"beta": 0.5}).mean(), rx), dtype, rtol=tol, atol=tol * 0.1)


# ---- gradcheck (float64, cpu) ------------------------------------------------------------------------------------
def _d(shape, seed=0, low=-2.0, high=2.0):
    return tritorch.tensor(np.random.default_rng(seed).uniform(low, high, shape), dtype=F64, requires_grad=True)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_gradcheck_cross_entropy(reduction):
    x = _d((4, 5, 2))
    t = tritorch.tensor([[1, 4], [0, -100], [3, 3], [2, 0]])
    w = tritorch.tensor([0.5, 1.0, 1.5, 2.0, 0.7], dtype=F64)
    f = lambda a: F.cross_entropy(a, t, weight=w, reduction=reduction, label_smoothing=0.2)  # noqa: E731
    assert gradcheck(f, (x,))
    assert gradgradcheck(f, (x,))


def test_gradcheck_cross_entropy_probabilities():
    x = _d((3, 6))
    p = _d((3, 6), seed=1, low=0.0, high=1.0)
    w = tritorch.tensor(np.linspace(0.5, 2, 6), dtype=F64)
    f = lambda a, b: F.cross_entropy(a, b, weight=w, label_smoothing=0.1)  # noqa: E731
    assert gradcheck(f, (x, p))
    assert gradgradcheck(f, (x, p))


def test_gradcheck_nll():
    x = _d((4, 3))
    t = tritorch.tensor([2, 0, -100, 1])
    f = lambda a: F.nll_loss(a, t, weight=tritorch.tensor([1.0, 2.0, 0.5], dtype=F64), reduction="sum")  # noqa
    assert gradcheck(f, (x,))
    assert gradgradcheck(f, (x,))


@pytest.mark.parametrize("name,kw", POINTWISE_CASES, ids=lambda v: v if isinstance(v, str) else
                         "-".join(v) if v else "")
def test_gradcheck_pointwise(name, kw):
    shape = (2, 3)
    if name == "bce":
        x, y = _d(shape, 0, 0.1, 0.9), _d(shape, 1, 0.0, 1.0)
    elif name == "kl_div":
        x, y = _d(shape, 0, -3, 0), _d(shape, 1, 0.1, 1.0)
    else:
        x, y = _d(shape, 0), _d(shape, 1)
    kw = _pointwise_kw(name, kw, shape, "cpu")
    for k in ("weight_t", "pos_weight_t"):
        if k in kw:
            kw[k] = kw[k].to(F64)

    def f(a, b):
        return POINTWISE_FN[name](a, b, "sum", kw)
    assert gradcheck(f, (x, y))
    assert gradgradcheck(f, (x, y))


# ---- modules -----------------------------------------------------------------------------------------------------
def test_modules(device):
    x, rx = make((4, 5), F32, device)
    t = np.array([4, 0, 2, 1])
    tt = tritorch.tensor(t, device=device)
    w = tritorch.tensor([1.0, 2.0, 0.5, 1.0, 3.0], device=device)
    m = nn.CrossEntropyLoss(weight=w, label_smoothing=0.1, reduction="sum")
    assert "weight" in m.state_dict() and repr(m) == "CrossEntropyLoss()"
    assert_close(m(x, tt), ref_cross_entropy(rx, t, to_np(w), eps=0.1, reduction="sum"), F32, rtol=1e-5)
    assert_close(nn.NLLLoss(ignore_index=0)(x, tt), ref_nll(rx, t, ignore_index=0), F32, rtol=1e-5)
    y, ry = make((4, 5), F32, device, seed=1)
    assert_close(nn.MSELoss()(x, y), ((rx - ry) ** 2).mean(), F32, rtol=1e-5)
    assert_close(nn.L1Loss(reduction="sum")(x, y), np.abs(rx - ry).sum(), F32, rtol=1e-5)
    assert_close(nn.SmoothL1Loss(beta=0.5)(x, y), POINTWISE_REF["smooth_l1"](rx, ry, {"beta": 0.5}).mean(), F32,
                 rtol=1e-5)
    assert_close(nn.HuberLoss(delta=0.5)(x, y), POINTWISE_REF["huber"](rx, ry, {"delta": 0.5}).mean(), F32,
                 rtol=1e-5)
    p = tritorch.sigmoid(x)
    q = tritorch.sigmoid(y)
    assert_close(nn.BCELoss()(p, q), POINTWISE_REF["bce"](to_np(p), to_np(q), {}).mean(), F32, rtol=1e-5)
    pw = tritorch.tensor([1.0, 2.0, 3.0, 0.5, 1.0], device=device)
    m = nn.BCEWithLogitsLoss(pos_weight=pw)
    assert set(m.state_dict()) == {"pos_weight"}
    assert_close(m(x, q), POINTWISE_REF["bce_logits"](rx, to_np(q), {"pos_weight": to_np(pw)}).mean(), F32,
                 rtol=1e-5)
    assert_close(nn.KLDivLoss(reduction="batchmean", log_target=True)(x, y),
                 POINTWISE_REF["kl_div"](rx, ry, {"log_target": True}).sum() / 4, F32, rtol=1e-5)


def test_legacy_size_average_reduce():
    x, rx = make((3, 4), F32)
    y, ry = make((3, 4), F32, seed=1)
    with pytest.warns(UserWarning, match="reduction='sum'"):
        m = nn.MSELoss(size_average=False)
    assert m.reduction == "sum"
    with pytest.warns(UserWarning):
        assert F.l1_loss(x, y, reduce=False).shape == (3, 4)


def test_training_step_reduces_loss(device):
    tritorch.manual_seed(0)
    model = nn.Linear(6, 3).to(device)
    x, _ = make((8, 6), F32, device)
    t = tritorch.tensor([0, 1, 2, 0, 1, 2, 0, 1], device=device)
    losses = []
    for _ in range(2):
        model.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), t)
        loss.backward()
        with tritorch.no_grad():
            for prm in model.parameters():
                prm -= 0.5 * prm.grad
        losses.append(loss.item())
    assert losses[1] < losses[0]


# ---- errors ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, 7, None])
def test_target_check_spans_blocks_and_skips_ignored(device, bad):
    """Targets over several blocks of the range check (nll_loss: one launch of the range kernel; cross_entropy: the
    numbers its loss kernel writes, no launch of their own), ignore_index (-100 or any value) left out of the range;
    a bad target in the last block is found."""
    rng = np.random.default_rng(0)
    t = rng.integers(0, 7, 9000)
    t[::5] = -100
    t[8999] = 3 if bad is None else bad
    x = tritorch.zeros((9000, 7), device=device)
    tt = tritorch.tensor(t, device=device)
    with profile() as prof:
        if bad is None:
            F.cross_entropy(x, tt)
            F.nll_loss(x, tritorch.where(tt == -100, 99, tt), ignore_index=99)
        else:
            with pytest.raises(IndexError, match=f"^Target {bad} is out of bounds.$"):
                F.cross_entropy(x, tt)
    if device == "cuda":
        assert prof.kernel_launches("_index_range_kernel") == (1 if bad is None else 0)
        assert prof.kernel_launches("_ce_fwd_kernel") == 1



    x, _ = make((3, 5), F32, device)
    t = tritorch.tensor([0, 1, 2], device=device)
    with pytest.raises(RuntimeError, match="expected scalar type Long but found Float"):
        F.cross_entropy(x, tritorch.tensor([0.0, 1.0, 2.0], device=device))
    with pytest.raises(RuntimeError, match="expected scalar type Long but found Int"):
        F.nll_loss(x, t.to(tritorch.int32))
    with pytest.raises(IndexError, match="Target 5 is out of bounds"):
        F.cross_entropy(x, tritorch.tensor([0, 5, 1], device=device))
    with pytest.raises(IndexError, match="Target -1 is out of bounds"):
        F.nll_loss(x, tritorch.tensor([0, -1, 1], device=device))
    with pytest.raises(ValueError, match=r"Expected input batch_size \(3\) to match target batch_size \(2\)"):
        F.cross_entropy(x, tritorch.tensor([0, 1], device=device))
    with pytest.raises(RuntimeError, match=r"Expected target size \[3, 4\], got \[3, 2\]"):
        F.cross_entropy(make((3, 5, 4), F32, device)[0], tritorch.zeros(3, 2, dtype=tritorch.int64, device=device))
    with pytest.raises(RuntimeError, match=r"weight tensor should be defined either for all 5 classes or no classes "
                                           r"but got weight tensor of shape: \[4\]"):
        F.cross_entropy(x, t, weight=tritorch.ones(4, device=device))
    with pytest.raises(RuntimeError, match="label_smoothing must be between 0.0 and 1.0. Got: 1.5"):
        F.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="foo is not a valid value for reduction"):
        F.cross_entropy(x, t, reduction="foo")
    with pytest.raises(RuntimeError, match="Expected floating point type for target with class probabilities, "
                                           "got Long"):
        F.cross_entropy(x, tritorch.zeros(3, 5, dtype=tritorch.int64, device=device))
    with pytest.raises(RuntimeError, match="floating point input"):
        F.cross_entropy(t, t)
    with pytest.raises(RuntimeError, match=r"size mismatch \(got input: \[5\], target: \[3\]\)"):
        F.nll_loss(make((5,), F32, device)[0], t)
    with pytest.raises(RuntimeError, match="0D or 1D target tensor expected, multi-target not supported"):
        F.nll_loss(x, tritorch.zeros(3, 2, dtype=tritorch.int64, device=device))


def test_errors_pointwise(device):
    x, _ = make((3, 4), F32, device)
    with pytest.raises(RuntimeError, match="all elements of input should be between 0 and 1"):
        F.binary_cross_entropy(x, tritorch.sigmoid(x))
    with pytest.raises(ValueError, match=r"Using a target size \(\[3\]\) that is different to the input size "
                                         r"\(\[3, 4\]\) is deprecated"):
        F.binary_cross_entropy(tritorch.sigmoid(x), tritorch.ones(3, device=device))
    with pytest.raises(ValueError, match=r"Target size \(\[3, 1\]\) must be the same as input size \(\[3, 4\]\)"):
        F.binary_cross_entropy_with_logits(x, tritorch.ones(3, 1, device=device))
    with pytest.raises(RuntimeError, match="smooth_l1_loss does not support negative values for beta"):
        F.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(RuntimeError, match="huber_loss does not support non-positive values for delta"):
        F.huber_loss(x, x, delta=0.0)
    with pytest.raises(RuntimeError, match=r"\[3, 4\].*\[5\]"), pytest.warns(UserWarning):
        F.mse_loss(x, tritorch.ones(5, device=device))
    with pytest.raises(ValueError, match="bar is not a valid value for reduction"):
        F.kl_div(x, x, reduction="bar")
    with pytest.raises(TypeError, match="must be Tensor"):
        F.l1_loss(x, 1.0)


def test_error_device_mismatch():
    x = tritorch.zeros(2, 3)
    with pytest.raises(RuntimeError, match="same device"):
        F.cross_entropy(x, tritorch.tensor([0, 1], device="cuda"))


@pytest.mark.parametrize("which", ["ce", "ce_prob", "nll", "bce_logits", "huber"])
def test_create_graph_gradient_matches_fused(device, which):
    # with create_graph=True the backward runs in differentiable tensor ops: it must equal the fused kernels
    x, _ = make((4, 5), F32, device, requires_grad=True)
    t = tritorch.tensor([1, -100, 3, 1], device=device)
    w = tritorch.tensor([0.5, 0.0, 1.5, 2.0, 0.7], device=device)      # a valid target of weight 0 (class 1)
    p, _ = make((4, 5), F32, device, low=0, high=1, seed=2)
    fns = {"ce": lambda: F.cross_entropy(x, t, weight=w, label_smoothing=0.3),
           "ce_prob": lambda: F.cross_entropy(x, p, weight=w, label_smoothing=0.3),
           "nll": lambda: F.nll_loss(x, t, weight=w, reduction="sum"),
           "bce_logits": lambda: F.binary_cross_entropy_with_logits(x, p),
           "huber": lambda: F.huber_loss(x, p, delta=0.3)}
    (fused,) = tritorch.autograd.grad(fns[which](), x)
    (composite,) = tritorch.autograd.grad(fns[which](), x, create_graph=True)
    assert composite.requires_grad or which == "nll"        # nll's gradient is constant in x
    assert_close(composite, to_np(fused), F32, rtol=1e-5, atol=1e-7)


# ---- differential-fuzzer regressions (PyTorch 2.14 as the oracle) --------------------------------------------------

@pytest.mark.parametrize("reduction, expect", [("sum", 2.203125), ("mean", 1.4453125), ("none", [2.203125])])
def test_nll_loss_bf16_weight(device, reduction, expect):
    """A weight converted for the interpreter (a temporary) stays alive through the launch."""
    bf = tritorch.bfloat16
    out = F.nll_loss(tritorch.tensor([[-1.4453125]], dtype=bf, device=device), tritorch.tensor([0], device=device),
                     weight=tritorch.tensor([1.5234375], dtype=bf, device=device), reduction=reduction)
    assert out.tolist() == expect


def test_binary_cross_entropy_checks_target_range(device):
    x = tritorch.tensor([0.5, 0.2], device=device)
    for bad in (-float("inf"), 2.0, float("nan"), -0.1):
        with pytest.raises(RuntimeError, match="all elements of target should be between 0 and 1"):
            F.binary_cross_entropy(x, tritorch.tensor([bad, 0.5], device=device))
    with pytest.raises(RuntimeError, match="all elements of input should be between 0 and 1"):
        F.binary_cross_entropy(tritorch.tensor([float("nan"), 0.2], device=device),
                               tritorch.tensor([0., 1.], device=device))


def test_cross_entropy_infinite_logits(device):
    """A +inf logit makes its row's log-softmax (and so loss and gradient) NaN, as PyTorch; a -inf logit with a
    positive target weight (label smoothing, probabilities) makes the loss +inf, not NaN."""
    inf = float("inf")
    x = tritorch.tensor([[inf, 1., 2.], [0., 1., 2.]], device=device, requires_grad=True)
    F.cross_entropy(x, tritorch.tensor([0, 1], device=device), label_smoothing=0.1).backward()
    g = to_np(x.grad)
    assert np.isnan(g[0]).all() and np.isfinite(g[1]).all()
    x = tritorch.tensor([[inf, inf, 1.]], device=device)
    assert np.isnan(F.cross_entropy(x, tritorch.tensor([2], device=device)).item())
    x = tritorch.tensor([[-inf, 1., 2.]], device=device)
    assert F.cross_entropy(x, tritorch.tensor([1], device=device), label_smoothing=0.1).item() == inf
    p = tritorch.tensor([[0.2, 0.3, 0.5]], device=device)
    for dt in (tritorch.float32, tritorch.bfloat16):
        assert F.cross_entropy(x.to(dt), p.to(dt)).item() == inf


def test_bce_with_logits_near_float_max(device):
    """(1 - y) * x, not x - x * y, which overflows for x near the float max."""
    x = tritorch.tensor([1.7976931348623157e+308], dtype=tritorch.float64, device=device)
    y = tritorch.tensor([1.7572192927707135], dtype=tritorch.float64, device=device)
    out = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(to_np(out), [-1.3612479241992096e+308], rtol=1e-12)



def _smooth_l1_grads(x_grad, y_grad):
    """smooth_l1 (beta 0.5, reduction 'none') backward on interpreted cuda with a transposed input: the gradients
    (None where not required) and the pointwise-kernel launches of the backward."""
    x, _, y, _ = _pointwise_inputs("smooth_l1", (5, 33), "cuda", "transposed")
    x.requires_grad_(x_grad)
    y.requires_grad_(y_grad)
    out = F.smooth_l1_loss(x, y, reduction="none", beta=0.5)
    g = tritorch.tensor(upstream((5, 33)), dtype=F32, device="cuda")
    with profile() as prof:
        out.backward(g)
    return [None if t.grad is None else to_np(t.grad) for t in (x, y)], prof.kernel_launches("_pointwise_kernel")


def test_pointwise_backward_both_gradients_in_one_launch():
    """With input and target both requiring grad, one launch of the pointwise kernel computes both gradients (one
    read of g, x and y), equal to those computed one at a time."""
    (dx, dy), launches = _smooth_l1_grads(True, True)
    (dx1, none_y), launches_x = _smooth_l1_grads(True, False)
    (none_x, dy1), launches_y = _smooth_l1_grads(False, True)
    assert launches == launches_x == launches_y == 1
    assert none_x is None and none_y is None
    np.testing.assert_array_equal(dx, dx1)
    np.testing.assert_array_equal(dy, dy1)


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16, tritorch.bfloat16, tritorch.float64])
@pytest.mark.parametrize("case", ["plain", "weight, ignore_index and smoothing", "spatial"])
def test_cross_entropy_mean_backward_is_one_launch(device, dtype, case):
    """'mean' cross-entropy with class indices is one node whose backward divides by the summed weights inside
    ``_ce_bwd_kernel``: equal, bit for bit, to the per-row node followed by the weighted mean's (a launch more)."""
    shape, tshape = ((6, 5, 3), (6, 3)) if case == "spatial" else ((7, 5), (7,))
    x, _ = make(shape, dtype, device, seed=1, requires_grad=True)
    t = tritorch.tensor(np.random.default_rng(2).integers(0, 5, tshape), device=device)
    kw = dict(weight=tritorch.tensor([0.5, 1.0, 1.5, 2.0, 0.7], dtype=dtype, device=device), ignore_index=3,
              label_smoothing=0.1) if case != "plain" else {}
    g = tritorch.tensor(1.5, dtype=dtype, device=device)
    loss = F.cross_entropy(x, t, **kw)
    with profile() as prof:
        gx, = tritorch.autograd.grad(loss, (x,), g)
    w = kw.get("weight")
    rows, wt = L.CrossEntropyRows.apply(x, t, w, kw.get("ignore_index", -100), kw.get("label_smoothing", 0.0))
    ref = L.WeightedMean.apply(rows, wt)
    ref = ref if ref.dtype is dtype else ref.to(dtype)
    np.testing.assert_array_equal(to_np(loss), to_np(ref))
    np.testing.assert_array_equal(to_np(gx), to_np(tritorch.autograd.grad(ref, (x,), g)[0]))
    if device == "cuda":
        assert [e.name for e in prof.events() if e.kind == "kernel"][-1:] == ["_ce_bwd_kernel"]
        assert sum(e.kind == "kernel" for e in prof.events()) == (1 if dtype in (tritorch.float32, F64) else 2)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("xshape, tshape, one_program", [
    ((32, 10), (32,), True),            # MNIST's batch: 32 rows of 16 (padded) classes, one program on a GPU
    ((6, 5, 3), (6, 3), True),          # spatial targets
    ((1, 5000), (1,), True),            # one row of classes streamed in blocks
    ((300, 37), (300,), False)])        # 512 x 64 is more than one program holds: per-row losses, then the mean
@pytest.mark.parametrize("case", ["plain", "weight, ignore_index and smoothing"])
def test_cross_entropy_mean_forward_in_one_launch(dtype, xshape, tshape, one_program, case):
    """'mean' cross-entropy whose rows one program holds takes the mean in ``_ce_fwd_kernel`` (no per-row losses
    stored, no ``_weighted_mean_kernel``): the loss and the gradient equal float64's, as with the two launches."""
    C = xshape[1]
    x, rx = make(xshape, dtype, "cuda", low=-3, high=3, seed=3, requires_grad=True)
    t = _targets(tshape, C, seed=4)
    weighted = case != "plain"
    w = np.random.default_rng(5).uniform(0.5, 2.0, C) if weighted else None
    kw = dict(weight=tritorch.tensor(w, dtype=dtype, device="cuda"), label_smoothing=0.1) if weighted else {}
    with profile() as prof:
        loss = F.cross_entropy(x, tritorch.tensor(t, device="cuda"), **kw)
    names = [e.name for e in prof.events() if e.kind == "kernel"]
    assert names.count("_ce_fwd_kernel") == 1 and names.count("_weighted_mean_kernel") == (not one_program)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype is F64 else dict(rtol=1e-5, atol=1e-6)
    expected = ref_cross_entropy(rx, t, w, eps=0.1 if weighted else 0.0)
    assert loss.shape == () and loss.dtype is dtype
    assert_close(loss, np.asarray(expected), **tol)
    loss.backward()
    dx = num_grad(lambda a: ref_cross_entropy(a, t, w, eps=0.1 if weighted else 0.0), rx)
    assert_close(x.grad, dx, **(dict(rtol=1e-6, atol=1e-8) if dtype is F64 else dict(rtol=1e-4, atol=1e-6)))


def test_cross_entropy_mean_in_one_launch_of_ignored_rows_is_nan():
    """Every target ignored: the one program's mean is 0 / 0 = NaN, as the two launches' (and PyTorch's)."""
    x = tritorch.randn(4, 3, device="cuda", requires_grad=True)
    loss = F.cross_entropy(x, tritorch.full((4,), -100, dtype=tritorch.int64, device="cuda"))
    assert np.isnan(to_np(loss))


@pytest.mark.parametrize("dtype", [F32, tritorch.float16, tritorch.bfloat16, F64])
@pytest.mark.parametrize("case", ["plain", "weight and ignore_index", "spatial", "1100 rows"])
def test_nll_loss_mean_is_one_node(device, dtype, case):
    """'mean' nll_loss is one node: forward takes the mean in ``_nll_fwd_kernel`` where one program holds every row
    (1024), backward divides by the summed weights inside ``_nll_bwd_kernel``: equal, bit for bit, to the per-row
    node followed by the weighted mean's, with a launch fewer each way (1100 rows: the mean's own kernel forward)."""
    shape, tshape = {"spatial": ((6, 5, 3), (6, 3)), "1100 rows": ((1100, 5), (1100,))}.get(case, ((7, 5), (7,)))
    x, _ = make(shape, dtype, device, seed=1, requires_grad=True)
    t = tritorch.tensor(np.random.default_rng(2).integers(0, 5, tshape), device=device)
    kw = dict(weight=tritorch.tensor([0.5, 1.0, 1.5, 2.0, 0.7], dtype=dtype, device=device), ignore_index=3) \
        if case == "weight and ignore_index" else {}
    g = tritorch.tensor(1.5, dtype=dtype, device=device)
    with profile() as fwd:
        loss = F.nll_loss(x, t, **kw)
    with profile() as bwd:
        gx, = tritorch.autograd.grad(loss, (x,), g)
    rows, wt = L.NllRows.apply(x, t, kw.get("weight"), kw.get("ignore_index", -100))
    ref = L.WeightedMean.apply(rows, wt)
    ref = ref if ref.dtype is dtype else ref.to(dtype)
    assert loss.dtype is dtype and loss.shape == ()
    np.testing.assert_array_equal(to_np(loss), to_np(ref))
    np.testing.assert_array_equal(to_np(gx), to_np(tritorch.autograd.grad(ref, (x,), g)[0]))
    if device == "cuda":
        names = [e.name for e in fwd.events() + bwd.events() if e.kind == "kernel"]
        assert names.count("_nll_fwd_kernel") == names.count("_nll_bwd_kernel") == 1
        assert names.count("_weighted_mean_kernel") == (case == "1100 rows")
        if dtype in (F32, F64):             # (half types: the casts of the float32 mean and of its gradient)
            assert "_pointwise_kernel" not in names
