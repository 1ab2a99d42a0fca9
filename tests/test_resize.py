"""interpolate (nearest, bilinear), constant padding and pixel shuffle: forward and backward on cpu and cuda
against float64 NumPy references written here from PyTorch's index formulas (loops, not the kernels' code)."""
import math

import numpy as np
import pytest

import tritorch
import tritorch.nn.functional as F
from tritorch.kernels.resize import interpolate, pad, pixel_shuffle, pixel_unshuffle
from tritorch.nn.padding import ZeroPad2d, ConstantPad2d, ConstantPad1d
from tritorch.nn.upsampling import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d, PixelShuffle, PixelUnshuffle
from tritorch.autograd.gradcheck import gradcheck

from helpers import assert_close, make, to_np


# ---- references -----------------------------------------------------------------------------------------------
def ref_taps(o, n_in, n_out, factor, mode, align, st):
    """PyTorch's source index rule for output coordinate o (UpSample.h), computed in ``st``."""
    if mode == "nearest":
        if n_out == n_in:
            return o, o, 0.0
        if n_out == 2 * n_in:
            return o >> 1, o >> 1, 0.0
        scale = np.float32(1.0 / factor) if factor else np.float32(n_in) / np.float32(n_out)
        i = min(int(np.floor(np.float32(o) * scale)), n_in - 1)
        return i, i, 0.0
    if align:
        scale = st(n_in - 1) / st(n_out - 1) if n_out > 1 else st(0)
        src = scale * st(o)
    else:
        scale = st(1.0 / factor) if factor else st(n_in) / st(n_out)
        src = scale * (st(o) + st(0.5)) - st(0.5)
        src = max(src, st(0))
    i0 = int(src)
    i1 = i0 + 1 if i0 < n_in - 1 else i0
    return i0, i1, float(src - st(i0))


def ref_matrix(n_in, n_out, factor, mode, align, st):
    """The (n_out, n_in) interpolation matrix of one dim, float64."""
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        i0, i1, lam = ref_taps(o, n_in, n_out, factor, mode, align, st)
        m[o, i0] += 1.0 - lam
        m[o, i1] += lam
    return m


def ref_resize(x, out_hw, factors, mode, align, st):
    """(y, adjoint) for an (N, C, H, W) float64 array: y = Mh x Mw^T, and g -> Mh^T g Mw."""
    H, W = x.shape[2:]
    mh = ref_matrix(H, out_hw[0], factors[0], mode, align, st)
    mw = ref_matrix(W, out_hw[1], factors[1], mode, align, st)
    return np.einsum("oh,nchw,pw->ncop", mh, x, mw), lambda g: np.einsum("oh,ncop,pw->nchw", mh, g, mw)


def _st(dtype, mode):
    return np.float64 if (dtype is tritorch.float64 and mode == "bilinear") else np.float32


CASES = [  # (H, W), size, scale_factor
    ((5, 7), (11, 13), None),
    ((9, 6), (4, 5), None),
    ((1, 3), (4, 1), None),
    ((3, 4), None, 2),
    ((4, 5), None, (1.7, 0.6)),
    ((3, 3), (3, 6), None),
]


@pytest.mark.parametrize("mode,align", [("nearest", None), ("bilinear", False), ("bilinear", True)])
@pytest.mark.parametrize("hw,size,sf", CASES)
def test_interpolate_forward_backward(device, mode, align, hw, size, sf):
    x, xr = make((2, 3) + hw, tritorch.float32, device, layout="transposed", requires_grad=True, seed=1)
    y = interpolate(x, size=size, scale_factor=sf, mode=mode, align_corners=align)
    if size is None:
        f = (sf, sf) if not isinstance(sf, tuple) else sf
        out_hw = tuple(int(math.floor(n * s)) for n, s in zip(hw, f))
    else:
        f, out_hw = (None, None), size
    yr, adj = ref_resize(xr, out_hw, f, mode, bool(align), np.float32)
    assert y.shape == (2, 3) + tuple(out_hw)
    assert_close(y, yr, tritorch.float32)
    assert y.grad_fn.name() == ("UpsampleBilinear2DBackward0" if mode == "bilinear" else "UpsampleNearest2DBackward0")
    g, gr = make(y.shape, tritorch.float32, device, layout="strided", seed=2)
    y.backward(g)
    assert_close(x.grad, adj(gr), tritorch.float32, atol=1e-5)


@pytest.mark.parametrize("mode,align", [("nearest", None), ("bilinear", False), ("bilinear", True)])
def test_interpolate_recompute_scale_factor(device, mode, align):
    x, xr = make((1, 2, 5, 4), tritorch.float32, device)
    y = interpolate(x, scale_factor=1.7, mode=mode, align_corners=align, recompute_scale_factor=True)
    yr, _ = ref_resize(xr, (8, 6), (None, None), mode, bool(align), np.float32)
    assert_close(y, yr, tritorch.float32)


@pytest.mark.parametrize("dtype", [tritorch.float64, tritorch.float16, tritorch.bfloat16])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_interpolate_dtypes(device, dtype, mode):
    x, xr = make((1, 2, 3, 5), dtype, device, requires_grad=True)
    y = interpolate(x, scale_factor=(2.5, 1.3), mode=mode)
    assert y.dtype is dtype and y.shape == (1, 2, 7, 6)
    yr, adj = ref_resize(xr, (7, 6), (2.5, 1.3), mode, False, _st(dtype, mode))
    assert_close(y, yr, dtype)
    g, gr = make(y.shape, dtype, device, seed=3)
    y.backward(g)
    assert_close(x.grad, adj(gr), dtype, rtol=3 * 1.6e-2 if dtype is tritorch.bfloat16 else None,
                 atol=0.05 if dtype is tritorch.bfloat16 else 4e-3 if dtype is tritorch.float16 else None)


def test_interpolate_nearest_1d_and_uint8(device):
    x, xr = make((2, 3, 5), tritorch.float32, device, layout="strided", requires_grad=True)
    y = interpolate(x, size=8)
    m = ref_matrix(5, 8, None, "nearest", False, np.float32)
    assert_close(y, np.einsum("ol,ncl->nco", m, xr), tritorch.float32)
    y.sum().backward()
    assert_close(x.grad, np.broadcast_to(m.sum(0), (2, 3, 5)), tritorch.float32)
    u, ur = make((1, 1, 3, 2), tritorch.uint8, device)
    yu = interpolate(u, scale_factor=3)
    assert yu.dtype is tritorch.uint8
    np.testing.assert_array_equal(to_np(yu), ur.repeat(3, 2).repeat(3, 3))


def test_interpolate_large_upsample_and_batch_zero(device):
    x, xr = make((1, 1, 2, 1), tritorch.float32, device, requires_grad=True)
    y = interpolate(x, size=(37, 3), mode="bilinear")
    yr, adj = ref_resize(xr, (37, 3), (None, None), "bilinear", False, np.float32)
    assert_close(y, yr, tritorch.float32)
    y.backward(tritorch.ones_like(y))
    assert_close(x.grad, adj(np.ones((1, 1, 37, 3))), tritorch.float32, atol=1e-5)
    e = tritorch.zeros((0, 2, 3, 3), device=device)
    assert interpolate(e, scale_factor=2).shape == (0, 2, 6, 6)


def test_interpolate_gradcheck_and_double_backward():
    x = tritorch.tensor(np.random.default_rng(0).standard_normal((1, 2, 3, 4)), requires_grad=True)
    for mode, align in (("bilinear", False), ("bilinear", True), ("nearest", None)):
        assert gradcheck(lambda t: interpolate(t, size=(5, 3), mode=mode, align_corners=align), (x,))
    g = tritorch.tensor(np.random.default_rng(1).standard_normal((1, 2, 5, 3)), requires_grad=True)
    y = interpolate(x, size=(5, 3), mode="bilinear")
    (gx,) = tritorch.autograd.grad(y, x, g, create_graph=True)
    assert gradcheck(lambda t: tritorch.autograd.grad(interpolate(x, size=(5, 3), mode="bilinear"), x, t,
                                                      create_graph=True)[0], (g,))
    assert gx.grad_fn is not None


def test_interpolate_errors():
    x = tritorch.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        interpolate(x, size=4, scale_factor=2)
    with pytest.raises(ValueError, match="either size or scale_factor"):
        interpolate(x)
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        interpolate(x, size=4, align_corners=True)
    with pytest.raises(NotImplementedError, match="Got 3D input, but bilinear mode needs 4D input"):
        interpolate(tritorch.zeros((1, 1, 3)), size=4, mode="bilinear")
    with pytest.raises(NotImplementedError, match="bicubic"):
        interpolate(x, size=4, mode="bicubic")
    with pytest.raises(ValueError, match="same number of spatial dimensions"):
        interpolate(x, size=(4, 4, 4))
    with pytest.raises(RuntimeError, match=r"output \(H: 0, W: 0\)"):
        interpolate(x, scale_factor=0.2)
    with pytest.raises(RuntimeError, match="not implemented for 'Long'"):
        interpolate(tritorch.zeros((1, 1, 2, 2), dtype=tritorch.int64), size=3, mode="bilinear")


def test_upsample_modules(device):
    x, xr = make((1, 2, 3, 4), tritorch.float32, device)
    assert_close(Upsample(scale_factor=2)(x), xr.repeat(2, 2).repeat(2, 3), tritorch.float32)
    assert_close(UpsamplingNearest2d(size=(6, 8))(x), xr.repeat(2, 2).repeat(2, 3), tritorch.float32)
    yr, _ = ref_resize(xr, (5, 7), (None, None), "bilinear", True, np.float32)
    assert_close(UpsamplingBilinear2d(size=(5, 7))(x), yr, tritorch.float32)
    assert repr(Upsample(scale_factor=2, mode="bilinear")) == "Upsample(scale_factor=2.0, mode='bilinear')"


# ---- pad ----------------------------------------------------------------------------------------------------------
def ref_pad(x, p, value):
    """F.pad on a float64 array by index arithmetic: out[c] = x[c - left] inside, value elsewhere."""
    k = len(p) // 2
    pads = [(0, 0)] * (x.ndim - k) + [(p[2 * i], p[2 * i + 1]) for i in reversed(range(k))]
    shape = tuple(n + a + b for n, (a, b) in zip(x.shape, pads))
    out = np.full(shape, float(value))
    for idx in np.ndindex(*shape):
        src = tuple(c - a for c, (a, _) in zip(idx, pads))
        if all(0 <= s < n for s, n in zip(src, x.shape)):
            out[idx] = x[src]
    return out


@pytest.mark.parametrize("shape,p", [
    ((2, 3, 4, 5), (1, 2)),
    ((2, 3, 4, 5), (1, 0, 2, 3)),
    ((3, 4, 5), (-1, 2, 0, -2, 1, 1)),
    ((5,), (3, -2)),
    ((2, 1, 3), (0, 0, 2, 1)),
    ((0, 3), (1, 1)),
    ((2, 3), (-2, -1)),
])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_pad_forward_backward(device, shape, p, layout):
    x, xr = make(shape, tritorch.float32, device, layout=layout, requires_grad=True)
    y = pad(x, p, value=1.5)
    yr = ref_pad(xr, p, 1.5)
    assert_close(y, yr, tritorch.float32)
    g, gr = make(y.shape, tritorch.float32, device, seed=4)
    y.backward(g)
    neg = tuple(-v for v in p)
    assert_close(x.grad, ref_pad(gr, neg, 0.0), tritorch.float32)
    assert y.grad_fn.name() == "ConstantPadNdBackward0"


@pytest.mark.parametrize("dtype", [tritorch.float64, tritorch.float16, tritorch.bfloat16, tritorch.int64,
                                   tritorch.uint8, tritorch.bool])
def test_pad_dtypes(device, dtype):
    x, xr = make((2, 3), dtype, device)
    value = 0.1 if dtype is tritorch.float64 else 1 if not dtype.is_floating_point else 2.5
    y = F.pad(x, (1, 2, 1, 0), value=value)
    assert y.dtype is dtype
    expect = ref_pad(xr.astype(np.float64), (1, 2, 1, 0), value).astype(xr.dtype)
    assert_close(y, expect, dtype)


def test_pad_big_int_value(device):
    x = tritorch.zeros((2,), dtype=tritorch.int64, device=device)
    assert to_np(pad(x, (1, 0), value=2 ** 40 + 1)).tolist() == [2 ** 40 + 1, 0, 0]


def test_pad_gradcheck():
    x = tritorch.tensor(np.random.default_rng(0).standard_normal((2, 3, 4)), requires_grad=True)
    assert gradcheck(lambda t: pad(t, (1, -1, 0, 2), value=3.0), (x,))


def test_pad_errors():
    x = tritorch.zeros((2, 3))
    with pytest.raises(RuntimeError, match="Length of pad must be even"):
        pad(x, (1, 2, 3))
    with pytest.raises(RuntimeError, match="Length of pad should be no more than twice"):
        pad(x, (1, 1, 1, 1, 1, 1))
    with pytest.raises(RuntimeError, match="resulted in a negative output size"):
        pad(x, (-2, -2))
    with pytest.raises(NotImplementedError, match="Padding size 2 is not supported for 1D input tensor"):
        pad(tritorch.zeros((3,)), (1, 1), mode="reflect")
    with pytest.raises(RuntimeError, match="Padding size should be less than the corresponding input dimension"):
        pad(x, (3, 0), mode="reflect")
    with pytest.raises(RuntimeError, match="wrapping around more than once"):
        pad(x, (4, 0), mode="circular")
    with pytest.raises(RuntimeError, match="doesn't take in value argument"):
        pad(x, (1, 1), mode="replicate", value=1.0)
    with pytest.raises(NotImplementedError, match="Unrecognised padding mode"):
        pad(x, (1, 1), mode="bogus")


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("shape,p", [((2, 3, 5), (2, 1)), ((1, 2, 4, 3), (1, 2, 2, -1)), ((3, 4), (0, 3))])
def test_pad_other_modes(device, mode, shape, p):
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    if mode == "reflect" and max(p) >= min(shape[-len(p) // 2:]):
        p = tuple(min(v, 1) for v in p)
    x, xr = make(shape, tritorch.float64, device, layout="transposed", requires_grad=True)
    y = pad(x, p, mode=mode)
    k = len(p) // 2
    pos = [(0, 0)] * (len(shape) - k) + [(max(p[2 * i], 0), max(p[2 * i + 1], 0)) for i in reversed(range(k))]
    crop = [(0, 0)] * (len(shape) - k) + [(p[2 * i], p[2 * i + 1]) for i in reversed(range(k))]
    if mode == "circular":          # PyTorch crops the negative pads first, then wraps around what is left
        kept = xr[tuple(slice(max(-a, 0), n - max(-b, 0)) for n, (a, b) in zip(shape, crop))]
        expect = np.pad(kept, pos, mode=np_mode)
    else:
        expect = np.pad(xr, pos, mode=np_mode)
        expect = expect[tuple(slice(max(-a, 0), expect.shape[d] - max(-b, 0)) for d, (a, b) in enumerate(crop))]
    assert_close(y, expect, tritorch.float64)
    if device == "cpu":
        assert gradcheck(lambda t: pad(t, p, mode=mode), (x,))
    else:
        y.sum().backward()
        assert x.grad.shape == x.shape


def test_pad_modules(device):
    x, xr = make((1, 2, 3, 4), tritorch.float32, device)
    assert_close(ZeroPad2d(1)(x), ref_pad(xr, (1, 1, 1, 1), 0.0), tritorch.float32)
    assert_close(ConstantPad2d((1, 0, 2, -1), -3.0)(x), ref_pad(xr, (1, 0, 2, -1), -3.0), tritorch.float32)
    assert_close(ConstantPad1d(2, 1.0)(x), ref_pad(xr, (2, 2), 1.0), tritorch.float32)
    assert repr(ZeroPad2d(1)) == "ZeroPad2d((1, 1, 1, 1))"


# ---- pixel shuffle -------------------------------------------------------------------------------------------------
def ref_shuffle(x, r):
    *b, c, h, w = x.shape
    out = np.zeros((*b, c // (r * r), h * r, w * r))
    for oc in range(c // (r * r)):
        for i in range(r):
            for j in range(r):
                out[..., oc, i::r, j::r] = x[..., oc * r * r + i * r + j, :, :]
    return out


@pytest.mark.parametrize("shape,r", [((2, 8, 3, 5), 2), ((9, 2, 1), 3), ((2, 1, 4, 1, 3), 1), ((1, 2, 18, 2, 3), 3)])
def test_pixel_shuffle(device, shape, r):
    x, xr = make(shape, tritorch.float32, device, layout="transposed", requires_grad=True)
    y = PixelShuffle(r)(x)
    assert_close(y, ref_shuffle(xr, r), tritorch.float32)
    g, gr = make(y.shape, tritorch.float32, device, seed=5)
    y.backward(g)
    back = pixel_unshuffle(tritorch.tensor(gr, device=device), r)
    assert_close(x.grad, to_np(back), tritorch.float32)
    assert_close(PixelUnshuffle(r)(y.detach()), xr, tritorch.float32)


def test_pixel_shuffle_errors():
    with pytest.raises(RuntimeError, match="divisible by the square of upscale_factor"):
        pixel_shuffle(tritorch.zeros((1, 5, 2, 2)), 2)
    with pytest.raises(RuntimeError, match="at least 3 dimensions"):
        pixel_shuffle(tritorch.zeros((4, 2)), 2)
    with pytest.raises(RuntimeError, match="height to be divisible"):
        pixel_unshuffle(tritorch.zeros((1, 1, 5, 4)), 2)
    with pytest.raises(RuntimeError, match="positive upscale_factor"):
        pixel_shuffle(tritorch.zeros((1, 4, 2, 2)), 0)


@pytest.mark.parametrize("dtype, value, expect", [
    (tritorch.uint8, -2, "uint8_t"), (tritorch.uint8, 300, "uint8_t"), (tritorch.uint8, 255, 255),
    (tritorch.int8, -2.7, -2), (tritorch.uint8, -0.5, "uint8_t"), (tritorch.int32, 2 ** 31, "type int without"),
    (tritorch.int8, float("inf"), "int8_t"), (tritorch.bool, 2, True),
])
def test_constant_pad_integer_value_checked(device, dtype, value, expect):
    """The fill value converts to an integer type as PyTorch's checked conversion (no wrapping)."""
    x = tritorch.tensor([[20], [3]], dtype=dtype, device=device)
    if isinstance(expect, str):
        with pytest.raises(RuntimeError, match=f"value cannot be converted to .*{expect}"):
            tritorch.nn.functional.pad(x, (0, 1), value=value)
    else:
        assert tritorch.nn.functional.pad(x, (0, 1), value=value)[:, 1].tolist() == [expect] * 2
    assert tritorch.nn.functional.pad(x, (0, -1), value=value).shape == (2, 0)        # a crop: no fill, no check


# ---- reflection / replication / circular padding layers (issue 17), against PyTorch ---------------------------------
@pytest.mark.parametrize("name, shape, padding", [
    ("ReflectionPad1d", (2, 3, 5), (2, 1)), ("ReflectionPad2d", (3, 4, 5), (1, 2, 3, 0)),
    ("ReflectionPad3d", (1, 2, 3, 4, 5), 2), ("ReplicationPad1d", (3, 4), 3),
    ("ReplicationPad2d", (2, 1, 3, 4), (-1, 2, 3, 1)), ("ReplicationPad3d", (2, 3, 2, 4), (1, 0, 2, 1, 0, 3)),
    ("CircularPad1d", (2, 3, 5), (2, 5)), ("CircularPad2d", (1, 2, 3, 4), (1, 2, 0, 3)),
    ("CircularPad1d", (2, 3, 5), (-1, 3)), ("CircularPad1d", (2, 3, 5), (2, -2)),
    ("CircularPad3d", (2, 3, 2, 4), 1)])
def test_mode_padding_modules(device, name, shape, padding):
    torch = pytest.importorskip("torch")
    import tritorch.nn as nn
    x, xr = make(shape, tritorch.float64, device, "transposed", seed=31, requires_grad=True)
    m, tm = getattr(nn, name)(padding), getattr(torch.nn, name)(padding)
    y = m(x)
    tx = torch.tensor(xr, requires_grad=True)
    ty = tm(tx)
    assert_close(y, ty.detach().numpy())
    g = np.random.default_rng(32).standard_normal(tuple(ty.shape))
    y.backward(tritorch.tensor(g, dtype=tritorch.float64, device=device))
    ty.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad.numpy())
    assert repr(m) == repr(tm) and m.padding == tm.padding


def test_mode_padding_errors_and_gradcheck(device):
    import tritorch.nn as nn
    with pytest.raises(NotImplementedError, match="Padding size 2 is not supported for 4D input tensor"):
        pad(tritorch.zeros((1, 2, 4, 5), device=device), (1, 2), "reflect")
    with pytest.raises(RuntimeError, match="Padding size should be less than the corresponding input dimension"):
        nn.ReflectionPad1d(5)(tritorch.zeros((1, 2, 5), device=device))
    with pytest.raises(RuntimeError, match="with possibly 0 batch size and other non-zero dimensions"):
        nn.ReplicationPad1d(1)(tritorch.zeros((2, 0, 5), device=device))
    with pytest.raises(ValueError, match=r"expected 3D or 4D input \(got 2D input\)"):
        nn.CircularPad2d(1)(tritorch.zeros((5, 5), device=device))
    assert tuple(nn.ReflectionPad1d(1)(tritorch.zeros((0, 2, 5), device=device)).shape) == (0, 2, 7)
    x = tritorch.tensor(np.random.default_rng(33).standard_normal((1, 2, 3, 4)), dtype=tritorch.float64,
                        requires_grad=True)
    for mode in ("reflect", "replicate", "circular"):
        assert gradcheck(lambda t: pad(t, (2, 1, 1, 2), mode), (x,))
