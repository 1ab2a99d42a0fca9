"""Resizing ops: ``interpolate`` (modes 'nearest' and 'bilinear'), constant padding (``pad``, ``constant_pad_nd``;
negative padding crops) and ``pixel_shuffle`` / ``pixel_unshuffle``, with their backward rules.

Interpolation is separable: output coordinate ``o`` along a dim of input size ``I`` and output size ``O`` reads
source taps ``(i0, i1)`` with weight ``(1 - lam, lam)``, computed with PyTorch's formulas (``_taps``):

- nearest:  ``i0 = i1 = min(floor(o * scale), I - 1)``, in float32 whatever the dtype (``o`` itself when O == I,
  ``o // 2`` when O == 2 I, as PyTorch's CPU kernel does); ``scale = 1 / scale_factor`` when a scale factor is
  given, ``I / O`` otherwise;
- bilinear: ``src = scale * o`` (align_corners=True, ``scale = (I - 1) / (O - 1)``, 0 when O == 1) or
  ``src = max(scale * (o + 0.5) - 0.5, 0)`` (align_corners=False, the half-pixel centres, clamped to 0);
  ``i0 = floor(src)``, ``i1 = min(i0 + 1, I - 1)``, ``lam = src - i0``, in the op's compute type (float64 for
  float64, float32 otherwise).

Two kernels serve both modes. ``_resize_fwd_kernel`` gathers the (up to) 2x2 taps of each output pixel.
``_resize_bwd_kernel`` is a gather too, not an atomic scatter: each input pixel walks the window of output pixels
that can reach it (``win`` rows and columns from an estimate of the first, the inverse map with one row of slack)
and recomputes their taps with the forward's own formula, keeping those that land on it. Every input gradient is
written once by one program in a fixed order: the backward is deterministic, on the GPU too.

Constant padding is one kernel over the output (``_pad_kernel``): an output element inside the (shifted) input
copies it, every other one gets the fill value; its backward is the same op with the padding negated (a crop, or
zeros where the forward cropped), so it is closed under differentiation. The other modes of ``pad`` (reflect,
replicate, circular) are one index gather per padded dim. ``pixel_shuffle`` is a composition of views: a
reshape to (*, C, r, r, H, W), a permute to (*, C, H, r, W, r) and a reshape, whose copy is the strided copy kernel
of ``copy.py``; autograd goes through the views.
"""
import math

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from ._launch import ACC, ptr, cdiv, is_int64_index, interp_bf16_in, nd_coords, nd_offset, block_for, MAXD
from .copy import _cast_value
from ._common import copy_host, empty, np_ct, wrap
from .matmul import _T_NAMES

__all__ = ["interpolate", "pad", "constant_pad_nd", "pixel_shuffle", "pixel_unshuffle", "launch_resize",
           "launch_resize_backward", "launch_pad"]

# ====================================================================================================================
# The kernels
# ====================================================================================================================


@triton.jit
def _taps(o, scale, size, out_size, BILINEAR: tl.constexpr, ALIGN: tl.constexpr, ST: tl.constexpr):
    """Source taps (i0, i1) and the weight ``lam`` of i1 for output coordinates ``o`` along one dim."""
    of = o.to(ST)
    if BILINEAR:
        if ALIGN:
            src = scale * of
        else:
            src = tl.maximum(scale * (of + 0.5) - 0.5, 0.0)
        i0 = src.to(o.dtype)                                        # src >= 0: truncation is floor
        i1 = tl.minimum(i0 + 1, size - 1)
        lam = src - i0.to(ST)
    else:
        i0 = tl.minimum(tl.floor(of * scale).to(o.dtype), size - 1)
        i0 = tl.where(out_size == size, o, tl.where(out_size == 2 * size, o // 2, i0))
        i1 = i0
        lam = tl.zeros_like(of)
    return i0, i1, lam


@triton.jit
def _resize_fwd_kernel(x_ptr, s_ptr, out_ptr, total, C, H, W, OH, OW, sxn, sxc, sxh, sxw, scale_h, scale_w,
                       BILINEAR: tl.constexpr, ALIGN: tl.constexpr, SCALE_PTR: tl.constexpr, ST: tl.constexpr,
                       CT: tl.constexpr, I64: tl.constexpr, BLOCK: tl.constexpr):
    """out[n, c, oh, ow] = the (bi)linear mix of x's taps; x (N, C, H, W) through its strides, out contiguous
    (N, C, OH, OW). With ``SCALE_PTR`` the scales arrive as a pointer to two float64 values (``s_ptr``)."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < total
    ow = i % OW
    t = i // OW
    oh = t % OH
    t = t // OH
    c = t % C
    n = t // C
    if SCALE_PTR:
        scale_h = tl.load(s_ptr)
        scale_w = tl.load(s_ptr + 1)
    h0, h1, lh = _taps(oh, scale_h, H, OH, BILINEAR, ALIGN, ST)
    w0, w1, lw = _taps(ow, scale_w, W, OW, BILINEAR, ALIGN, ST)
    base = x_ptr + n * sxn + c * sxc
    if BILINEAR:
        lh = lh.to(CT)
        lw = lw.to(CT)
        v00 = tl.load(base + h0 * sxh + w0 * sxw, mask=mask, other=0.0).to(CT)
        v01 = tl.load(base + h0 * sxh + w1 * sxw, mask=mask, other=0.0).to(CT)
        v10 = tl.load(base + h1 * sxh + w0 * sxw, mask=mask, other=0.0).to(CT)
        v11 = tl.load(base + h1 * sxh + w1 * sxw, mask=mask, other=0.0).to(CT)
        out = (1.0 - lh) * ((1.0 - lw) * v00 + lw * v01) + lh * ((1.0 - lw) * v10 + lw * v11)
    else:
        out = tl.load(base + h0 * sxh + w0 * sxw, mask=mask)
    tl.store(out_ptr + i, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _resize_bwd_kernel(g_ptr, s_ptr, gx_ptr, total, C, H, W, OH, OW, sgn, sgc, sgh, sgw, scale_h, scale_w,
                       inv_h, inv_w, win_h, win_w,
                       BILINEAR: tl.constexpr, ALIGN: tl.constexpr, SCALE_PTR: tl.constexpr, ST: tl.constexpr,
                       CT: tl.constexpr, I64: tl.constexpr, BLOCK: tl.constexpr):
    """gx[n, c, ih, iw] = sum of g[n, c, oh, ow] * w_h(oh -> ih) * w_w(ow -> iw) over the output pixels whose taps
    reach (ih, iw); g (N, C, OH, OW) through its strides, gx contiguous (N, C, H, W).

    The candidates are the ``win_h x win_w`` output pixels from (start_h, start_w): the inverse map
    ``o = (src + off) * inv - off`` (inv = 1/scale, in float32) of the lowest source coordinate that reaches ih
    (ih - 1 for bilinear, ih for nearest), minus one row of slack for rounding."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < total
    iw = i % W
    t = i // W
    ih = t % H
    t = t // H
    c = t % C
    n = t // C
    if SCALE_PTR:
        scale_h = tl.load(s_ptr)
        scale_w = tl.load(s_ptr + 1)
    if BILINEAR and not ALIGN:
        off = 0.5
    else:
        off = 0.0
    if BILINEAR:
        span = 1
    else:
        span = 0
    start_h = tl.maximum(tl.floor((ih - span + off).to(tl.float32) * inv_h - off).to(ih.dtype) - 1, 0)
    start_w = tl.maximum(tl.floor((iw - span + off).to(tl.float32) * inv_w - off).to(iw.dtype) - 1, 0)
    base = g_ptr + n * sgn + c * sgc
    acc = tl.zeros([BLOCK], dtype=CT)
    for kh in range(0, win_h):
        oh = start_h + kh
        h0, h1, lh = _taps(oh, scale_h, H, OH, BILINEAR, ALIGN, ST)
        hit_h = (oh < OH) & ((h0 == ih) | (h1 == ih))
        wh = tl.where(h0 == ih, 1.0 - lh, 0.0) + tl.where(h1 == ih, lh, 0.0)
        for kw in range(0, win_w):
            ow = start_w + kw
            w0, w1, lw = _taps(ow, scale_w, W, OW, BILINEAR, ALIGN, ST)
            hit = mask & hit_h & (ow < OW) & ((w0 == iw) | (w1 == iw))
            ww = tl.where(w0 == iw, 1.0 - lw, 0.0) + tl.where(w1 == iw, lw, 0.0)
            v = tl.load(base + oh * sgh + ow * sgw, mask=hit, other=0.0).to(CT)
            acc += tl.where(hit, (wh * ww).to(CT) * v, 0.0)
    tl.store(gx_ptr + i, acc.to(gx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _pad_kernel(x_ptr, v_ptr, out_ptr, value, total, O1, O2, O3, O4, O5, I0, I1, I2, I3, I4, I5,
                P0, P1, P2, P3, P4, P5, xs0, xs1, xs2, xs3, xs4, xs5,
                VAL_PTR: tl.constexpr, I64: tl.constexpr, BLOCK: tl.constexpr):
    """out[c] = x[c - P] where that lies inside x (sizes I0..I5), ``value`` elsewhere; out contiguous with sizes
    (., O1..O5), x through its strides; P (the leading pads) may be negative (a crop). With ``VAL_PTR`` the value
    is read from ``v_ptr`` (a float64 that float32 cannot hold)."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < total
    c0, c1, c2, c3, c4, c5 = nd_coords(i, O1, O2, O3, O4, O5)
    j0 = c0 - P0
    j1 = c1 - P1
    j2 = c2 - P2
    j3 = c3 - P3
    j4 = c4 - P4
    j5 = c5 - P5
    inside = ((j0 >= 0) & (j0 < I0) & (j1 >= 0) & (j1 < I1) & (j2 >= 0) & (j2 < I2) & (j3 >= 0) & (j3 < I3)
              & (j4 >= 0) & (j4 < I4) & (j5 >= 0) & (j5 < I5))
    x = tl.load(x_ptr + nd_offset(j0, j1, j2, j3, j4, j5, xs0, xs1, xs2, xs3, xs4, xs5), mask=mask & inside)
    if VAL_PTR:
        value = tl.load(v_ptr)
    fill = (tl.zeros_like(x) + value).to(x.dtype)
    tl.store(out_ptr + i, tl.where(inside, x, fill).to(out_ptr.dtype.element_ty), mask=mask)


# ====================================================================================================================
# Interpolation: scales, launches and the NumPy references
# ====================================================================================================================

def _scale_dtype(bilinear, dtype):
    """The type the source coordinates are computed in: float32 for nearest (PyTorch's ``float scale``), the
    compute type for bilinear (float64 for float64)."""
    return D.float64 if bilinear and dtype is D.float64 else D.float32


def _scale(in_size, out_size, factor, bilinear, align, st):
    """PyTorch's ``area_pixel_compute_scale`` / ``compute_scales_value`` in type ``st`` (a NumPy type)."""
    if bilinear and align:
        return st(in_size - 1) / st(out_size - 1) if out_size > 1 else st(0)
    if factor is not None and factor > 0:
        return st(1.0 / factor)
    return st(in_size) / st(out_size)


def _np_taps(o_size, in_size, scale, bilinear, align, st):
    """NumPy reference of ``_taps`` for every output coordinate of one dim: (i0, i1, lam) arrays."""
    o = np.arange(o_size)
    of = o.astype(st)
    if bilinear:
        src = scale * of if align else np.maximum(scale * (of + st(0.5)) - st(0.5), st(0))
        i0 = src.astype(np.int64)
        return i0, np.minimum(i0 + 1, in_size - 1), src - i0.astype(st)
    if o_size == in_size:
        i0 = o
    elif o_size == 2 * in_size:
        i0 = o // 2
    else:
        i0 = np.minimum(np.floor(of * scale).astype(np.int64), in_size - 1)
    return i0, i0, np.zeros(o_size, st)


def _np_resize(x, out_hw, scales, bilinear, align, dtype):
    """NumPy reference of ``launch_resize`` on an (N, C, H, W) host array."""
    st = _scale_dtype(bilinear, dtype).np.type
    H, W = x.shape[2:]
    (OH, OW), (sh, sw) = out_hw, scales
    h0, h1, lh = _np_taps(OH, H, sh, bilinear, align, st)
    w0, w1, lw = _np_taps(OW, W, sw, bilinear, align, st)
    if not bilinear:
        return np.ascontiguousarray(x[:, :, h0][:, :, :, w0])
    ct = np_ct(dtype)
    xc = x.astype(ct, copy=False)
    lh, lw = lh.astype(ct)[:, None], lw.astype(ct)[None, :]
    top = xc[:, :, h0]
    bot = xc[:, :, h1]
    out = ((1 - lh) * ((1 - lw) * top[:, :, :, w0] + lw * top[:, :, :, w1])
           + lh * ((1 - lw) * bot[:, :, :, w0] + lw * bot[:, :, :, w1]))
    return out.astype(dtype.np)


def _np_resize_backward(g, in_hw, scales, bilinear, align, dtype):
    """NumPy reference of ``launch_resize_backward``: each output's gradient scattered to its taps."""
    st = _scale_dtype(bilinear, dtype).np.type
    ct = np_ct(dtype)
    N, C, OH, OW = g.shape
    H, W = in_hw
    h0, h1, lh = _np_taps(OH, H, scales[0], bilinear, align, st)
    w0, w1, lw = _np_taps(OW, W, scales[1], bilinear, align, st)
    gc = g.astype(ct, copy=False)
    lh, lw = lh.astype(ct), lw.astype(ct)
    # separable: first along W, then along H
    gw = np.zeros((N, C, OH, W), ct)
    np.add.at(gw, (slice(None), slice(None), slice(None), w0), gc * (1 - lw))
    np.add.at(gw, (slice(None), slice(None), slice(None), w1), gc * lw)
    gx = np.zeros((N, C, H, W), ct)
    gwt = np.moveaxis(gw, 2, 0)
    gxt = np.moveaxis(gx, 2, 0)
    np.add.at(gxt, h0, gwt * (1 - lh)[:, None, None, None])
    np.add.at(gxt, h1, gwt * lh[:, None, None, None])
    return gx.astype(dtype.np)


def _scale_args(scales, st, device):
    """Kernel arguments of the two scales: float32 values, or a pointer to float64 values that float32 would round
    (``SCALE_PTR``)."""
    if st is D.float64 and any(float(np.float32(s)) != float(s) for s in scales):
        buf = Tensor._wrap_numpy(np.array(scales, dtype=np.float64), device)
        return buf, 0.0, 0.0, True
    return None, float(scales[0]), float(scales[1]), False


def launch_resize(x, out, scales, bilinear, align):
    """out = interpolate(x): x (N, C, H, W) any strides, out contiguous (N, C, OH, OW); ``scales`` from
    ``_scale`` (per dim, in the scale type)."""
    if out.numel() == 0:
        return out
    if INTERPRET and out.dtype is D.bfloat16:
        return copy_host(out, launch_resize(x, empty(out._shape, D.float32, out.device), scales, bilinear, align))
    dtype = x.dtype
    x = interp_bf16_in(x)
    N, C, H, W = x._shape
    OH, OW = out._shape[2:]
    st = _scale_dtype(bilinear, dtype)
    buf, sh, sw, sptr = _scale_args(scales, st, x.device)
    total = out.numel()
    block = block_for(total)
    _resize_fwd_kernel[(cdiv(total, block),)](
        ptr(x), ptr(buf if sptr else out), ptr(out), total, C, H, W, OH, OW, *x._stride, sh, sw,
        BILINEAR=bilinear, ALIGN=align, SCALE_PTR=sptr, ST=ACC[st], CT=ACC[dtype],
        I64=is_int64_index(max(total, x.numel()), x, out), BLOCK=block)
    return out


def _window(in_size, out_size, scale, bilinear):
    """(1 / scale in float32, how many output rows can reach one input row, plus slack)."""
    if float(scale) == 0.0:
        return 0.0, out_size
    inv = float(np.float32(1.0) / np.float32(scale))
    return inv, min(out_size, math.ceil((2 if bilinear else 1) * inv) + 3)


def launch_resize_backward(g, gx, scales, bilinear, align):
    """gx = the input gradient of interpolate for an output gradient g (N, C, OH, OW) any strides; gx contiguous
    (N, C, H, W)."""
    if gx.numel() == 0:
        return gx
    if INTERPRET and gx.dtype is D.bfloat16:
        return copy_host(gx, launch_resize_backward(g, empty(gx._shape, D.float32, gx.device), scales, bilinear,
                                                    align))
    dtype = g.dtype
    g = interp_bf16_in(g)
    N, C, OH, OW = g._shape
    H, W = gx._shape[2:]
    st = _scale_dtype(bilinear, dtype)
    buf, sh, sw, sptr = _scale_args(scales, st, g.device)
    inv_h, win_h = _window(H, OH, scales[0], bilinear)
    inv_w, win_w = _window(W, OW, scales[1], bilinear)
    total = gx.numel()
    block = block_for(total)
    _resize_bwd_kernel[(cdiv(total, block),)](
        ptr(g), ptr(buf if sptr else gx), ptr(gx), total, C, H, W, OH, OW, *g._stride, sh, sw,
        inv_h, inv_w, win_h, win_w,
        BILINEAR=bilinear, ALIGN=align, SCALE_PTR=sptr, ST=ACC[st], CT=ACC[dtype],
        I64=is_int64_index(max(total, g.numel()), g, gx), BLOCK=block)
    return gx


def _resize(x, out_hw, scales, bilinear, align):
    if x._storage.device.type == "cpu":
        return wrap(_np_resize(x._np, out_hw, scales, bilinear, align, x.dtype), x.dtype, x.device)
    return launch_resize(x, empty(x._shape[:2] + tuple(out_hw), x.dtype, x.device), scales, bilinear, align)


def _resize_backward(g, in_hw, scales, bilinear, align):
    if g._storage.device.type == "cpu":
        return wrap(_np_resize_backward(g._np, in_hw, scales, bilinear, align, g.dtype), g.dtype, g.device)
    return launch_resize_backward(g, empty(g._shape[:2] + tuple(in_hw), g.dtype, g.device), scales, bilinear,
                                  align)


def _node_name(bilinear):
    return "UpsampleBilinear2DBackward0" if bilinear else "UpsampleNearest2DBackward0"


class Resize(Function):
    """y = interpolate(x) for 4-D x: a linear map of x, whose adjoint is ``ResizeBackward``."""

    @staticmethod
    def forward(ctx, x, out_hw, scales, bilinear, align):
        y = _resize(x, out_hw, scales, bilinear, align)
        if any(ctx.needs_input_grad[:1]):
            ctx._name = _node_name(bilinear)
            ctx.args = (x._shape[2:], scales, bilinear, align)
        return y

    @staticmethod
    def backward(ctx, g):
        in_hw, scales, bilinear, align = ctx.args
        return ResizeBackward.apply(g, in_hw, scales, bilinear, align), None, None, None, None


class ResizeBackward(Function):
    """gx = the adjoint of ``Resize`` applied to g; its own backward is ``Resize``."""

    @staticmethod
    def forward(ctx, g, in_hw, scales, bilinear, align):
        gx = _resize_backward(g, in_hw, scales, bilinear, align)
        if any(ctx.needs_input_grad[:1]):
            ctx._name = _node_name(bilinear).replace("Backward0", "BackwardBackward0")
            ctx.args = (g._shape[2:], scales, bilinear, align)
        return gx

    @staticmethod
    def backward(ctx, gg):
        out_hw, scales, bilinear, align = ctx.args
        return Resize.apply(gg, out_hw, scales, bilinear, align), None, None, None, None


_MODES = ("nearest", "linear", "bilinear", "bicubic", "trilinear", "area", "nearest-exact")


def _spatial_list(v, dim, what, input):
    if isinstance(v, (list, tuple)):
        if len(v) != dim:
            raise ValueError(
                f"Input and {what} must have the same number of spatial dimensions, but got input with spatial "
                f"dimensions of {list(input.shape[2:])} and {'output size' if what == 'output' else what + ' of shape'}"
                f" {v}. Please provide input tensor in (N, C, d1, d2, ...,dK) format and "
                f"{'output size in (o1, o2, ...,oK)' if what == 'output' else 'scale_factor in (s1, s2, ...,sK)'} "
                "format.")
        return list(v)
    return [v] * dim


@register("interpolate", method=False, function=False)
def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial dims of ``input`` (N, C, L) or (N, C, H, W) to ``size`` or by ``scale_factor``, as
    ``torch.nn.functional.interpolate``. Modes 'nearest' (3-D and 4-D input) and 'bilinear' (4-D input); the
    output size for a scale factor is ``floor(in * scale_factor)``, and the factor itself (not the size ratio)
    maps coordinates unless ``recompute_scale_factor=True``."""
    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate(): argument 'input' must be Tensor, not {type(input).__name__}")
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating modes: "
                             "linear | bilinear | bicubic | trilinear")
    elif align_corners is None:
        align_corners = False
    dim = input.ndim - 2
    if dim < 1 or dim > 3:
        raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
                                  "the modes: nearest | linear | bilinear | bicubic | trilinear | area | "
                                  f"nearest-exact (got {mode})")
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        output_size = [int(s) for s in _spatial_list(size, dim, "output", input)]
        scale_factors = None
    elif scale_factor is not None:
        output_size = None
        scale_factors = [float(s) for s in _spatial_list(scale_factor, dim, "scale_factor", input)]
    else:
        raise ValueError("either size or scale_factor should be defined")
    if recompute_scale_factor and size is not None:
        raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
    if antialias and not (mode in ("bilinear", "bicubic") and input.ndim == 4):
        raise ValueError("Anti-alias option is restricted to bilinear and bicubic modes and requires a 4-D tensor "
                         "as input")
    if mode not in _MODES:
        raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
                                  "the modes: nearest | linear | bilinear | bicubic | trilinear | area | "
                                  f"nearest-exact (got {mode})")
    if mode == "bilinear" and input.ndim != 4:
        raise NotImplementedError(f"Got {input.ndim}D input, but bilinear mode needs 4D input")
    if mode not in ("nearest", "bilinear") or (mode == "nearest" and dim == 3) or antialias:
        raise NotImplementedError(f"interpolate: mode '{mode}' on {input.ndim}D input"
                                  f"{' with antialias' if antialias else ''} is not supported by tritorch "
                                  "(supported: 'nearest' on 3D and 4D input, 'bilinear' on 4D input)")
    in_sizes = list(input._shape[2:])
    if output_size is None:
        output_size = [int(math.floor(float(n) * s)) for n, s in zip(in_sizes, scale_factors)]
        if recompute_scale_factor:
            scale_factors = None
    bilinear = mode == "bilinear"
    if bilinear and not input.dtype.is_floating_point or not bilinear and not (
            input.dtype.is_floating_point or input.dtype is D.uint8):
        kind = "upsample_bilinear2d" if bilinear else f"upsample_nearest{dim}d"
        raise RuntimeError(f"\"{kind}_out_frame\" not implemented for '{_type_name(input.dtype)}'")
    if any(n <= 0 for n in in_sizes) or any(n <= 0 for n in output_size):
        names = ("H", "W") if dim == 2 else ("W",)
        raise RuntimeError("Input and output sizes should be greater than 0, but got input (" + ", ".join(
            f"{a}: {n}" for a, n in zip(names, in_sizes)) + ") output (" + ", ".join(
            f"{a}: {n}" for a, n in zip(names, output_size)) + ")")
    x = input.unsqueeze(2) if dim == 1 else input
    in_hw = tuple(x._shape[2:])
    out_hw = (1, output_size[0]) if dim == 1 else tuple(output_size)
    factors = ([None] if dim == 1 else []) + (scale_factors or [None] * dim)
    st = _scale_dtype(bilinear, input.dtype).np.type
    scales = tuple(_scale(i, o, f, bilinear, bool(align_corners), st) for i, o, f in zip(in_hw, out_hw, factors))
    y = Resize.apply(x, out_hw, scales, bilinear, bool(align_corners) and bilinear)
    return y.squeeze(2) if dim == 1 else y


def _type_name(dtype):
    return _T_NAMES.get(dtype, dtype.name)


# ====================================================================================================================
# Constant padding
# ====================================================================================================================

def _pad_layout(in_shape, strides, pads):
    """Kernel dims of a pad: runs of unpadded dims merged where x's strides allow, size-1 unpadded dims dropped.
    ``pads``: (left, right) per dim. Returns (in sizes, x strides, left pads), each of length MAXD."""
    dims = []
    for n, s, (a, b) in zip(in_shape, strides, pads):
        if a == 0 and b == 0:
            if n == 1:
                continue
            if dims and dims[-1][2] == (0, 0) and dims[-1][1] == s * n:
                pn, _, _ = dims[-1]
                dims[-1] = (pn * n, s, (0, 0))
                continue
        dims.append((n, s, (a, b)))
    if len(dims) > MAXD:
        raise NotImplementedError(f"pad: {len(dims)} padded or unmergeable dims (shape {tuple(in_shape)}) are more "
                                  f"than the {MAXD} the kernel takes; call .contiguous() or pad fewer dims")
    fill = [(1, 0, (0, 0))] * (MAXD - len(dims))
    dims = fill + dims
    return [d[0] for d in dims], [d[1] for d in dims], [d[2][0] for d in dims], [d[0] + sum(d[2]) for d in dims]


def launch_pad(x, out, pads, value):
    """out = x padded by ``pads`` ((left, right) per dim, negative crops) with ``value``; out contiguous."""
    total = out.numel()
    if total == 0:
        return out
    if INTERPRET and out.dtype is D.bfloat16:
        return copy_host(out, launch_pad(x, empty(out._shape, D.float32, out.device), pads, value))
    x = interp_bf16_in(x)
    sizes, strides, lefts, outs = _pad_layout(x._shape, x._stride, pads)
    vbuf = None
    if out.dtype is D.float64 and float(np.float32(value)) != value and not math.isnan(value):
        vbuf = Tensor._wrap_numpy(np.array([value], dtype=np.float64), out.device)
    block = block_for(total)
    _pad_kernel[(cdiv(total, block),)](
        ptr(x), ptr(vbuf if vbuf is not None else out), ptr(out), 0.0 if vbuf is not None else value, total,
        *outs[1:], *sizes, *lefts, *strides,
        VAL_PTR=vbuf is not None, I64=is_int64_index(max(total, x.numel()), x, out), BLOCK=block)
    return out


def _np_pad(x, pads, value, dtype):
    """NumPy reference of ``launch_pad``."""
    out = np.full(tuple(n + a + b for n, (a, b) in zip(x.shape, pads)), value, dtype=dtype.np)
    src = tuple(slice(max(-a, 0), n - max(-b, 0)) for n, (a, b) in zip(x.shape, pads))
    dst = tuple(slice(max(a, 0), max(a, 0) + max(n - max(-a, 0) - max(-b, 0), 0)) for n, (a, b) in zip(x.shape, pads))
    out[dst] = x[src]
    return out


class Pad(Function):
    """y = x padded with a constant (negative pads crop); the backward is the opposite pad (with zeros)."""

    @staticmethod
    def forward(ctx, x, pads, value):
        shape = tuple(n + a + b for n, (a, b) in zip(x._shape, pads))
        value = _cast_value(value, x.dtype)
        if x._storage.device.type == "cpu":
            y = wrap(_np_pad(x._np, pads, value, x.dtype), x.dtype, x.device)
        else:
            y = launch_pad(x, empty(shape, x.dtype, x.device), pads, value)
        if any(ctx.needs_input_grad[:1]):
            ctx._name = "ConstantPadNdBackward0"
            ctx.pads = tuple((-a, -b) for a, b in pads)
        return y

    @staticmethod
    def backward(ctx, g):
        return Pad.apply(g, ctx.pads, 0), None, None


@register("constant_pad_nd", method=False)
def constant_pad_nd(input, pad, value=0):
    """Pad the last ``len(pad) // 2`` dims of ``input`` with ``value``: ``pad`` = (left, right) of the last dim,
    then of the one before, ...; negative entries crop."""
    if not isinstance(input, Tensor):
        raise TypeError(f"constant_pad_nd(): argument 'input' (position 1) must be Tensor, not "
                        f"{type(input).__name__}")
    pad = list(pad)
    bad = [p for p in pad if isinstance(p, bool) or not isinstance(p, (int, np.integer))]
    if bad:
        raise TypeError(f"pad(): argument 'pad' must be tuple of ints, but found element of type "
                        f"{type(bad[0]).__name__}")
    if len(pad) % 2:
        raise RuntimeError(f"Length of pad must be even but instead it equals {len(pad)}")
    nd, npad = input.ndim, len(pad) // 2
    if npad > nd:
        raise RuntimeError(f"Length of pad should be no more than twice the number of dimensions of the input. Pad "
                           f"length is {len(pad)}while the input has {nd}dimensions.")
    pads = [(0, 0)] * (nd - npad) + [(int(pad[2 * k]), int(pad[2 * k + 1])) for k in reversed(range(npad))]
    for d, (n, (a, b)) in enumerate(zip(input._shape, pads)):
        if n + a + b < 0:
            raise RuntimeError(f"The input size {n}, plus negative padding {a} and {b} resulted in a negative output "
                               f"size, which is invalid. Check dimension {d} of your input.")
    if not any(p > 0 for p in pad):
        value = 0                                   # a crop writes no fill value: PyTorch does not check it
    elif not input.dtype.is_floating_point and input.dtype is not D.bool_:
        _check_int_fill(value, input.dtype)
    return Pad.apply(input, tuple(pads), value)


_C_INT = {"int8": "int8_t", "int16": "int16_t", "int32": "int", "int64": "int64_t", "uint8": "uint8_t"}


def _check_int_fill(value, dtype):
    """PyTorch's checked conversion of a fill value to an integer type (no wrapping): a float within
    [min, max + 1), an integer within [min, max]."""
    info = np.iinfo(dtype.np)
    v = float(value) if isinstance(value, (float, np.floating)) else int(value)
    if not (info.min <= v < info.max + 1.0 if isinstance(v, float) else info.min <= v <= info.max):
        raise RuntimeError(f"value cannot be converted to type {_C_INT[np.dtype(dtype.np).name]} without overflow")


@register("pad", method=False, function=False)
def pad(input, pad, mode="constant", value=None):
    """``torch.nn.functional.pad``. Mode 'constant' (``value`` defaults to 0) pads any number of trailing dims,
    negative padding crops (``_pad_kernel``). Modes 'reflect', 'replicate' and 'circular' pad the last 1, 2 or 3
    dims of a batched or unbatched input with one gather (``index_select``) per padded dim."""
    if mode == "constant":
        return constant_pad_nd(input, pad, 0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if value is not None and value != 0:
        raise RuntimeError(f"Padding mode \"{mode}\" doesn't take in value argument")
    pad = list(pad)
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    k = len(pad) // 2
    if k not in (1, 2, 3) or input.ndim not in (k + 1, k + 2):
        raise NotImplementedError(f"Padding size {len(pad)} is not supported for {input.ndim}D input tensor.\n"
                                  "Supported combinations for non-constant padding:\n"
                                  "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
                                  "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
                                  "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)")
    if any(n == 0 for n in input._shape[-k - 1:]):
        raise RuntimeError(f"Expected {k + 1}D or {k + 2}D (batch mode) tensor with possibly 0 batch size and other "
                           f"non-zero dimensions for input, but got: {list(input.shape)}")
    x = input
    for i in range(k):
        left, right = int(pad[2 * i]), int(pad[2 * i + 1])
        if left == 0 and right == 0:
            continue
        dim = input.ndim - 1 - i
        n = input._shape[dim]
        if mode == "reflect" and (left >= n or right >= n):
            raise RuntimeError(f"Argument #4: Padding size should be less than the corresponding input dimension, "
                               f"but got: padding ({left}, {right}) at dimension {dim} of input "
                               f"{list(input._shape)}")
        if mode == "circular" and (left > n or right > n):
            raise RuntimeError("Padding value causes wrapping around more than once.")
        if n + left + right < 0 or n == 0:
            raise RuntimeError(f"input tensor must have a non-zero size and the padded size must be >= 0 at "
                               f"dimension {dim}, but got input {list(input._shape)} and padding ({left}, {right})")
        src = np.arange(-left, n + right)
        if mode == "reflect":
            src = np.abs(src)
            src = np.where(src >= n, 2 * (n - 1) - src, src)
        elif mode == "replicate":
            src = np.clip(src, 0, n - 1)
        else:                       # PyTorch crops negative pads first, then wraps around what is left
            kept = np.arange(max(-left, 0), n - max(-right, 0))
            src = kept[np.arange(-max(left, 0), len(kept) + max(right, 0)) % max(len(kept), 1)]
        x = x.index_select(dim, Tensor._wrap_numpy(src.astype(np.int64), input.device))
    return x


# ====================================================================================================================
# Pixel shuffle: views and one strided copy
# ====================================================================================================================

def _check_factor(name, what, r):
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)):
        raise TypeError(f"{name}(): argument '{what}' (position 2) must be int, not {type(r).__name__}")
    if r <= 0:
        raise RuntimeError(f"{name} expects a positive {what}, but got {r}")


@register("pixel_shuffle", method=False)
def pixel_shuffle(input, upscale_factor):
    """(*, C r^2, H, W) -> (*, C, H r, W r): out[..., c, h r + i, w r + j] = x[..., c r^2 + i r + j, h, w]. A
    reshape, a permute and a reshape (the one copy)."""
    _check_factor("pixel_shuffle", "upscale_factor", upscale_factor)
    r = int(upscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_shuffle expects input to have at least 3 dimensions, but got input with "
                           f"{input.ndim} dimension(s)")
    *batch, c, h, w = input._shape
    if c % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the square of "
                           f"upscale_factor, but input.size(-3)={c} is not divisible by {r * r}")
    oc = c // (r * r)
    x = input.reshape(math.prod(batch), oc, r, r, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(*batch, oc, h * r, w * r)


@register("pixel_unshuffle", method=False)
def pixel_unshuffle(input, downscale_factor):
    """(*, C, H r, W r) -> (*, C r^2, H, W), the inverse of ``pixel_shuffle``."""
    _check_factor("pixel_unshuffle", "downscale_factor", downscale_factor)
    r = int(downscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_unshuffle expects input to have at least 3 dimensions, but got input with "
                           f"{input.ndim} dimension(s)")
    *batch, c, h, w = input._shape
    if h % r:
        raise RuntimeError(f"pixel_unshuffle expects height to be divisible by downscale_factor, but "
                           f"input.size(-2)={h} is not divisible by {r}")
    if w % r:
        raise RuntimeError(f"pixel_unshuffle expects width to be divisible by downscale_factor, but "
                           f"input.size(-1)={w} is not divisible by {r}")
    x = input.reshape(math.prod(batch), c, h // r, r, w // r, r).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(*batch, c * r * r, h // r, w // r)
