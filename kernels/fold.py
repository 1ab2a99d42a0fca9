"""``unfold`` (im2col) and ``fold`` (col2im), forward and backward.

``unfold`` turns an (N, C, H, W) input into the (N, C * KH * KW, L) matrix of its sliding blocks: row
``(c * KH + kh) * KW + kw``, column ``l = lh * LW + lw`` holds x at (n, c, ``lh * SH - PH + kh * DH``,
``lw * SW - PW + kw * DW``) (0 in the padding), with ``LH = (H + 2 PH - DH (KH - 1) - 1) // SH + 1`` blocks down and
LW across. ``fold`` is its adjoint: it sums every column entry back into the pixel it came from. Each one's
gradient is the other, so both are closed under differentiation.

Both kernels are gathers over their output, so neither needs atomics: ``_im2col_kernel`` reads one input element (or
0) per output element; ``_col2im_kernel`` visits, for each output pixel, the KH x KW (kh, kw) taps and keeps the
blocks whose tap lands on it (``(h + PH - kh * DH) / SH`` exact and in range), summing in the accumulation type.
"""
import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from ._launch import ACC, ptr, cdiv, is_int64_index, block_for, interp_bf16_in, interp_bf16_out
from ._common import empty, wrap, np_ct

__all__ = ["unfold", "fold"]

# ====================================================================================================================
# The kernels
# ====================================================================================================================


@triton.jit
def _im2col_kernel(x_ptr, out_ptr, total, C, H, W, KH, KW, LH, LW, sxn, sxc, sxh, sxw, SH, SW, PH, PW, DH, DW,
                   I64: tl.constexpr, BLOCK: tl.constexpr):
    """out[n, (c * KH + kh) * KW + kw, lh * LW + lw] = x[n, c, lh * SH - PH + kh * DH, lw * SW - PW + kw * DW], or 0
    outside x. x (N, C, H, W) through its strides (sxn, sxc, sxh, sxw, in elements); out contiguous
    (N, C * KH * KW, LH * LW)."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < total
    lw = i % LW
    t = i // LW
    lh = t % LH
    t = t // LH
    kw = t % KW
    t = t // KW
    kh = t % KH
    t = t // KH
    c = t % C
    n = t // C
    h = lh * SH - PH + kh * DH
    w = lw * SW - PW + kw * DW
    inside = (h >= 0) & (h < H) & (w >= 0) & (w < W)
    v = tl.load(x_ptr + n * sxn + c * sxc + h * sxh + w * sxw, mask=mask & inside, other=0.0)
    tl.store(out_ptr + i, v.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _col2im_kernel(col_ptr, out_ptr, total, C, H, W, KH, KW, LH, LW, scn, sck, scl, SH, SW, PH, PW, DH, DW,
                   CT: tl.constexpr, I64: tl.constexpr, BLOCK: tl.constexpr):
    """out[n, c, h, w] = sum over the taps (kh, kw) and blocks (lh, lw) with lh * SH - PH + kh * DH = h and
    lw * SW - PW + kw * DW = w of col[n, (c * KH + kh) * KW + kw, lh * LW + lw]. col (N, C * KH * KW, LH * LW)
    through its strides (scn, sck, scl, in elements); out contiguous (N, C, H, W)."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    mask = i < total
    w = i % W
    t = i // W
    h = t % H
    t = t // H
    c = t % C
    n = t // C
    base = col_ptr + n * scn
    acc = tl.zeros([BLOCK], CT)
    for kh in range(0, KH):
        th = h + PH - kh * DH
        lh = th // SH
        hv = (th >= 0) & (th % SH == 0) & (lh < LH)
        for kw in range(0, KW):
            tw = w + PW - kw * DW
            lw = tw // SW
            valid = mask & hv & (tw >= 0) & (tw % SW == 0) & (lw < LW)
            v = tl.load(base + ((c * KH + kh) * KW + kw) * sck + (lh * LW + lw) * scl, mask=valid, other=0.0)
            acc += v.to(CT)
    tl.store(out_ptr + i, acc.to(out_ptr.dtype.element_ty), mask=mask)


# ====================================================================================================================
# NumPy references
# ====================================================================================================================

def _np_unfold(x, g):
    """Reference im2col of an (N, C, H, W) array with geometry ``g`` = (k, d, p, s, (LH, LW))."""
    (KH, KW), (DH, DW), (PH, PW), (SH, SW), (LH, LW) = g
    N, C = x.shape[:2]
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    out = np.empty((N, C, KH, KW, LH, LW), x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            out[:, :, kh, kw] = xp[:, :, kh * DH: kh * DH + SH * (LH - 1) + 1: SH,
                                   kw * DW: kw * DW + SW * (LW - 1) + 1: SW]
    return out.reshape(N, C * KH * KW, LH * LW)


def _np_fold(col, g, hw):
    """Reference col2im of an (N, C * KH * KW, L) array into (N, C, *hw), in the array's (compute) type."""
    (KH, KW), (DH, DW), (PH, PW), (SH, SW), (LH, LW) = g
    N = col.shape[0]
    C = col.shape[1] // (KH * KW)
    H, W = hw
    cols = col.reshape(N, C, KH, KW, LH, LW)
    out = np.zeros((N, C, H + 2 * PH, W + 2 * PW), col.dtype)
    for kh in range(KH):
        for kw in range(KW):
            out[:, :, kh * DH: kh * DH + SH * (LH - 1) + 1: SH,
                kw * DW: kw * DW + SW * (LW - 1) + 1: SW] += cols[:, :, kh, kw]
    return np.ascontiguousarray(out[:, :, PH: PH + H, PW: PW + W])


# ====================================================================================================================
# Launches and the autograd Functions
# ====================================================================================================================

def _im2col(x, g):
    """unfold of a batched (N, C, H, W) tensor: (N, C * KH * KW, LH * LW)."""
    (KH, KW), (DH, DW), (PH, PW), (SH, SW), (LH, LW) = g
    N, C, H, W = x._shape
    shape = (N, C * KH * KW, LH * LW)
    if x._storage.device.type == "cpu":
        return wrap(_np_unfold(x._np, g), x.dtype, x.device)
    out_dtype = x.dtype
    xin = interp_bf16_in(x)
    out = empty(shape, xin.dtype, x.device)
    total = out.numel()
    if total:
        block = block_for(total)
        _im2col_kernel[(cdiv(total, block),)](
            ptr(xin), ptr(out), total, C, H, W, KH, KW, LH, LW, *xin._stride, SH, SW, PH, PW, DH, DW,
            I64=is_int64_index(max(total, xin.numel()), xin, out), BLOCK=block)
    return interp_bf16_out(out, out_dtype)


def _col2im(col, g, hw):
    """fold of a batched (N, C * KH * KW, L) tensor into (N, C, *hw)."""
    (KH, KW), (DH, DW), (PH, PW), (SH, SW), (LH, LW) = g
    N = col._shape[0]
    C = col._shape[1] // (KH * KW)
    H, W = hw
    if col._storage.device.type == "cpu":
        out = _np_fold(col._np.astype(np_ct(col.dtype)), g, hw)
        return wrap(out.astype(col.dtype.np), col.dtype, col.device)
    out_dtype = col.dtype
    cin = interp_bf16_in(col)
    out = empty((N, C, H, W), cin.dtype, col.device)
    total = out.numel()
    if total:
        block = block_for(total)
        _col2im_kernel[(cdiv(total, block),)](
            ptr(cin), ptr(out), total, C, H, W, KH, KW, LH, LW, *cin._stride, SH, SW, PH, PW, DH, DW,
            CT=ACC[cin.dtype], I64=is_int64_index(max(total, cin.numel()), cin, out), BLOCK=block)
    return interp_bf16_out(out, out_dtype)


class Im2Col(Function):
    """y = unfold(x); dx = fold(dy)."""

    @staticmethod
    def forward(ctx, x, g):
        ctx._name = "Im2ColBackward0"
        ctx.g, ctx.hw = g, x._shape[2:]
        return _im2col(x, g)

    @staticmethod
    def backward(ctx, gy):
        return Col2Im.apply(gy, ctx.g, ctx.hw), None


class Col2Im(Function):
    """y = fold(col); dcol = unfold(dy)."""

    @staticmethod
    def forward(ctx, col, g, hw):
        ctx._name = "Col2ImBackward0"
        ctx.g = g
        return _col2im(col, g, hw)

    @staticmethod
    def backward(ctx, gy):
        return Im2Col.apply(gy, ctx.g), None, None


# ====================================================================================================================
# Argument checks and the public functions
# ====================================================================================================================

def _pair(v, what):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise RuntimeError(f"It is expected {what} equals to 2, but got size {len(v)}")
        return tuple(int(a) for a in v)
    return (int(v), int(v))


def _geometry(kernel_size, dilation, padding, stride):
    """(k, d, p, s) pairs, checked with PyTorch's messages."""
    k, d = _pair(kernel_size, "kernel_size"), _pair(dilation, "dilation")
    p, s = _pair(padding, "padding"), _pair(stride, "stride")
    if min(k) <= 0:
        raise RuntimeError(f"kernel size should be greater than zero, but got kernel_height: {k[0]} kernel_width: "
                           f"{k[1]}")
    if min(s) <= 0:
        raise RuntimeError(f"stride should be greater than zero, but got stride_height: {s[0]} stride_width: {s[1]}")
    if min(d) <= 0:
        raise RuntimeError(f"dilation should be greater than zero, but got dilation_height: {d[0]} dilation_width: "
                           f"{d[1]}")
    if min(p) < 0:
        raise RuntimeError(f"padding should be non-negative, but got pad_height: {p[0]} pad_width: {p[1]}")
    return k, d, p, s


def _blocks(hw, k, d, p, s):
    return tuple((n + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for n, kk, dd, pp, ss in zip(hw, k, d, p, s))


def _check_float(input, name):
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")
    if not input.dtype.is_floating_point:
        raise NotImplementedError(f"\"{'im2col' if name == 'unfold' else 'col2im'}_out_cpu\" not implemented for "
                                  f"'{_type_name(input.dtype)}'")


def _type_name(dtype):
    return {D.int64: "Long", D.int32: "Int", D.int16: "Short", D.int8: "Char", D.uint8: "Byte",
            D.bool_: "Bool"}.get(dtype, dtype.name)


@register("unfold", method=False, function=False)
def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """``torch.nn.functional.unfold``: the sliding blocks of (N, C, H, W) or (C, H, W) as columns,
    (N, C * KH * KW, L) (or without N)."""
    _check_float(input, "unfold")
    k, d, p, s = _geometry(kernel_size, dilation, padding, stride)
    if input.ndim not in (3, 4) or any(n == 0 for n in input._shape[-3:]):
        raise RuntimeError("Expected 3D or 4D (batch mode) tensor with possibly 0 batch size and other non-zero "
                           f"dimensions for input, but got: {list(input.shape)}")
    batched = input.ndim == 4
    x = input if batched else input.unsqueeze(0)
    hw = tuple(x._shape[2:])
    L = _blocks(hw, k, d, p, s)
    if min(L) < 1:
        raise RuntimeError(f"Given input with spatial size {hw}, kernel_size={k}, dilation={d}, padding={p}, "
                           f"calculated shape of the array of sliding blocks as {L}, but its components must be at "
                           "least one.")
    y = Im2Col.apply(x, (k, d, p, s, L))
    return y if batched else y.squeeze(0)


@register("fold", method=False, function=False)
def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """``torch.nn.functional.fold``: sum the columns of (N, C * KH * KW, L) or (C * KH * KW, L) back into an
    (N, C, *output_size) image (the adjoint of ``unfold``; overlapping blocks add up)."""
    _check_float(input, "fold")
    hw = _pair(output_size, "output_size")
    k, d, p, s = _geometry(kernel_size, dilation, padding, stride)
    if input.ndim not in (2, 3) or any(n == 0 for n in input._shape[-2:]):
        raise RuntimeError("Expected 2D or 3D (batch mode) tensor for input with possibly 0 batch size and non-zero "
                           f"dimensions for input, but got: {list(input.shape)}")
    batched = input.ndim == 3
    col = input if batched else input.unsqueeze(0)
    if col._shape[1] % (k[0] * k[1]):
        raise RuntimeError(f"Expected size of input's dimension 1 to be divisible by the product of kernel_size, but "
                           f"got input.size(1)={col._shape[1]} and kernel_size={k}.")
    L = _blocks(hw, k, d, p, s)
    if col._shape[2] != L[0] * L[1]:
        raise RuntimeError(f"Given output_size={hw}, kernel_size={k}, dilation={d}, padding={p}, stride={s}, "
                           "expected size of input's dimension 2 to match the calculated number of sliding blocks "
                           f"{L[0]} * {L[1]} = {L[0] * L[1]}, but got input.size(2)={col._shape[2]}.")
    if min(L) < 1:
        raise RuntimeError(f"Given output_size={hw}, kernel_size={k}, dilation={d}, padding={p}, stride={s}, "
                           f"calculated shape of the array of sliding blocks as {L}, which is invalid.")
    y = Col2Im.apply(col, (k, d, p, s, L), hw)
    return y if batched else y.squeeze(0)
