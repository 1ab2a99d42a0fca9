"""The fused linear (matmul + bias + activation epilogue), its backward, ``nn.Linear`` and ``nn.Bilinear``: against
float64 NumPy oracles on cpu and cuda (interpreter), odd sizes, 3-D and strided inputs, gradcheck, bad inputs."""
import math

import numpy as np
import pytest

import tritorch
from tritorch import nn
from tritorch.autograd import gradcheck, gradgradcheck
from tritorch.kernels import linear as KL
from tritorch.profiler import profile
from helpers import assert_close, make, to_np

F32, F64 = tritorch.float32, tritorch.float64
_erf = np.vectorize(math.erf)
_SQ = math.sqrt(2 / math.pi)


def _sig(z):
    return 1 / (1 + np.exp(-z))


# float64 oracles: activation and its derivative, written independently of the kernels' references
ORACLE = {
    None: (lambda z: z, lambda z: np.ones_like(z)),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z), lambda z: np.where(z > 0, 1.0, 0.01)),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(z)), lambda z: np.where(z > 0, 1.0, np.exp(z))),
    "gelu": (lambda z: 0.5 * z * (1 + _erf(z / math.sqrt(2))),
             lambda z: 0.5 * (1 + _erf(z / math.sqrt(2))) + z * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)),
    "gelu_tanh": (lambda z: 0.5 * z * (1 + np.tanh(_SQ * (z + 0.044715 * z ** 3))),
                  lambda z: 0.5 * (1 + np.tanh(_SQ * (z + 0.044715 * z ** 3)))
                  + 0.5 * z * (1 - np.tanh(_SQ * (z + 0.044715 * z ** 3)) ** 2) * _SQ * (1 + 3 * 0.044715 * z * z)),
    "silu": (lambda z: z * _sig(z), lambda z: _sig(z) * (1 + z * (1 - _sig(z)))),
    "sigmoid": (_sig, lambda z: _sig(z) * (1 - _sig(z))),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
}
ACTS = list(ORACLE)


def _tol(dtype, k):
    if dtype is F64:
        return 1e-10, 1e-12 * max(k, 1)
    if dtype is F32:
        return 2e-5, 4e-7 * max(k, 1)
    if dtype is tritorch.float16:
        return 2e-3, 4e-3
    return 1.6e-2, 3e-2


def _close(out, ref, dtype, k, scale=1.0):
    r, a = _tol(dtype, k)
    assert_close(out, ref, dtype, rtol=r, atol=a * scale)


def _ref(x, w, b, act, g=None):
    """float64 forward and, with an upstream grad g, (gx, gw, gb) of act(x @ w.T + b) over the last dim."""
    x2 = x.reshape(int(np.prod(x.shape[:-1])), x.shape[-1])
    z = x2 @ w.T + (0 if b is None else b)
    f, df = ORACLE[act]
    y = f(z).reshape(x.shape[:-1] + (w.shape[0],))
    if g is None:
        return y
    gz = g.reshape(z.shape) * df(z)
    return y, (gz @ w).reshape(x.shape), gz.T @ x2, gz.sum(0)


def _grads(device, dtype, xshape, n, act, bias=True, xlayout="contiguous", wlayout="contiguous", seed=0,
           glayout="contiguous"):
    k = xshape[-1]
    x, rx = make(xshape, dtype, device, xlayout, seed=seed, low=-1.5, high=1.5, requires_grad=True)
    if wlayout == "transposed":
        w0, _ = make((k, n), dtype, device, seed=seed + 1, low=-0.5, high=0.5)
        w = w0.t().detach().requires_grad_(True)
    else:
        w, _ = make((n, k), dtype, device, wlayout, seed=seed + 1, low=-0.5, high=0.5, requires_grad=True)
    rw = to_np(w)
    b, rb = make((n,), dtype, device, seed=seed + 2, requires_grad=True) if bias else (None, None)
    y = KL.linear(x, w, b, activation=act)
    g, rg = make(y.shape, dtype, device, glayout, seed=seed + 3)
    y.backward(g)
    return (x, w, b, y), (rx, rw, rb, rg)


# ---- forward and backward against float64 -------------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
def test_each_epilogue_odd_sizes(device, act):
    (x, w, b, y), (rx, rw, rb, rg) = _grads(device, F32, (5, 19), 23, act)
    ry, gx, gw, gb = _ref(rx, rw, rb, act, rg)
    assert y.shape == (5, 23) and y.dtype is F32 and y.device.type == device
    _close(y, ry, F32, 19)
    _close(x.grad, gx, F32, 23)
    _close(w.grad, gw, F32, 5)
    _close(b.grad, gb, F32, 5)


@pytest.mark.parametrize("act", [None, "relu", "gelu"])
def test_no_bias(device, act):
    (x, w, b, y), (rx, rw, rb, rg) = _grads(device, F32, (7, 18), 17, act, bias=False, seed=4)
    ry, gx, gw, _ = _ref(rx, rw, None, act, rg)
    _close(y, ry, F32, 18)
    _close(x.grad, gx, F32, 17)
    _close(w.grad, gw, F32, 7)
    assert y.grad_fn.name() == ("MmBackward0" if act is None else "AddmmActivationBackward0")


@pytest.mark.parametrize("act", [None, "silu"])
def test_3d_input_and_many_rows(device, act):
    # 2*19 = 38 rows: more than one row tile, and more than one partial-sum row in the fused bias gradient
    (x, w, b, y), (rx, rw, rb, rg) = _grads(device, F32, (2, 19, 21), 20, act, seed=7)
    ry, gx, gw, gb = _ref(rx, rw, rb, act, rg)
    assert y.shape == (2, 19, 20)
    _close(y, ry, F32, 21)
    _close(x.grad, gx, F32, 20)
    _close(w.grad, gw, F32, 38)
    _close(b.grad, gb, F32, 38)


@pytest.mark.parametrize("xl,wl,gl", [("transposed", "contiguous", "strided"), ("strided", "transposed", "contiguous"),
                                      ("contiguous", "strided", "transposed")])
def test_strided_operands(device, xl, wl, gl):
    (x, w, b, y), (rx, rw, rb, rg) = _grads(device, F32, (6, 17), 9, "tanh", xlayout=xl, wlayout=wl, seed=11,
                                            glayout=gl)
    ry, gx, gw, gb = _ref(rx, rw, rb, "tanh", rg)
    _close(y, ry, F32, 17)
    _close(x.grad, gx, F32, 9)
    _close(w.grad, gw, F32, 6)
    _close(b.grad, gb, F32, 6)


def test_permuted_3d_input(device):
    x, rx = make((4, 3, 18), F32, device, "transposed", seed=12)      # a (18, 3, 4) view: not foldable
    x = x.permute(2, 1, 0)
    rx = rx.transpose(2, 1, 0)
    w, rw = make((5, 4), F32, device, seed=13)
    _close(KL.linear(x, w), _ref(rx, rw, None, None), F32, 4)


@pytest.mark.parametrize("need", ["xwb", "x", "w", "wb", "xb", "b"])
@pytest.mark.parametrize("dtype", [F32, tritorch.float16])
def test_backward_is_one_launch(need, dtype):
    """grad_x, grad_W and grad_b come from one ``_linear_grad_kernel`` launch (the bias without grad_W: one
    reduction more), each against float64, with several tiles in every direction of both products (interpreter
    tiles of 32) and outputs poisoned (TRITORCH_POISON) until written."""
    M, K, N = 70, 37, 45
    x, rx = make((M, K), dtype, "cuda", "transposed", seed=20, low=-1.5, high=1.5, requires_grad="x" in need)
    w, rw = make((N, K), dtype, "cuda", seed=21, low=-0.5, high=0.5, requires_grad="w" in need)
    b, rb = make((N,), dtype, "cuda", seed=22, requires_grad="b" in need)
    y = KL.linear(x, w, b, activation="relu")
    g, rg = make(y.shape, dtype, "cuda", "strided", seed=23)
    with profile() as prof:
        y.backward(g)
    _, gx, gw, gb = _ref(rx, rw, rb, "relu", rg)
    n_products = prof.kernel_launches("_matmul_kernel") + prof.kernel_launches("_linear_grad_kernel")
    assert n_products == (0 if need == "b" else 1) and prof.kernel_launches("_matmul_kernel") == 0
    reductions = prof.kernel_launches("_reduce_rows_kernel") + prof.kernel_launches("_reduce_mid_kernel")
    assert reductions == (1 if "b" in need and "w" not in need else 0)
    for t, ref, k in ((x, gx, N), (w, gw, M), (b, gb, M)):
        if t.requires_grad:
            _close(t.grad, ref, dtype, k, scale=2)
        else:
            assert t.grad is None


@pytest.mark.parametrize("dtype", [tritorch.float64, tritorch.float16, tritorch.bfloat16])
def test_dtypes(device, dtype):
    (x, w, b, y), (rx, rw, rb, rg) = _grads(device, dtype, (5, 19), 23, "gelu", seed=3)
    ry, gx, gw, gb = _ref(rx, rw, rb, "gelu", rg)
    assert y.dtype is dtype and x.grad.dtype is dtype and b.grad.dtype is dtype
    _close(y, ry, dtype, 19)
    _close(x.grad, gx, dtype, 23)
    _close(w.grad, gw, dtype, 5, scale=2)
    _close(b.grad, gb, dtype, 5, scale=2)


def test_activation_parameter(device):
    x, rx = make((5, 16), F32, device, seed=5)
    w, rw = make((6, 16), F32, device, seed=6)
    z = rx @ rw.T
    _close(KL.linear(x, w, activation="leaky_relu", alpha=0.2), np.where(z > 0, z, 0.2 * z), F32, 16)
    _close(KL.linear(x, w, activation="elu", alpha=0.5), np.where(z > 0, z, 0.5 * np.expm1(z)), F32, 16)


def test_vector_input_weight_and_scalar_bias(device):
    x, rx = make((19,), F32, device, seed=1)
    w, rw = make((7, 19), F32, device, seed=2)
    b, rb = make((), F32, device, seed=3, requires_grad=True)
    y = KL.linear(x, w, b)
    assert y.shape == (7,)
    _close(y, rw @ rx + rb, F32, 19)
    y.sum().backward()
    _close(b.grad, np.array(7.0), F32, 7)
    v, rv = make((19,), F32, device, seed=4, requires_grad=True)        # a 1-D weight: one output, dim dropped
    xs, rxs = make((3, 19), F32, device, seed=5)
    y = KL.linear(xs, v, b.detach())
    assert y.shape == (3,)
    _close(y, rxs @ rv + rb, F32, 19)
    y.sum().backward()
    _close(v.grad, rxs.sum(0), F32, 3)


def test_broadcast_bias_of_other_shape(device):
    x, rx = make((4, 9), F32, device, seed=1, requires_grad=True)
    w, rw = make((5, 9), F32, device, seed=2, requires_grad=True)
    b, rb = make((4, 5), F32, device, seed=3, requires_grad=True)
    y = KL.linear(x, w, b, activation="relu")
    _close(y, np.maximum(rx @ rw.T + rb, 0), F32, 9)
    y.sum().backward()
    _close(b.grad, (rx @ rw.T + rb > 0) * 1.0, F32, 1)


@pytest.mark.parametrize("shape,n", [((0, 7), 5), ((3, 0), 4), ((3, 7), 0), ((1, 1), 1)])
def test_empty_and_unit_sizes(device, shape, n):
    x, rx = make(shape, F32, device, seed=1, requires_grad=True)
    w, rw = make((n, shape[-1]), F32, device, seed=2, requires_grad=True)
    b, rb = make((n,), F32, device, seed=3, requires_grad=True)
    y = KL.linear(x, w, b, activation="silu")
    ry = _ref(rx, rw, rb, "silu")
    _close(y, ry, F32, shape[-1])
    y.backward(tritorch.ones_like(y))
    _, gx, gw, gb = _ref(rx, rw, rb, "silu", np.ones(ry.shape))
    _close(x.grad, gx, F32, n)
    _close(w.grad, gw, F32, shape[0])
    _close(b.grad, gb, F32, shape[0])


def test_no_pre_activation_saved_without_grad(device, monkeypatch):
    calls = []
    real = KL.launch_linear

    def spy(x, w, bias, y, z=None, *args, **kw):
        calls.append(z is not None)
        return real(x, w, bias, y, z, *args, **kw)
    monkeypatch.setattr(KL, "launch_linear", spy)
    x, _ = make((3, 16), F32, device)
    w, _ = make((4, 16), F32, device, requires_grad=True)
    KL.linear(x, w, activation="gelu")                  # gelu differentiates from z: saved
    KL.linear(x, w, activation="relu")                  # relu from y: not saved
    with tritorch.no_grad():
        KL.linear(x, w, activation="gelu")
    assert calls == ([True, False, False] if device == "cuda" else [])


# ---- gradcheck (float64, cpu) ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
def test_gradcheck(act):
    rng = np.random.default_rng(0)
    x = tritorch.tensor(rng.uniform(-1, 1, (3, 4)), dtype=F64, requires_grad=True)
    w = tritorch.tensor(rng.uniform(-1, 1, (5, 4)), dtype=F64, requires_grad=True)
    b = tritorch.tensor(rng.uniform(-1, 1, (5,)), dtype=F64, requires_grad=True)
    assert gradcheck(lambda x, w, b: KL.linear(x, w, b, activation=act), (x, w, b))


@pytest.mark.parametrize("act", [None, "gelu", "tanh"])
def test_gradgradcheck(act):
    rng = np.random.default_rng(1)
    x = tritorch.tensor(rng.uniform(-1, 1, (2, 3)), dtype=F64, requires_grad=True)
    w = tritorch.tensor(rng.uniform(-1, 1, (4, 3)), dtype=F64, requires_grad=True)
    b = tritorch.tensor(rng.uniform(-1, 1, (4,)), dtype=F64, requires_grad=True)
    assert gradgradcheck(lambda x, w, b: KL.linear(x, w, b, activation=act), (x, w, b))


# ---- the residual epilogue ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("act,rl", [(None, "contiguous"), ("gelu", "transposed"), ("relu", "strided")])
def test_residual_epilogue_against_float64(device, act, rl):
    x, rx = make((3, 7, 19), F32, device, seed=21, low=-1.5, high=1.5, requires_grad=True)
    w, rw = make((23, 19), F32, device, seed=22, low=-0.5, high=0.5, requires_grad=True)
    b, rb = make((23,), F32, device, seed=23, requires_grad=True)
    r, rr = make((3, 7, 23), F32, device, rl, seed=24, requires_grad=True)
    y = KL.linear(x, w, b, activation=act, residual=r)
    g, rg = make(y.shape, F32, device, seed=25)
    y.backward(g)
    ry, gx, gw, gb = _ref(rx, rw, rb, act, rg)
    assert y.shape == (3, 7, 23)
    _close(y, ry + rr, F32, 19)
    _close(x.grad, gx, F32, 23)
    _close(w.grad, gw, F32, 21)
    _close(b.grad, gb, F32, 21)
    _close(r.grad, rg, F32, 1)


@pytest.mark.parametrize("dtype", [F32, tritorch.float16, tritorch.bfloat16, F64])
def test_residual_epilogue_equals_the_separate_add(device, dtype):
    """The fused add rounds the activation to the dtype first, as the separate add does: equal bit for bit, and so
    are the gradients (the residual's is the incoming one)."""
    x, _ = make((9, 19), dtype, device, seed=31, requires_grad=True)
    w, _ = make((17, 19), dtype, device, seed=32, low=-0.5, high=0.5, requires_grad=True)
    r, _ = make((9, 17), dtype, device, seed=33, requires_grad=True)
    g, _ = make((9, 17), dtype, device, seed=34)
    fused = KL.linear(x, w, activation="silu", residual=r)
    apart = r + KL.linear(x, w, activation="silu")
    np.testing.assert_array_equal(to_np(fused), to_np(apart))
    for a, c in zip(tritorch.autograd.grad(fused, (x, w, r), g), tritorch.autograd.grad(apart, (x, w, r), g)):
        np.testing.assert_array_equal(to_np(a), to_np(c))


@pytest.mark.parametrize("xshape,wshape,rl", [((2, 3, 7, 19), (23, 19), "transposed"), ((5, 19), (19,), "strided"),
                                                ((19,), (19,), "contiguous"), ((4, 19), (23, 19), "broadcast")])
def test_residual_of_any_rank_and_layout(device, xshape, wshape, rl):
    """A 4-D residual folds to 3-D rows, a 1-D weight's result gets a column, a broadcast residual (stride 0) reads
    the same rows again; the residual's gradient comes back in its own shape."""
    x, rx = make(xshape, F32, device, seed=51)
    w, rw = make(wshape, F32, device, seed=52, low=-0.5, high=0.5)
    out = xshape[:-1] + wshape[:-1]
    r, rr = make(out, F32, device, rl, seed=53, requires_grad=True)
    y = KL.linear(x, w, residual=r)
    _close(y, rx @ rw.T + rr, F32, 19)
    y.backward(tritorch.ones_like(y))
    assert r.grad.shape == r.shape
    _close(r.grad, np.ones(out), F32, 1)


def test_residual_only_needs_grad(device):
    x, _ = make((4, 5), F32, device, seed=41)
    w, _ = make((3, 5), F32, device, seed=42)
    r, rr = make((4, 3), F32, device, seed=43, requires_grad=True)
    KL.linear(x, w, residual=r).sum().backward()
    _close(r.grad, np.ones((4, 3)), F32, 1)


def test_residual_gradcheck():
    rng = np.random.default_rng(2)
    x, w, b, r = (tritorch.tensor(rng.uniform(-1, 1, s), dtype=F64, requires_grad=True)
                  for s in ((3, 4), (5, 4), (5,), (3, 5)))
    assert gradcheck(lambda x, w, b, r: KL.linear(x, w, b, activation="tanh", residual=r), (x, w, b, r))
    assert gradgradcheck(lambda x, w, b, r: KL.linear(x, w, b, activation="tanh", residual=r), (x, w, b, r))


@pytest.mark.parametrize("act", [None, "relu", "silu"])
@pytest.mark.parametrize("dtype", [F32, tritorch.float16, tritorch.bfloat16, F64])
def test_dropout_epilogue_equals_the_separate_dropout(device, dtype, act):
    """linear(..., dropout_p=p) draws the counters the separate dropout would draw and drops the same elements
    (the kernel and the NumPy reference alike): the result and every gradient equal the separate ops bit for bit
    (the activation computed on the unrounded pre-activation, as the fused activation always is)."""
    x, _ = make((9, 19), dtype, device, seed=61, requires_grad=True)
    w, _ = make((17, 19), dtype, device, seed=62, low=-0.5, high=0.5, requires_grad=True)
    b, _ = make((17,), dtype, device, seed=63, requires_grad=True)
    r, _ = make((9, 17), dtype, device, seed=64, requires_grad=True)
    g, _ = make((9, 17), dtype, device, seed=65)
    tritorch.manual_seed(7)
    fused = KL.linear(x, w, b, activation=act, dropout_p=0.3, residual=r)
    after = tritorch.randn(3, device=device)          # the generator moved on as far as the separate ops move it
    tritorch.manual_seed(7)
    apart = r + tritorch.nn.functional.dropout(KL.linear(x, w, b, activation=act), 0.3)
    np.testing.assert_array_equal(to_np(after), to_np(tritorch.randn(3, device=device)))
    np.testing.assert_array_equal(to_np(fused), to_np(apart))
    live = to_np(KL.linear(x, w, b, activation=act)) != 0
    assert 0.5 < (to_np(fused) != to_np(r))[live].mean() < 0.9           # about 1 - p of them kept
    for a, c in zip(tritorch.autograd.grad(fused, (x, w, b, r), g), tritorch.autograd.grad(apart, (x, w, b, r), g)):
        np.testing.assert_array_equal(to_np(a), to_np(c))


@pytest.mark.parametrize("wants", ["x,w,b", "x,w", "w,b", "x,b", "x", "batched"])
@pytest.mark.parametrize("dtype", [F32, tritorch.bfloat16])
def test_dropout_backward_read_by_the_products(device, dtype, wants):
    """Without an activation the backward reads g through the dropout's mask as the products load it (no masked
    copy of g is written and read back): every gradient equals the separate ops' bit for bit, whichever of x, w
    and b want one, for a strided g, and on cuda the whole backward of a 2-D float32 g is one launch when w wants a
    gradient (a batched strided g is copied to rows first; the interpreter converts bf16 operands)."""
    shape = (3, 4, 19) if wants == "batched" else (12, 19)
    names = "x,w,b" if wants == "batched" else wants
    x, _ = make(shape, dtype, device, seed=81, requires_grad="x" in names)
    w, _ = make((17, 19), dtype, device, seed=82, low=-0.5, high=0.5, requires_grad="w" in names)
    b, _ = make((17,), dtype, device, seed=83, requires_grad="b" in names)
    r, _ = make(shape[:-1] + (17,), dtype, device, seed=84)
    g = make(shape[:-1][::-1] + (17,), dtype, device, seed=85)[0].transpose(0, -2)      # a strided gradient
    inputs = [t for t in (x, w, b) if t.requires_grad]
    tritorch.manual_seed(9)
    fused = KL.linear(x, w, b, dropout_p=0.3, residual=r)
    tritorch.manual_seed(9)
    apart = r + tritorch.nn.functional.dropout(KL.linear(x, w, b), 0.3)
    np.testing.assert_array_equal(to_np(fused), to_np(apart))
    with profile() as prof:
        got = tritorch.autograd.grad(fused, inputs, g)
    for a, c in zip(got, tritorch.autograd.grad(apart, inputs, g)):
        assert a.shape == c.shape
        np.testing.assert_array_equal(to_np(a), to_np(c))
    if device == "cuda" and "w" in names and dtype is F32 and wants != "batched":
        assert [e.name for e in prof.events() if e.kind == "kernel"] == ["_linear_grad_kernel"]


def test_dropout_epilogue_differentiates_twice(device):
    """Under create_graph the mask is regenerated by the (differentiable) dropout op: second derivatives equal the
    separate ops'."""
    x, _ = make((5, 7), F64, device, seed=71, requires_grad=True)
    w, _ = make((6, 7), F64, device, seed=72, requires_grad=True)
    res = []
    for fused in (True, False):
        tritorch.manual_seed(5)
        y = KL.linear(x, w, activation="tanh", dropout_p=0.4) if fused else \
            tritorch.nn.functional.dropout(KL.linear(x, w, activation="tanh"), 0.4)
        gx, = tritorch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        res.append([to_np(gx)] + [to_np(t) for t in tritorch.autograd.grad(gx.sum(), (x, w))])
    for a, c in zip(*res):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-14)


def test_dropout_epilogue_bad_inputs(device):
    x, _ = make((3, 5), F32, device)
    w, _ = make((2, 5), F32, device)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        KL.linear(x, w, dropout_p=1.5)
    xi = tritorch.ones((3, 5), dtype=tritorch.int64, device="cpu")
    with pytest.raises(RuntimeError, match="a fused dropout needs a floating-point input, got Long"):
        KL.linear(xi, xi[:2], dropout_p=0.5)
    assert (to_np(KL.linear(x, w, dropout_p=1.0)) == 0).all()


def test_residual_bad_inputs(device):
    x, _ = make((3, 5), F32, device)
    w, _ = make((2, 5), F32, device)
    with pytest.raises(RuntimeError, match=r"residual must have the result's shape \[3, 2\] and dtype Float, got "
                                           r"\[3, 1\] and Float"):
        KL.linear(x, w, residual=make((3, 1), F32, device)[0])
    with pytest.raises(RuntimeError, match=r"got \[3, 2\] and Double"):
        KL.linear(x, w, residual=make((3, 2), F64, device)[0])
    with pytest.raises(TypeError, match=r"argument 'residual' \(position 4\) must be Tensor, not float"):
        KL.linear(x, w, residual=1.0)
    other = "cpu" if device == "cuda" else "cuda"
    with pytest.raises(RuntimeError, match="same device"):
        KL.linear(x, w, residual=make((3, 2), F32, other)[0])


# ---- bad inputs ------------------------------------------------------------------------------------------------------

def test_bad_inputs(device):
    x, _ = make((3, 5), F32, device)
    w, _ = make((2, 4), F32, device)
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(3x5 and 4x2\)"):
        KL.linear(x, w)
    x3, _ = make((2, 3, 5), F32, device)
    with pytest.raises(RuntimeError, match=r"cannot be multiplied \(6x5 and 4x2\)"):
        nn.Linear(4, 2, device=device)(x3)
    with pytest.raises(RuntimeError, match="mat1 and mat2 must have the same dtype, but got Float and Double"):
        KL.linear(x, make((2, 5), F64, device)[0])
    with pytest.raises(RuntimeError, match="self and mat2 must have the same dtype, but got Double and Float"):
        KL.linear(x, make((2, 5), F32, device)[0], make((2,), F64, device)[0])
    with pytest.raises(RuntimeError, match=r"The expanded size of the tensor \(2\) must match the existing size "
                                           r"\(3\)"):
        KL.linear(x, make((2, 5), F32, device)[0], make((3,), F32, device)[0])
    with pytest.raises(RuntimeError, match="need to be at least 1D, but they are 0D and 2D"):
        KL.linear(make((), F32, device)[0], w)
    with pytest.raises(RuntimeError, match="weight should be 1-D or 2-D"):
        KL.linear(x, make((2, 5, 1), F32, device)[0])
    with pytest.raises(TypeError, match=r"argument 'weight' \(position 2\) must be Tensor, not list"):
        KL.linear(x, [[1.0] * 5])
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        KL.linear(x, make((2, 5), F32, device)[0], activation="swish")
    other = "cpu" if device == "cuda" else "cuda"
    with pytest.raises(RuntimeError, match="same device"):
        KL.linear(x, make((2, 5), F32, other)[0])


def test_integer_inputs(device):
    x = tritorch.tensor([[1, 2, 3]], device=device)
    w = tritorch.tensor([[1, 0, 1], [2, 2, 2]], device=device)
    if device == "cpu":
        assert KL.linear(x, w, tritorch.tensor([1, 1])).tolist() == [[5, 13]]
    else:
        with pytest.raises(RuntimeError, match="\"addmm_cuda\" not implemented for 'Long'"):
            KL.linear(x, w)


# ---- nn.Linear, nn.Bilinear, bilinear --------------------------------------------------------------------------------

def test_module_linear_uses_the_fused_kernel(device, monkeypatch):
    calls = []
    real = KL.Linear.apply
    monkeypatch.setattr(KL.Linear, "apply", lambda *a: calls.append(1) or real(*a))
    tritorch.manual_seed(0)
    m = nn.Linear(19, 23, device=device)
    bound = 1 / math.sqrt(19)
    for p in (m.weight, m.bias):
        v = to_np(p)
        assert v.min() >= -bound and v.max() <= bound and v.std() > bound / 4
    x, rx = make((2, 5, 19), F32, device, seed=1)
    y = m(x)
    assert y.shape == (2, 5, 23)
    _close(y, rx @ to_np(m.weight).T + to_np(m.bias), F32, 19)
    assert calls == [1]
    assert m(x[0]).grad_fn.name() == "AddmmBackward0"
    assert repr(m) == "Linear(in_features=19, out_features=23, bias=True)"
    m2 = nn.Linear(4, 3, bias=False, device=device)
    assert m2.bias is None and m2(make((2, 4), F32, device)[0]).shape == (2, 3)


def _bilinear_ref(x1, x2, w, b):
    out = np.einsum("...i,oij,...j->...o", x1, w, x2)
    return out if b is None else out + b


@pytest.mark.parametrize("bias", [True, False])
def test_bilinear(device, bias):
    x1, r1 = make((2, 3, 5), F32, device, seed=1, requires_grad=True)
    x2, r2 = make((2, 3, 4), F32, device, seed=2, requires_grad=True)
    w, rw = make((6, 5, 4), F32, device, seed=3, low=-0.5, high=0.5, requires_grad=True)
    b, rb = make((6,), F32, device, seed=4, requires_grad=True) if bias else (None, None)
    y = tritorch.bilinear(x1, x2, w, b)
    assert y.shape == (2, 3, 6)
    _close(y, _bilinear_ref(r1, r2, rw, rb), F32, 20)
    g, rg = make((2, 3, 6), F32, device, seed=5)
    y.backward(g)
    _close(x1.grad, np.einsum("...o,oij,...j->...i", rg, rw, r2), F32, 24)
    _close(x2.grad, np.einsum("...o,oij,...i->...j", rg, rw, r1), F32, 30)
    _close(w.grad, np.einsum("abo,abi,abj->oij", rg, r1, r2), F32, 6)
    if bias:
        _close(b.grad, rg.sum((0, 1)), F32, 6)


def test_bilinear_gradcheck():
    rng = np.random.default_rng(2)
    t = [tritorch.tensor(rng.uniform(-1, 1, s), dtype=F64, requires_grad=True)
         for s in ((3, 2), (3, 4), (5, 2, 4), (5,))]
    assert gradcheck(tritorch.bilinear, tuple(t))


def test_module_bilinear(device):
    tritorch.manual_seed(1)
    m = nn.Bilinear(5, 4, 6, device=device)
    assert m.weight.shape == (6, 5, 4) and m.bias.shape == (6,)
    bound = 1 / math.sqrt(5)
    assert max(abs(to_np(m.weight)).max(), abs(to_np(m.bias)).max()) <= bound
    x1, r1 = make((3, 5), F32, device, seed=1)
    x2, r2 = make((3, 4), F32, device, seed=2)
    _close(m(x1, x2), _bilinear_ref(r1, r2, to_np(m.weight), to_np(m.bias)), F32, 20)
    assert repr(m) == "Bilinear(in1_features=5, in2_features=4, out_features=6, bias=True)"


def test_bilinear_bad_inputs(device):
    a, _ = make((3, 5), F32, device)
    b, _ = make((3, 4), F32, device)
    w, _ = make((6, 5, 4), F32, device)
    with pytest.raises(RuntimeError, match="input dimensions do not match: got 2 and 3"):
        tritorch.bilinear(a, make((1, 3, 4), F32, device)[0], w)
    with pytest.raises(RuntimeError, match="input batch dimensions do not match: got 3 and 2"):
        tritorch.bilinear(a, make((2, 4), F32, device)[0], w)
    with pytest.raises(RuntimeError, match="input1 size does not match weight size: got 5 but expected 7"):
        tritorch.bilinear(a, b, make((6, 7, 4), F32, device)[0])
    with pytest.raises(RuntimeError, match="input2 size does not match weight size: got 4 but expected 3"):
        tritorch.bilinear(a, b, make((6, 5, 3), F32, device)[0])
    with pytest.raises(RuntimeError, match="bias size does not match weight size: got 2 but expected 6"):
        tritorch.bilinear(a, b, w, make((2,), F32, device)[0])
