"""Scans (cumsum, cumprod, cummax, cummin, logcumsumexp) against PyTorch: cpu and interpreted cuda, rows of 1, 7 and
1000+ (several chunks with a carry), dim 0 and -1, size 0, 0-d, non-contiguous inputs, NaN and tie rules, dtypes,
in-place forms, errors, backward and gradcheck."""
import warnings

import numpy as np
import pytest

import tritorch
from tritorch.autograd.gradcheck import gradcheck
from helpers import assert_close, make, to_np

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", category=RuntimeWarning)

OPS = ["cumsum", "cumprod", "logcumsumexp", "cummax", "cummin"]
CASES = [((1,), 0), ((7,), -1), ((3, 7), 0), ((3, 7), -1), ((2, 1031), -1), ((1031, 2), 0), ((4, 0), 1),
         ((0, 3), 0), ((), 0)]


def _values(r):
    return r[0] if isinstance(r, tuple) else r


def _torch_op(op, a, dim):
    return getattr(torch, op)(torch.from_numpy(np.array(a, order="C")), dim)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape, dim", CASES)
def test_scan_matches_torch(op, shape, dim, device):
    low, high = (0.9, 1.1) if op == "cumprod" else (-2, 2)
    x, ref = make(shape, tritorch.float32, device, low=low, high=high)
    got = getattr(tritorch, op)(x, dim)
    exp = _torch_op(op, ref.astype(np.float32), dim)
    assert_close(_values(got), to_np(_values(exp)).astype(np.float64), rtol=1e-4, atol=1e-4)
    if op in ("cummax", "cummin"):
        assert got.indices.dtype is tritorch.int64
        np.testing.assert_array_equal(to_np(got.indices), exp.indices.numpy())


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_scan_non_contiguous(op, layout, device):
    x, ref = make((5, 9), tritorch.float64, device, layout, low=0.5, high=1.5)
    for dim in (0, 1):
        got = getattr(tritorch, op)(x, dim)
        exp = _torch_op(op, ref, dim)
        assert_close(_values(got), _values(exp).numpy())


@pytest.mark.parametrize("op", ["cummax", "cummin"])
def test_cummax_nan_and_ties(op, device):
    a = np.array([[1.0, 3, np.nan, 3, np.nan, 2, 5, 5], [2, 2, 1, 1, -1, -1, 0, 9]])
    got = getattr(tritorch, op)(tritorch.tensor(a, device=device), 1)
    exp = _torch_op(op, a, 1)
    np.testing.assert_array_equal(to_np(got.values), exp.values.numpy())
    np.testing.assert_array_equal(to_np(got.indices), exp.indices.numpy())
    ints = np.random.default_rng(1).integers(0, 4, size=(3, 600))       # ties across chunks: the latest index
    got = getattr(tritorch, op)(tritorch.tensor(ints, device=device), 1)
    np.testing.assert_array_equal(to_np(got.indices), _torch_op(op, ints, 1).indices.numpy())
    b = np.array([True, False, True])
    got = getattr(tritorch, op)(tritorch.tensor(b, device=device), 0)
    exp = _torch_op(op, b, 0)
    assert got.values.dtype is tritorch.bool
    np.testing.assert_array_equal(to_np(got.values), exp.values.numpy())
    np.testing.assert_array_equal(to_np(got.indices), exp.indices.numpy())


def test_logcumsumexp_inf_nan(device):
    a = np.array([[-np.inf, -np.inf, 0.0, np.inf, 1.0], [1.0, np.nan, 2.0, -np.inf, 3.0], [800.0, 800.0, -800, 1, 2]])
    got = tritorch.logcumsumexp(tritorch.tensor(a, device=device), 1)
    assert_close(got, _torch_op("logcumsumexp", a, 1).numpy())


@pytest.mark.parametrize("op", ["cumsum", "cumprod"])
def test_cumsum_dtypes(op, device):
    a = np.array([[1, 2, 3], [4, -5, 6]])
    for dt, tdt in [(tritorch.int32, torch.int32), (tritorch.int8, torch.int8), (tritorch.bool, torch.bool),
                    (tritorch.uint8, torch.uint8)]:
        x = tritorch.tensor(a, device=device).to(dt)
        exp = getattr(torch, op)(torch.tensor(a).to(tdt), 1)
        got = getattr(tritorch, op)(x, 1)
        assert got.dtype is tritorch.int64 and exp.dtype is torch.int64
        np.testing.assert_array_equal(to_np(got), exp.numpy())
    got = getattr(tritorch, op)(tritorch.tensor(a, device=device), 0, dtype=tritorch.float16)
    assert got.dtype is tritorch.float16
    assert_close(got, getattr(torch, op)(torch.tensor(a), 0, dtype=torch.float16).double().numpy())
    for dt in (tritorch.float16, tritorch.bfloat16):
        x, ref = make((3, 300), dt, device, low=0.99, high=1.01)
        got = getattr(tritorch, op)(x, 1)
        assert got.dtype is dt
        exp = getattr(torch, op)(torch.tensor(ref, dtype=torch.float32), 1).numpy()
        assert_close(got, exp, rtol=2e-2, atol=5e-2)


def test_scan_methods_and_inplace(device):
    x, ref = make((4, 5), tritorch.float32, device)
    assert_close(x.cumsum(1), np.cumsum(ref, 1), tritorch.float32)
    assert_close(x.cummax(0).values, np.maximum.accumulate(ref, 0), tritorch.float32)
    y = x.clone()
    v = y._version if hasattr(y, "_version") else None
    assert y.cumsum_(0) is y
    assert_close(y, np.cumsum(ref, 0), tritorch.float32)
    if v is not None:
        assert y._version > v
    y = x.clone()
    y.cumprod_(-1)
    assert_close(y, np.cumprod(ref, 1), tritorch.float32)
    with pytest.raises(RuntimeError, match="Bad in-place call"):
        x.clone().cumsum_(0, dtype=tritorch.float64)
    leaf = tritorch.ones(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        leaf.cumsum_(0)
    # in-place on a non-leaf keeps the graph: d/dx of sum(cumprod_(x * 1))
    x64 = tritorch.tensor([2.0, 0.0, 3.0], dtype=tritorch.float64, device=device, requires_grad=True)
    (x64 * 1).cumprod_(0).sum().backward()
    xt = torch.tensor([2.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    torch.cumprod(xt, 0).sum().backward()
    assert_close(x64.grad, xt.grad.numpy())


def test_scan_errors(device):
    x = tritorch.ones(3, device=device)
    for op in OPS:
        with pytest.raises(IndexError, match="Dimension out of range"):
            getattr(tritorch, op)(x, 1)
        with pytest.raises(TypeError):
            getattr(tritorch, op)([1.0, 2.0], 0)
    with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
        tritorch.logcumsumexp(tritorch.tensor([1, 2], device=device), 0)
    assert tritorch.cumsum(tritorch.tensor(3.0, device=device), 0).item() == 3.0
    assert tritorch.cummax(tritorch.tensor(3.0, device=device), -1).indices.item() == 0


@pytest.mark.parametrize("op", OPS)
def test_scan_backward_matches_torch(op, device):
    a = np.array([[1.0, -2, 3, 0.5, 2], [0, 5, -1, 2, 0], [1, 1, 0, 0, 2]])
    g = np.array([[1.0, -2, 0.5, 1, 3], [3, 1, -1, 2, 1], [1, 2, 3, 4, 5]])
    for dim in (0, 1):
        x = tritorch.tensor(a, device=device, requires_grad=True)
        _values(getattr(tritorch, op)(x, dim)).backward(tritorch.tensor(g, device=device))
        xt = torch.tensor(a, requires_grad=True)
        _values(getattr(torch, op)(xt, dim)).backward(torch.tensor(g))
        assert_close(x.grad, xt.grad.numpy(), msg=f"{op} dim={dim}")


@pytest.mark.parametrize("op", OPS)
def test_scan_gradcheck(op):
    rng = np.random.default_rng(3)
    a = rng.uniform(0.5, 1.5, size=(3, 4)) * rng.choice([-1, 1], size=(3, 4))
    if op == "cumprod":
        a[1, 1] = 0.0                       # the zero rule: gradient at and after the first zero
    x = tritorch.tensor(a, dtype=tritorch.float64, requires_grad=True)
    assert gradcheck(lambda t: _values(getattr(tritorch, op)(t, 1)), (x,))
    assert gradcheck(lambda t: _values(getattr(tritorch, op)(t, 0)), (x,))


def test_scan_double_backward():
    x = tritorch.tensor([[0.3, -1.2, 2.0], [1.0, 0.5, -0.4]], dtype=tritorch.float64, requires_grad=True)
    for op in ("cumsum", "logcumsumexp", "cumprod"):
        y = getattr(tritorch, op)(x, 1)
        (gx,) = tritorch.autograd.grad((y * y).sum(), x, create_graph=True)
        (ggx,) = tritorch.autograd.grad(gx.sum(), x)
        xt = torch.tensor(x.detach().numpy(), requires_grad=True)
        yt = getattr(torch, op)(xt, 1)
        (gt,) = torch.autograd.grad((yt * yt).sum(), xt, create_graph=True)
        (ggt,) = torch.autograd.grad(gt.sum(), xt)
        assert_close(ggx, ggt.numpy(), msg=op)


def test_scan_cuda_matches_cpu_long_rows():
    """The chunked kernel against the reference on rows of several chunks, forward and reverse (the backward)."""
    x, _ = make((3, 2100), tritorch.float64, "cuda", requires_grad=True)
    xc = tritorch.tensor(to_np(x), requires_grad=True)
    for op in ("cumsum", "logcumsumexp"):
        g = tritorch.tensor(np.random.default_rng(0).standard_normal((3, 2100)))
        getattr(tritorch, op)(x, 1).backward(g.to("cuda"))
        getattr(tritorch, op)(xc, 1).backward(g)
        assert_close(x.grad, to_np(xc.grad), msg=op)
        x.grad = xc.grad = None
