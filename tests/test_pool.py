"""Pooling (max / avg / adaptive, 1-D and 2-D): forward and backward against float64 loop references."""
import math

import numpy as np
import pytest

import tritorch
from tritorch.nn import pooling as nn
from tritorch.kernels import pool as P
from tests.helpers import assert_close, make, to_np


# ---- float64 references: one Python loop per output element ------------------------------------------------------
def out_size(n, k, p, s, d, ceil):
    num = n + 2 * p - d * (k - 1) - 1
    o = (math.ceil(num / s) if ceil else num // s) + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    return o


def ref_pool(x, mode, k, s, p, d=(1, 1), ceil=False, cip=True, div=None):
    N, C, H, W = x.shape
    OH, OW = out_size(H, k[0], p[0], s[0], d[0], ceil), out_size(W, k[1], p[1], s[1], d[1], ceil)
    y = np.zeros((N, C, OH, OW))
    idx = np.zeros((N, C, OH, OW), np.int64)
    dx_of = []                         # per output: [(h, w, weight)]
    for oh in range(OH):
        for ow in range(OW):
            hs, ws = oh * s[0] - p[0], ow * s[1] - p[1]
            taps = [(hs + i * d[0], ws + j * d[1]) for i in range(k[0]) for j in range(k[1])]
            taps = [(h, w) for h, w in taps if 0 <= h < H and 0 <= w < W]
            if mode == "max":
                vals = np.stack([x[:, :, h, w] for h, w in taps], -1)
                a = np.argmax(vals, -1)
                y[:, :, oh, ow] = np.take_along_axis(vals, a[..., None], -1)[..., 0]
                idx[:, :, oh, ow] = np.array([h * W + w for h, w in taps])[a]
            else:
                he, we = min(hs + k[0], H + p[0]), min(ws + k[1], W + p[1])
                if div:
                    n = div
                elif cip:
                    n = (he - hs) * (we - ws)
                else:
                    n = len(taps)
                y[:, :, oh, ow] = sum(x[:, :, h, w] for h, w in taps) / n
                dx_of.append((oh, ow, taps, n))
    return y, idx, dx_of


def ref_adaptive(x, mode, OH, OW):
    N, C, H, W = x.shape
    y = np.zeros((N, C, OH, OW))
    idx = np.zeros((N, C, OH, OW), np.int64)
    dx_of = []
    for oh in range(OH):
        for ow in range(OW):
            h0, h1 = oh * H // OH, -(-(oh + 1) * H // OH)
            w0, w1 = ow * W // OW, -(-(ow + 1) * W // OW)
            taps = [(h, w) for h in range(h0, h1) for w in range(w0, w1)]
            vals = np.stack([x[:, :, h, w] for h, w in taps], -1)
            if mode == "max":
                a = np.argmax(vals, -1)
                y[:, :, oh, ow] = vals.max(-1)
                idx[:, :, oh, ow] = np.array([h * W + w for h, w in taps])[a]
            else:
                y[:, :, oh, ow] = vals.mean(-1)
                dx_of.append((oh, ow, taps, len(taps)))
    return y, idx, dx_of


def ref_grad(g, x_shape, mode, idx, dx_of):
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H * W))
    if mode == "max":
        for n in range(N):
            for c in range(C):
                np.add.at(dx[n, c], idx[n, c].ravel(), g[n, c].ravel())
        return dx.reshape(x_shape)
    dx = dx.reshape(x_shape)
    for oh, ow, taps, n in dx_of:
        for h, w in taps:
            dx[:, :, h, w] += g[:, :, oh, ow] / n
    return dx


MAX_CASES = [  # shape, kernel, stride, padding, dilation, ceil_mode
    ((2, 3, 7, 9), 3, 2, 1, 1, False),
    ((1, 5, 6, 5), (2, 3), (1, 2), (1, 0), 1, True),
    ((1, 2, 9, 8), 3, 2, 1, 2, True),
    ((2, 1, 5, 5), 2, None, 0, 1, True),
    ((1, 3, 4, 4), 4, 1, 2, 1, False),
    ((2, 4, 9, 10), 2, 1, 0, 1, False),       # several programs, forward and backward
]


@pytest.mark.parametrize("case", MAX_CASES)
def test_max_pool2d(device, case):
    shape, k, s, p, d, ceil = case
    x, xr = make(shape, tritorch.float64, device, seed=1, requires_grad=True)
    y, idx = tritorch.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    pr = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    ry, ridx, _ = ref_pool(xr, "max", pr(k), pr(k if s is None else s), pr(p), pr(d), ceil)
    assert_close(y, ry)
    np.testing.assert_array_equal(to_np(idx), ridx)
    g = np.random.default_rng(2).standard_normal(ry.shape)
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    assert_close(x.grad, ref_grad(g, shape, "max", ridx, None))


AVG_CASES = [  # shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    ((2, 3, 7, 9), 3, 2, 1, False, True, None),
    ((1, 5, 6, 5), (2, 3), (1, 2), (1, 1), True, False, None),
    ((1, 2, 7, 8), 3, 2, 1, True, True, None),
    ((2, 1, 5, 5), 2, None, 0, True, False, 3),
]


@pytest.mark.parametrize("case", AVG_CASES)
def test_avg_pool2d(device, case):
    shape, k, s, p, ceil, cip, div = case
    x, xr = make(shape, tritorch.float64, device, seed=3, requires_grad=True)
    y = tritorch.avg_pool2d(x, k, s, p, ceil, cip, div)
    pr = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    ry, _, dx_of = ref_pool(xr, "avg", pr(k), pr(k if s is None else s), pr(p), ceil=ceil, cip=cip, div=div)
    assert_close(y, ry)
    g = np.random.default_rng(4).standard_normal(ry.shape)
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    assert_close(x.grad, ref_grad(g, shape, "avg", None, dx_of))


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape,out", [((2, 3, 7, 9), (3, 4)), ((1, 2, 3, 5), (5, 7)), ((1, 1, 6, 6), (1, None))])
def test_adaptive_pool2d(device, mode, shape, out):
    x, xr = make(shape, tritorch.float64, device, seed=5, requires_grad=True)
    OH, OW = shape[2] if out[0] is None else out[0], shape[3] if out[1] is None else out[1]
    if mode == "max":
        y, idx = tritorch.adaptive_max_pool2d(x, out, return_indices=True)
    else:
        y = tritorch.adaptive_avg_pool2d(x, out)
    ry, ridx, dx_of = ref_adaptive(xr, mode, OH, OW)
    assert_close(y, ry)
    if mode == "max":
        np.testing.assert_array_equal(to_np(idx), ridx)
    g = np.random.default_rng(6).standard_normal(ry.shape)
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    assert_close(x.grad, ref_grad(g, shape, mode, ridx, dx_of))


@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_non_contiguous_and_float32(device, layout):
    x, xr = make((3, 4, 5, 6), tritorch.float32, device, layout=layout, seed=7)
    ry, _, _ = ref_pool(xr, "max", (2, 2), (2, 2), (1, 1), ceil=True)
    assert_close(tritorch.max_pool2d(x, 2, 2, 1, ceil_mode=True), ry)
    ry, _, _ = ref_pool(xr, "avg", (3, 2), (1, 2), (1, 0))
    assert_close(nn.AvgPool2d((3, 2), (1, 2), (1, 0))(x), ry)


def test_unbatched_and_first_max(device):
    x = tritorch.tensor([[[1.0, 3.0, 3.0], [3.0, 0.0, 2.0]]], device=device, requires_grad=True)
    y, idx = tritorch.max_pool2d(x, 2, 1, return_indices=True)
    assert tuple(y.shape) == (1, 1, 2)
    assert to_np(idx).tolist() == [[[1, 1]]]
    y.sum().backward()
    assert to_np(x.grad).tolist() == [[[0, 2, 0], [0, 0, 0]]]


def test_float16(device):
    x, xr = make((1, 2, 5, 7), tritorch.float16, device, seed=8)
    ry, _, _ = ref_pool(xr, "avg", (3, 3), (2, 2), (1, 1), ceil=True)
    assert_close(tritorch.avg_pool2d(x, 3, 2, 1, True), ry)


def test_pool1d(device):
    x, xr = make((2, 3, 11), tritorch.float64, device, seed=9, requires_grad=True)
    y, idx = tritorch.max_pool1d(x, 3, 2, 1, 2, True, True)
    ry, ridx, _ = ref_pool(xr[:, :, None], "max", (1, 3), (1, 2), (0, 1), (1, 2), True)
    assert_close(y, ry[:, :, 0])
    np.testing.assert_array_equal(to_np(idx), ridx[:, :, 0])
    y.sum().backward()
    assert_close(x.grad, ref_grad(np.ones(ry.shape), (2, 3, 1, 11), "max", ridx, None)[:, :, 0])
    a = nn.AvgPool1d(4, 3, 2, count_include_pad=False)(x)
    ra, _, _ = ref_pool(xr[:, :, None], "avg", (1, 4), (1, 3), (0, 2), cip=False)
    assert_close(a, ra[:, :, 0])
    y2 = nn.MaxPool1d(2)(x[0])                # unbatched (C, L)
    assert tuple(y2.shape) == (3, 5)


def test_modules(device):
    x, xr = make((2, 3, 6, 6), tritorch.float32, device, seed=10)
    m = nn.MaxPool2d(3, padding=1, return_indices=True)
    y, idx = m(x)
    assert tuple(y.shape) == (2, 3, 2, 2) and idx.dtype is tritorch.int64
    assert "kernel_size=3" in repr(m)
    assert tuple(nn.AdaptiveAvgPool2d(1)(x).shape) == (2, 3, 1, 1)
    assert tuple(nn.AdaptiveMaxPool2d((2, None))(x).shape) == (2, 3, 2, 6)


def test_gradcheck_cpu():
    x = tritorch.tensor(np.random.default_rng(0).standard_normal((1, 2, 5, 4)), dtype=tritorch.float64,
                        requires_grad=True)
    assert tritorch.autograd.gradcheck(lambda t: tritorch.avg_pool2d(t, 3, 2, 1, True, False), (x,))
    assert tritorch.autograd.gradcheck(lambda t: tritorch.max_pool2d(t, 2, 1, 1), (x,))
    assert tritorch.autograd.gradcheck(lambda t: tritorch.adaptive_avg_pool2d(t, (3, 3)), (x,))


def test_errors(device):
    x = tritorch.zeros((1, 2, 4, 4), device=device)
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel size"):
        tritorch.max_pool2d(x, 3, padding=2)
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        tritorch.avg_pool2d(x, 2, padding=2)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        tritorch.max_pool2d(x, 5)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        tritorch.max_pool2d(x, 3, dilation=2)
    with pytest.raises(RuntimeError, match="Expected 3D or 4D"):
        tritorch.max_pool2d(tritorch.zeros((4, 4), device=device), 2)
    with pytest.raises(RuntimeError, match="Expected 3D or 4D"):
        tritorch.avg_pool2d(tritorch.zeros((1, 0, 4, 4), device=device), 2)
    with pytest.raises(RuntimeError, match="pad must be non-negative, but got pad: -1"):
        tritorch.max_pool2d(x, 3, padding=-1)
    with pytest.raises(RuntimeError, match="divisor must be not zero"):
        tritorch.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(RuntimeError, match="stride should be greater than zero"):
        tritorch.max_pool2d(x, 2, 0)
    assert tuple(tritorch.max_pool2d(tritorch.zeros((0, 2, 4, 4), device=device), 2).shape) == (0, 2, 2, 2)


def test_output_size_matches_reference():
    for n, k, p, s, d, c in [(7, 3, 1, 2, 1, True), (6, 2, 1, 2, 1, True), (5, 3, 0, 3, 1, True), (9, 3, 1, 2, 2, 0)]:
        assert P.pool_output_size(n, k, p, s, d, c) == out_size(n, k, p, s, d, c)


def test_gradgradcheck_cpu():
    x = tritorch.tensor(np.random.default_rng(1).standard_normal((1, 2, 5, 4)), dtype=tritorch.float64,
                        requires_grad=True)
    assert tritorch.autograd.gradgradcheck(lambda t: tritorch.avg_pool2d(t, 3, 2, 1, True, False), (x,))
    assert tritorch.autograd.gradgradcheck(lambda t: tritorch.max_pool2d(t, 2, 1, 1), (x,))
    assert tritorch.autograd.gradgradcheck(lambda t: tritorch.adaptive_avg_pool2d(t, (3, 3)), (x,))


def test_double_backward_cuda():
    x, xr = make((1, 1, 5, 5), tritorch.float64, "cuda", seed=3, requires_grad=True)
    y = tritorch.avg_pool2d(x, 3, 2, 1)
    (g,) = tritorch.autograd.grad((y * y).sum(), x, create_graph=True)
    g.sum().backward()
    a1, _, dx_of = ref_pool(np.ones(xr.shape), "avg", (3, 3), (2, 2), (1, 1))
    # d/dx sum(2 * A^T A x) = 2 A^T A 1, A the averaging map
    assert_close(x.grad, 2 * ref_grad(a1, xr.shape, "avg", None, dx_of))


def test_bfloat16(device):
    x, xr = make((2, 3, 5, 6), tritorch.bfloat16, device, seed=11, requires_grad=True)
    y = tritorch.avg_pool2d(x, 3, 2, 1)
    ry, _, dx_of = ref_pool(xr, "avg", (3, 3), (2, 2), (1, 1))
    assert_close(y, ry)
    y.sum().backward()
    assert x.grad.dtype is tritorch.bfloat16
    assert_close(x.grad, ref_grad(np.ones(ry.shape), xr.shape, "avg", None, dx_of))
    y, idx = tritorch.adaptive_max_pool2d(x.detach(), (2, 4), return_indices=True)
    ry, ridx, _ = ref_adaptive(xr, "max", 2, 4)
    assert_close(y, ry)


def test_adaptive_pool1d(device):
    x, xr = make((2, 3, 10), tritorch.float64, device, seed=12, requires_grad=True)
    y = nn.AdaptiveAvgPool1d(4)(x)
    ry, _, dx_of = ref_adaptive(xr[:, :, None], "avg", 1, 4)
    assert_close(y, ry[:, :, 0])
    y.sum().backward()
    assert_close(x.grad, ref_grad(np.ones(ry.shape), (2, 3, 1, 10), "avg", None, dx_of)[:, :, 0])
    y, idx = nn.AdaptiveMaxPool1d(3, return_indices=True)(x.detach())
    ry, ridx, _ = ref_adaptive(xr[:, :, None], "max", 1, 3)
    assert_close(y, ry[:, :, 0])
    np.testing.assert_array_equal(to_np(idx), ridx[:, :, 0])


def test_empty_batch(device):
    """Batch 0 (issue 14): every pool returns an empty result and an empty gradient, also through a double
    backward, as PyTorch does."""
    pools = [lambda x: tritorch.max_pool2d(x, 2), lambda x: tritorch.adaptive_max_pool2d(x, (2, 3)),
             lambda x: tritorch.avg_pool2d(x, 2, 1, 1), lambda x: tritorch.adaptive_avg_pool2d(x, 3),
             lambda x: tritorch.max_pool1d(x[:, :, 0], 3, 1), lambda x: tritorch.avg_pool1d(x[:, :, 0], 2),
             lambda x: tritorch.adaptive_max_pool1d(x[:, :, 0], 3),
             lambda x: tritorch.adaptive_avg_pool1d(x[:, :, 0], 3)]
    shapes = [(0, 3, 2, 2), (0, 3, 2, 3), (0, 3, 5, 6), (0, 3, 3, 3), (0, 3, 3), (0, 3, 2), (0, 3, 3), (0, 3, 3)]
    for pool, shape in zip(pools, shapes):
        x = tritorch.zeros((0, 3, 4, 5), dtype=tritorch.float64, device=device, requires_grad=True)
        y = pool(x)
        assert tuple(y.shape) == shape
        y.sum().backward()
        assert tuple(x.grad.shape) == (0, 3, 4, 5)
        x.grad = None
        (gx,) = tritorch.autograd.grad((pool(x) ** 2).sum(), x, create_graph=True)
        assert tuple(gx.shape) == (0, 3, 4, 5)
        gx.sum().backward()
        assert tuple(x.grad.shape) == (0, 3, 4, 5)
    y, idx = tritorch.max_pool2d(tritorch.zeros((0, 2, 4, 4), device=device), 2, return_indices=True)
    assert tuple(idx.shape) == (0, 2, 2, 2) and idx.dtype is tritorch.int64


# ---- 3-D pooling (issue 17): the same kernels with a depth dim, against PyTorch ------------------------------------
POOL3D = [  # shape, kwargs of max_pool3d / avg_pool3d
    ((2, 2, 5, 4, 6), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 3, 4, 5, 3), dict(kernel_size=(2, 3, 1), stride=(1, 2, 1), padding=(1, 1, 0), ceil_mode=True)),
    ((3, 4, 6, 5), dict(kernel_size=2)),                                        # unbatched (C, D, H, W)
]


@pytest.mark.parametrize("shape, kw", POOL3D)
@pytest.mark.parametrize("dilation", [1, 2])
def test_max_pool3d(device, shape, kw, dilation):
    torch = pytest.importorskip("torch")
    if dilation == 2 and kw["kernel_size"] == 2:
        kw = dict(kw, padding=1)
    x, xr = make(shape, tritorch.float64, device, "transposed" if dilation == 2 else "contiguous", seed=13,
                 requires_grad=True)
    y, idx = tritorch.max_pool3d(x, dilation=dilation, return_indices=True, **kw)
    tx = torch.tensor(xr, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool3d(tx, dilation=dilation, return_indices=True, **kw)
    assert_close(y, ty.detach().numpy())
    np.testing.assert_array_equal(to_np(idx), tidx.numpy())
    g = np.random.default_rng(14).standard_normal(tuple(ty.shape))
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    ty.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad.numpy())
    if len(shape) == 5:
        assert y.grad_fn.name() == "MaxPool3DWithIndicesBackward0"


@pytest.mark.parametrize("shape, kw", POOL3D)
@pytest.mark.parametrize("cip, div", [(True, None), (False, None), (True, 5)])
def test_avg_pool3d(device, shape, kw, cip, div):
    torch = pytest.importorskip("torch")
    x, xr = make(shape, tritorch.float64, device, seed=15, requires_grad=True)
    y = tritorch.avg_pool3d(x, count_include_pad=cip, divisor_override=div, **kw)
    tx = torch.tensor(xr, requires_grad=True)
    ty = torch.nn.functional.avg_pool3d(tx, count_include_pad=cip, divisor_override=div, **kw)
    assert_close(y, ty.detach().numpy())
    g = np.random.default_rng(16).standard_normal(tuple(ty.shape))
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    ty.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad.numpy())


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("shape, out", [((2, 3, 5, 7, 4), (2, 3, 4)), ((1, 2, 3, 2, 5), (4, None, 2)),
                                        ((2, 4, 4, 4), 1)])
def test_adaptive_pool3d(device, mode, shape, out):
    torch = pytest.importorskip("torch")
    x, xr = make(shape, tritorch.float64, device, "strided", seed=17, requires_grad=True)
    tx = torch.tensor(xr, requires_grad=True)
    if mode == "avg":
        y, ty = nn.AdaptiveAvgPool3d(out)(x), torch.nn.AdaptiveAvgPool3d(out)(tx)
    else:
        (y, idx), (ty, tidx) = nn.AdaptiveMaxPool3d(out, True)(x), torch.nn.AdaptiveMaxPool3d(out, True)(tx)
        np.testing.assert_array_equal(to_np(idx), tidx.numpy())
    assert_close(y, ty.detach().numpy())
    g = np.random.default_rng(18).standard_normal(tuple(ty.shape))
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    ty.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad.numpy())


def test_pool3d_modules_dtypes_and_empty(device):
    torch = pytest.importorskip("torch")
    x, xr = make((2, 3, 4, 5, 6), tritorch.float32, device, seed=19)
    m = nn.MaxPool3d(2, 1, 1, ceil_mode=True)
    assert_close(m(x), torch.nn.MaxPool3d(2, 1, 1, ceil_mode=True)(torch.tensor(xr)).numpy())
    assert "kernel_size=2" in repr(m)
    a = nn.AvgPool3d((1, 2, 3), count_include_pad=False)
    assert_close(a(x), torch.nn.AvgPool3d((1, 2, 3), count_include_pad=False)(torch.tensor(xr)).numpy())
    for dtype in (tritorch.float16, tritorch.bfloat16):
        h, hr = make((1, 2, 3, 4, 5), dtype, device, seed=20)
        assert_close(tritorch.avg_pool3d(h, 2, 1), torch.nn.functional.avg_pool3d(torch.tensor(hr), 2, 1).numpy())
        assert tritorch.max_pool3d(h, 2).dtype is dtype
    z = tritorch.zeros((0, 2, 4, 4, 4), dtype=tritorch.float64, device=device, requires_grad=True)
    for f in (lambda t: tritorch.max_pool3d(t, 2), lambda t: tritorch.avg_pool3d(t, 2),
              lambda t: tritorch.adaptive_avg_pool3d(t, 3)):
        y = f(z)
        y.sum().backward()
        assert y.shape[0] == 0 and tuple(z.grad.shape) == (0, 2, 4, 4, 4)


def test_pool3d_gradcheck_cpu():
    x = tritorch.tensor(np.random.default_rng(21).standard_normal((1, 2, 4, 3, 5)), dtype=tritorch.float64,
                        requires_grad=True)
    assert tritorch.autograd.gradcheck(lambda t: tritorch.avg_pool3d(t, 2, 1, 1, True, False), (x,))
    assert tritorch.autograd.gradcheck(lambda t: tritorch.max_pool3d(t, 2, 1, 1), (x,))
    assert tritorch.autograd.gradcheck(lambda t: tritorch.adaptive_avg_pool3d(t, (3, 2, 4)), (x,))
    assert tritorch.autograd.gradgradcheck(lambda t: tritorch.max_pool3d(t, 2, 1) ** 2, (x,))
    assert tritorch.autograd.gradgradcheck(lambda t: tritorch.avg_pool3d(t, 2, 1), (x,))


def test_pool3d_errors(device):
    x = tritorch.zeros((1, 2, 4, 4, 4), device=device)
    with pytest.raises(RuntimeError, match="non-empty 4D or 5D"):
        tritorch.max_pool3d(tritorch.zeros((4, 4, 4), device=device), 2)
    with pytest.raises(RuntimeError, match="non-batch dimension 0 has length zero"):
        tritorch.avg_pool3d(tritorch.zeros((1, 0, 4, 4, 4), device=device), 2)
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel size"):
        tritorch.max_pool3d(x, 3, padding=2)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        tritorch.max_pool3d(x, 5)
    with pytest.raises(RuntimeError, match=r"input image \(T: 4 H: 4 W: 4\) smaller than kernel size"):
        tritorch.avg_pool3d(x, 5)
    with pytest.raises(RuntimeError, match="stride should not be zero"):
        tritorch.max_pool3d(x, 2, 0)
    with pytest.raises(RuntimeError, match="kernel size should be greater than zero, but got kT: 0 kH: 0 kW: 0"):
        tritorch.avg_pool3d(x, 0, 1)
    with pytest.raises(RuntimeError, match="max_pool3d: kernel_size must either be a single int, or a tuple of three"):
        tritorch.max_pool3d(x, (2, 2))
    with pytest.raises(RuntimeError, match="divisor must be not zero"):
        tritorch.avg_pool3d(x, 2, divisor_override=0)
    with pytest.raises(RuntimeError, match=r"adaptive_avg_pool3d\(\): Expected 4D or 5D tensor"):
        tritorch.adaptive_avg_pool3d(tritorch.zeros((4, 4), device=device), 2)
    with pytest.raises(RuntimeError, match="with dimension 2 being empty"):
        tritorch.adaptive_max_pool3d(tritorch.zeros((1, 2, 0, 4, 4), device=device), 2)
    with pytest.raises(RuntimeError, match="adaptive_avg_pool3d: output_size must be 3"):
        tritorch.adaptive_avg_pool3d(x, (2, 2))
