"""Pooling: ``max_pool2d/3d``, ``avg_pool2d/3d``, ``adaptive_avg_pool2d/3d``, ``adaptive_max_pool2d/3d`` (and the 1-D
forms, run as 2-D pooling of an (N, C, 1, L) view), forward and backward.

Every pooling is a 3-D pooling of an (N, C, D, H, W) input: a 2-D one reads its (N, C, H, W) input as D = 1 (a
zero-stride view made inside the op, with a window of depth 1), so one kernel per direction serves every kind and
rank. A forward program takes BLOCK output elements of an (N, C, OD, OH, OW) result, finds each one's window in the
strided input and loops over its taps with masked loads. Windows are PyTorch's, per dim:
- fixed: rows ``o * stride - pad + k * dilation`` for k < kernel (taps in the padding are skipped);
- adaptive: rows ``floor(o * I / O) <= i < ceil((o + 1) * I / O)``.
Max keeps the first maximum in window order (and any NaN), with its index ``(d * H + h) * W + w`` in the input
volume (``h * W + w`` for 2-D); avg divides by the window size PyTorch uses (``count_include_pad``,
``divisor_override``, or the clipped window).

Backward is a gather, so it needs no atomics: a program takes BLOCK input elements and, for each, visits the outputs
whose windows cover it (for a fixed window, the tap k covers row i from output ``(i + pad - k * dilation) / stride``
when that division is exact), adding their gradient where the saved argmax is this element (max) or
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
from ._launch import ACC, ptr, cdiv, next_pow2, interp_bf16_in, interp_bf16_out, is_int64_index
from ._common import empty, wrap
from .elementwise import UNARY

__all__ = ["max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "adaptive_avg_pool1d", "adaptive_max_pool1d", "max_pool3d", "avg_pool3d", "adaptive_avg_pool3d",
           "adaptive_max_pool3d", "pool_output_size", "pool_window", "pool_forward", "pool_grad", "Pool", "PoolGrad",
           "MAX", "AVG"]

MAX, AVG = 0, 1

# ====================================================================================================================
# The kernels
# ====================================================================================================================


@triton.jit
def _win_len(o, n, on, k, s, p, ADAPTIVE: tl.constexpr, COUNT_PAD: tl.constexpr):
    """Along one dim: the length of output o's window that an average divides by."""
    if ADAPTIVE:
        d = ((o + 1) * n + on - 1) // on - (o * n) // on
    else:
        st = o * s - p
        en = tl.minimum(st + k, n + p)
        if COUNT_PAD:
            d = en - st
        else:
            d = tl.minimum(en, n) - tl.maximum(st, 0)
    return d


@triton.jit
def _avg_divisor(od, oh, ow, D, H, W, OD, OH, OW, KD, KH, KW, SD, SH, SW, PD, PH, PW, divisor,
                 ADAPTIVE: tl.constexpr, COUNT_PAD: tl.constexpr, OVERRIDE: tl.constexpr):
    """The number PyTorch divides an average window's sum by."""
    if OVERRIDE:
        d = tl.zeros_like(oh) + divisor
    else:
        d = (_win_len(od, D, OD, KD, SD, PD, ADAPTIVE, COUNT_PAD) * _win_len(oh, H, OH, KH, SH, PH, ADAPTIVE, COUNT_PAD)
             * _win_len(ow, W, OW, KW, SW, PW, ADAPTIVE, COUNT_PAD))
    return d


@triton.jit
def _win_start(o, n, on, s, p, ADAPTIVE: tl.constexpr):
    """Along one dim: the first row of output o's window and the end that bounds it (exclusive)."""
    if ADAPTIVE:
        st = (o * n) // on
        en = ((o + 1) * n + on - 1) // on
    else:
        st = o * s - p
        en = tl.zeros_like(o) + n
    return st, en


@triton.jit
def _cover(i, k, n, on, s, p, dl, ADAPTIVE: tl.constexpr):
    """Along one dim: the k-th output whose window may cover input row i, and whether it does."""
    if ADAPTIVE:
        o = (i * on) // n + k
        v = (o < on) & ((o * n) // on <= i) & (i < ((o + 1) * n + on - 1) // on)
    else:
        t = i + p - k * dl
        o = t // s
        v = (t >= 0) & (t % s == 0) & (o < on)
    return o, v


@triton.jit
def _pool_fwd_kernel(x_ptr, y_ptr, idx_ptr, total, C, D, H, W, OD, OH, OW, sxn, sxc, sxd, sxh, sxw,
                     KD, KH, KW, SD, SH, SW, PD, PH, PW, DD, DH, DW, divisor,
                     MODE: tl.constexpr, ADAPTIVE: tl.constexpr, COUNT_PAD: tl.constexpr, OVERRIDE: tl.constexpr,
                     RET_IDX: tl.constexpr, CT: tl.constexpr, I64: tl.constexpr, BLOCK: tl.constexpr):
    """y[n, c, od, oh, ow] = max or mean of x over the window of (od, oh, ow); x (N, C, D, H, W) through its strides
    (sxn, sxc, sxd, sxh, sxw, in elements), y and idx contiguous (N, C, OD, OH, OW); idx = argmax as
    (d * H + h) * W + w (RET_IDX). KD x KH x KW taps are visited per output (adaptive: the longest window).
    Index math runs in int32 unless ``I64`` (an offset could pass 2**31): int64 division spilled registers."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    o = pid * BLOCK + tl.arange(0, BLOCK)
    mask = o < total
    ow = o % OW
    t = o // OW
    oh = t % OH
    t = t // OH
    od = t % OD
    t = t // OD
    c = t % C
    n = t // C
    base = x_ptr + n * sxn + c * sxc
    d0, d1 = _win_start(od, D, OD, SD, PD, ADAPTIVE)
    h0, h1 = _win_start(oh, H, OH, SH, PH, ADAPTIVE)
    w0, w1 = _win_start(ow, W, OW, SW, PW, ADAPTIVE)
    best = tl.full([BLOCK], -float("inf"), CT)
    arg = tl.full([BLOCK], -1, tl.int64)
    acc = tl.zeros([BLOCK], CT)
    for kd in range(0, KD):
        d = d0 + kd * DD
        dv = (d >= 0) & (d < d1)
        for kh in range(0, KH):
            h = h0 + kh * DH
            hv = dv & (h >= 0) & (h < h1)
            for kw in range(0, KW):
                w = w0 + kw * DW
                valid = mask & hv & (w >= 0) & (w < w1)
                v = tl.load(base + d * sxd + h * sxh + w * sxw, mask=valid, other=0.0).to(CT)
                if MODE == 0:
                    take = valid & ((v > best) | (v != v) | (arg < 0))
                    best = tl.where(take, v, best)
                    arg = tl.where(take, (d * H + h) * W + w, arg)
                else:
                    acc += v
    if MODE == 0:
        res = best
        if RET_IDX:
            tl.store(idx_ptr + o, arg, mask=mask)
    else:
        div = _avg_divisor(od, oh, ow, D, H, W, OD, OH, OW, KD, KH, KW, SD, SH, SW, PD, PH, PW, divisor,
                           ADAPTIVE, COUNT_PAD, OVERRIDE)
        res = acc / div.to(CT)
    tl.store(y_ptr + o, res.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _pool_bwd_kernel(g_ptr, idx_ptr, y_ptr, dx_ptr, total, D, H, W, OD, OH, OW, CD, CH, CW,
                     KD, KH, KW, SD, SH, SW, PD, PH, PW, DD, DH, DW, divisor, a,
                     MODE: tl.constexpr, ADAPTIVE: tl.constexpr, COUNT_PAD: tl.constexpr, OVERRIDE: tl.constexpr,
                     BWD: tl.constexpr, CT: tl.constexpr, I64: tl.constexpr, BLOCK: tl.constexpr):
    """dx[n, c, id, ih, iw] = sum over the outputs whose window covers (id, ih, iw) of their gradient (max: only
    where the saved argmax is this element; avg: divided by the window's divisor). g, idx and y are contiguous
    (N, C, OD, OH, OW), dx contiguous (N, C, D, H, W); CD x CH x CW candidate outputs are visited per element.
    Index math in int32 unless ``I64``, as the forward.

    With ``BWD`` (max only: an activation's derivative from its result, ``UNARY[act].bwd``) the pooled input was
    that activation's result and dx is the gradient of its pre-activation: each output's gradient taken is
    ``BWD(g, y, a)``, y the output itself, which is the activation's result at the argmax it selected."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < total
    iw = i % W
    t = i // W
    ih = t % H
    t = t // H
    i_d = t % D
    plane = t // D
    g_base = g_ptr + plane * OD * OH * OW
    i_base = idx_ptr + plane * OD * OH * OW
    y_base = y_ptr + plane * OD * OH * OW
    me = (i_d * H + ih) * W + iw
    acc = tl.zeros([BLOCK], CT)
    for kd in range(0, CD):
        od, dv = _cover(i_d, kd, D, OD, SD, PD, DD, ADAPTIVE)
        for kh in range(0, CH):
            oh, hv = _cover(ih, kh, H, OH, SH, PH, DH, ADAPTIVE)
            hv = hv & dv
            for kw in range(0, CW):
                ow, wv = _cover(iw, kw, W, OW, SW, PW, DW, ADAPTIVE)
                valid = mask & hv & wv
                off = (od * OH + oh) * OW + ow
                if MODE == 0:
                    hit = valid & (tl.load(i_base + off, mask=valid, other=-1) == me)
                    g = tl.load(g_base + off, mask=hit, other=0.0).to(CT)
                    if BWD is not None:
                        g = BWD(g, tl.load(y_base + off, mask=hit, other=0.0).to(CT), a, 0.0)
                    acc += tl.where(hit, g, 0.0)
                else:
                    g = tl.load(g_base + off, mask=valid, other=0.0).to(CT)
                    d = _avg_divisor(od, oh, ow, D, H, W, OD, OH, OW, KD, KH, KW, SD, SH, SW, PD, PH, PW, divisor,
                                     ADAPTIVE, COUNT_PAD, OVERRIDE)
                    acc += tl.where(valid, g / tl.maximum(d, 1).to(CT), 0.0)
    tl.store(dx_ptr + i, acc.to(dx_ptr.dtype.element_ty), mask=mask)


# ====================================================================================================================
# NumPy references
# ====================================================================================================================

def _rows(p, ax, n, on):
    """Per output along axis ``ax`` (0: D, 1: H, 2: W): its window's rows inside the input, in window order."""
    if p["adaptive"]:
        return [np.arange(o * n // on, -(-(o + 1) * n // on)) for o in range(on)]
    k, s, pd, dl = p["k"][ax], p["s"][ax], p["p"][ax], p["d"][ax]
    return [np.array([r for r in (o * s - pd + j * dl for j in range(k)) if 0 <= r < n], np.int64)
            for o in range(on)]


def _np_len(p, ax, o, n, on):
    if p["adaptive"]:
        return -(-(o + 1) * n // on) - o * n // on
    k, s, pd = p["k"][ax], p["s"][ax], p["p"][ax]
    st = o * s - pd
    en = min(st + k, n + pd)
    return en - st if p["count_include_pad"] else min(en, n) - max(st, 0)


def _np_divisor(p, o3, in3, out3):
    if p["divisor"]:
        return p["divisor"]
    return int(np.prod([_np_len(p, a, o3[a], in3[a], out3[a]) for a in range(3)]))


def _np_windows(p, in3, out3):
    """Per output (od, oh, ow): the index arrays (d, h, w) of its taps in window order, broadcast to one block."""
    rows = [_rows(p, a, in3[a], out3[a]) for a in range(3)]
    for o3 in np.ndindex(*out3):
        ds, hs, ws = (rows[a][o3[a]] for a in range(3))
        yield o3, (ds[:, None, None], hs[None, :, None], ws[None, None, :])


def _np_pool(x, p, out3):
    """Reference forward over an (N, C, D, H, W) array: (y, argmax or None) of shape (N, C, *out3), window by
    window (tests use small outputs), each window vectorised over N and C."""
    N, C = x.shape[:2]
    in3 = x.shape[2:]
    y = np.zeros((N, C) + tuple(out3), x.dtype)
    idx = np.zeros((N, C) + tuple(out3), np.int64) if p["mode"] == MAX else None
    for o3, (ds, hs, ws) in _np_windows(p, in3, out3):
        vals = x[:, :, ds, hs, ws].reshape(N, C, ds.size * hs.size * ws.size)
        if p["mode"] == MAX:
            best = vals[..., 0].copy()
            arg = np.zeros(best.shape, np.int64)
            for k in range(1, vals.shape[-1]):
                v = vals[..., k]
                take = (v > best) | np.isnan(v)
                best = np.where(take, v, best)
                arg = np.where(take, k, arg)
            y[(slice(None), slice(None)) + o3] = best
            flat = ((ds * in3[1] + hs) * in3[2] + ws).reshape(-1)
            idx[(slice(None), slice(None)) + o3] = flat[arg]
        else:
            y[(slice(None), slice(None)) + o3] = vals.sum(-1) / _np_divisor(p, o3, in3, out3)
    return y, idx


def _np_pool_bwd(g, idx, p, in5):
    """Reference backward: g (N, C, OD, OH, OW) -> dx of shape ``in5`` (N, C, D, H, W)."""
    N, C = in5[:2]
    out3 = g.shape[2:]
    M = int(np.prod(out3))
    if p["mode"] == MAX:
        dx = np.zeros((N * C, int(np.prod(in5[2:]))), g.dtype)
        g2, i2 = g.reshape(N * C, M), idx.reshape(N * C, M)         # explicit sizes: N may be 0
        for r in range(N * C):
            np.add.at(dx[r], i2[r], g2[r])
        return dx.reshape(in5)
    dx = np.zeros(in5, g.dtype)
    for o3, (ds, hs, ws) in _np_windows(p, in5[2:], out3):
        gv = g[(slice(None), slice(None)) + o3] / _np_divisor(p, o3, in5[2:], out3)
        dx[:, :, ds, hs, ws] += gv[:, :, None, None, None]
    return dx


# ====================================================================================================================
# Launch
# ====================================================================================================================

def _block(n):
    if INTERPRET:
        return max(16, min(next_pow2(n), 256))
    return 256


def _span(n, on):
    """The longest adaptive window (or cover) of ``on`` outputs over ``n`` inputs: exact when on divides n."""
    return n // on if n % on == 0 else cdiv(n, on) + 1


def _kernel_args(p, in3, out3):
    """(KD, KH, KW, SD, SH, SW, PD, PH, PW, DD, DH, DW): the window arguments of both kernels."""
    if p["adaptive"]:
        return tuple(_span(n, o) for n, o in zip(in3, out3)) + (1, 1, 1, 0, 0, 0, 1, 1, 1)
    return tuple(p["k"]) + tuple(p["s"]) + tuple(p["p"]) + tuple(p["d"])


def _launch_fwd(x5, p, out3, out_shape, ret_idx):
    N, C, Din, H, W = x5._shape
    out_dtype = x5.dtype
    xin = interp_bf16_in(x5)
    y = empty(out_shape, xin.dtype, x5.device)
    idx = empty(out_shape, D.int64, x5.device) if ret_idx else None
    total = y.numel()
    if total:
        block = _block(total)
        _pool_fwd_kernel[(cdiv(total, block),)](
            ptr(xin), ptr(y), ptr(idx) if ret_idx else ptr(y), total, C, Din, H, W, *out3, *xin._stride,
            *_kernel_args(p, (Din, H, W), out3), int(p["divisor"] or 0),
            MODE=p["mode"], ADAPTIVE=p["adaptive"], COUNT_PAD=bool(p["count_include_pad"]),
            OVERRIDE=bool(p["divisor"]), RET_IDX=ret_idx, CT=ACC[xin.dtype],
            I64=is_int64_index(total, xin, y), BLOCK=block)
    return interp_bf16_out(y, out_dtype), idx


def _launch_bwd(g, idx, p, in_shape, in3, dtype, device, act=None, y=None, alpha=0.0):
    out3 = _as3(g._shape[2:])
    g = interp_bf16_in(g.contiguous())
    y = interp_bf16_in(y.contiguous()) if act is not None else g
    dx = empty(in_shape, g.dtype, device)
    total = dx.numel()
    if total:
        args = _kernel_args(p, in3, out3)
        if p["adaptive"]:
            cover = tuple(_span(o, n) for n, o in zip(in3, out3))
        else:
            cover = args[:3]
        block = _block(total)
        _pool_bwd_kernel[(cdiv(total, block),)](
            ptr(g), ptr(idx) if idx is not None else ptr(g), ptr(y), ptr(dx), total, *in3, *out3, *cover,
            *args, int(p["divisor"] or 0), float(alpha),
            MODE=p["mode"], ADAPTIVE=p["adaptive"], COUNT_PAD=bool(p["count_include_pad"]),
            OVERRIDE=bool(p["divisor"]), BWD=None if act is None else UNARY[act].bwd, CT=ACC[g.dtype],
            I64=is_int64_index(total, g, dx, *(() if idx is None else (idx,))), BLOCK=block,
            num_warps=8)  # one input element per thread: at two, ptxas spills the window loop (compile-check)
    return interp_bf16_out(dx, dtype)


# ====================================================================================================================
# The autograd Function
# ====================================================================================================================

_NAMES = {(MAX, False): "MaxPool{}DWithIndicesBackward0", (AVG, False): "AvgPool{}DBackward0",
          (MAX, True): "AdaptiveMaxPool{}DBackward0", (AVG, True): "AdaptiveAvgPool{}DBackward0"}


def _as3(spatial):
    """Spatial sizes as (D, H, W): a 2-D pooling is a 3-D one of depth 1."""
    return (1,) * (3 - len(spatial)) + tuple(spatial)


def _as5d(x):
    """(N, C, H, W) read as (N, C, 1, H, W): a view made inside an op, with no autograd history."""
    if x.ndim == 5:
        return x
    sn, sc, sh, sw = x._stride
    return x._view(x._shape[:2] + (1,) + x._shape[2:], (sn, sc, 0, sh, sw))


def pool_forward(x, p, out3):
    """(y, the argmax for max else None): the pooling ``p`` of a batched 2-D or 3-D input x to spatial sizes
    ``out3`` (D, H, W; D = 1 for 2-D)."""
    ret_idx = p["mode"] == MAX
    nd = x.ndim - 2
    out_shape = tuple(x._shape[:2]) + tuple(out3[3 - nd:])
    x5 = _as5d(x)
    if x._storage.device.type == "cpu":
        ct = np.float64 if x.dtype is D.float64 else np.float32
        y, idx = _np_pool(x5._np.astype(ct), p, out3)
        y = wrap(y.reshape(out_shape).astype(x.dtype.np), x.dtype, x.device)
        return y, wrap(idx.reshape(out_shape), D.int64, x.device) if ret_idx else None
    return _launch_fwd(x5, p, out3, out_shape, ret_idx)


class Pool(Function):
    """y (and the argmax for max) = the pooling ``p`` of a batched 2-D or 3-D input x to spatial sizes ``out3``
    (D, H, W; D = 1 for 2-D)."""

    @staticmethod
    def forward(ctx, x, p, out3):
        y, idx = pool_forward(x, p, out3)
        ctx._name = _NAMES[(p["mode"], p["adaptive"])].format(x.ndim - 2)
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
            return PoolGrad.apply(g, idx, p, ctx.in_shape), None, None
        return pool_grad(g, idx, p, ctx.in_shape, ctx.dtype, ctx.dev), None, None


def pool_grad(g, idx, p, in_shape, dtype, dev, act=None, y=None, alpha=0.0):
    """dx of a pooling from its output gradient g (and the argmax for max); with ``act`` (max only) y is the output
    and the pooled input was ``act``'s result: dx is the gradient of its pre-activation (``_pool_bwd_kernel``)."""
    in3 = _as3(in_shape[2:])
    if g._storage.device.type == "cpu":
        ct = np.float64 if g.dtype is D.float64 else np.float32
        g5 = np.ascontiguousarray(g._np, dtype=ct).reshape(tuple(g._shape[:2]) + _as3(g._shape[2:]))
        if act is not None:
            with np.errstate(all="ignore"):
                y5 = np.ascontiguousarray(y._np, dtype=ct).reshape(g5.shape)
                g5 = np.asarray(UNARY[act].bwd_ref(g5, y5, alpha), dtype=ct)
        dx = _np_pool_bwd(g5, None if idx is None else idx._np, p, tuple(in_shape[:2]) + in3)
        return wrap(dx.reshape(in_shape).astype(dtype.np), dtype, dev)
    return _launch_bwd(g, idx, p, in_shape, in3, dtype, dev, act, y, alpha)


class PoolGrad(Function):
    """The pooling backward as an op of g (linear in g): its gradient is the pooling of gg with the same windows
    (avg) or gg read at the saved argmax (max)."""

    @staticmethod
    def forward(ctx, g, idx, p, in_shape):
        ctx.p, ctx.idx, ctx.out_shape = p, idx, g._shape
        return pool_grad(g, idx, p, in_shape, g.dtype, g.device)

    @staticmethod
    def backward(ctx, gg):
        p, out_shape = ctx.p, ctx.out_shape
        N, C = out_shape[:2]
        if p["mode"] == MAX:
            m, n = int(np.prod(out_shape[2:])), int(np.prod(gg._shape[2:]))
            out = gg.reshape(N, C, n).gather(2, ctx.idx.reshape(N, C, m)).reshape(out_shape)
        else:
            out = Pool.apply(gg, p, _as3(out_shape[2:]))
        return out, None, None, None


# ====================================================================================================================
# Argument checks and the public functions
# ====================================================================================================================

def _pair(v, name, n=2, msg=None):
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = tuple(v) * n
        if len(v) != n:
            raise RuntimeError(msg or f"{name} must either be a single int, or a tuple of {n} ints")
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


def _check_tensor(input, name):
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"\"{name}\" not implemented for '{input.dtype}'")


def _batched(input, name, nd, ctx):
    """(input with a batch dim, whether it had one) for a 2-D (nd = 2) or 3-D pooling; ``ctx`` names the op in
    PyTorch's 3-D messages."""
    if not isinstance(input, Tensor) or input.ndim not in (nd + 1, nd + 2):
        if nd == 3 and isinstance(input, Tensor):
            raise RuntimeError("non-empty 4D or 5D (batch mode) tensor expected for input")
        _check_tensor(input, name)
        raise RuntimeError(f"{name}: Expected 3D or 4D (batch mode) tensor for input, but got: {list(input.shape)}")
    _check_tensor(input, name)
    zero = [i for i, n in enumerate(input._shape[-nd - 1:]) if n == 0]
    if zero:
        if nd == 2:
            raise RuntimeError(f"{name}: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for "
                               f"input, but got: {list(input.shape)}")
        raise RuntimeError(f"{ctx}: Expected input's non-batch dimensions to have positive length, but input has a "
                           f"shape of {list(input.shape)} and non-batch dimension {zero[0]} has length zero!")
    batched = input.ndim == nd + 2
    return (input if batched else input.unsqueeze(0)), batched


_3D_ARG = {("max", "kernel_size"): "kernel_size must either be a single int", ("max", "stride"):
           "stride must either be omitted, a single int", ("max", "padding"): "padding must either be a single int",
           ("max", "dilation"): "dilation must be either a single int", ("avg", "kernel_size"):
           "kernel_size must be a single int", ("avg", "stride"): "stride must be omitted, a single int",
           ("avg", "padding"): "padding must be a single int", ("avg", "dilation"): "dilation must be a single int"}


def _fixed_pool(input, mode, nd, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, divisor,
                name):
    """Checks and window parameters of a fixed-window pooling of rank ``nd`` (2 or 3), with PyTorch's messages."""
    ctx = "max_pool3d_with_indices_out_cpu_template()" if mode == MAX else "avg_pool3d()"
    x, batched = _batched(input, name, nd, ctx)
    return (x, batched) + pool_window(x._shape, mode, nd, kernel_size, stride, padding, dilation, ceil_mode,
                                      count_include_pad, divisor, name)


def pool_window(shape, mode, nd, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, divisor,
                name):
    """(window parameters, output sizes as (D, H, W)) of a fixed-window pooling of rank ``nd`` of a batched input
    of ``shape``, its arguments checked with PyTorch's messages."""
    kind = "max" if mode == MAX else "avg"

    def tup(v, what):
        msg = f"{name}: {_3D_ARG[(kind, what)]}, or a tuple of three ints" if nd == 3 else None
        return _pair(v, what, nd, msg)

    k = tup(kernel_size, "kernel_size")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else tup(stride, "stride")
    pd = tup(padding, "padding")
    dl = tup(dilation, "dilation")
    ax = ("T", "H", "W")[3 - nd:]
    if nd == 3 and any(v == 0 for v in s):
        raise RuntimeError("stride should not be zero")
    if any(v <= 0 for v in k):
        raise RuntimeError("kernel size should be greater than zero, but got " +
                           " ".join(f"k{a}: {v}" for a, v in zip(ax, k)))
    if any(v <= 0 for v in s):
        raise RuntimeError("stride should be greater than zero, but got " +
                           " ".join(f"d{a}: {v}" for a, v in zip(ax, s)))
    if any(v <= 0 for v in dl):
        raise RuntimeError("dilation should be greater than zero, but got " +
                           " ".join(f"dilation{a}: {v}" for a, v in zip(ax, dl)))
    for kk, pp, dd in zip(k, pd, dl):
        if pp < 0:
            raise RuntimeError(f"pad must be non-negative, but got pad: {pp}")
        if pp > ((kk - 1) * dd + 1) // 2:
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={pp}, "
                               f"kernel_size={kk} and dilation={dd}")
    if divisor is not None and divisor == 0:
        raise RuntimeError("divisor must be not zero")
    C, sizes = shape[1], shape[2:]
    outs = tuple(pool_output_size(n, *a, ceil_mode) for n, a in zip(sizes, zip(k, pd, s, dl)))
    if any(o < 1 for o in outs):
        if nd == 3 and mode == AVG:
            raise RuntimeError(f"input image (T: {sizes[0]} H: {sizes[1]} W: {sizes[2]}) smaller than kernel size "
                               f"(kT: {k[0]} kH: {k[1]} kW: {k[2]})")
        raise RuntimeError(f"Given input size: ({'x'.join(str(v) for v in (C,) + sizes)}). Calculated output size: "
                           f"({'x'.join(str(v) for v in (C,) + outs)}). Output size is too small")
    one = (1,) * (3 - nd)
    p = {"mode": mode, "adaptive": False, "k": one + k, "s": one + s, "p": (0,) * (3 - nd) + pd, "d": one + dl,
         "count_include_pad": count_include_pad, "divisor": divisor}
    return p, one + outs


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
    x, batched, p, out3 = _fixed_pool(input, MAX, 2, kernel_size, stride, padding, dilation, ceil_mode, True, None,
                                      "max_pool2d")
    return _finish(Pool.apply(x, p, out3), batched, return_indices)


@register("avg_pool2d", method=False)
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over windows of (C, H, W) / (N, C, H, W): the sum divided by the window size (padding included with
    ``count_include_pad``), or by ``divisor_override``."""
    x, batched, p, out3 = _fixed_pool(input, AVG, 2, kernel_size, stride, padding, 1, ceil_mode, count_include_pad,
                                      divisor_override, "avg_pool2d")
    return _finish(Pool.apply(x, p, out3), batched, False)


@register("max_pool3d", method=False)
def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over (dilated) windows of (C, D, H, W) / (N, C, D, H, W); with ``return_indices`` also the argmax of
    each window as ``(d * H + h) * W + w`` (the first maximum in window order)."""
    x, batched, p, out3 = _fixed_pool(input, MAX, 3, kernel_size, stride, padding, dilation, ceil_mode, True, None,
                                      "max_pool3d")
    return _finish(Pool.apply(x, p, out3), batched, return_indices)


@register("avg_pool3d", method=False)
def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over windows of (C, D, H, W) / (N, C, D, H, W), divided as ``avg_pool2d`` divides."""
    x, batched, p, out3 = _fixed_pool(input, AVG, 3, kernel_size, stride, padding, 1, ceil_mode, count_include_pad,
                                      divisor_override, "avg_pool3d")
    return _finish(Pool.apply(x, p, out3), batched, False)


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


def _adaptive(input, output_size, mode, nd, name):
    """Checks and parameters of an adaptive pooling of rank ``nd`` (2 or 3), with PyTorch's messages."""
    if nd == 2:
        x, batched = _batched(input, name, 2, name)
    else:
        if not isinstance(input, Tensor) or input.ndim not in (4, 5):
            _check_tensor(input, name)
            raise RuntimeError(f"{name}(): Expected 4D or 5D tensor, but got{':' if mode == MAX else ''} "
                               f"{list(input.shape)}")
        _check_tensor(input, name)
        batched = input.ndim == 5
        x = input if batched else input.unsqueeze(0)
    sizes = x._shape[2:]
    os_ = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * nd
    if len(os_) != nd:
        what = {2: ": internal error: output_size.size()", 3: "(): internal error: output_size.size()"}[nd]
        raise RuntimeError(f"{name}{what if mode == MAX or nd == 2 else ': output_size'} must be {nd}")
    outs = tuple(n if o is None else int(o) for n, o in zip(sizes, os_))
    if any(o < 0 for o in outs) or (mode == MAX and nd == 2 and 0 in outs):
        raise RuntimeError(f"{name}: elements of output_size must be greater than or equal to 0 but received "
                           f"{{{', '.join(str(o) for o in outs)}}}")
    if 0 in sizes:
        lead = f"{name}()" if nd == 3 else name
        raise RuntimeError(f"{lead}: Expected input to have non-zero size for non-batch dimensions, but input has "
                           f"sizes {list(input.shape)} with dimension {input.ndim - nd + sizes.index(0)} being empty")
    p = {"mode": mode, "adaptive": True, "count_include_pad": False, "divisor": None}
    return x, batched, p, (1,) * (3 - nd) + outs


@register("adaptive_avg_pool2d", method=False)
def adaptive_avg_pool2d(input, output_size):
    """Mean over PyTorch's adaptive windows rows floor(i*H/OH) .. ceil((i+1)*H/OH) (and columns likewise);
    ``None`` in ``output_size`` keeps that input size."""
    x, batched, p, out3 = _adaptive(input, output_size, AVG, 2, "adaptive_avg_pool2d")
    return _finish(Pool.apply(x, p, out3), batched, False)


@register("adaptive_max_pool2d", method=False)
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over the adaptive windows of ``adaptive_avg_pool2d``, with the argmax as ``h * W + w``."""
    x, batched, p, out3 = _adaptive(input, output_size, MAX, 2, "adaptive_max_pool2d")
    return _finish(Pool.apply(x, p, out3), batched, return_indices)


@register("adaptive_avg_pool3d", method=False)
def adaptive_avg_pool3d(input, output_size):
    """Mean over adaptive windows of (C, D, H, W) / (N, C, D, H, W), per dim as ``adaptive_avg_pool2d``."""
    x, batched, p, out3 = _adaptive(input, output_size, AVG, 3, "adaptive_avg_pool3d")
    return _finish(Pool.apply(x, p, out3), batched, False)


@register("adaptive_max_pool3d", method=False)
def adaptive_max_pool3d(input, output_size, return_indices=False):
    """Max over the adaptive windows of ``adaptive_avg_pool3d``, with the argmax as ``(d * H + h) * W + w``."""
    x, batched, p, out3 = _adaptive(input, output_size, MAX, 3, "adaptive_max_pool3d")
    return _finish(Pool.apply(x, p, out3), batched, return_indices)


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
