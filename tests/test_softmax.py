"""softmax / log_softmax: forward and backward against float64 NumPy on cpu and cuda (interpreter), along every dim,
for rows that fit one block and rows that stream in chunks (longer than 64 in the interpreter), non-contiguous
inputs, 0-d and size-0 tensors, extreme logits and -inf."""
import numpy as np
import pytest

import tritorch
from tritorch.kernels import softmax as SM
from helpers import assert_close, make, to_np

F = tritorch.float32


def ref_softmax(x, dim, log):
    x = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = x - x.max(axis=dim, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=dim, keepdims=True))
        return z - lse if log else np.exp(z - lse)


def ref_grad(y, g, dim, log):
    if log:
        return g - np.exp(y) * g.sum(axis=dim, keepdims=True)
    return y * (g - (g * y).sum(axis=dim, keepdims=True))


def fn(log):
    return tritorch.log_softmax if log else tritorch.softmax


LOG = pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])


@LOG
@pytest.mark.parametrize("shape,dim", [((5, 7), -1), ((4, 6, 5), 0), ((4, 6, 5), 1), ((4, 6, 5), 2),
                                       ((3, 100), 1), ((2, 130, 3), 1), ((70, 3), 0), ((3, 64), 1), ((9,), 0),
                                       ((1, 1), 1)])
def test_forward_dims(device, shape, dim, log):
    x, rx = make(shape, F, device, low=-8, high=8)
    assert_close(fn(log)(x, dim), ref_softmax(rx, dim, log), F, rtol=1e-5, atol=1e-6)


@LOG
@pytest.mark.parametrize("dtype", [tritorch.float16, tritorch.bfloat16, tritorch.float64])
def test_forward_dtypes(device, dtype, log):
    x, rx = make((6, 80), dtype, device, low=-5, high=5)
    out = fn(log)(x, 1)
    assert out.dtype is dtype
    assert_close(out, ref_softmax(rx, 1, log), dtype, atol={tritorch.float16: 2e-3, tritorch.bfloat16: 3e-2,
                                                            tritorch.float64: 1e-12}[dtype])


@LOG
@pytest.mark.parametrize("layout,dim", [("transposed", 0), ("transposed", 1), ("strided", 1), ("strided", 0),
                                        ("broadcast", 1)])
def test_forward_layouts(device, layout, dim, log):
    if layout == "broadcast":
        x, _ = make((1, 90), F, device)
        x = x.expand(5, 90)
        rx = to_np(x)
    else:
        x, rx = make((7, 90), F, device, layout)
    assert_close(fn(log)(x, dim), ref_softmax(rx, dim, log), F, rtol=1e-5, atol=1e-6)


def test_forward_many_dims_permuted(device):
    # outer dims that do not merge: the input is made contiguous first
    base, _ = make((3, 4, 5, 6), F, device)
    x = base.permute(2, 0, 3, 1)
    assert SM._rows(x._shape, 2, x) is None
    for log in (False, True):
        assert_close(fn(log)(x, 2), ref_softmax(to_np(x), 2, log), F, rtol=1e-5, atol=1e-6)


@LOG
def test_zero_dim_and_empty(device, log):
    x = tritorch.tensor(3.5, device=device)
    out = fn(log)(x, 0)
    assert out.shape == () and out.item() == (0.0 if log else 1.0)
    assert fn(log)(x, -1).item() == (0.0 if log else 1.0)
    for shape, dim in (((0, 5), 1), ((3, 0), 1), ((3, 0), 0)):
        e = fn(log)(tritorch.zeros(shape, device=device), dim)
        assert e.shape == shape


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@LOG
@pytest.mark.parametrize("n", [5, 100])
def test_extreme_values(device, n, log):
    inf = float("inf")
    rows = np.zeros((4, n))
    rows[0] = np.linspace(-1e4, 1e4, n)          # huge logits: no overflow
    rows[1] = -inf                               # a row of -inf: NaN, as in PyTorch
    rows[2, ::2] = -inf                          # -inf mixed with finite values
    rows[3] = np.linspace(3e4, 3e4 + 1, n)
    x = tritorch.tensor(rows, dtype=F, device=device)
    out = to_np(fn(log)(x, 1))
    ref = ref_softmax(rows.astype(np.float32), 1, log)
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(out[[0, 2, 3]], ref[[0, 2, 3]], rtol=1e-5, atol=1e-6)
    if not log:
        np.testing.assert_allclose(out[[0, 2, 3]].sum(1), 1.0, rtol=1e-5)


def test_dtype_argument(device):
    x, rx = make((4, 33), tritorch.float16, device)
    out = tritorch.softmax(x, -1, dtype=tritorch.float32)
    assert out.dtype is tritorch.float32
    assert_close(out, ref_softmax(rx, -1, False), F, rtol=1e-5, atol=1e-6)
    xi = tritorch.tensor([[1, 2, 3]], device=device)
    assert_close(tritorch.log_softmax(xi, 1, dtype=tritorch.float64), ref_softmax([[1, 2, 3]], 1, True))
    x.requires_grad_()
    tritorch.softmax(x, -1, dtype=tritorch.float32).sum().backward()
    assert x.grad.dtype is tritorch.float16


def test_errors(device):
    xi = tritorch.tensor([[1, 2, 3]], device=device)
    with pytest.raises(RuntimeError, match="\"softmax_lastdim_kernel_impl\" not implemented for 'Long'"):
        tritorch.softmax(xi, 1)
    with pytest.raises(RuntimeError, match="\"log_softmax_kernel_impl\" not implemented for 'Long'"):
        tritorch.log_softmax(xi, 0)
    x, _ = make((2, 3), F, device)
    with pytest.raises(IndexError, match="Dimension out of range"):
        tritorch.softmax(x, 2)
    with pytest.raises(TypeError):
        tritorch.softmax(x)
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        assert_close(x.softmax(None), ref_softmax(to_np(x), 1, False), F)


# ---- backward -----------------------------------------------------------------------------------------------------

@LOG
@pytest.mark.parametrize("shape,dim,layout", [((5, 7), 1, "contiguous"), ((4, 6, 5), 0, "contiguous"),
                                              ((4, 6, 5), 1, "transposed"), ((3, 100), 1, "contiguous"),
                                              ((2, 130, 3), 1, "contiguous"), ((6, 90), 0, "strided")])
@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float64])
def test_backward(device, shape, dim, layout, log, dtype):
    x, rx = make(shape, dtype, device, layout, low=-4, high=4, requires_grad=True)
    y = fn(log)(x, dim)
    assert y.grad_fn.name() == ("LogSoftmaxBackward0" if log else "SoftmaxBackward0")
    g, rg = make(shape, dtype, device, "transposed", seed=1)
    y.backward(g)
    ry = ref_softmax(rx, dim, log)
    assert_close(x.grad, ref_grad(ry, rg, dim, log), dtype, atol=1e-6 if dtype is F else 1e-12)


@LOG
def test_backward_expanded_grad_and_half(device, log):
    # y.sum() sends back an expanded (stride-0) gradient
    for dtype in (tritorch.float16, tritorch.bfloat16):
        x, rx = make((3, 70), dtype, device, requires_grad=True)
        fn(log)(x, 1).sum().backward()
        ry = ref_softmax(rx, 1, log)
        assert x.grad.dtype is dtype
        assert_close(x.grad, ref_grad(ry, np.ones_like(ry), 1, log), dtype,
                     atol=2e-3 if dtype is tritorch.float16 else 3e-2)


@LOG
def test_double_backward(device, log):
    """create_graph: d/dx sum(v * dL/dx) with L = sum(w * f(x)), against central differences of the float64
    analytic gradient."""
    dt = tritorch.float64
    x, rx = make((3, 6), dt, device, requires_grad=True)
    w, rw = make((3, 6), dt, device, seed=1)
    v, rv = make((3, 6), dt, device, seed=2)
    (gx,) = tritorch.autograd.grad((w * fn(log)(x, 1)).sum(), [x], create_graph=True)
    assert_close(gx, ref_grad(ref_softmax(rx, 1, log), rw, 1, log))
    (v * gx).sum().backward()

    def h(z):
        return (rv * ref_grad(ref_softmax(z, 1, log), rw, 1, log)).sum()
    eps = 1e-6
    fd = np.zeros_like(rx)
    for idx in np.ndindex(rx.shape):
        e = np.zeros_like(rx)
        e[idx] = eps
        fd[idx] = (h(rx + e) - h(rx - e)) / (2 * eps)
    assert_close(x.grad, fd, dt, rtol=1e-6, atol=1e-8)


def test_config():
    for r, n in [(1, 1), (1000, 10), (8192, 8192), (4, 100000)]:
        single, br, bn, nw = SM.softmax_config(r, n)
        assert bn & (bn - 1) == 0 and br & (br - 1) == 0 and (not single or bn >= n)


@pytest.mark.gpu
@LOG
def test_gpu_large(log):
    for dtype, shape in ((tritorch.float16, (64, 8192)), (tritorch.float32, (8, 40000)),
                         (tritorch.bfloat16, (300, 1000))):
        x, rx = make(shape, dtype, "cuda", low=-10, high=10, requires_grad=True)
        y = fn(log)(x, -1)
        assert_close(y, ref_softmax(rx, -1, log), dtype, atol=1e-2 if dtype is tritorch.bfloat16 else 1e-3)
        y.sum().backward()
        assert_close(x.grad, ref_grad(ref_softmax(rx, -1, log), np.ones(shape), -1, log), dtype,
                     atol=3e-2 if dtype is tritorch.bfloat16 else 2e-3)


def test_integer_softmax_empty_or_not_implemented(device):
    """PyTorch: an empty integer input comes back as is; a non-empty one raises NotImplementedError."""
    for fn in (tritorch.softmax, tritorch.log_softmax):
        out = fn(tritorch.empty(2, 0, dtype=tritorch.int64, device=device), -1)
        assert out.shape == (2, 0) and out.dtype is tritorch.int64
        with pytest.raises(NotImplementedError, match="kernel_impl\" not implemented for 'Int'"):
            fn(tritorch.tensor([1, 2], dtype=tritorch.int32, device=device), -1)
