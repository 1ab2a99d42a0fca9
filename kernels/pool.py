"""2-D pooling: ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d``, ``adaptive_max_pool2d`` (and the 1-D forms,
run as 2-D pooling of an (N, C, 1, L) view), forward and backward.

One forward kernel serves every kind: a program takes BLOCK output elements of an (N, C, OH, OW) result, finds each
one's window in the strided NCHW input and loops over its taps with masked loads. Windows are PyTorch's:
- fixed: rows ``oh * stride - pad + kh * dilation`` for kh < kernel (taps in the padding are skipped);
- adaptive: rows ``floor(oh * H / OH) <= h < ceil((oh + 1) * H / OH)``.
Max keeps the first maximum in window order (and any NaN), with its index ``h * W + w`` in the input plane; avg
divides by the window size PyTorch uses (``count_include_pad``, ``divisor_override``, or the clipped window).

Backward is a gather, so it needs no atomics: a program takes BLOCK input elements and, for each, visits the outputs
whose windows cover it (for a fixed window, the tap kh covers row ih from output ``(ih + pad - kh * dilation) /
stride`` when that division is exact), adding their gradient where the saved argmax is this element (max) or
gradient / divisor (avg). Arithmetic runs in float32 for half types.
"""

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from ._launch import ACC, ptr, cdiv, next_pow2, interp_bf16_in, interp_bf16_out
from ._common import empty, wrap

__all__ = ["max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "adaptive_avg_pool1d", "adaptive_max_pool1d", "pool_output_size"]

MAX, AVG = 0, 1

# ====================================================================================================================
# The kernels
# ====================================================================================================================


@triton.jit
def _avg_divisor(oh, ow, H, W, KH, KW, SH, SW, PH, PW, divisor,
                 ADAPTIVE: tl.constexpr, COUNT_PAD: tl.constexpr, OVERRIDE: tl.constexpr, OH, OW):
    """The number PyTorch divides an average window's sum by."""
    if OVERRIDE:
        d = tl.zeros_like(oh) + divisor
    elif ADAPTIVE:
        d = (((oh + 1) * H + OH - 1) // OH - (oh * H) // OH) * (((ow + 1) * W + OW - 1) // OW - (ow * W) // OW)
    else:
        hs = oh * SH - PH
        ws = ow * SW - PW
        he = tl.minimum(hs + KH, H + PH)
        we = tl.minimum(ws + KW, W + PW)
        if COUNT_PAD:
            d = (he - hs) * (we - ws)
        else:
            d = (tl.minimum(he, H) - tl.maximum(hs, 0)) * (tl.minimum(we, W) - tl.maximum(ws, 0))
    return d


@triton.jit
def _pool_fwd_kernel(x_ptr, y_ptr, idx_ptr, total, C, H, W, OH, OW, sxn, sxc, sxh, sxw,
                     KH, KW, SH, SW, PH, PW, DH, DW, divisor,
                     MODE: tl.constexpr, ADAPTIVE: tl.constexpr, COUNT_PAD: tl.constexpr, OVERRIDE: tl.constexpr,
                     RET_IDX: tl.constexpr, CT: tl.constexpr, BLOCK: tl.constexpr):
    """y[n, c, oh, ow] = max or mean of x over the window of (oh, ow); idx = argmax as h * W + w (RET_IDX)."""
    o = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = o < total
    ow = o % OW
    t = o // OW
    oh = t % OH
    t = t // OH
    c = t % C
    n = t // C
    base = x_ptr + n * sxn + c * sxc
    if ADAPTIVE:
        h0 = (oh * H) // OH
        h1 = ((oh + 1) * H + OH - 1) // OH
        w0 = (ow * W) // OW
        w1 = ((ow + 1) * W + OW - 1) // OW
    else:
        h0 = oh * SH - PH
        w0 = ow * SW - PW
    best = tl.full([BLOCK], -float("inf"), CT)
    arg = tl.full([BLOCK], -1, tl.int64)
    acc = tl.zeros([BLOCK], CT)
    for kh in range(0, KH):
        if ADAPTIVE:
            h = h0 + kh
            hv = h < h1
        else:
            h = h0 + kh * DH
            hv = (h >= 0) & (h < H)
        for kw in range(0, KW):
            if ADAPTIVE:
                w = w0 + kw
                wv = w < w1
            else:
                w = w0 + kw * DW
                wv = (w >= 0) & (w < W)
            valid = mask & hv & wv
            v = tl.load(base + h * sxh + w * sxw, mask=valid, other=0.0).to(CT)
            if MODE == 0:
                take = valid & ((v > best) | (v != v) | (arg < 0))
                best = tl.where(take, v, best)
                arg = tl.where(take, h * W + w, arg)
            else:
                acc += v
    if MODE == 0:
        res = best
        if RET_IDX:
            tl.store(idx_ptr + o, arg, mask=mask)
    else:
        d = _avg_divisor(oh, ow, H, W, KH, KW, SH, SW, PH, PW, divisor, ADAPTIVE, COUNT_PAD, OVERRIDE, OH, OW)
        res = acc / d.to(CT)
    tl.store(y_ptr + o, res.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _pool_bwd_kernel(g_ptr, idx_ptr, dx_ptr, total, C, H, W, OH, OW, CH, CW,
                     KH, KW, SH, SW, PH, PW, DH, DW, divisor,
                     MODE: tl.constexpr, ADAPTIVE: tl.constexpr, COUNT_PAD: tl.constexpr, OVERRIDE: tl.constexpr,
                     CT: tl.constexpr, BLOCK: tl.constexpr):
    """dx[n, c, ih, iw] = sum over the outputs whose window covers (ih, iw) of their gradient (max: only where the
    saved argmax is this element; avg: divided by the window's divisor). g and idx are contiguous (N, C, OH, OW);
    CH x CW candidate outputs are visited per element."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < total
    iw = i % W
    t = i // W
    ih = t % H
    plane = t // H
    g_base = g_ptr + plane * OH * OW
    i_base = idx_ptr + plane * OH * OW
    me = ih * W + iw
    acc = tl.zeros([BLOCK], CT)
    for kh in range(0, CH):
        if ADAPTIVE:
            oh = (ih * OH) // H + kh
            hv = (oh < OH) & ((oh * H) // OH <= ih) & (ih < ((oh + 1) * H + OH - 1) // OH)
        else:
            th = ih + PH - kh * DH
            oh = th // SH
            hv = (th >= 0) & (th % SH == 0) & (oh < OH)
        for kw in range(0, CW):
            if ADAPTIVE:
                ow = (iw * OW) // W + kw
                wv = (ow < OW) & ((ow * W) // OW <= iw) & (iw < ((ow + 1) * W + OW - 1) // OW)
            else:
                tw = iw + PW - kw * DW
                ow = tw // SW
                wv = (tw >= 0) & (tw % SW == 0) & (ow < OW)
            valid = mask & hv & wv
            off = oh * OW + ow
            g = tl.load(g_base + off, mask=valid, other=0.0).to(CT)
            if MODE == 0:
                a = tl.load(i_base + off, mask=valid, other=-1)
                acc += tl.where(valid & (a == me), g, 0.0)
            else:
                d = _avg_divisor(oh, ow, H, W, KH, KW, SH, SW, PH, PW, divisor, ADAPTIVE, COUNT_PAD, OVERRIDE,
                                 OH, OW)
                acc += tl.where(valid, g / tl.maximum(d, 1).to(CT), 0.0)
    tl.store(dx_ptr + i, acc.to(dx_ptr.dtype.element_ty), mask=mask)


# ====================================================================================================================
# NumPy references
# ====================================================================================================================

def _windows(p, H, W, OH, OW):
    """Per output (oh, ow): the list of (h, w) taps of its window, in window order (fixed or adaptive)."""
    if p["adaptive"]:
        rows = [range(oh * H // OH, -(-(oh + 1) * H // OH)) for oh in range(OH)]
        cols = [range(ow * W // OW, -(-(ow + 1) * W // OW)) for ow in range(OW)]
    else:
        (KH, KW), (SH, SW), (PH, PW), (DH, DW) = p["k"], p["s"], p["p"], p["d"]
        rows = [[oh * SH - PH + kh * DH for kh in range(KH)] for oh in range(OH)]
        cols = [[ow * SW - PW + kw * DW for kw in range(KW)] for ow in range(OW)]
    return rows, cols


def _np_divisor(p, oh, ow, H, W, OH, OW):
    if p["divisor"]:
        return p["divisor"]
    if p["adaptive"]:
        return ((-(-(oh + 1) * H // OH)) - oh * H // OH) * ((-(-(ow + 1) * W // OW)) - ow * W // OW)
    (KH, KW), (SH, SW), (PH, PW) = p["k"], p["s"], p["p"]
    hs, ws = oh * SH - PH, ow * SW - PW
    he, we = min(hs + KH, H + PH), min(ws + KW, W + PW)
    if p["count_include_pad"]:
        return (he - hs) * (we - ws)
    return (min(he, H) - max(hs, 0)) * (min(we, W) - max(ws, 0))


def _np_pool(x, p, OH, OW):
    """Reference forward over an (N, C, H, W) array: (y, argmax or None), window by window (tests use small
    outputs), each window vectorised over N and C."""
    N, C, H, W = x.shape
    rows, cols = _windows(p, H, W, OH, OW)
    y = np.zeros((N, C, OH, OW), x.dtype)
    idx = np.zeros((N, C, OH, OW), np.int64) if p["mode"] == MAX else None
    for oh in range(OH):
        hs = [h for h in rows[oh] if 0 <= h < H]
        for ow in range(OW):
            ws = [w for w in cols[ow] if 0 <= w < W]
            taps = [(h, w) for h in hs for w in ws]
            vals = np.stack([x[:, :, h, w] for h, w in taps], -1)
            if p["mode"] == MAX:
                best = vals[..., 0].copy()
                arg = np.zeros(best.shape, np.int64)
                for k in range(1, len(taps)):
                    v = vals[..., k]
                    take = (v > best) | np.isnan(v)
                    best = np.where(take, v, best)
                    arg = np.where(take, k, arg)
                y[:, :, oh, ow] = best
                flat = np.array([h * W + w for h, w in taps], np.int64)
                idx[:, :, oh, ow] = flat[arg]
            else:
                y[:, :, oh, ow] = vals.sum(-1) / _np_divisor(p, oh, ow, H, W, OH, OW)
    return y, idx


def _np_pool_bwd(g, idx, p, in_shape):
    N, C, H, W = in_shape
    OH, OW = g.shape[2:]
    dx = np.zeros((N * C, H * W), g.dtype)
    if p["mode"] == MAX:
        g2, i2 = g.reshape(N * C, OH * OW), idx.reshape(N * C, OH * OW)     # explicit sizes: N may be 0
        for r in range(N * C):
            np.add.at(dx[r], i2[r], g2[r])
        return dx.reshape(in_shape)
    dx = dx.reshape(in_shape)
    rows, cols = _windows(p, H, W, OH, OW)
    for oh in range(OH):
        hs = [h for h in rows[oh] if 0 <= h < H]
        for ow in range(OW):
            ws = [w for w in cols[ow] if 0 <= w < W]
            gv = g[:, :, oh, ow] / _np_divisor(p, oh, ow, H, W, OH, OW)
            for h in hs:
                for w in ws:
                    dx[:, :, h, w] += gv
    return dx


# ====================================================================================================================
# Launch
# ====================================================================================================================

def _block(n):
    if INTERPRET:
        return max(16, min(next_pow2(n), 256))
    return 256


def _kernel_args(p):
    if p["adaptive"]:
        return (0, 0, 1, 1, 0, 0, 1, 1)
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = p["k"], p["s"], p["p"], p["d"]
    return (KH, KW, SH, SW, PH, PW, DH, DW)


def _launch_fwd(x, p, OH, OW, ret_idx):
    N, C, H, W = x._shape
    out_dtype = x.dtype
    xin = interp_bf16_in(x)
    y = empty((N, C, OH, OW), xin.dtype, x.device)
    idx = empty((N, C, OH, OW), D.int64, x.device) if ret_idx else None
    total = y.numel()
    if total:
        KH, KW, SH, SW, PH, PW, DH, DW = _kernel_args(p)
        if p["adaptive"]:
            KH, KW = cdiv(H, OH) + 1, cdiv(W, OW) + 1
        block = _block(total)
        _pool_fwd_kernel[(cdiv(total, block),)](
            ptr(xin), ptr(y), ptr(idx) if ret_idx else ptr(y), total, C, H, W, OH, OW, *xin._stride,
            KH, KW, SH, SW, PH, PW, DH, DW, int(p["divisor"] or 0),
            MODE=p["mode"], ADAPTIVE=p["adaptive"], COUNT_PAD=bool(p["count_include_pad"]),
            OVERRIDE=bool(p["divisor"]), RET_IDX=ret_idx, CT=ACC[xin.dtype], BLOCK=block)
    return interp_bf16_out(y, out_dtype), idx


def _launch_bwd(g, idx, p, in_shape, dtype, device):
    N, C, H, W = in_shape
    OH, OW = g._shape[2:]
    g = interp_bf16_in(g.contiguous())
    dx = empty(in_shape, g.dtype, device)
    total = dx.numel()
    if total:
        KH, KW, SH, SW, PH, PW, DH, DW = _kernel_args(p)
        if p["adaptive"]:
            CH, CW = cdiv(OH, H) + 1, cdiv(OW, W) + 1
        else:
            CH, CW = KH, KW
        block = _block(total)
        _pool_bwd_kernel[(cdiv(total, block),)](
            ptr(g), ptr(idx) if idx is not None else ptr(g), ptr(dx), total, C, H, W, OH, OW, CH, CW,
            KH, KW, SH, SW, PH, PW, DH, DW, int(p["divisor"] or 0),
            MODE=p["mode"], ADAPTIVE=p["adaptive"], COUNT_PAD=bool(p["count_include_pad"]),
            OVERRIDE=bool(p["divisor"]), CT=ACC[g.dtype], BLOCK=block)
    return interp_bf16_out(dx, dtype)


# ====================================================================================================================
# The autograd Function
# ====================================================================================================================

_NAMES = {(MAX, False): "MaxPool2DWithIndicesBackward0", (AVG, False): "AvgPool2DBackward0",
          (MAX, True): "AdaptiveMaxPool2DBackward0", (AVG, True): "AdaptiveAvgPool2DBackward0"}


class Pool2d(Function):
    @staticmethod
    def forward(ctx, x, p, OH, OW):
        ret_idx = p["mode"] == MAX
        if x._storage.device.type == "cpu":
            ct = np.float64 if x.dtype is D.float64 else np.float32
            y, idx = _np_pool(x._np.astype(ct), p, OH, OW)
            y = wrap(y.astype(x.dtype.np), x.dtype, x.device)
            idx = wrap(idx, D.int64, x.device) if ret_idx else None
        else:
            y, idx = _launch_fwd(x, p, OH, OW, ret_idx)
        ctx._name = _NAMES[(p["mode"], p["adaptive"])]
        ctx.p, ctx.in_shape, ctx.dtype, ctx.dev = p, x._shape, x.dtype, x.device
        if idx is not None:
            ctx.mark_non_differentiable(idx)
            ctx.save_for_backward(idx)
            return y, idx
        return y

    @staticmethod
    def backward(ctx, g, *_):
        p = ctx.p
        idx = ctx.saved_tensors[0] if p["mode"] == MAX else None
        if STATE.enabled:           # create_graph: a Function of g whose own backward is again a pooling
            return PoolGrad.apply(g, idx, p, ctx.in_shape), None, None, None
        return _pool_grad(g, idx, p, ctx.in_shape, ctx.dtype, ctx.dev), None, None, None


def _pool_grad(g, idx, p, in_shape, dtype, dev):
    """dx of a pooling from its output gradient g (and the argmax for max)."""
    if g._storage.device.type == "cpu":
        ct = np.float64 if g.dtype is D.float64 else np.float32
        dx = _np_pool_bwd(np.ascontiguousarray(g._np, dtype=ct), None if idx is None else idx._np, p, in_shape)
        return wrap(dx.astype(dtype.np), dtype, dev)
    return _launch_bwd(g, idx, p, in_shape, dtype, dev)


class PoolGrad(Function):
    """The pooling backward as an op of g (linear in g): its gradient is the pooling of gg with the same windows
    (avg) or gg read at the saved argmax (max)."""

    @staticmethod
    def forward(ctx, g, idx, p, in_shape):
        ctx.p, ctx.idx, ctx.out_shape = p, idx, g._shape
        return _pool_grad(g, idx, p, in_shape, g.dtype, g.device)

    @staticmethod
    def backward(ctx, gg):
        p = ctx.p
        N, C, OH, OW = ctx.out_shape
        if p["mode"] == MAX:
            H, W = gg._shape[2:]
            out = gg.reshape(N, C, H * W).gather(2, ctx.idx.reshape(N, C, OH * OW)).reshape(N, C, OH, OW)
        else:
            out = Pool2d.apply(gg, p, OH, OW)
        return out, None, None, None


# ====================================================================================================================
# Argument checks and the public functions
# ====================================================================================================================

def _pair(v, name, n=2):
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = tuple(v) * n
        if len(v) != n:
            raise RuntimeError(f"{name} must either be a single int, or a tuple of {n} ints")
        return tuple(int(a) for a in v)
    return (int(v),) * n


def pool_output_size(size, k, pad, stride, dilation, ceil_mode):
    """PyTorch's ``pooling_output_shape``: floor (or ceil) of the window count, minus a last window that would
    start inside the right padding."""
    span = size + 2 * pad - dilation * (k - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _as4d(input, name, ndim_ok=(3, 4)):
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")
    if input.ndim not in ndim_ok:
        raise RuntimeError(f"{name}: Expected 3D or 4D (batch mode) tensor for input, but got: {list(input.shape)}")
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"\"{name}\" not implemented for '{input.dtype}'")
    if any(n == 0 for n in input._shape[-3:]):
        raise RuntimeError(f"{name}: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, "
                           f"but got: {list(input.shape)}")
    batched = input.ndim == 4
    return (input if batched else input.unsqueeze(0)), batched


def _fixed_pool(input, mode, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, divisor, name):
    x, batched = _as4d(input, name)
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else _pair(stride, "stride")
    pd = _pair(padding, "padding")
    dl = _pair(dilation, "dilation")
    if any(v <= 0 for v in k):
        raise RuntimeError(f"kernel size should be greater than zero, but got kH: {k[0]} kW: {k[1]}")
    if any(v <= 0 for v in s):
        raise RuntimeError(f"stride should be greater than zero, but got dH: {s[0]} dW: {s[1]}")
    if any(v <= 0 for v in dl):
        raise RuntimeError(f"dilation should be greater than zero, but got dilationH: {dl[0]} dilationW: {dl[1]}")
    for kk, pp, dd in zip(k, pd, dl):
        if pp < 0:
            raise RuntimeError(f"pad must be non-negative, but got pad: {pp}")
        if pp > ((kk - 1) * dd + 1) // 2:
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={pp}, "
                               f"kernel_size={kk} and dilation={dd}")
    if divisor is not None and divisor == 0:
        raise RuntimeError("divisor must be not zero")
    N, C, H, W = x._shape
    OH = pool_output_size(H, k[0], pd[0], s[0], dl[0], ceil_mode)
    OW = pool_output_size(W, k[1], pd[1], s[1], dl[1], ceil_mode)
    if OH < 1 or OW < 1:
        raise RuntimeError(f"Given input size: ({C}x{H}x{W}). Calculated output size: ({C}x{OH}x{OW}). "
                           "Output size is too small")
    p = {"mode": mode, "adaptive": False, "k": k, "s": s, "p": pd, "d": dl,
         "count_include_pad": count_include_pad, "divisor": divisor}
    return x, batched, p, OH, OW


def _finish(res, batched, ret_idx):
    if isinstance(res, tuple):
        y, idx = res
    else:
        y, idx = res, None
    if not batched:
        y = y.squeeze(0)
        idx = idx.squeeze(0) if idx is not None else None
    return (y, idx) if ret_idx else y


@register("max_pool2d", method=False)
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over (dilated) windows of (C, H, W) / (N, C, H, W); with ``return_indices`` also the argmax of each
    window as ``h * W + w`` (the first maximum in window order)."""
    x, batched, p, OH, OW = _fixed_pool(input, MAX, kernel_size, stride, padding, dilation, ceil_mode, True, None,
                                        "max_pool2d")
    return _finish(Pool2d.apply(x, p, OH, OW), batched, return_indices)


@register("avg_pool2d", method=False)
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over windows of (C, H, W) / (N, C, H, W): the sum divided by the window size (padding included with
    ``count_include_pad``), or by ``divisor_override``."""
    x, batched, p, OH, OW = _fixed_pool(input, AVG, kernel_size, stride, padding, 1, ceil_mode, count_include_pad,
                                        divisor_override, "avg_pool2d")
    return Pool2d.apply(x, p, OH, OW) if batched else Pool2d.apply(x, p, OH, OW).squeeze(0)


def _one_d(input, name):
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")
    if input.ndim not in (2, 3):
        raise RuntimeError(f"{name}: Expected 2D or 3D (batch mode) tensor for input, but got: {list(input.shape)}")
    return input.unsqueeze(-2)


def _one(v):
    return (v[0] if isinstance(v, (tuple, list)) and len(v) else v)


@register("max_pool1d", method=False)
def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """``max_pool2d`` of the (N, C, 1, L) view with a (1, k) window."""
    x = _one_d(input, "max_pool1d")
    stride = None if stride is None or (isinstance(stride, (tuple, list)) and not stride) else (1, _one(stride))
    res = max_pool2d(x, (1, _one(kernel_size)), stride, (0, _one(padding)), (1, _one(dilation)), ceil_mode, True)
    y, idx = res[0].squeeze(-2), res[1].squeeze(-2)
    return (y, idx) if return_indices else y


@register("avg_pool1d", method=False)
def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """``avg_pool2d`` of the (N, C, 1, L) view with a (1, k) window."""
    x = _one_d(input, "avg_pool1d")
    stride = None if stride is None or (isinstance(stride, (tuple, list)) and not stride) else (1, _one(stride))
    return avg_pool2d(x, (1, _one(kernel_size)), stride, (0, _one(padding)), ceil_mode,
                      count_include_pad).squeeze(-2)


def _adaptive(input, output_size, mode, name):
    x, batched = _as4d(input, name)
    N, C, H, W = x._shape
    os_ = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(os_) != 2:
        raise RuntimeError(f"{name}: internal error: output_size.size() must be 2")
    OH, OW = (H if os_[0] is None else int(os_[0])), (W if os_[1] is None else int(os_[1]))
    if OH < 0 or OW < 0 or (mode == MAX and (OH == 0 or OW == 0)):
        raise RuntimeError(f"{name}: elements of output_size must be greater than or equal to 0 but received "
                           f"{{{OH}, {OW}}}")
    if H == 0 or W == 0:
        raise RuntimeError(f"{name}: Expected input to have non-zero size for non-batch dimensions, but input has "
                           f"sizes {list(input.shape)} with dimension {input.ndim - 2 if H == 0 else input.ndim - 1}"
                           " being empty")
    p = {"mode": mode, "adaptive": True, "count_include_pad": False, "divisor": None}
    return x, batched, p, OH, OW


@register("adaptive_avg_pool2d", method=False)
def adaptive_avg_pool2d(input, output_size):
    """Mean over PyTorch's adaptive windows rows floor(i*H/OH) .. ceil((i+1)*H/OH) (and columns likewise);
    ``None`` in ``output_size`` keeps that input size."""
    x, batched, p, OH, OW = _adaptive(input, output_size, AVG, "adaptive_avg_pool2d")
    y = Pool2d.apply(x, p, OH, OW)
    return y if batched else y.squeeze(0)


@register("adaptive_max_pool2d", method=False)
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over the adaptive windows of ``adaptive_avg_pool2d``, with the argmax as ``h * W + w``."""
    x, batched, p, OH, OW = _adaptive(input, output_size, MAX, "adaptive_max_pool2d")
    return _finish(Pool2d.apply(x, p, OH, OW), batched, return_indices)


@register("adaptive_avg_pool1d", method=False)
def adaptive_avg_pool1d(input, output_size):
    x = _one_d(input, "adaptive_avg_pool1d")
    return adaptive_avg_pool2d(x, (1, _one(output_size))).squeeze(-2)


@register("adaptive_max_pool1d", method=False)
def adaptive_max_pool1d(input, output_size, return_indices=False):
    x = _one_d(input, "adaptive_max_pool1d")
    y, idx = adaptive_max_pool2d(x, (1, _one(output_size)), True)
    y, idx = y.squeeze(-2), idx.squeeze(-2)
    return (y, idx) if return_indices else y
