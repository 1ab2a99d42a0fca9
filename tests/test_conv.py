"""Convolutions (``conv1d``, ``conv2d``, ``conv_transpose1d/2d`` and their modules): forward and backward against
float64 NumPy oracles written tap by tap (independent of the kernels' im2col references) on cpu and cuda
(interpreter), over odd sizes, strides, paddings ('same'/'valid' included), dilations, groups, non-contiguous
inputs; gradcheck in float64; PyTorch's error messages."""
import math

import numpy as np
import pytest

import tritorch
from tritorch.autograd import gradcheck, gradgradcheck
from tritorch.kernels import conv as KC
from tritorch.nn.conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d
from tritorch.profiler import profile
from helpers import assert_close, make, to_np

F32, F64 = tritorch.float32, tritorch.float64
conv1d, conv2d = KC.conv1d, KC.conv2d
conv_transpose1d, conv_transpose2d = KC.conv_transpose1d, KC.conv_transpose2d


@pytest.fixture(autouse=True)
def _full_fp32():
    """Full-fp32 products on a real GPU too (the default allows TF32, as PyTorch's cuDNN convolutions do)."""
    saved = KC.ALLOW_TF32[0]
    KC.ALLOW_TF32[0] = False
    yield
    KC.ALLOW_TF32[0] = saved


# ---- float64 oracles, one tap (kh, kw) at a time -------------------------------------------------------------------

def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _pads(padding, k, d):
    """((top, bottom), (left, right)) of a conv2d padding argument."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return tuple((dd * (kk - 1) // 2, dd * (kk - 1) - dd * (kk - 1) // 2) for kk, dd in zip(k, d))
    p = _pair(padding)
    return (p[0], p[0]), (p[1], p[1])


def _tap(a, kh, kw, s, d, oh, ow):
    """The (.., oh, ow) slice of padded ``a`` that tap (kh, kw) reads for every output pixel."""
    return a[:, :, kh * d[0]:kh * d[0] + (oh - 1) * s[0] + 1:s[0], kw * d[1]:kw * d[1] + (ow - 1) * s[1] + 1:s[1]]


def ref_conv2d(x, w, b, stride=1, padding=0, dilation=1, groups=1, g=None):
    """float64 y = conv2d(x, w) + b and, with an output gradient g, (gx, gw, gb)."""
    s, d = _pair(stride), _pair(dilation)
    N, _, H, W = x.shape
    OC, CG, KH, KW = w.shape
    (pt, pb), (pl, pr) = _pads(padding, (KH, KW), d)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    OH = (H + pt + pb - d[0] * (KH - 1) - 1) // s[0] + 1
    OW = (W + pl + pr - d[1] * (KW - 1) - 1) // s[1] + 1
    og = OC // groups
    y = np.zeros((N, OC, OH, OW))
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    for gi in range(groups):
        ci, co = slice(gi * CG, (gi + 1) * CG), slice(gi * og, (gi + 1) * og)
        for kh in range(KH):
            for kw in range(KW):
                patch = _tap(xp[:, ci], kh, kw, s, d, OH, OW)
                y[:, co] += np.einsum("nchw,oc->nohw", patch, w[co, :, kh, kw])
                if g is not None:
                    gw[co, :, kh, kw] = np.einsum("nohw,nchw->oc", g[:, co], patch)
                    _tap(gxp[:, ci], kh, kw, s, d, OH, OW)[...] += np.einsum("nohw,oc->nchw", g[:, co],
                                                                             w[co, :, kh, kw])
    if b is not None:
        y += b.reshape(-1, 1, 1)
    if g is None:
        return y
    return y, gxp[:, :, pt:pt + H, pl:pl + W], gw, g.sum((0, 2, 3))


def ref_conv_transpose2d(x, w, b, stride=1, padding=0, output_padding=0, groups=1, dilation=1, g=None):
    """float64 conv_transpose2d written as a scatter of every input pixel, and with g its gradients."""
    s, p, op, d = _pair(stride), _pair(padding), _pair(output_padding), _pair(dilation)
    N, C, H, W = x.shape
    _, og, KH, KW = w.shape
    cg = C // groups
    OH = (H - 1) * s[0] - 2 * p[0] + d[0] * (KH - 1) + op[0] + 1
    OW = (W - 1) * s[1] - 2 * p[1] + d[1] * (KW - 1) + op[1] + 1
    full = np.zeros((N, og * groups, max(OH + p[0], (H - 1) * s[0] + d[0] * (KH - 1) + 1) + p[0],
                     max(OW + p[1], (W - 1) * s[1] + d[1] * (KW - 1) + 1) + p[1]))
    gfull = None if g is None else np.zeros_like(full)
    if g is not None:
        gfull[:, :, p[0]:p[0] + OH, p[1]:p[1] + OW] = g
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for gi in range(groups):
        ci, co = slice(gi * cg, (gi + 1) * cg), slice(gi * og, (gi + 1) * og)
        for kh in range(KH):
            for kw in range(KW):
                _tap(full[:, co], kh, kw, s, d, H, W)[...] += np.einsum("nchw,co->nohw", x[:, ci], w[ci, :, kh, kw])
                if g is not None:
                    gt = _tap(gfull[:, co], kh, kw, s, d, H, W)
                    gx[:, ci] += np.einsum("nohw,co->nchw", gt, w[ci, :, kh, kw])
                    gw[ci, :, kh, kw] = np.einsum("nchw,nohw->co", x[:, ci], gt)
    y = full[:, :, p[0]:p[0] + OH, p[1]:p[1] + OW]
    if b is not None:
        y = y + b.reshape(-1, 1, 1)
    if g is None:
        return y
    return y, gx, gw, g.sum((0, 2, 3))


def _close(out, ref, dtype=F32, k=27):
    """Tolerances for a sum of ``k`` products of O(1) terms against a float64 oracle."""
    if dtype is F64:
        assert_close(out, ref, dtype, rtol=1e-10, atol=1e-11 * k)
    elif dtype is F32:
        assert_close(out, ref, dtype, rtol=1e-5, atol=1e-6 * k)
    elif dtype is tritorch.float16:
        assert_close(out, ref, dtype, rtol=4e-3, atol=2e-3 * math.sqrt(k))
    else:
        assert_close(out, ref, dtype, rtol=2e-2, atol=2e-2 * math.sqrt(k))


def _inputs(device, xshape, wshape, bias, dtype=F32, seed=0, layout="contiguous"):
    x, rx = make(xshape, dtype, device, layout, seed=seed, requires_grad=True)
    w, rw = make(wshape, dtype, device, seed=seed + 1, low=-1, high=1, requires_grad=True)
    b, rb = make((wshape[0],), dtype, device, seed=seed + 2, requires_grad=True) if bias else (None, None)
    return (x, w, b), (rx, rw, rb)


def _check_grads(y, ts, refs, dtype, k):
    g, rg = make(y.shape, dtype, y.device.type, seed=7)
    y.backward(g)
    ry, rgx, rgw, rgb = refs(rg)
    _close(y, ry, dtype, k)
    x, w, b = ts
    _close(x.grad, rgx, dtype, k)
    _close(w.grad, rgw, dtype, k * 4)
    if b is not None:
        _close(b.grad, rgb, dtype, k * 4)


# ---- conv2d --------------------------------------------------------------------------------------------------------

CONV2D = [   # (x shape, out channels, kernel, stride, padding, dilation, groups, bias)
    ((2, 3, 5, 6), 4, 3, 1, 0, 1, 1, True),
    ((2, 5, 7, 6), 7, (3, 2), 2, 1, 1, 1, True),
    ((1, 4, 6, 7), 6, 3, (1, 2), (2, 1), 2, 2, False),
    ((2, 3, 5, 5), 6, 3, 1, 1, 1, 3, True),                   # depthwise, channel multiplier 2
    ((2, 7, 5, 5), 5, 1, 2, 0, 1, 1, True),                   # 1x1, strided
    ((2, 3, 6, 5), 5, (4, 3), 1, "same", (1, 2), 1, True),    # even kernel: asymmetric padding
    ((1, 2, 5, 7), 3, (2, 3), 1, "valid", 1, 1, False),
]


@pytest.mark.parametrize("case", CONV2D, ids=[f"c{i}" for i in range(len(CONV2D))])
def test_conv2d(device, case):
    xshape, oc, k, s, p, d, groups, bias = case
    kh, kw = _pair(k)
    ts, (rx, rw, rb) = _inputs(device, xshape, (oc, xshape[1] // groups, kh, kw), bias)
    y = conv2d(*ts, stride=s, padding=p, dilation=d, groups=groups)
    assert y.dtype is F32 and y.device.type == device and y.grad_fn.name() == "ConvolutionBackward0"
    _check_grads(y, ts, lambda rg: ref_conv2d(rx, rw, rb, s, p, d, groups, g=rg), F32,
                 xshape[1] // groups * kh * kw)


# the epilogue activations in float64, and each one's derivative written from its result
ACT_ORACLE = {"relu": (lambda z: np.maximum(z, 0), lambda y: (y > 0) * 1.0),
              "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda y: y * (1 - y)),
              "tanh": (np.tanh, lambda y: 1 - y * y)}


@pytest.mark.parametrize("act", list(ACT_ORACLE))
def test_conv2d_activation_epilogue(device, act):
    """act(conv2d(x, w) + b) in the kernel's epilogue, and its backward through the activation (one kernel)."""
    assert set(ACT_ORACLE) == set(KC.EPILOGUE_ACTIVATIONS)
    f, df = ACT_ORACLE[act]
    ts, (rx, rw, rb) = _inputs(device, (2, 4, 7, 6), (6, 2, 3, 3), True, seed=5)
    y = conv2d(*ts, stride=(2, 1), padding=1, groups=2, activation=act)
    g, rg = make(y.shape, F32, device, seed=9)
    y.backward(g)
    rz = ref_conv2d(rx, rw, rb, (2, 1), 1, 1, 2)
    ry = f(rz)
    _, rgx, rgw, rgb = ref_conv2d(rx, rw, rb, (2, 1), 1, 1, 2, g=rg * df(ry))
    _close(y, ry, F32, 18)
    x, w, b = ts
    _close(x.grad, rgx, F32, 18)
    _close(w.grad, rgw, F32, 18 * 4)
    _close(b.grad, rgb, F32, 18 * 4)


def test_conv_activation_equals_the_separate_op_and_differentiates_twice(device):
    ts, _ = _inputs(device, (2, 3, 9), (4, 3, 3), True, seed=6)
    g, _ = make((2, 4, 9), F32, device, seed=8)
    fused = conv1d(*ts, padding="same", activation="relu")
    apart = tritorch.relu(conv1d(*ts, padding="same"))
    np.testing.assert_array_equal(to_np(fused), to_np(apart))
    for a, c in zip(tritorch.autograd.grad(fused, ts, g), tritorch.autograd.grad(apart, ts, g)):
        np.testing.assert_array_equal(to_np(a), to_np(c))
    x, w = (tritorch.tensor(np.random.default_rng(3).uniform(-1, 1, s), dtype=F64, requires_grad=True)
            for s in ((1, 2, 5, 4), (3, 2, 2, 2)))
    assert gradcheck(lambda x, w: conv2d(x, w, padding=1, activation="tanh"), (x, w))
    assert gradgradcheck(lambda x, w: conv2d(x, w, padding=1, activation="sigmoid"), (x, w))


def test_conv_activation_edges_and_errors(device):
    x = tritorch.zeros((2, 0, 4, 3), device=device)             # no input channels: act(bias)
    w = tritorch.zeros((3, 0, 2, 2), device=device)
    b, rb = make((3,), F32, device, seed=1)
    assert_close(conv2d(x, w, b, activation="sigmoid"), np.broadcast_to(1 / (1 + np.exp(-rb.reshape(-1, 1, 1))),
                                                                         (2, 3, 3, 2)))
    with pytest.raises(ValueError, match="conv2d: unknown activation 'gelu', expected None or one of relu"):
        conv2d(make((1, 1, 3, 3), F32, device)[0], make((1, 1, 2, 2), F32, device)[0], activation="gelu")


@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
def test_conv2d_non_contiguous(device, layout):
    """Inputs read through their strides: a permuted (NHWC storage) view, a sliced view, a transposed weight."""
    rng = np.random.default_rng(3)
    if layout == "channels_last":
        base = tritorch.tensor(rng.uniform(-1, 1, (2, 5, 6, 3)), dtype=F32, device=device)
        x = base.permute(0, 3, 1, 2)
    else:
        base = tritorch.tensor(rng.uniform(-1, 1, (2, 4, 7, 13)), dtype=F32, device=device)
        x = base[:, 1:, ::2, 2::2]
    x = x.detach().requires_grad_(True)
    assert not x.is_contiguous()
    c = x.shape[1]
    w0 = tritorch.tensor(rng.uniform(-1, 1, (3, 3, c, 4)), dtype=F32, device=device)
    w = w0.permute(3, 2, 1, 0).detach().requires_grad_(True)     # (4, c, 3, 3), not contiguous
    b, rb = make((4,), F32, device, seed=5, requires_grad=True)
    y = conv2d(x, w, b, stride=(2, 1), padding=1)
    _check_grads(y, (x, w, b), lambda rg: ref_conv2d(to_np(x), to_np(w), rb, (2, 1), 1, 1, 1, g=rg), F32,
                 c * 9)


def test_conv2d_unbatched_and_empty_batch(device):
    ts, (rx, rw, rb) = _inputs(device, (3, 5, 4), (2, 3, 2, 2), True)
    y = conv2d(*ts, padding=1)
    assert tuple(y.shape) == (2, 6, 5)
    _close(y, ref_conv2d(rx[None], rw, rb, 1, 1)[0])
    y.sum().backward()
    assert tuple(ts[0].grad.shape) == (3, 5, 4)
    x = tritorch.zeros((0, 3, 5, 4), device=device, requires_grad=True)
    y = conv2d(x, ts[1], ts[2])
    assert tuple(y.shape) == (0, 2, 4, 3)
    ts[1].grad = None
    y.sum().backward()
    assert_close(ts[1].grad, np.zeros((2, 3, 2, 2)))
    assert tuple(x.grad.shape) == (0, 3, 5, 4)


def test_conv2d_no_input_channels(device):
    """An empty reduction (C_in = 0): the output is the bias, the weight gradient empty."""
    x = tritorch.zeros((2, 0, 4, 3), device=device, requires_grad=True)
    w = tritorch.zeros((3, 0, 2, 2), device=device, requires_grad=True)
    b, rb = make((3,), F32, device, seed=1, requires_grad=True)
    y = conv2d(x, w, b, padding=(1, 0))
    assert_close(y, np.broadcast_to(rb.reshape(-1, 1, 1), (2, 3, 5, 2)))
    y.sum().backward()
    assert_close(b.grad, np.full(3, 20.0))
    assert tuple(x.grad.shape) == (2, 0, 4, 3) and tuple(w.grad.shape) == (3, 0, 2, 2)


@pytest.mark.parametrize("dtype", [F64, tritorch.float16, tritorch.bfloat16])
def test_conv2d_dtypes(device, dtype):
    ts, _ = _inputs(device, (2, 3, 5, 4), (4, 3, 3, 2), True, dtype=dtype)
    y = conv2d(*ts, stride=(1, 2), padding=1)
    assert y.dtype is dtype
    _check_grads(y, ts, lambda rg: ref_conv2d(to_np(ts[0]), to_np(ts[1]), to_np(ts[2]), (1, 2), 1, g=rg),
                 dtype, 18)


@pytest.mark.parametrize("split,dtype", [(2, F32), (3, tritorch.bfloat16)])
def test_conv2d_weight_grad_split(monkeypatch, split, dtype):
    """The weight gradient cut into pixel slices summed through a float32 workspace (the GPU path for small
    weights), forced in the interpreter."""
    monkeypatch.setattr(KC, "_wgrad_split", lambda *a: split)
    ts, _ = _inputs("cuda", (2, 4, 6, 5), (4, 2, 3, 3), False, dtype=dtype)
    y = conv2d(*ts, padding=1, groups=2)
    _check_grads(y, ts, lambda rg: ref_conv2d(to_np(ts[0]), to_np(ts[1]), None, 1, 1, 1, 2, g=rg), dtype, 18)


@pytest.mark.parametrize("case", [CONV2D[2], CONV2D[5]], ids=["strided_groups", "same"])
def test_conv2d_taps_outer(monkeypatch, case):
    """The tap-by-tap K loop (chosen on the GPU for many channels), forced on small channel counts."""
    monkeypatch.setattr(KC, "taps_outer", lambda channels, block_k: True)
    xshape, oc, k, s, p, d, groups, bias = case
    kh, kw = _pair(k)
    ts, (rx, rw, rb) = _inputs("cuda", xshape, (oc, xshape[1] // groups, kh, kw), bias)
    y = conv2d(*ts, stride=s, padding=p, dilation=d, groups=groups)
    _check_grads(y, ts, lambda rg: ref_conv2d(rx, rw, rb, s, p, d, groups, g=rg), F32, xshape[1] // groups * kh * kw)


@pytest.mark.parametrize("taps_outer", [False, True])
def test_conv2d_stride_beyond_kernel(monkeypatch, taps_outer):
    """Stride 3 with a 1x2 kernel: input pixels no tap reads get a zero gradient (whole stride phases of the
    input-gradient kernel, one of them empty since H = 2 < 3)."""
    monkeypatch.setattr(KC, "taps_outer", lambda channels, block_k: taps_outer)
    ts, (rx, rw, rb) = _inputs("cuda", (2, 3, 2, 7), (2, 3, 1, 2), True)
    y = conv2d(*ts, stride=3)
    _check_grads(y, ts, lambda rg: ref_conv2d(rx, rw, rb, 3, 0, g=rg), F32, 6)


@pytest.mark.parametrize("cfg", [KC.ConvConfig(64, 32, 32, 1, 4, 3), KC.ConvConfig(32, 64, 64, 1, 4, 3)])
def test_conv2d_gpu_tiles(cfg):
    """GPU-sized tiles (32 channels: the tap-by-tap loop is chosen on its own) on a stride-2 layer."""
    from tritorch import autotune
    ts, (rx, rw, rb) = _inputs("cuda", (1, 32, 5, 4), (32, 32, 3, 3), True)
    with autotune.force("conv_fwd", cfg), autotune.force("conv_dgrad", cfg), autotune.force("conv_wgrad", cfg):
        y = conv2d(*ts, stride=2, padding=1)
        _check_grads(y, ts, lambda rg: ref_conv2d(rx, rw, rb, 2, 1, g=rg), F32, 32 * 9)


def test_conv2d_int64_offsets(monkeypatch):
    """The int64 index path (tensors past 2**31 elements), forced on a small case."""
    monkeypatch.setattr(KC, "is_int64_index", lambda *a: True)
    ts, (rx, rw, rb) = _inputs("cuda", (2, 3, 5, 6), (4, 3, 3, 2), True)
    y = conv2d(*ts, stride=(2, 1), padding=1)
    _check_grads(y, ts, lambda rg: ref_conv2d(rx, rw, rb, (2, 1), 1, g=rg), F32, 18)


# ---- conv1d --------------------------------------------------------------------------------------------------------

CONV1D = [   # (x shape, out channels, kernel, stride, padding, dilation, groups)
    ((2, 3, 9), 4, 3, 2, 1, 1, 1),
    ((1, 4, 7), 6, 2, 1, "same", 2, 2),
    ((2, 5), 3, 3, 1, "valid", 1, 1),                          # unbatched
]


@pytest.mark.parametrize("case", CONV1D, ids=[f"c{i}" for i in range(len(CONV1D))])
def test_conv1d(device, case):
    xshape, oc, k, s, p, d, groups = case
    ts, (rx, rw, rb) = _inputs(device, xshape, (oc, xshape[-2] // groups, k), True)
    y = conv1d(*ts, stride=s, padding=p, dilation=d, groups=groups)
    xb = rx if rx.ndim == 3 else rx[None]
    pad2 = p if isinstance(p, str) else (0, p)

    def refs(rg):        # the 2-D oracle on (N, C, 1, L): a height-1 kernel adds no height padding, even 'same'
        rgb = rg if rg.ndim == 3 else rg[None]
        ry, gx, gw, gb = ref_conv2d(xb[:, :, None], rw[:, :, None], rb, (1, s), pad2, (1, d), groups,
                                    g=rgb[:, :, None])
        ry, gx, gw = ry[:, :, 0], gx[:, :, 0], gw[:, :, 0]
        if rx.ndim == 2:
            ry, gx = ry[0], gx[0]
        return ry, gx, gw, gb

    _check_grads(y, ts, refs, F32, xshape[-2] // groups * k)


# ---- conv_transpose ------------------------------------------------------------------------------------------------

CONVT2D = [  # (x shape, out channels, kernel, stride, padding, output_padding, groups, dilation, bias)
    ((2, 3, 4, 5), 4, 3, 2, 1, 1, 1, 1, True),
    ((1, 4, 3, 4), 6, (2, 3), (2, 1), (0, 1), (1, 0), 2, 1, True),
    ((2, 3, 4, 3), 3, 3, 1, 1, 0, 3, 2, False),
    ((2, 5, 3, 3), 7, 3, 3, 2, (2, 1), 1, (1, 2), True),
]


@pytest.mark.parametrize("case", CONVT2D, ids=[f"c{i}" for i in range(len(CONVT2D))])
def test_conv_transpose2d(device, case):
    xshape, oc, k, s, p, op, groups, d, bias = case
    kh, kw = _pair(k)
    (x, w, _), (rx, rw, _) = _inputs(device, xshape, (xshape[1], oc // groups, kh, kw), False)
    b, rb = make((oc,), F32, device, seed=9, requires_grad=True) if bias else (None, None)
    y = conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
    _check_grads(y, (x, w, b), lambda rg: ref_conv_transpose2d(rx, rw, rb, s, p, op, groups, d, g=rg), F32,
                 oc // groups * kh * kw)


def test_conv_transpose2d_taps_outer(monkeypatch):
    """The tap-by-tap loop with stride phases (stride 3: most taps skipped per phase), forced on few channels."""
    monkeypatch.setattr(KC, "taps_outer", lambda channels, block_k: True)
    xshape, oc, k, s, p, op, groups, d, _ = CONVT2D[3]
    (x, w, _), (rx, rw, _) = _inputs("cuda", xshape, (xshape[1], oc // groups, k, k), False)
    b, rb = make((oc,), F32, "cuda", seed=9, requires_grad=True)
    y = conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
    _check_grads(y, (x, w, b), lambda rg: ref_conv_transpose2d(rx, rw, rb, s, p, op, groups, d, g=rg), F32, oc * 9)


def test_conv_transpose1d(device):
    (x, w, _), (rx, rw, _) = _inputs(device, (2, 4, 5), (4, 3, 3), False)
    b, rb = make((6,), F32, device, seed=9, requires_grad=True)
    y = conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1, groups=2)
    assert tuple(y.shape) == (2, 6, 10)

    def refs(rg):
        ry, gx, gw, gb = ref_conv_transpose2d(rx[:, :, None], rw[:, :, None], rb, (1, 2), (0, 1), (0, 1), 2,
                                              g=rg[:, :, None])
        return ry[:, :, 0], gx[:, :, 0], gw[:, :, 0], gb

    _check_grads(y, (x, w, b), refs, F32, 9)


# ---- an inf or NaN weight: PyTorch's results ------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("taps_outer", [False, True])
@pytest.mark.parametrize("val", [math.inf, -math.inf, math.nan])
def test_conv2d_nonfinite_weight_matches_torch(device, monkeypatch, taps_outer, val):
    """The input gradient (and the transposed convolution, the same kernel) adds nothing for the taps that hit no
    output pixel, as PyTorch, so an inf weight gives inf or finite values there, not 0 * inf = NaN (fuzz seed 1,
    index 3292); the forward multiplies the zero padding, NaN there, as PyTorch's float32/float64 paths do."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(KC, "taps_outer", lambda channels, block_k: taps_outer)
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((6, 2, 3, 3))
    w[1, 0, 0, 0] = w[4, 1, 2, 1] = val
    kw = dict(stride=2, padding=1, groups=2)
    tx, tw = (tritorch.tensor(a, device=device, requires_grad=True) for a in (x, w))
    px, pw = (torch.tensor(a, requires_grad=True) for a in (x, w))
    y, py = conv2d(tx, tw, **kw), torch.nn.functional.conv2d(px, pw, **kw)
    g = rng.standard_normal(tuple(py.shape))
    y.backward(tritorch.tensor(g, device=device))
    py.backward(torch.tensor(g))
    assert np.isnan(px.grad.numpy()).sum() < px.grad.numel() // 2          # the case is not NaN everywhere
    for got, want in ((y, py), (tx.grad, px.grad), (tw.grad, pw.grad)):
        np.testing.assert_allclose(to_np(got), want.detach().numpy(), rtol=1e-10, atol=1e-12, equal_nan=True)
    wt = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :3])                # (2, 3, 3, 3): in 2 -> out 3 * 2 groups
    xt = rng.standard_normal((1, 2, 4, 3))
    yt = conv_transpose2d(tritorch.tensor(xt, device=device), tritorch.tensor(wt, device=device), **kw)
    pyt = torch.nn.functional.conv_transpose2d(torch.tensor(xt), torch.tensor(wt), **kw)
    np.testing.assert_allclose(to_np(yt), pyt.numpy(), rtol=1e-10, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("val", [1.0, math.inf])
def test_input_grad_needs_no_probe_of_the_weight(val):
    """A convolution's backward is two launches, the input gradient and the weight gradient with the bias's: the
    input gradient's kernel finds an inf or NaN weight in its own tiles (no max |w| reduction first)."""
    rng = np.random.default_rng(1)
    x = tritorch.tensor(rng.standard_normal((2, 3, 6, 5)), dtype=F32, device="cuda", requires_grad=True)
    conv = Conv2d(3, 4, 3, stride=2, padding=1).to("cuda")
    with tritorch.no_grad():
        conv.weight[0, 0, 0, 0] = val
    y = conv(x)
    g = tritorch.ones_like(y)
    with profile() as prof:
        y.backward(g)
    assert sorted(e.name for e in prof.events() if e.kind == "kernel") == ["_conv_dgrad_kernel", "_conv_wgrad_kernel"]
    assert np.isinf(to_np(x.grad)).any() == (val == math.inf)


# ---- gradcheck and double backward (float64, cpu) ------------------------------------------------------------------

def _f64(shape, seed):
    return make(shape, F64, "cpu", seed=seed, low=-1, high=1, requires_grad=True)[0]


@pytest.mark.parametrize("kind", ["conv1d", "conv2d", "conv2d_groups", "conv_transpose1d", "conv_transpose2d"])
def test_gradcheck(kind):
    if kind == "conv1d":
        args = (_f64((2, 2, 6), 0), _f64((3, 2, 3), 1), _f64((3,), 2))
        fn = lambda x, w, b: conv1d(x, w, b, stride=2, padding=1, dilation=2)
    elif kind == "conv2d":
        args = (_f64((1, 2, 5, 4), 0), _f64((3, 2, 2, 3), 1), _f64((3,), 2))
        fn = lambda x, w, b: conv2d(x, w, b, stride=(2, 1), padding="valid")
    elif kind == "conv2d_groups":
        args = (_f64((2, 4, 4, 4), 0), _f64((4, 2, 3, 3), 1), _f64((4,), 2))
        fn = lambda x, w, b: conv2d(x, w, b, padding="same", dilation=(1, 2), groups=2)
    elif kind == "conv_transpose1d":
        args = (_f64((2, 2, 4), 0), _f64((2, 3, 3), 1), _f64((3,), 2))
        fn = lambda x, w, b: conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1)
    else:
        args = (_f64((1, 4, 3, 3), 0), _f64((4, 1, 3, 2), 1), _f64((2,), 2))
        fn = lambda x, w, b: conv_transpose2d(x, w, b, stride=2, padding=(1, 0), groups=2,
                                              dilation=(1, 2), output_padding=1)
    assert gradcheck(fn, args)


def test_gradgradcheck():
    """The backward rules are made of convolutions, so they differentiate again."""
    x = _f64((1, 2, 4, 4), 0)
    w = _f64((2, 1, 2, 2), 1)
    assert gradgradcheck(lambda x, w: conv2d(x, w, stride=2, padding=1, groups=2), (x, w))
    wt = _f64((2, 2, 2, 2), 2)
    assert gradgradcheck(lambda x, w: conv_transpose2d(x, w, stride=2, padding=1, output_padding=1), (x, wt))


def test_double_backward_matches_cpu():
    """A second-order gradient through the kernels (cuda) equals the one through the references (cpu)."""
    res = {}
    for device in ("cpu", "cuda"):
        x = make((1, 2, 5, 4), F64, device, seed=0, requires_grad=True)[0]
        w = make((4, 1, 3, 2), F64, device, seed=1, requires_grad=True)[0]
        y = conv2d(x, w, stride=(2, 1), padding=1, groups=2)
        g = make(y.shape, F64, device, seed=2)[0]
        gx, gw = tritorch.autograd.grad((y * g).sum(), (x, w), create_graph=True)
        ((gx * gx).sum() + (gw * x.sum()).sum()).backward()
        res[device] = (to_np(gx), to_np(gw), to_np(x.grad), to_np(w.grad))
    for c, d in zip(res["cpu"], res["cuda"]):
        np.testing.assert_allclose(d, c, rtol=1e-10, atol=1e-12)


# ---- modules -------------------------------------------------------------------------------------------------------

def test_modules_parameters_and_init():
    assert tritorch.conv2d is conv2d and tritorch.conv_transpose2d is conv_transpose2d and tritorch.conv1d is conv1d
    tritorch.manual_seed(0)
    m = Conv2d(6, 8, 3, stride=2, padding=1, groups=2)
    assert tuple(m.weight.shape) == (8, 3, 3, 3) and tuple(m.bias.shape) == (8,)
    bound = 1 / math.sqrt(3 * 9)
    for p in (m.weight, m.bias):
        v = to_np(p)
        assert np.all(np.abs(v) <= bound) and v.std() > bound / 4
    assert repr(m) == "Conv2d(6, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), groups=2)"
    m1 = Conv1d(3, 4, 5, bias=False, padding="same", dilation=2)
    assert tuple(m1.weight.shape) == (4, 3, 5) and m1.bias is None
    assert repr(m1) == "Conv1d(3, 4, kernel_size=(5,), stride=(1,), padding=same, dilation=(2,), bias=False)"
    mt = ConvTranspose2d(4, 6, (2, 3), stride=2, output_padding=1, groups=2)
    assert tuple(mt.weight.shape) == (4, 3, 2, 3) and tuple(mt.bias.shape) == (6,)
    assert np.all(np.abs(to_np(mt.bias)) <= 1 / math.sqrt(3 * 6))
    assert repr(mt) == ("ConvTranspose2d(4, 6, kernel_size=(2, 3), stride=(2, 2), output_padding=(1, 1), "
                        "groups=2)")
    assert tuple(ConvTranspose1d(2, 3, 3).weight.shape) == (2, 3, 3)
    assert len(list(m.parameters())) == 2 and set(m.state_dict()) == {"weight", "bias"}
    m64 = Conv2d(2, 2, 1, dtype=F64)
    assert m64.weight.dtype is F64


def test_modules_forward(device):
    tritorch.manual_seed(1)
    m = Conv2d(3, 4, (3, 2), stride=(1, 2), padding=(1, 0), device=device)
    x, rx = make((2, 3, 5, 6), F32, device, seed=0)
    _close(m(x), ref_conv2d(rx, to_np(m.weight), to_np(m.bias), (1, 2), (1, 0)))
    m1 = Conv1d(3, 2, 3, padding="same", bias=False, device=device)
    x1, rx1 = make((2, 3, 7), F32, device, seed=1)
    _close(m1(x1), ref_conv2d(rx1[:, :, None], to_np(m1.weight)[:, :, None], None, 1, (0, 1))[:, :, 0])
    mt = ConvTranspose2d(3, 2, 3, stride=2, padding=1, device=device)
    x2, rx2 = make((1, 3, 3, 4), F32, device, seed=2)
    y = mt(x2, output_size=(6, 8))
    assert tuple(y.shape) == (1, 2, 6, 8)
    _close(y, ref_conv_transpose2d(rx2, to_np(mt.weight), to_np(mt.bias), 2, 1, 1))
    with pytest.raises(ValueError, match=r"requested an output size of \[9, 8\], but valid sizes range from "
                                         r"\[5, 7\] to \[6, 8\]"):
        mt(x2, output_size=[9, 8])


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv2d_padding_modes(mode):
    tritorch.manual_seed(2)
    m = Conv2d(2, 3, 3, padding=(1, 2), padding_mode=mode, dtype=F64)
    x, rx = make((1, 2, 4, 5), F64, "cpu", seed=0, requires_grad=True)
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    xp = np.pad(rx, ((0, 0), (0, 0), (1, 1), (2, 2)), mode=np_mode)
    _close(m(x), ref_conv2d(xp, to_np(m.weight), to_np(m.bias)), F64)
    assert "padding_mode=" + mode in repr(m)
    assert gradcheck(lambda x: m(x), (x,))


# ---- errors --------------------------------------------------------------------------------------------------------

def test_errors(device):
    x = tritorch.zeros((2, 4, 5, 5), device=device)
    w = tritorch.zeros((8, 3, 3, 3), device=device)
    with pytest.raises(RuntimeError, match=re_escape("Given groups=1, weight of size [8, 3, 3, 3], expected "
                                                     "input[2, 4, 5, 5] to have 3 channels, but got 4 channels "
                                                     "instead")):
        conv2d(x, w)
    with pytest.raises(RuntimeError, match=re_escape("Calculated padded input size per channel: (4 x 4). Kernel "
                                                     "size: (5 x 5). Kernel size can't be greater than actual input "
                                                     "size")):
        conv2d(tritorch.zeros((1, 3, 4, 4), device=device), tritorch.zeros((2, 3, 3, 3), device=device),
               dilation=2)
    with pytest.raises(RuntimeError, match=re_escape("Kernel size: (5). Kernel size can't be greater")):
        conv1d(tritorch.zeros((1, 3, 4), device=device), tritorch.zeros((2, 3, 5), device=device))
    with pytest.raises(RuntimeError, match=re_escape("Given groups=2, expected weight to be divisible by 2 at "
                                                     "dimension 0, but got weight of size [3, 2, 3, 3] instead")):
        conv2d(x, tritorch.zeros((3, 2, 3, 3), device=device), groups=2)
    with pytest.raises(RuntimeError, match="non-positive groups is not supported"):
        conv2d(x, w, groups=0)
    with pytest.raises(RuntimeError, match="padding='same' is not supported for strided convolutions"):
        conv2d(x, tritorch.zeros((8, 4, 3, 3), device=device), stride=2, padding="same")
    with pytest.raises(RuntimeError, match="Invalid padding string: 'full'"):
        conv2d(x, tritorch.zeros((8, 4, 3, 3), device=device), padding="full")
    with pytest.raises(RuntimeError, match=re_escape("Given weight of size [8, 4, 3, 3], expected bias to be "
                                                     "1-dimensional with 8 elements, but got bias of size [4] "
                                                     "instead")):
        conv2d(x, tritorch.zeros((8, 4, 3, 3), device=device), tritorch.zeros(4, device=device))
    with pytest.raises(RuntimeError, match=re_escape("Expected 3D (unbatched) or 4D (batched) input to conv2d, but "
                                                     "got input of size: [4, 5]")):
        conv2d(tritorch.zeros((4, 5), device=device), w)
    with pytest.raises(RuntimeError, match=re_escape("Expected 3-dimensional input for 3-dimensional weight [8, 3, "
                                                     "3], but got 4-dimensional input of size [2, 4, 5, 5] instead")):
        conv2d(x, tritorch.zeros((8, 3, 3), device=device))
    with pytest.raises(RuntimeError, match=re_escape("expected stride to be a single integer value or a list of 1 "
                                                     "values to match the convolution dimensions, but got "
                                                     "stride=[1, 2]")):
        conv1d(x[0], tritorch.zeros((2, 4, 3), device=device), stride=(1, 2))
    with pytest.raises(RuntimeError, match="Input type \\(double\\) and weight type \\(float\\) should be the same"):
        conv2d(x.double(), tritorch.zeros((8, 4, 3, 3), device=device))
    with pytest.raises(RuntimeError, match="not implemented for 'Long'"):
        conv2d(x.long(), tritorch.zeros((8, 4, 3, 3), device=device).long())
    with pytest.raises(RuntimeError, match="non-positive stride is not supported"):
        conv2d(x, tritorch.zeros((8, 4, 3, 3), device=device), stride=0)
    with pytest.raises(RuntimeError, match="negative padding is not supported"):
        conv2d(x, tritorch.zeros((8, 4, 3, 3), device=device), padding=-1)
    with pytest.raises(RuntimeError, match=re_escape("Given transposed=1, weight of size [3, 2, 3, 3], expected "
                                                     "input[2, 4, 5, 5] to have 3 channels, but got 4 channels "
                                                     "instead")):
        conv_transpose2d(x, tritorch.zeros((3, 2, 3, 3), device=device))
    with pytest.raises(RuntimeError, match="output padding must be smaller than either stride or dilation, but got "
                                           "output_padding_height: 2 output_padding_width: 2 stride_height: 2"):
        conv_transpose2d(x, tritorch.zeros((4, 2, 3, 3), device=device), stride=2, output_padding=2)
    with pytest.raises(RuntimeError, match=re_escape("Given input size per channel: (1 x 1). Calculated output size "
                                                     "per channel: (-1 x -1). Output size is too small")):
        conv_transpose2d(tritorch.zeros((1, 4, 1, 1), device=device), tritorch.zeros((4, 2, 1, 1), device=device),
                         padding=1)


def test_module_errors():
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels must be divisible by groups"):
        Conv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        Conv2d(4, 4, 3, groups=0)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="Invalid padding string 'full'"):
        Conv1d(3, 4, 3, padding="full")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match='Only "zeros" padding mode is supported for ConvTranspose2d'):
        ConvTranspose2d(3, 4, 3, padding_mode="reflect")


def re_escape(s):
    import re
    return re.escape(s)


# ---- the real GPU ----------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [F32, tritorch.float16, tritorch.bfloat16])
def test_conv2d_gpu_larger(dtype):
    """A ResNet-like layer on the GPU (tiles of the GPU configuration, split-K weight gradient) in every dtype,
    float32 with the default TF32 products."""
    KC.ALLOW_TF32[0] = True
    ts, _ = _inputs("cuda", (4, 16, 14, 14), (32, 16, 3, 3), True, dtype=dtype)
    y = conv2d(*ts, padding=1)
    g, rg = make(y.shape, dtype, "cuda", seed=7)
    y.backward(g)
    ry, rgx, rgw, rgb = ref_conv2d(to_np(ts[0]), to_np(ts[1]), to_np(ts[2]), 1, 1, g=rg)
    tol = {F32: 2e-2, tritorch.float16: 5e-2, tritorch.bfloat16: 3e-1}[dtype]   # tf32 / half inputs
    for out, ref in ((y, ry), (ts[0].grad, rgx), (ts[1].grad, rgw), (ts[2].grad, rgb)):
        assert_close(out, ref, dtype, rtol=tol, atol=tol * max(1.0, float(np.abs(ref).max()) / 10))


# ---- conv3d: the 2-D kernels over stacked depth taps ---------------------------------------------------------------

def ref_conv3d(x, w, b, stride, padding, dilation, groups, g):
    """float64 conv3d and its gradients from the 2-D oracle, one (output depth, depth tap) pair at a time."""
    s, d = (stride,) * 3 if isinstance(stride, int) else stride, (dilation,) * 3 if isinstance(dilation, int) \
        else dilation
    KD = w.shape[2]
    if padding == "same":
        t = d[0] * (KD - 1)
        pd, p2 = (t // 2, t - t // 2), "same"
    else:
        p = (padding,) * 3 if isinstance(padding, int) else padding
        pd, p2 = (p[0], p[0]), p[1:]
    xp = np.pad(x, ((0, 0), (0, 0), pd, (0, 0), (0, 0)))
    OD = (xp.shape[2] - d[0] * (KD - 1) - 1) // s[0] + 1
    ys, gxp, gw = [], np.zeros_like(xp), np.zeros_like(w)
    for od in range(OD):
        acc = 0
        for kd in range(KD):
            di = od * s[0] + kd * d[0]
            y2, gx2, gw2, _ = ref_conv2d(xp[:, :, di], w[:, :, kd], None, s[1:], p2, d[1:], groups, g=g[:, :, od])
            acc = acc + y2
            gxp[:, :, di] += gx2
            gw[:, :, kd] += gw2
        ys.append(acc)
    y = np.stack(ys, 2) + (0 if b is None else b.reshape(-1, 1, 1, 1))
    return y, gxp[:, :, pd[0]:pd[0] + x.shape[2]], gw, g.sum((0, 2, 3, 4))


CONV3D = [  # (input shape, out channels, kernel, stride, padding, dilation, groups, bias)
    ((2, 4, 7, 6, 8), 6, (3, 2, 3), (2, 1, 1), (1, 0, 2), (1, 2, 1), 2, True),
    ((1, 3, 5, 5, 5), 5, 3, 1, "same", 1, 1, True),
    ((2, 2, 4, 3, 5), 3, (2, 1, 2), 1, "same", (2, 1, 1), 1, False),     # even kernel, dilated depth
    ((1, 2, 1, 1, 1), 2, 1, 1, 0, 1, 1, True),                          # every size 1
]


@pytest.mark.parametrize("case", CONV3D, ids=[f"c{i}" for i in range(len(CONV3D))])
def test_conv3d(device, case):
    xshape, oc, k, s, p, d, groups, bias = case
    k = (k,) * 3 if isinstance(k, int) else k
    ts, (rx, rw, rb) = _inputs(device, xshape, (oc, xshape[1] // groups) + k, bias)
    y = KC.conv3d(*ts, stride=s, padding=p, dilation=d, groups=groups)
    assert y.dtype is F32 and y.device.type == device and y.is_contiguous()
    _check_grads(y, ts, lambda rg: ref_conv3d(rx, rw, rb, s, p, d, groups, rg), F32,
                 xshape[1] // groups * math.prod(k))


def test_conv3d_module_unbatched_empty_and_gradcheck(device):
    tritorch.manual_seed(3)
    m = Conv3d(2, 3, (2, 3, 3), padding=1, padding_mode="circular", device=device)
    assert tuple(m(tritorch.zeros(2, 4, 5, 6, device=device)).shape) == (3, 5, 5, 6)
    assert tuple(m(tritorch.zeros(0, 2, 4, 5, 6, device=device)).shape) == (0, 3, 5, 5, 6)
    with pytest.raises(RuntimeError, match="Expected 4D \\(unbatched\\) or 5D \\(batched\\) input to conv3d"):
        m(tritorch.zeros(2, 4, 5, device=device))
    if device == "cpu":
        args = (_f64((1, 2, 3, 4, 3), 0), _f64((2, 1, 2, 2, 2), 1), _f64((2,), 2))
        assert gradcheck(lambda x, w, b: KC.conv3d(x, w, b, stride=(2, 1, 1), padding=(1, 0, 1), groups=2), args)


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.float16, tritorch.bfloat16])
@pytest.mark.parametrize("frozen_weight", [False, True])
def test_bias_grad_reads_the_gradient_once(dtype, frozen_weight):
    """With the weight's gradient the bias's comes from the same launch (``_conv_wgrad_kernel`` sums the tiles of g
    it reads: no reduction kernel); without it, float32 sums (N, H, W) without copying the gradient to bring channels
    last and the half types take the one reduction (a copy, then float32 accumulation rounded once)."""
    rng = np.random.default_rng(0)
    x = tritorch.tensor(rng.standard_normal((3, 2, 9, 7)), dtype=dtype, device="cuda")
    conv = Conv2d(2, 5, 3, padding=1).to("cuda", dtype)
    conv.weight.requires_grad_(not frozen_weight)
    gn = rng.standard_normal((3, 5, 9, 7)) * 50
    y = conv(x)
    with profile() as prof:
        y.backward(tritorch.tensor(gn, dtype=dtype, device="cuda"))
    half = dtype is not tritorch.float32
    reductions = prof.kernel_launches("_reduce_rows_kernel") + prof.kernel_launches("_reduce_mid_kernel")
    if frozen_weight:
        assert prof.kernel_launches("_pointwise_kernel") == (1 if half else 0) and reductions == 2 - half
    elif not (dtype is tritorch.bfloat16 and tritorch.cuda.is_interpreted()):    # (the interpreter: float32, summed)
        assert reductions == 0 and prof.kernel_launches("_conv_wgrad_kernel") == 1
    want = to_np(tritorch.tensor(gn, dtype=dtype)).astype(np.float64).sum((0, 2, 3))
    np.testing.assert_allclose(conv.bias.grad.float().cpu().numpy(), want,
                               rtol={tritorch.float32: 1e-5, tritorch.float16: 2e-3}.get(dtype, 1.6e-2))


@pytest.mark.parametrize("split,dtype", [(2, F32), (3, tritorch.bfloat16), (2, tritorch.float16)])
def test_conv2d_bias_grad_with_the_weight_grad_split(monkeypatch, split, dtype):
    """The bias gradient of pixel slices, summed through the float32 workspace as the weight's."""
    monkeypatch.setattr(KC, "_wgrad_split", lambda *a: split)
    ts, (rx, rw, rb) = _inputs("cuda", (2, 4, 6, 5), (6, 2, 3, 3), True, dtype=dtype)
    y = conv2d(*ts, padding=1, groups=2)
    _check_grads(y, ts, lambda rg: ref_conv2d(rx, rw, rb, 1, 1, 1, 2, g=rg), dtype, 18)


