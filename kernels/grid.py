"""Spatial transformers: ``affine_grid`` (2-D and 3-D) and ``grid_sample`` (4-D input, modes 'bilinear' and
'nearest', padding modes 'zeros', 'border' and 'reflection'), with their backward rules.

``affine_grid`` is a composite: the (D,) H, W grid of normalised base coordinates ``(x, y[, z], 1)`` (PyTorch's
``linspace(-1, 1)``, scaled by ``(n - 1) / n`` without ``align_corners``) times ``theta^T`` by the batched matmul,
whose gradient gives theta's.

``grid_sample`` reads ``input`` (N, C, H, W) at the points ``grid`` (N, OH, OW, 2) holds, (x, y) in [-1, 1]:
``ix = (x + 1) / 2 * (W - 1)`` with ``align_corners``, ``((x + 1) * W - 1) / 2`` without; 'border' clamps ix to
[0, W - 1], 'reflection' reflects it about the edges (the pixel centres with ``align_corners``, the outer edges
without) and clamps. 'bilinear' mixes the four neighbours ``floor(ix)``, ``floor(ix) + 1`` (taps outside the input
read 0); 'nearest' takes ``round(ix)``, ties to even (``nearbyint``), as PyTorch does.

The forward kernel takes one output element per lane. The backward kernel takes one grid point per lane and loops
over the channels, as PyTorch's does: the input gradient is scattered to the four taps with ``tl.atomic_add`` (the
order of the additions, so the last bits of the input gradient, may vary between runs on a GPU), the grid gradient
``d out / d (ix, iy)`` times the chain of the unnormalisation and padding is summed over the channels (zero for
'nearest'). Arithmetic runs in float32 for half types. The backward is once differentiable, as PyTorch's.
"""
import math
import warnings

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function, once_differentiable
from ._launch import ACC, ptr, cdiv, is_int64_index, block_for, interp_bf16_in, interp_bf16_out
from ._common import empty, wrap, np_ct, check_same_device
from .matmul import matmul

__all__ = ["affine_grid", "grid_sample"]

ZEROS, BORDER, REFLECTION = 0, 1, 2
_PADDING = {"zeros": ZEROS, "border": BORDER, "reflection": REFLECTION}

# ====================================================================================================================
# The kernels
# ====================================================================================================================


@triton.jit
def _clip(x, size):
    """x clamped to [0, size - 1] and d(clamped)/dx (0 outside, as PyTorch's ``clip_coordinates_set_grad``)."""
    hi = tl.zeros_like(x) + (size - 1)
    g = tl.where((x > 0.0) & (x < hi), 1.0, 0.0).to(x.dtype)
    return tl.minimum(tl.maximum(x, 0.0), hi), g


@triton.jit
def _reflect(x, twice_low, twice_high):
    """x reflected into [twice_low / 2, twice_high / 2] and d(reflected)/dx (+-1), PyTorch's
    ``reflect_coordinates_set_grad``."""
    lo = (tl.zeros_like(x) + twice_low) / 2.0
    span = (tl.zeros_like(x) + (twice_high - twice_low)) / 2.0
    t = x - lo
    sign = tl.where(t < 0.0, -1.0, 1.0).to(x.dtype)
    t = tl.abs(t)
    safe = tl.where(span > 0.0, span, 1.0)
    flips = tl.floor(t / safe)
    extra = t - flips * safe
    even = (flips - 2.0 * tl.floor(flips / 2.0)) == 0.0
    r = tl.where(even, extra + lo, safe - extra + lo)
    g = tl.where(even, sign, -sign)
    r = tl.where(span > 0.0, r, 0.0)
    g = tl.where(span > 0.0, g, 0.0)
    return r, g


@triton.jit
def _source(c, size, PAD: tl.constexpr, ALIGN: tl.constexpr):
    """Grid coordinate c in [-1, 1] -> source pixel coordinate along a dim of ``size``, and d(source)/dc."""
    if ALIGN:
        g = (tl.zeros_like(c) + (size - 1)) / 2.0
        x = (c + 1.0) * g
    else:
        g = (tl.zeros_like(c) + size) / 2.0
        x = ((c + 1.0) * (tl.zeros_like(c) + size) - 1.0) / 2.0
    if PAD == 1:
        x, gc = _clip(x, size)
        g = g * gc
    elif PAD == 2:
        if ALIGN:
            x, gr = _reflect(x, 0, 2 * (size - 1))
        else:
            x, gr = _reflect(x, -1, 2 * size - 1)
        x, gc = _clip(x, size)
        g = g * gr * gc
    return x, g


@triton.jit
def _floor_idx(x, size):
    """floor(x) as an int32, kept in [-2, size + 1] first so that any far (or NaN) coordinate stays outside."""
    f = tl.floor(x)
    f = tl.where(f == f, f, -2.0)
    return tl.minimum(tl.maximum(f, -2.0), tl.zeros_like(x) + (size + 1)).to(tl.int32)


@triton.jit
def _round_even(x):
    """x rounded to the nearest integer, ties to even (C's ``nearbyint``)."""
    r = tl.floor(x + 0.5)
    tie = (r - x) == 0.5
    odd = (r - 2.0 * tl.floor(r / 2.0)) != 0.0
    return tl.where(tie & odd, r - 1.0, r)


@triton.jit
def _grid_fwd_kernel(x_ptr, g_ptr, out_ptr, total, C, H, W, OH, OW, sxn, sxc, sxh, sxw, sgn, sgh, sgw, sgk,
                     NEAREST: tl.constexpr, PAD: tl.constexpr, ALIGN: tl.constexpr, CT: tl.constexpr,
                     I64: tl.constexpr, BLOCK: tl.constexpr):
    """out[n, c, oh, ow] = input sampled at grid[n, oh, ow]. x (N, C, H, W) through its strides (sxn, sxc, sxh,
    sxw), grid (N, OH, OW, 2) through its strides (sgn, sgh, sgw, sgk: the x/y component), in elements; out
    contiguous (N, C, OH, OW)."""
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
    gp = g_ptr + n * sgn + oh * sgh + ow * sgw
    gx = tl.load(gp, mask=mask, other=0.0).to(CT)
    gy = tl.load(gp + sgk, mask=mask, other=0.0).to(CT)
    ix, _ = _source(gx, W, PAD, ALIGN)
    iy, _ = _source(gy, H, PAD, ALIGN)
    base = x_ptr + n * sxn + c * sxc
    if NEAREST:
        jx = _floor_idx(_round_even(ix), W)
        jy = _floor_idx(_round_even(iy), H)
        ok = mask & (jx >= 0) & (jx < W) & (jy >= 0) & (jy < H)
        out = tl.load(base + jy * sxh + jx * sxw, mask=ok, other=0.0).to(CT)
    else:
        x0 = _floor_idx(ix, W)
        y0 = _floor_idx(iy, H)
        tx = ix - tl.floor(ix)
        ty = iy - tl.floor(iy)
        x1 = x0 + 1
        y1 = y0 + 1
        vx0 = (x0 >= 0) & (x0 < W)
        vx1 = (x1 >= 0) & (x1 < W)
        vy0 = mask & (y0 >= 0) & (y0 < H)
        vy1 = mask & (y1 >= 0) & (y1 < H)
        v00 = tl.load(base + y0 * sxh + x0 * sxw, mask=vy0 & vx0, other=0.0).to(CT)
        v01 = tl.load(base + y0 * sxh + x1 * sxw, mask=vy0 & vx1, other=0.0).to(CT)
        v10 = tl.load(base + y1 * sxh + x0 * sxw, mask=vy1 & vx0, other=0.0).to(CT)
        v11 = tl.load(base + y1 * sxh + x1 * sxw, mask=vy1 & vx1, other=0.0).to(CT)
        out = (1.0 - ty) * ((1.0 - tx) * v00 + tx * v01) + ty * ((1.0 - tx) * v10 + tx * v11)
    tl.store(out_ptr + i, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _grid_bwd_kernel(x_ptr, g_ptr, go_ptr, dx_ptr, dg_ptr, total, C, H, W, OH, OW, sxn, sxc, sxh, sxw,
                     sgn, sgh, sgw, sgk, NEAREST: tl.constexpr, PAD: tl.constexpr, ALIGN: tl.constexpr,
                     DX: tl.constexpr, DG: tl.constexpr, CT: tl.constexpr, I64: tl.constexpr, BLOCK: tl.constexpr):
    """For each grid point (n, oh, ow) and every channel: dx[n, c, taps] += w_tap * go[n, c, oh, ow] (atomic, DX),
    and dgrid[n, oh, ow] = sum_c go * d out / d (x, y) (DG). x and grid as in the forward; go contiguous
    (N, C, OH, OW); dx contiguous (N, C, H, W) in the accumulation type; dgrid contiguous (N, OH, OW, 2)."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < total
    ow = i % OW
    t = i // OW
    oh = t % OH
    n = t // OH
    gp = g_ptr + n * sgn + oh * sgh + ow * sgw
    gx = tl.load(gp, mask=mask, other=0.0).to(CT)
    gy = tl.load(gp + sgk, mask=mask, other=0.0).to(CT)
    ix, mx = _source(gx, W, PAD, ALIGN)
    iy, my = _source(gy, H, PAD, ALIGN)
    acc_x = tl.zeros([BLOCK], CT)
    acc_y = tl.zeros([BLOCK], CT)
    plane = OH * OW
    if NEAREST:
        jx = _floor_idx(_round_even(ix), W)
        jy = _floor_idx(_round_even(iy), H)
        ok = mask & (jx >= 0) & (jx < W) & (jy >= 0) & (jy < H)
        if DX:
            for c in range(0, C):
                go = tl.load(go_ptr + (n * C + c) * plane + oh * OW + ow, mask=mask, other=0.0).to(CT)
                tl.atomic_add(dx_ptr + ((n * C + c) * H + jy) * W + jx, go, mask=ok)
    else:
        x0 = _floor_idx(ix, W)
        y0 = _floor_idx(iy, H)
        tx = ix - tl.floor(ix)
        ty = iy - tl.floor(iy)
        x1 = x0 + 1
        y1 = y0 + 1
        vx0 = (x0 >= 0) & (x0 < W)
        vx1 = (x1 >= 0) & (x1 < W)
        vy0 = mask & (y0 >= 0) & (y0 < H)
        vy1 = mask & (y1 >= 0) & (y1 < H)
        for c in range(0, C):
            go = tl.load(go_ptr + (n * C + c) * plane + oh * OW + ow, mask=mask, other=0.0).to(CT)
            if DX:
                d = dx_ptr + (n * C + c) * H * W
                tl.atomic_add(d + y0 * W + x0, go * (1.0 - tx) * (1.0 - ty), mask=vy0 & vx0)
                tl.atomic_add(d + y0 * W + x1, go * tx * (1.0 - ty), mask=vy0 & vx1)
                tl.atomic_add(d + y1 * W + x0, go * (1.0 - tx) * ty, mask=vy1 & vx0)
                tl.atomic_add(d + y1 * W + x1, go * tx * ty, mask=vy1 & vx1)
            if DG:
                base = x_ptr + n * sxn + c * sxc
                v00 = tl.load(base + y0 * sxh + x0 * sxw, mask=vy0 & vx0, other=0.0).to(CT)
                v01 = tl.load(base + y0 * sxh + x1 * sxw, mask=vy0 & vx1, other=0.0).to(CT)
                v10 = tl.load(base + y1 * sxh + x0 * sxw, mask=vy1 & vx0, other=0.0).to(CT)
                v11 = tl.load(base + y1 * sxh + x1 * sxw, mask=vy1 & vx1, other=0.0).to(CT)
                acc_x += go * ((1.0 - ty) * (v01 - v00) + ty * (v11 - v10))
                acc_y += go * ((1.0 - tx) * (v10 - v00) + tx * (v11 - v01))
    if DG:
        tl.store(dg_ptr + i * 2, (acc_x * mx).to(dg_ptr.dtype.element_ty), mask=mask)
        tl.store(dg_ptr + i * 2 + 1, (acc_y * my).to(dg_ptr.dtype.element_ty), mask=mask)


# ====================================================================================================================
# NumPy references
# ====================================================================================================================

def _np_reflect(x, twice_low, twice_high):
    if twice_low == twice_high:
        return np.zeros_like(x), np.zeros_like(x)
    lo, span = twice_low / 2, (twice_high - twice_low) / 2
    t = x - lo
    sign = np.where(t < 0, -1.0, 1.0)
    t = np.abs(t)
    flips = np.floor(t / span)
    extra = t - flips * span
    even = flips % 2 == 0
    return np.where(even, extra + lo, span - extra + lo), np.where(even, sign, -sign)


def _np_source(c, size, pad, align):
    """Reference of ``_source``: (source coordinate, d source / d c)."""
    ct = c.dtype.type
    if align:
        x, g = (c + 1) / 2 * ct(size - 1), np.full_like(c, ct(size - 1) / 2)
    else:
        x, g = ((c + 1) * ct(size) - 1) / 2, np.full_like(c, ct(size) / 2)
    if pad == REFLECTION:
        x, gr = _np_reflect(x, 0, 2 * (size - 1)) if align else _np_reflect(x, -1, 2 * size - 1)
        x, g = x.astype(ct), g * gr.astype(ct)
    if pad != ZEROS:
        g = g * ((x > 0) & (x < size - 1))
        x = np.clip(x, 0, size - 1)
    return x, g


def _np_floor(x, size):
    f = np.floor(np.where(np.isnan(x), -2, x))
    return np.clip(f, -2, size + 1).astype(np.int64)


def _np_taps(x, grid, mode, pad, align):
    """Per grid point: the (y, x) taps, their weights, validity, and the weights' derivatives in (ix, iy) and the
    chain factors (mx, my), shared by the reference forward and backward."""
    H, W = x.shape[2:]
    ix, mx = _np_source(grid[..., 0], W, pad, align)
    iy, my = _np_source(grid[..., 1], H, pad, align)
    if mode == "nearest":
        jx, jy = _np_floor(np.rint(ix), W), _np_floor(np.rint(iy), H)
        one = np.ones_like(ix)
        return [(jy, jx, one, 0 * one, 0 * one)], mx, my
    x0, y0 = _np_floor(ix, W), _np_floor(iy, H)
    tx, ty = ix - np.floor(ix), iy - np.floor(iy)
    taps = [(y0, x0, (1 - tx) * (1 - ty), -(1 - ty), -(1 - tx)), (y0, x0 + 1, tx * (1 - ty), 1 - ty, -tx),
            (y0 + 1, x0, (1 - tx) * ty, -ty, 1 - tx), (y0 + 1, x0 + 1, tx * ty, ty, tx)]
    return taps, mx, my


def _np_grid_sample(x, grid, mode, pad, align):
    """Reference forward: x (N, C, H, W), grid (N, OH, OW, 2) -> (N, C, OH, OW), in the arrays' type."""
    N, C, H, W = x.shape
    taps, _, _ = _np_taps(x, grid, mode, pad, align)
    out = np.zeros((N, C) + grid.shape[1:3], x.dtype)
    nidx = np.arange(N)[:, None, None]
    for ty, tx, w, _, _ in taps:
        ok = (ty >= 0) & (ty < H) & (tx >= 0) & (tx < W)
        v = x[nidx, :, np.clip(ty, 0, H - 1), np.clip(tx, 0, W - 1)]             # (N, OH, OW, C)
        out += np.moveaxis(np.where(ok[..., None], v * w[..., None], 0), -1, 1)
    return out


def _np_grid_sample_bwd(go, x, grid, mode, pad, align):
    """Reference backward: (dx, dgrid) for the output gradient go (N, C, OH, OW)."""
    N, C, H, W = x.shape
    taps, mx, my = _np_taps(x, grid, mode, pad, align)
    dx = np.zeros(x.shape, x.dtype)
    dg = np.zeros(grid.shape, x.dtype)
    gol = np.moveaxis(go, 1, -1)                                                   # (N, OH, OW, C)
    nidx = np.broadcast_to(np.arange(N)[:, None, None], grid.shape[:3])
    for ty, tx, w, dwx, dwy in taps:
        ok = (ty >= 0) & (ty < H) & (tx >= 0) & (tx < W)
        yy, xx = np.clip(ty, 0, H - 1), np.clip(tx, 0, W - 1)
        contrib = np.where(ok[..., None], gol * w[..., None], 0)
        dxl = np.moveaxis(dx, 1, -1)                                               # a view: writes reach dx
        np.add.at(dxl, (nidx, yy, xx), contrib)
        s = np.where(ok, (gol * x[nidx, :, yy, xx]).sum(-1), 0)
        dg[..., 0] += s * dwx
        dg[..., 1] += s * dwy
    dg[..., 0] *= mx
    dg[..., 1] *= my
    return dx, dg


# ====================================================================================================================
# Launches and the autograd Function
# ====================================================================================================================

def _launch_fwd(x, grid, mode, pad, align):
    N, C, H, W = x._shape
    OH, OW = grid._shape[1:3]
    out_dtype = x.dtype
    xin, gin = interp_bf16_in(x), interp_bf16_in(grid)
    out = empty((N, C, OH, OW), xin.dtype, x.device)
    total = out.numel()
    if total:
        block = block_for(total)
        _grid_fwd_kernel[(cdiv(total, block),)](
            ptr(xin), ptr(gin), ptr(out), total, C, H, W, OH, OW, *xin._stride, *gin._stride,
            NEAREST=mode == "nearest", PAD=pad, ALIGN=align, CT=ACC[xin.dtype],
            I64=is_int64_index(max(total, xin.numel(), gin.numel()), xin, gin, out), BLOCK=block)
    return interp_bf16_out(out, out_dtype)


def _launch_bwd(go, x, grid, mode, pad, align, need_dx, need_dg):
    N, C, H, W = x._shape
    OH, OW = grid._shape[1:3]
    dtype = x.dtype
    xin, gin = interp_bf16_in(x), interp_bf16_in(grid)
    go = interp_bf16_in(go.contiguous())
    ct = D.float64 if dtype is D.float64 else D.float32
    dx = empty(x._shape, ct, x.device).zero_() if need_dx else None        # atomics add into it
    dg = empty((N, OH, OW, 2), xin.dtype, x.device) if need_dg else None
    total = N * OH * OW
    if total and (need_dx or need_dg):
        block = block_for(total, 256)
        _grid_bwd_kernel[(cdiv(total, block),)](
            ptr(xin), ptr(gin), ptr(go), ptr(dx if need_dx else go), ptr(dg if need_dg else go), total, C, H, W,
            OH, OW, *xin._stride, *gin._stride, NEAREST=mode == "nearest", PAD=pad, ALIGN=align, DX=need_dx,
            DG=need_dg and mode != "nearest", CT=ACC[xin.dtype],
            I64=is_int64_index(max(x.numel(), go.numel(), gin.numel()), xin, gin, go), BLOCK=block)
    if need_dg and mode == "nearest":
        dg = dg.zero_()
    if need_dx:
        dx = dx if dx.dtype is dtype else dx.to(dtype)
    return dx, (interp_bf16_out(dg, dtype) if need_dg else None)


class GridSample(Function):
    """out = grid_sample(x, grid); backward: (dx, dgrid), once differentiable (as PyTorch's)."""

    @staticmethod
    def forward(ctx, x, grid, mode, pad, align):
        ctx._name = "GridSampler2DBackward0"
        ctx.save_for_backward(x, grid)
        ctx.mode, ctx.pad, ctx.align = mode, pad, align
        if x._storage.device.type == "cpu":
            ct = np_ct(x.dtype)
            y = _np_grid_sample(x._np.astype(ct), grid._np.astype(ct), mode, pad, align)
            return wrap(y.astype(x.dtype.np), x.dtype, x.device)
        return _launch_fwd(x, grid, mode, pad, align)

    @staticmethod
    @once_differentiable
    def backward(ctx, go):
        x, grid = ctx.saved_tensors
        need_dx, need_dg = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if x._storage.device.type == "cpu":
            ct = np_ct(x.dtype)
            dx, dg = _np_grid_sample_bwd(np.ascontiguousarray(go._np, ct), x._np.astype(ct), grid._np.astype(ct),
                                         ctx.mode, ctx.pad, ctx.align)
            dx = wrap(dx.astype(x.dtype.np), x.dtype, x.device) if need_dx else None
            dg = wrap(dg.astype(grid.dtype.np), grid.dtype, grid.device) if need_dg else None
        else:
            dx, dg = _launch_bwd(go, x, grid, ctx.mode, ctx.pad, ctx.align, need_dx, need_dg)
        return dx, dg, None, None, None


# ====================================================================================================================
# The public functions
# ====================================================================================================================

_ALIGN_WARNING = ("Default grid_sample and affine_grid behavior has changed to align_corners=False since 1.3.0. "
                  "Please specify align_corners=True if the old behavior is desired. See the documentation of "
                  "grid_sample for details.")


@register("grid_sample", method=False, function=False)
def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    """``torch.nn.functional.grid_sample`` of a 4-D input (N, C, H, W) at the points of grid (N, OH, OW, 2)."""
    if mode not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(f"nn.functional.grid_sample(): expected mode to be 'bilinear', 'nearest' or 'bicubic', but "
                         f"got: '{mode}'")
    if padding_mode not in _PADDING:
        raise ValueError("nn.functional.grid_sample(): expected padding_mode to be 'zeros', 'border', or "
                         f"'reflection', but got: '{padding_mode}'")
    if align_corners is None:
        warnings.warn(_ALIGN_WARNING, stacklevel=2)
        align_corners = False
    for name, t in (("input", input), ("grid", grid)):
        if not isinstance(t, Tensor):
            raise TypeError(f"grid_sampler(): argument '{name}' must be Tensor, not {type(t).__name__}")
    check_same_device("grid_sampler()", input, grid)
    sizes = f"input with sizes {list(input.shape)} and grid with sizes {list(grid.shape)}"
    if input.ndim and grid.ndim and input._shape[0] != grid._shape[0]:
        raise RuntimeError(f"grid_sampler(): expected grid and input to have same batch size, but got {sizes}")
    if input.ndim >= 2 and grid.ndim and grid._shape[-1] != input.ndim - 2:
        raise RuntimeError(f"grid_sampler(): expected grid to have size {input.ndim - 2} in last dimension, but got "
                           f"grid with sizes {list(grid.shape)}")
    for d in range(2, input.ndim):
        if input._shape[d] == 0:
            raise RuntimeError(f"grid_sampler(): expected input to have non-empty spatial dimensions, but input has "
                               f"sizes {list(input.shape)} with dimension {d} being empty")
    if input.ndim != grid.ndim or input.ndim not in (4, 5):
        raise RuntimeError(f"grid_sampler(): expected 4D input and grid with same number of dimensions, but got "
                           f"{sizes}")
    if not input.dtype.is_floating_point:
        raise NotImplementedError(f"\"grid_sampler_2d_cpu_kernel_impl\" not implemented for "
                                  f"'{_type_name(input.dtype)}'")
    if grid.dtype is not input.dtype:
        raise RuntimeError(f"expected scalar type {_type_name(input.dtype)} but found {_type_name(grid.dtype)}")
    if input.ndim == 5 or mode == "bicubic":
        raise NotImplementedError(f"grid_sample: {'5-D input' if input.ndim == 5 else 'mode bicubic'} is not "
                                  "supported by tritorch (supported: 4-D input, modes 'bilinear' and 'nearest')")
    return GridSample.apply(input, grid, mode, _PADDING[padding_mode], bool(align_corners))


def _type_name(dtype):
    return {D.float32: "Float", D.float64: "Double", D.float16: "Half", D.bfloat16: "BFloat16", D.int64: "Long",
            D.int32: "Int", D.int16: "Short", D.int8: "Char", D.uint8: "Byte", D.bool_: "Bool"}.get(dtype, dtype.name)


def _base_coords(n, align, dtype):
    """PyTorch's ``linspace_from_neg_one``: n points over [-1, 1] (0 for n = 1), scaled by (n - 1) / n without
    ``align_corners``."""
    if n <= 1:
        return np.zeros(n, dtype)
    v = np.linspace(-1, 1, n, dtype=dtype)
    return v if align else v * dtype((n - 1) / n)


@register("affine_grid", method=False, function=False)
def affine_grid(theta, size, align_corners=None):
    """``torch.nn.functional.affine_grid``: the sampling grid (N, H, W, 2) (or (N, D, H, W, 3)) of the affine maps
    theta (N, 2, 3) (or (N, 3, 4)) for an output of ``size`` (N, C, H, W) (or (N, C, D, H, W))."""
    if align_corners is None:
        warnings.warn(_ALIGN_WARNING, stacklevel=2)
        align_corners = False
    if not isinstance(theta, Tensor):
        raise TypeError(f"affine_grid(): argument 'theta' must be Tensor, not {type(theta).__name__}")
    if not theta.dtype.is_floating_point:
        raise ValueError(f"Expected theta to have floating point type, but got torch.{theta.dtype.name}")
    size = tuple(int(s) for s in size)
    if len(size) not in (4, 5):
        raise NotImplementedError("affine_grid only supports 4D and 5D sizes, for 2D and 3D affine transforms, "
                                  f"respectively. Got size {size}.")
    k = len(size) - 2
    if theta.ndim != 3 or tuple(theta._shape[1:]) != (k, k + 1):
        kind = "2D affine matrices of shape Nx2x3" if k == 2 else "3D affine matrices of shape Nx3x4"
        raise ValueError(f"Expected a batch of {kind} for size {size}. Got torch.Size({list(theta.shape)}).")
    if min(size) <= 0:
        raise ValueError(f"Expected non-zero, positive output size. Got {size}")
    if align_corners and min(size[2:]) == 1:
        warnings.warn("Since version 1.3.0, affine_grid behavior has changed for unit-size grids when "
                      "align_corners=True. This is not an intended use case of affine_grid. See the documentation "
                      "of affine_grid for details.", stacklevel=2)
    if theta._shape[0] != size[0]:
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: [{size[0]}, {k + 1}] but "
                           f"got: [{theta._shape[0]}, {k + 1}].")
    ct = np_ct(theta.dtype)
    axes = [_base_coords(n, bool(align_corners), ct) for n in reversed(size[2:])]     # x (W), y (H)[, z (D)]
    mesh = np.meshgrid(*reversed(axes), indexing="ij")                                # [z,] y, x over (D,) H, W
    base = np.stack(list(reversed(mesh)) + [np.ones_like(mesh[0])], -1).reshape(-1, k + 1)
    base = Tensor._wrap_numpy(base.astype(theta.dtype.np), theta.device, theta.dtype)
    grid = matmul(base, theta.transpose(1, 2))                                        # (N, prod(size[2:]), k)
    return grid.reshape((size[0],) + size[2:] + (k,))
