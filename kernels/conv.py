"""Convolutions: ``conv1d``, ``conv2d``, ``conv_transpose1d``, ``conv_transpose2d`` and their backward rules.

Three implicit-GEMM Triton kernels serve the family; none materialises an im2col buffer. Each program computes a
(BLOCK_M, BLOCK_N) tile of a product whose operands are gathered on the fly from NCHW tensors read through their
own strides (any layout, no copy), looping over the reduction dim in BLOCK_K chunks, with masked loads where a tap
falls in the zero padding, fp32 (fp64) accumulation in ``tl.dot``, and one group of a grouped convolution per
grid column:

- ``_conv_fwd_kernel``:   y[n, o, p]   = sum_{c, kh, kw} x[n, c, tap(p, kh, kw)] w[o, c, kh, kw] (+ bias[o]);
  M = N*OH*OW output pixels, N = output channels of the group, K = C_in/groups * KH * KW.
- ``_conv_dgrad_kernel``: x'[n, c, q]  = sum_{o, kh, kw: q = tap(p, kh, kw)} y'[n, o, p] w[o, c, kh, kw], the
  gradient of a convolution w.r.t. its input and, with a bias epilogue, the forward of a transposed convolution;
  M = N*H*W input pixels, N = input channels of the group, K = C_out/groups * KH * KW (taps that hit no output pixel,
  off the stride grid or past the edge, are masked out; programs are split by stride phase, so that tap by tap the
  off-grid taps are skipped whole).
- ``_conv_wgrad_kernel``: w'[o, c, kh, kw] = sum_{n, p} y'[n, o, p] x[n, c, tap(p, kh, kw)]; M = output channels of
  the group, N = C_in/groups * KH * KW, K = N*OH*OW pixels, split in SPLIT_K slices whose float32 partial sums are
  added by one reduction (deterministic, no atomics), so a small weight still fills the GPU; with a bias the
  programs of the first column of tiles also sum the y' tiles they read: the bias gradient, no reduction of its own.

with tap(p, kh, kw) = (oh * stride_h - pad_h + kh * dilation_h, ow * stride_w - pad_w + kw * dilation_w). The
forward and input-gradient kernels walk K tap by tap, BLOCK_K channels at a time, when the channels fill BLOCK_K
(masks and addresses computed once per tap), and over the flattened (c, kh, kw) index otherwise (3 input channels
padded to BLOCK_K at every tap would waste most of the products). float32 products use TF32 on the GPU by default,
as PyTorch's cuDNN convolutions do (``ALLOW_TF32``). Only the top/left padding enters the kernels: the output size
carries the bottom/right one, so the asymmetric padding of ``padding='same'`` with an even kernel costs nothing. The
three are closed under differentiation (the backward of each is made of the other two, see
``Conv``/``ConvTranspose``/``ConvWeight``), so gradients of any order work. A 1-D convolution is the 2-D one on an
(N, C, 1, L) view. The NumPy references (an explicit im2col and einsum per group) sit beside the launches with the
same arguments; each kernel asks its :class:`~tritorch.autotune.Tunable` (``TUNABLES``) for its block sizes, the
heuristic ``conv_config`` being the default.
"""
import functools
import math
from collections import namedtuple

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D, autotune
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from ._launch import ACC, ptr, cdiv, is_int64_index, interp_bf16_in
from ._common import check_same_device, copy_host, empty, np_ct, wrap
from . import matmul as _mm
from ._pointwise import _identity, launch_pointwise
from .elementwise import BINARY, UNARY, unary
from .linear import ACTIVATIONS, act_grad
from .dropout import Dropout, check_p, draw, dropout_np, dropout_scale
from .copy import copy_into, fill_
from .join import stack
from .resize import pad

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "launch_conv", "launch_conv_dgrad",
           "launch_conv_wgrad", "conv_config", "conv_key", "conv_prune", "conv_tile", "taps_outer", "dot_precision",
           "CANDIDATES", "TUNABLES", "Geometry", "EPILOGUE_ACTIVATIONS", "conv_setup", "conv_grads", "save_conv",
           "run_conv"]

# ====================================================================================================================
# The kernels
# ====================================================================================================================


@triton.jit
def conv_tile(x_rows, w_cols, ih0, iw0, row_ok, mask_n, K, CG, H, W, KH, KW, sxc, sxh, sxw, swc, swh, sww, DH, DW,
              TAPS_OUTER: tl.constexpr, CT: tl.constexpr, PRECISION: tl.constexpr, I64: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """The (BLOCK_M pixels, BLOCK_N channels) CT accumulator of conv(x, w) for the output pixels whose taps start at
    input rows ih0, columns iw0 ((BLOCK_M,) each; the pixels where ``row_ok`` is False read nothing): ``x_rows``
    (BLOCK_M,) pointers to x[n, first channel of the group], ``w_cols`` (BLOCK_N,) pointers to w[oc]. With
    ``TAPS_OUTER`` the K loop runs tap by tap, BLOCK_K channels at a time (the padding mask and the pixel addresses
    are computed once per tap: the fast order when CG fills BLOCK_K); otherwise over K = CG*KH*KW flattened in w's
    (c, kh, kw) order (no K padding per tap: the order for few channels, a first layer's 3)."""
    offs_k = tl.arange(0, BLOCK_K)
    if I64:
        offs_k = offs_k.to(tl.int64)
    khw = KH * KW
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=CT)
    if TAPS_OUTER:
        for t in range(khw):
            kh = t // KW
            kw = t % KW
            ih = ih0 + kh * DH
            iw = iw0 + kw * DW
            ok = row_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a_rows = x_rows + ih * sxh + iw * sxw
            b_cols = w_cols + kh * swh + kw * sww
            for c0 in range(0, CG, BLOCK_K):
                c = c0 + offs_k
                a = tl.load(a_rows[:, None] + (c * sxc)[None, :], mask=ok[:, None] & (c < CG)[None, :], other=0.0)
                b = tl.load(b_cols[None, :] + (c * swc)[:, None], mask=(c < CG)[:, None] & mask_n[None, :],
                            other=0.0)
                acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=CT)
    else:
        for k0 in range(0, K, BLOCK_K):
            k = k0 + offs_k
            c = k // khw
            kh = (k % khw) // KW
            kw = k % KW
            ih = ih0[:, None] + (kh * DH)[None, :]
            iw = iw0[:, None] + (kw * DW)[None, :]
            a_mask = row_ok[:, None] & (k < K)[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a = tl.load(x_rows[:, None] + (c * sxc)[None, :] + ih * sxh + iw * sxw, mask=a_mask, other=0.0)
            b_off = c * swc + kh * swh + kw * sww
            b = tl.load(w_cols[None, :] + b_off[:, None], mask=(k < K)[:, None] & mask_n[None, :], other=0.0)
            acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=CT)
    return acc


@triton.jit(do_not_specialize=["seed", "offset", "p", "scale_bits"])
def _conv_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, a_ptr, r_ptr, M, OCG, K, CG, H, W, OH, OW, KH, KW,
                     sxn, sxc, sxh, sxw, swo, swc, swh, sww, sb, syn, syc, syh, syw, srn, src, srh, srw,
                     SH, SW, PH, PW, DH, DW, alpha, OC, seed, offset, p, scale_bits,
                     HAS_BIAS: tl.constexpr, ACT: tl.constexpr, SAVE_A: tl.constexpr, DROPOUT: tl.constexpr,
                     HAS_RES: tl.constexpr, TAPS_OUTER: tl.constexpr, CT: tl.constexpr, PRECISION: tl.constexpr,
                     I64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """One (BLOCK_M pixels, BLOCK_N channels) tile of y = dropout(ACT(conv(x, w) + bias, alpha)) (+ r) for group
    ``program_id(2)`` (``ACT``: an activation's Triton math, ``kernels/elementwise.py``, or the identity; the
    product: ``conv_tile``).

    x: (N, G*CG, H, W), w: (G*OCG, CG, KH, KW), y: (N, OC = G*OCG, OH, OW) contiguous, r: y's shape, all through
    their strides; M = N*OH*OW, K = CG*KH*KW. With ``SAVE_A`` the activation's result before dropout and residual is
    stored at ``a_ptr`` too (y's strides), for the backward. ``DROPOUT`` 1 keeps the element at flat index i of y
    where rand(seed, offset + i) >= p, 2 the whole channel (n, oc) where rand(seed, offset + n*OC + oc) >= p (the
    separate ``dropout`` / ``dropout2d``'s counters), scaling what it keeps (by the float64 whose bits are
    ``scale_bits``) after rounding to y's dtype; with ``HAS_RES`` r is added to that rounded result last.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if I64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
    mask_m = offs_m < M
    mask_n = offs_n < OCG
    n = offs_m // (OH * OW)
    ohw = offs_m % (OH * OW)
    oc = g * OCG + offs_n
    acc = conv_tile(x_ptr + n * sxn + (g * CG) * sxc, w_ptr + oc * swo, (ohw // OW) * SH - PH, (ohw % OW) * SW - PW,
                    mask_m, mask_n, K, CG, H, W, KH, KW, sxc, sxh, sxw, swc, swh, sww, DH, DW,
                    TAPS_OUTER, CT, PRECISION, I64, BLOCK_M, BLOCK_N, BLOCK_K)
    if HAS_BIAS:
        acc += tl.load(b_ptr + oc * sb, mask=mask_n, other=0.0).to(CT)[None, :]
    acc = ACT(acc, alpha, 0.0)
    y_off = (n * syn + (ohw // OW) * syh + (ohw % OW) * syw)[:, None] + (oc * syc)[None, :]
    y_mask = mask_m[:, None] & mask_n[None, :]
    if SAVE_A:
        tl.store(a_ptr + y_off, acc.to(a_ptr.dtype.element_ty), mask=y_mask)
    if DROPOUT != 0:
        if DROPOUT == 1:
            counter = (n * OC * (OH * OW) + ohw)[:, None] + (oc * (OH * OW))[None, :]
        else:
            counter = (n * OC)[:, None] + oc[None, :]
        keep = tl.rand(seed, offset.to(tl.int64) + counter) >= p
        scale = scale_bits.to(tl.int64).to(tl.float64, bitcast=True).to(CT)
        acc = tl.where(keep, acc.to(y_ptr.dtype.element_ty).to(CT) * scale, 0.0)
    if HAS_RES:
        r_off = (n * srn + (ohw // OW) * srh + (ohw % OW) * srw)[:, None] + (oc * src)[None, :]
        r = tl.load(r_ptr + r_off, mask=y_mask, other=0.0)
        acc = acc.to(y_ptr.dtype.element_ty).to(CT) + r.to(CT)
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=y_mask)


@triton.jit
def _dgrad_operands(k, gy_rows, w_cols, oh0, ow0, mask_m, mask_n, K, khw, KW, OH, OW, SH, SW, DH, DW,
                    syc, syh, syw, swo, swh, sww):
    """The operands of the flattened reduction indices ``k`` (a vector of (o, kh, kw)) for the pixels of
    ``_conv_dgrad_kernel``: a (BLOCK_M, len(k)) of gy, a's mask (the taps that hit an output pixel) and
    b (len(k), BLOCK_N) of w."""
    o = k // khw
    kh = (k % khw) // KW
    kw = k % KW
    th = oh0[:, None] - (kh * DH)[None, :]                 # oh * SH when the tap is on the stride grid
    tw = ow0[:, None] - (kw * DW)[None, :]
    oh = th // SH
    ow = tw // SW
    a_mask = (mask_m[:, None] & (k < K)[None, :] & (th >= 0) & (tw >= 0) & (oh * SH == th) & (ow * SW == tw)
              & (oh < OH) & (ow < OW))
    a = tl.load(gy_rows[:, None] + (o * syc)[None, :] + oh * syh + ow * syw, mask=a_mask, other=0.0)
    b_off = o * swo + kh * swh + kw * sww
    b = tl.load(w_cols[None, :] + b_off[:, None], mask=(k < K)[:, None] & mask_n[None, :], other=0.0)
    return a, a_mask, b


@triton.jit
def _conv_dgrad_kernel(gy_ptr, w_ptr, b_ptr, gx_ptr, NB, CG, K, OCG, H, W, OH, OW, KH, KW,
                       syn, syc, syh, syw, swo, swc, swh, sww, sb, sxn, sxc, sxh, sxw,
                       SH, SW, PH, PW, DH, DW,
                       HAS_BIAS: tl.constexpr, TAPS_OUTER: tl.constexpr, CT: tl.constexpr,
                       PRECISION: tl.constexpr, I64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_K: tl.constexpr):
    """One (BLOCK_M pixels, BLOCK_N channels) tile of gx = conv_input_grad(gy, w) + bias: the transposed
    convolution.

    gy: (NB, G*OCG, OH, OW), w: (G*OCG, CG, KH, KW), gx: (NB, G*CG, H, W); K = OCG*KH*KW ordered (o, kh, kw).
    Input pixel (ih, iw) receives tap (kh, kw) of output pixel ((ih + PH - kh*DH) / SH, ...) when that division is
    exact and lands inside the output. Axis 2 of the grid walks (group, stride phase): a program covers the pixels
    with ih % SH == rh, iw % SW == rw (M = NB * ceil((H - rh) / SH) * ceil((W - rw) / SW)), for which the exact
    division holds for the same taps at every pixel, so ``TAPS_OUTER`` skips the other taps whole: a stride-2
    transposed convolution does a quarter of the products. A tile whose tensor-core result is not finite (in
    ``tl.dot`` a masked zero times an inf weight adds NaN, where PyTorch skips the term) is computed again one k at a
    time, the taps that hit no output pixel adding nothing (finite tiles are exact, so w needs no probe first)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2) // (SH * SW)
    rh = (tl.program_id(2) % (SH * SW)) // SW
    rw = tl.program_id(2) % SW
    HP = tl.maximum((H - rh + SH - 1) // SH, 1)                    # rows and columns of this phase (0 -> masked)
    WP = tl.maximum((W - rw + SW - 1) // SW, 1)
    M = tl.where((H > rh) & (W > rw), NB * HP * WP, 0)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    if I64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
        offs_k = offs_k.to(tl.int64)
    mask_m = offs_m < M
    mask_n = offs_n < CG
    n = offs_m // (HP * WP)
    ih = rh + ((offs_m // WP) % HP) * SH
    iw = rw + (offs_m % WP) * SW
    oh0 = ih + PH
    ow0 = iw + PW
    c = g * CG + offs_n
    gy_rows = gy_ptr + n * syn + (g * OCG) * syc                   # (BLOCK_M,) pointers to gy[n, g*OCG]
    w_cols = w_ptr + offs_n * swc + (g * OCG) * swo                # (BLOCK_N,) pointers to w[g*OCG, c]
    khw = KH * KW

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=CT)
    if TAPS_OUTER:
        for t in range(khw):
            kh = t // KW
            kw = t % KW
            if ((rh + PH - kh * DH) % SH == 0) & ((rw + PW - kw * DW) % SW == 0):      # a tap of this phase
                oh = (oh0 - kh * DH) // SH
                ow = (ow0 - kw * DW) // SW
                row_ok = mask_m & (oh >= 0) & (ow >= 0) & (oh < OH) & (ow < OW)
                a_rows = gy_rows + oh * syh + ow * syw
                b_cols = w_cols + kh * swh + kw * sww
                for o0 in range(0, OCG, BLOCK_K):
                    o = o0 + offs_k
                    a = tl.load(a_rows[:, None] + (o * syc)[None, :],
                                mask=row_ok[:, None] & (o < OCG)[None, :], other=0.0)
                    b = tl.load(b_cols[None, :] + (o * swo)[:, None],
                                mask=(o < OCG)[:, None] & mask_n[None, :], other=0.0)
                    acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=CT)
    else:
        for k0 in range(0, K, BLOCK_K):
            a, _, b = _dgrad_operands(k0 + offs_k, gy_rows, w_cols, oh0, ow0, mask_m, mask_n, K, khw, KW, OH, OW,
                                      SH, SW, DH, DW, syc, syh, syw, swo, swh, sww)
            acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=CT)
    tile_ok = mask_m[:, None] & mask_n[None, :]
    if tl.min(tl.where(tile_ok, (tl.abs(acc) < float("inf")).to(tl.int32), 1)) == 0:   # inf or NaN: exact
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=CT)
        one = tl.arange(0, 1)
        if I64:
            one = one.to(tl.int64)
        for k0 in range(0, K):
            a, a_mask, b = _dgrad_operands(k0 + one, gy_rows, w_cols, oh0, ow0, mask_m, mask_n, K, khw, KW, OH, OW,
                                           SH, SW, DH, DW, syc, syh, syw, swo, swh, sww)
            acc += tl.where(a_mask, a.to(CT) * b.to(CT), 0.0)

    if HAS_BIAS:
        acc += tl.load(b_ptr + c * sb, mask=mask_n, other=0.0).to(CT)[None, :]
    x_off = (n * sxn + ih * sxh + iw * sxw)[:, None] + (c * sxc)[None, :]
    tl.store(gx_ptr + x_off, acc.to(gx_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _conv_wgrad_kernel(x_ptr, gy_ptr, gw_ptr, gb_ptr, OCG, NK, P, P_SPLIT, CG, H, W, OH, OW, KH, KW,
                       sxn, sxc, sxh, sxw, syn, syc, syh, syw, s_split, sb_split,
                       SH, SW, PH, PW, DH, DW,
                       HAS_BIAS: tl.constexpr, CT: tl.constexpr, PRECISION: tl.constexpr, I64: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """One (BLOCK_M out-channels, BLOCK_N (c, kh, kw)) tile of gw = sum over pixels of gy x im2col(x), over the
    pixel slice ``[program_id(1) * P_SPLIT, + P_SPLIT)`` for group ``program_id(2)``; with ``HAS_BIAS`` the programs
    of the first column of tiles also write the bias gradient, the sum of gy's loaded tiles over the pixels.

    x: (N, G*CG, H, W), gy: (N, G*OCG, OH, OW); gw: contiguous (SPLIT, G*OCG, NK) with NK = CG*KH*KW, slice
    ``program_id(1)`` at ``s_split``; gb: contiguous (SPLIT, G*OCG), slice at ``sb_split``; P = N*OH*OW. Axis 0 of
    the grid walks the tiles of one group's (OCG, NK) block.
    """
    pid = tl.program_id(0)
    pid_s = tl.program_id(1)
    g = tl.program_id(2)
    num_n = tl.cdiv(NK, BLOCK_N)
    offs_m = (pid // num_n) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = (pid % num_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    if I64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
        offs_k = offs_k.to(tl.int64)
    mask_m = offs_m < OCG
    mask_n = offs_n < NK
    khw = KH * KW
    c = offs_n // khw
    kh = (offs_n % khw) // KW
    kw = offs_n % KW
    gy_rows = gy_ptr + (g * OCG + offs_m) * syc                    # (BLOCK_M,) pointers to gy[0, oc]
    x_cols = x_ptr + (g * CG + c) * sxc                            # (BLOCK_N,) pointers to x[0, c]
    p_start = pid_s * P_SPLIT
    p_end = min(p_start + P_SPLIT, P)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=CT)
    bias_sum = tl.zeros((BLOCK_M,), dtype=CT)
    for p0 in range(p_start, p_end, BLOCK_K):
        p = p0 + offs_k
        mask_p = p < p_end
        n = p // (OH * OW)
        ohw = p % (OH * OW)
        oh = ohw // OW
        ow = ohw % OW
        a_off = (n * syn + oh * syh + ow * syw)[None, :]
        a = tl.load(gy_rows[:, None] + a_off, mask=mask_m[:, None] & mask_p[None, :], other=0.0)
        ih = (oh * SH - PH)[:, None] + (kh * DH)[None, :]
        iw = (ow * SW - PW)[:, None] + (kw * DW)[None, :]
        b_mask = mask_p[:, None] & mask_n[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        b = tl.load(x_cols[None, :] + (n * sxn)[:, None] + ih * sxh + iw * sxw, mask=b_mask, other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=CT)
        if HAS_BIAS:
            bias_sum += tl.sum(a.to(CT), axis=1)

    gw_off = pid_s * s_split + (g * OCG + offs_m)[:, None] * NK + offs_n[None, :]
    tl.store(gw_ptr + gw_off, acc.to(gw_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])
    if HAS_BIAS:
        if pid % num_n == 0:
            gb_off = pid_s * sb_split + g * OCG + offs_m
            tl.store(gb_ptr + gb_off, bias_sum.to(gb_ptr.dtype.element_ty), mask=mask_m)


# ====================================================================================================================
# Configuration: the single place the autotuner replaces
# ====================================================================================================================

ConvConfig = _mm.MatmulConfig      # (BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M (unused), num_warps, num_stages)

# The search space of the autotuner (the implicit GEMMs are matmuls with gathered operands: matmul-like tiles). The
# gathered operand's index math costs registers that a plain matmul does not spend: ``tritorch compile-check``
# (sm_90a) found 255 registers and 0.1-2 KB of spills per thread in 128 x 128, BLOCK_K 64, 128 x 64 with 4 warps,
# 4 stages and 2-warp tiles, so the tiles here keep BLOCK_K 32, 8 warps from 64 x 128 up, and 2-3 stages; the
# skinny tile is 16 x 64 x 16 with 8 warps (x 32 with 4 spilled 8 B in float32 under triton 3.6).
CANDIDATES = (
    ConvConfig(128, 64, 32, 1, 8, 3),
    ConvConfig(64, 128, 32, 1, 8, 3),
    ConvConfig(128, 64, 32, 1, 8, 2),
    ConvConfig(64, 64, 32, 1, 4, 2),
    ConvConfig(64, 64, 32, 1, 8, 3),
    ConvConfig(64, 32, 32, 1, 8, 3),
    ConvConfig(32, 64, 32, 1, 4, 3),
    ConvConfig(32, 32, 32, 1, 4, 3),
    ConvConfig(16, 64, 16, 1, 8, 3),
)


@functools.lru_cache(maxsize=4096)
def conv_config(kind, M, N, K, dtype):
    """The launch configuration of one implicit GEMM (``kind``: "fwd", "dgrad" or "wgrad") of an (M, K) @ (K, N)
    product per group in ``dtype``: a heuristic default.

    In the interpreter every program costs ~1 ms: one small tile (16 or 32) and BLOCK_K 16, so that tests still
    cover several programs, partial tiles and the K loop.
    """
    if INTERPRET:
        return ConvConfig(16 if M <= 16 else 32, 16 if N <= 16 else 32, 16, 1, 1, 1)
    if dtype is D.float64:
        return ConvConfig(32, 32, 16, 1, 4, 2)
    bk = 32                     # BLOCK_K 64 spilled (compile-check): the gathered operand's index math
    bn = 16 if N <= 16 else 32 if N <= 32 else 64 if N <= 64 else 128
    if kind == "wgrad":
        bm = 16 if M <= 16 else 32 if M <= 32 else 64
        if bm == 16:            # 16 x 32 x 32 spilled 4 B (triton 3.9), 16 x 64 x 16 with 4 warps 8 B (3.6):
            return ConvConfig(16, min(bn, 64), 16, 1, 8, 3)     # BLOCK_K 16 with 8 warps is clean in all three
        return ConvConfig(bm, bn, bk, 1, 8 if bm * bn >= 32 * 32 else 4, 3)    # 32 x 32 with 4 warps spilled
    bm = 128 if M >= 4096 and kind == "fwd" else 64     # dgrad spilled at 128 x 64 and 64 x 128 (8 warps)
    # dgrad: 64 x 64 (8 warps) spilled 8-12 B at 255 registers (triton 3.9), 32 x 64 4-16 B (3.6, 3.8), 64 x 16 with
    # 4 warps too; 64 x 32 with 8 warps compiles clean in every dtype and version. fwd: 128 x 128 spilled (8 warps)
    bn = min(bn, 32) if kind == "dgrad" else min(bn, 64) if bm == 128 else bn
    return ConvConfig(bm, bn, bk, 1, 8, 3)


def conv_key(kind, x, M, N, K, groups, dtype):
    """Autotune key: dtype, kind, the layout of the gathered operand, bucketed GEMM sizes and whether the
    convolution is grouped (depthwise layers have N = 1 and a very different best tile)."""
    return (dtype, kind, autotune.layout(x), autotune.bucket(M), autotune.bucket(N), autotune.bucket(K), groups > 1)


def conv_prune(configs, key):
    """Tiles no larger than twice the bucketed output dims, or 32 (a 128-row tile on a 16-row GEMM only wastes
    lanes); float64 keeps tiles of at most 64 x 64 with BLOCK_K <= 32 (shared memory)."""
    dtype, kind, _, M, N = key[:5]
    ok = [c for c in configs if c.block_m <= max(2 * M, 32) and c.block_n <= max(2 * N, 32)]
    if kind == "dgrad":     # its gathered operand's index math: 64 x 64 (8 warps) and every 4-warp tile spilled
        ok = [c for c in ok if c.num_warps == 8 and c.block_m * c.block_n <= 64 * 32]
    if kind == "wgrad":     # 32 x 32 and 16 x 64 with 4 warps spilled 4-12 B (triton 3.9), 64 x 64 12 B in float32
        ok = [c for c in ok if c.num_warps == 8]        # with the bias's sum (triton 3.9)
    if kind == "fwd" and dtype is D.float32:    # 32 x 32 and 32 x 64 with 4 warps spilled 8-20 B without a bias (3.8)
        ok = [c for c in ok if c.num_warps == 8 or c.block_m * c.block_n >= 64 * 64]
    if dtype is D.float64:
        ok = [c for c in ok if c.block_m * c.block_n <= 64 * 64 and c.block_k <= 32]
    if _dropout(key):       # Philox per element: see ``_fits_dropout``
        ok = [c for c in ok if _fits_dropout(c)]
    return ok


def _dropout(key):
    """Whether a forward's key has the dropout epilogue (``launch_conv`` adds the flag to ``conv_key``'s)."""
    return len(key) > 7 and key[7]


def _fits_dropout(c):
    """Whether tile config ``c`` leaves registers for dropout's Philox per element: at most 16 accumulators per
    thread, not the 16-row tile (compile-check, sm_90a: 32 per thread, 64 x 128 with 8 warps and 64 x 64 with 4,
    spilled 76 B in float16 and bfloat16 under triton 3.8; 16 x 64 with 8 warps 12 B at 64 registers in float32
    under 3.9)."""
    return c.block_m * c.block_n <= 16 * 32 * c.num_warps and c.block_m > 16


def _default(key):
    """``conv_config``'s tile, or with dropout (on the GPU) 64 x 64 with 8 warps where it has more accumulators per
    thread than ``_fits_dropout`` allows."""
    c = conv_config(key[1], key[3], key[4], key[5], key[0])
    if _dropout(key) and not INTERPRET and not _fits_dropout(c):
        return ConvConfig(64, 64, c.block_k, 1, 8, 3)
    return c


TUNABLES = {kind: autotune.Tunable(f"conv_{kind}", CANDIDATES, prune=conv_prune, kernels=kernels, default=_default)
            for kind, kernels in (("fwd", (_conv_fwd_kernel, conv_tile)), ("dgrad", (_conv_dgrad_kernel,)),
                                  ("wgrad", (_conv_wgrad_kernel,)))}


def taps_outer(channels, block_k):
    """Whether the K loop runs tap by tap over ``channels`` in BLOCK_K chunks: when that pads K by at most 1/8
    (many channels); the flattened (c, kh, kw) loop otherwise."""
    return channels >= block_k and (cdiv(channels, block_k) * block_k - channels) * 8 <= channels


def _wgrad_split(tiles, groups, P, block_k):
    """How many pixel slices the weight gradient is cut into: enough programs for two per SM of an H100 (one slice
    in the interpreter), each slice at least four BLOCK_Ks long."""
    if INTERPRET:
        return 1
    want = cdiv(2 * 132, max(tiles * groups, 1))
    return max(1, min(want, cdiv(P, 4 * block_k), 64))


# ====================================================================================================================
# Launches (GPU or interpreter) and their NumPy references, one signature each
# ====================================================================================================================

# stride, top/left padding, dilation (each (h, w)) and groups; the bottom/right padding is implied by output sizes
Geometry = namedtuple("Geometry", "stride padding dilation groups")


# float32 convolutions use TF32 tensor cores on the GPU, as PyTorch's default ``torch.backends.cudnn.allow_tf32 =
# True`` does; ``ALLOW_TF32[0] = False`` gives full-fp32 products (the interpreter always computes in full fp32).
ALLOW_TF32 = [True]


def dot_precision(dtype):
    if dtype is D.float32:
        return "tf32" if ALLOW_TF32[0] else "ieee"
    return _mm._dot_precision(dtype)


def _bf16_tmp(out):
    return empty(out._shape, D.float32, out.device)


def launch_conv(x, w, bias, y, geo, config=None, act=None, alpha=0.0, a_out=None, residual=None, drop=None):
    """y = dropout(act(conv2d(x, w) + bias)) + residual: x (N, C, H, W), w (OC, C/groups, KH, KW), y (N, OC, OH,
    OW) contiguous, residual y's shape, any strides; ``act``: None or an activation of ``kernels/linear.py``'s
    ``ACTIVATIONS``, ``alpha`` its parameter; ``drop``: None or (seed, offset, p, channels) of ``dropout``
    (``channels``: of ``dropout2d``, one draw per (n, oc)); ``a_out``: None or where the activation's result before
    dropout and residual is stored too (y's shape)."""
    N, _, H, W = x._shape
    OC, CG, KH, KW = w._shape
    OH, OW = y._shape[2:]
    G = geo.groups
    M, OCG, K = N * OH * OW, OC // G, CG * KH * KW
    if y.numel() == 0:
        return y
    if INTERPRET and y.dtype is D.bfloat16:
        a32 = None if a_out is None else _bf16_tmp(a_out)
        launch_conv(x, w, bias, y32 := _bf16_tmp(y), geo, config, act, alpha, a32)
        if a_out is not None:
            copy_host(a_out, a32)
        copy_host(y, y32)
        if drop is not None:        # dropout of the result rounded to bf16, rounded again, as the GPU kernel does
            seed, offset, p, channels = drop
            y._np[...] = dropout_np(y._np, math.prod(y._shape[2:]) if channels else 1, seed, offset, p)
        if residual is not None:    # the rounding to bf16 comes first: the add runs as its own (interpreted) kernel
            launch_pointwise(BINARY["add"].tfn, (interp_bf16_in(y), interp_bf16_in(residual)), y32, tl.float32, 1.0)
            copy_host(y, y32)
        return y
    dtype = x.dtype
    x, w, bias, residual = interp_bf16_in(x), interp_bf16_in(w), interp_bf16_in(bias), interp_bf16_in(residual)
    if K == 0:
        _fill_bias(y if a_out is None else a_out, bias)
        a = y if a_out is None else a_out
        if act is not None:
            copy_into(a, unary(act, a, alpha))
        if drop is not None:
            seed, offset, p, channels = drop
            a = Dropout.apply(a, seed, offset, p, math.prod(a._shape[2:]) if channels else 1)
        if drop is not None or residual is not None:
            copy_into(y, a if residual is None else a + residual)
        return y
    key = conv_key("fwd", x, M, OCG, K, G, dtype) + ((drop is not None,) if drop is not None else ())
    cfg = config or TUNABLES["fwd"].pick(key, lambda c: launch_conv(x, w, bias, y, geo, c, act, alpha, a_out,
                                                                    residual, drop))  # writes only y, a_out
    seed, offset, p, channels = drop if drop is not None else (0, 0, 0.0, False)
    r_strides = residual._stride if residual is not None else (0, 0, 0, 0)
    try:
        _conv_fwd_kernel[(cdiv(M, cfg.block_m), cdiv(OCG, cfg.block_n), G)](
            ptr(x), ptr(w), ptr(bias if bias is not None else y), ptr(y), ptr(a_out if a_out is not None else y),
            ptr(residual if residual is not None else y), M, OCG, K, CG, H, W, OH, OW, KH, KW,
            *x._stride, *w._stride, bias._stride[0] if bias is not None else 0, *y._stride,
            r_strides[0], r_strides[1], r_strides[2], r_strides[3],
            *geo.stride, *geo.padding, *geo.dilation, float(alpha), OC, seed, offset, float(p), dropout_scale(p)[1],
            HAS_BIAS=bias is not None, ACT=_identity if act is None else UNARY[act].tfn, SAVE_A=a_out is not None,
            DROPOUT=0 if drop is None else 2 if channels else 1, HAS_RES=residual is not None,
            TAPS_OUTER=taps_outer(CG, cfg.block_k), CT=ACC[dtype],
            PRECISION=dot_precision(dtype),
            I64=is_int64_index(max(x.numel(), w.numel(), y.numel()), x, w, y,
                               *(() if residual is None else (residual,))),
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    except triton.CompilationError as e:
        raise _mm.dot_error("conv", dtype, e) from None
    return y


def launch_conv_dgrad(gy, w, bias, gx, geo, config=None):
    """gx = conv_transpose2d(gy, w) + bias (the input gradient of a convolution of gx's shape): gy (N, OC, OH, OW),
    w (OC, C/groups, KH, KW), gx (N, C, H, W), any strides."""
    N, OC, OH, OW = gy._shape
    _, CG, KH, KW = w._shape
    H, W = gx._shape[2:]
    G = geo.groups
    sh, sw = geo.stride
    M, OCG = N * cdiv(H, sh) * cdiv(W, sw), OC // G             # M: the pixels of the largest stride phase
    K = OCG * KH * KW
    if gx.numel() == 0:
        return gx
    if INTERPRET and gx.dtype is D.bfloat16:
        return copy_host(gx, launch_conv_dgrad(gy, w, bias, _bf16_tmp(gx), geo, config))
    dtype = gy.dtype
    gy, w, bias = interp_bf16_in(gy), interp_bf16_in(w), interp_bf16_in(bias)
    if K == 0:
        return _fill_bias(gx, bias)
    cfg = config or TUNABLES["dgrad"].pick(conv_key("dgrad", gy, M, CG, K, G, dtype),
                                           lambda c: launch_conv_dgrad(gy, w, bias, gx, geo, c))   # writes gx
    try:
        _conv_dgrad_kernel[(cdiv(M, cfg.block_m), cdiv(CG, cfg.block_n), G * sh * sw)](
            ptr(gy), ptr(w), ptr(bias if bias is not None else gx), ptr(gx), N, CG, K, OCG, H, W, OH, OW,
            KH, KW,
            *gy._stride, *w._stride, bias._stride[0] if bias is not None else 0, *gx._stride,
            *geo.stride, *geo.padding, *geo.dilation,
            HAS_BIAS=bias is not None, TAPS_OUTER=taps_outer(OCG, cfg.block_k), CT=ACC[dtype],
            PRECISION=dot_precision(dtype), I64=is_int64_index(max(gy.numel(), w.numel(), gx.numel()), gy, w, gx),
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    except triton.CompilationError as e:
        raise _mm.dot_error("conv", dtype, e) from None
    return gx


def launch_conv_wgrad(x, gy, gw, geo, config=None, gb=None):
    """gw = the weight gradient of y = conv2d(x, w): x (N, C, H, W), gy (N, OC, OH, OW) any strides, gw contiguous
    (OC, C/groups, KH, KW); with ``gb`` (OC,) contiguous also the bias gradient, the sum of gy over (N, OH, OW), from
    the tiles of gy the same launch reads. Pixel slices beyond the first sum through a float32 (float64)
    workspace."""
    N, _, H, W = x._shape
    _, OC, OH, OW = gy._shape
    _, CG, KH, KW = gw._shape
    G = geo.groups
    OCG, NK, P = OC // G, CG * KH * KW, N * OH * OW
    if gw.numel() == 0 or P == 0:
        if gb is not None and P == 0:
            fill_(gb, 0.0)
        elif gb is not None:                  # no weights (no input channels): the bias's sum alone
            copy_into(gb, _bias_grad(gy))
        return gw if gw.numel() == 0 else _fill_bias(gw, None)
    dtype = x.dtype
    # a run stores every pixel slice into a fresh workspace and then copies into gw: timing runs are harmless
    cfg = config or TUNABLES["wgrad"].pick(conv_key("wgrad", x, OCG, NK, P, G, dtype),
                                           lambda c: launch_conv_wgrad(x, gy, gw, geo, c, gb))
    tiles = cdiv(OCG, cfg.block_m) * cdiv(NK, cfg.block_n)
    split = _wgrad_split(tiles, G, P, cfg.block_k)
    acc_dtype = D.float64 if dtype is D.float64 else D.float32
    if split == 1 and not (INTERPRET and dtype is D.bfloat16):
        out, out_b, s_split = gw, gb, 0
    else:
        out = empty((split, OC, CG, KH, KW), acc_dtype, gw.device)
        out_b = empty((split, OC), acc_dtype, gw.device) if gb is not None else None
        s_split = OC * NK
    x, gy = interp_bf16_in(x), interp_bf16_in(gy)
    p_split = cdiv(cdiv(P, split), cfg.block_k) * cfg.block_k
    try:
        _conv_wgrad_kernel[(tiles, split, G)](
            ptr(x), ptr(gy), ptr(out), ptr(out_b if out_b is not None else out), OCG, NK, P, p_split, CG, H, W, OH,
            OW, KH, KW, *x._stride, *gy._stride, s_split, s_split // NK, *geo.stride, *geo.padding, *geo.dilation,
            HAS_BIAS=gb is not None, CT=ACC[dtype], PRECISION=dot_precision(dtype),
            I64=is_int64_index(max(x.numel(), gy.numel(), out.numel()), x, gy, out),
            BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    except triton.CompilationError as e:
        raise _mm.dot_error("conv", dtype, e) from None
    if out is gw:
        return gw
    if gb is not None:
        copy_into(gb, out_b.sum(0))
    return copy_into(gw, out.sum(0))


def _fill_bias(out, bias):
    """An empty reduction (no input channels or no pixels): out = bias broadcast over (N, ., H, W), or zeros."""
    return fill_(out, 0.0) if bias is None else copy_into(out, bias.reshape(-1, 1, 1))


# ---- the NumPy references --------------------------------------------------------------------------------------

def _np_taps(x, geo, out_hw, k_hw):
    """im2col as a strided view: cols[n, c, kh, kw, oh, ow] = x_padded[n, c, oh*S - P + kh*D, ow*S - P + kw*D]
    (zeros outside x)."""
    (sh, sw), (ph, pw), (dh, dw) = geo.stride, geo.padding, geo.dilation
    N, C, H, W = x.shape
    (OH, OW), (KH, KW) = out_hw, k_hw
    hp = max(ph + H, (OH - 1) * sh + (KH - 1) * dh + 1)
    wp = max(pw + W, (OW - 1) * sw + (KW - 1) * dw + 1)
    xp = np.zeros((N, C, hp, wp), dtype=x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    s = xp.strides
    return np.lib.stride_tricks.as_strided(xp, (N, C, KH, KW, OH, OW),
                                           (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw), writeable=False)


def _np_conv(x, w, bias, geo, out_hw, dtype, act=None, alpha=0.0, residual=None, drop=None):
    """NumPy reference of ``launch_conv`` on host arrays, computed in float32 (float64 for float64): (y, the
    activation's result before dropout and residual)."""
    ct = np_ct(dtype)
    G = geo.groups
    N, OC = x.shape[0], w.shape[0]
    cols = _np_taps(x.astype(ct, copy=False), geo, out_hw, w.shape[2:])
    cols = cols.reshape(N, G, x.shape[1] // G, *cols.shape[2:])
    wg = w.astype(ct, copy=False).reshape(G, OC // G, *w.shape[1:])
    y = np.einsum("ngcklpq,gockl->ngopq", cols, wg, optimize=True).reshape(N, OC, *out_hw)
    if bias is not None:
        y = y + bias.astype(ct, copy=False).reshape(-1, 1, 1)
    if act is not None:
        with np.errstate(all="ignore"):
            y = np.asarray(UNARY[act].ref(y, alpha, 0.0), dtype=ct)
    a = y.astype(dtype.np, copy=False)
    return _np_epilogue_host(a, residual, drop), a


def _np_epilogue_host(a, residual, drop):
    """dropout(a) + residual on host arrays (a: (N, C, ...) in the result's dtype), each step rounded to it."""
    y = a
    if drop is not None:
        seed, offset, p, channels = drop
        y = dropout_np(y, math.prod(y.shape[2:]) if channels else 1, seed, offset, p)
    if residual is not None:
        ct = np.float64 if y.dtype == np.float64 else np.float32
        with np.errstate(all="ignore"):
            y = (y.astype(ct) + residual.astype(ct, copy=False)).astype(y.dtype, copy=False)
    return y


def _np_conv_dgrad(gy, w, bias, geo, in_hw, dtype):
    """NumPy reference of ``launch_conv_dgrad``: the column gradient scattered back tap by tap."""
    ct = np_ct(dtype)
    (sh, sw), (ph, pw), (dh, dw) = geo.stride, geo.padding, geo.dilation
    G = geo.groups
    N, OC, OH, OW = gy.shape
    _, CG, KH, KW = w.shape
    H, W = in_hw
    gyg = gy.astype(ct, copy=False).reshape(N, G, OC // G, OH, OW)
    wg = w.astype(ct, copy=False).reshape(G, OC // G, CG, KH, KW)
    gcols = np.einsum("ngopq,gockl->ngcklpq", gyg, wg, optimize=True).reshape(N, G * CG, KH, KW, OH, OW)
    hp = max(ph + H, (OH - 1) * sh + (KH - 1) * dh + 1)
    wp = max(pw + W, (OW - 1) * sw + (KW - 1) * dw + 1)
    gxp = np.zeros((N, G * CG, hp, wp), dtype=ct)
    for kh in range(KH):
        for kw in range(KW):
            gxp[:, :, kh * dh:kh * dh + (OH - 1) * sh + 1:sh, kw * dw:kw * dw + (OW - 1) * sw + 1:sw] += \
                gcols[:, :, kh, kw]
    gx = gxp[:, :, ph:ph + H, pw:pw + W]
    if bias is not None:
        gx = gx + bias.astype(ct, copy=False).reshape(-1, 1, 1)
    return np.ascontiguousarray(gx).astype(dtype.np, copy=False)


def _np_conv_wgrad(x, gy, geo, k_hw, dtype):
    """NumPy reference of ``launch_conv_wgrad``: gy contracted with the im2col of x over batch and pixels."""
    ct = np_ct(dtype)
    G = geo.groups
    N, C = x.shape[:2]
    OC = gy.shape[1]
    cols = _np_taps(x.astype(ct, copy=False), geo, gy.shape[2:], k_hw)
    cols = cols.reshape(N, G, C // G, *cols.shape[2:])
    gyg = gy.astype(ct, copy=False).reshape(N, G, OC // G, *gy.shape[2:])
    gw = np.einsum("ngopq,ngcklpq->gockl", gyg, cols, optimize=True).reshape(OC, C // G, *k_hw)
    return gw.astype(dtype.np, copy=False)


# ====================================================================================================================
# The autograd Functions: three primitives whose backward rules are made of each other
# ====================================================================================================================

def run_conv(x, w, bias, geo, out_hw, act=None, alpha=0.0, residual=None, drop=None, save_a=False):
    """y = dropout(act(conv2d(x, w) + bias)) + residual with output size ``out_hw`` on x's device (``drop`` as
    ``launch_conv`` takes it); with ``save_a`` (y, the activation's result before dropout and residual)."""
    if x._storage.device.type == "cpu":
        y, a = _np_conv(x._np, w._np, None if bias is None else bias._np, geo, out_hw, x.dtype, act, alpha,
                        None if residual is None else residual._np, drop)
        y = wrap(y, x.dtype, x.device)
        return (y, wrap(a, x.dtype, x.device)) if save_a else y
    shape = (x._shape[0], w._shape[0]) + tuple(out_hw)
    a = empty(shape, x.dtype, x.device) if save_a else None
    y = launch_conv(x, w, bias, empty(shape, x.dtype, x.device), geo, act=act, alpha=alpha, a_out=a,
                    residual=residual, drop=drop)
    return (y, a) if save_a else y


def _conv_dgrad(gy, w, bias, geo, in_hw):
    """The input gradient of a convolution with input size ``in_hw`` (+ bias): the transposed convolution."""
    if gy._storage.device.type == "cpu":
        return wrap(_np_conv_dgrad(gy._np, w._np, None if bias is None else bias._np, geo, in_hw, gy.dtype),
                    gy.dtype, gy.device)
    shape = (gy._shape[0], w._shape[1] * geo.groups) + tuple(in_hw)
    return launch_conv_dgrad(gy, w, bias, empty(shape, gy.dtype, gy.device), geo)


def _conv_wgrad(x, gy, geo, k_hw, bias=False):
    """The weight gradient of a convolution with kernel size ``k_hw``; with ``bias`` (GPU) (gw, the bias gradient)
    from one launch."""
    if x._storage.device.type == "cpu":
        return wrap(_np_conv_wgrad(x._np, gy._np, geo, k_hw, x.dtype), x.dtype, x.device)
    shape = (gy._shape[1], x._shape[1] // geo.groups) + tuple(k_hw)
    gb = empty((gy._shape[1],), x.dtype, x.device) if bias else None
    gw = launch_conv_wgrad(x, gy, empty(shape, x.dtype, x.device), geo, gb=gb)
    return (gw, gb) if bias else gw


def _bias_grad(g):
    """The sum of g (N, C, H, W) over (N, H, W). float32/float64: the rows of H * W first (contiguous in g), then the
    batch, so g is read once and never copied to bring C last. Half types take the one reduction over all three
    dims (it accumulates in float32 and rounds once; per-image sums would be rounded to the half type first)."""
    if g.dtype in (D.float16, D.bfloat16):
        return g.sum((0, 2, 3))
    return g.sum((2, 3)).sum(0)


def save_conv(ctx, x, w, geo, *extra, keep=False):
    """What the backward of a convolution or a transposed one needs: x for the weight gradient, w for the input's
    (both with ``keep``: a recompute needs them), and ``extra``, saved after them."""
    if any(ctx.needs_input_grad[:3]):
        ctx._name = "ConvolutionBackward0"
        ctx.geo, ctx.in_hw, ctx.k_hw = geo, x._shape[2:], w._shape[2:]
        need_x, need_w = ctx.needs_input_grad[:2]
        ctx.save_for_backward(x if need_w or keep else None, w if need_x or keep else None, *extra)


class Conv(Function):
    """y = dropout(act(conv2d(x, w) + bias)) + residual for 4-D x, w (validated by the public functions);
    ``out_hw`` fixes the bottom/right padding; ``act``: None or one of ``EPILOGUE_ACTIVATIONS``, ``drop``: None or
    dropout's counters (seed, offset, p, channels), ``residual``: None or a tensor of y's shape, all run in the
    kernel's epilogue. Backward passes g to the residual, through the dropout's mask (regenerated) and the
    activation's derivative (read from its result: y, or with dropout or a residual the one saved before them)."""

    @staticmethod
    def forward(ctx, x, w, bias, geo, out_hw, act=None, alpha=0.0, residual=None, drop=None):
        save_a = act is not None and (residual is not None or drop is not None) and any(ctx.needs_input_grad[:3])
        y = run_conv(x, w, bias, geo, out_hw, act, alpha, residual, drop, save_a)
        y, a = y if save_a else (y, y)
        # the activation differentiates from its result; a recompute of a (create_graph) needs x, w and bias
        save_conv(ctx, x, w, geo, *(() if act is None else (a, bias if save_a else None)), keep=save_a)
        ctx.act, ctx.alpha, ctx.drop, ctx.save_a = act, alpha, drop, save_a
        return y

    @staticmethod
    def backward(ctx, g):
        needs = ctx.needs_input_grad
        gr = g if len(needs) > 7 and needs[7] else None         # the residual's gradient: the incoming one
        if not any(needs[:3]):
            return (None,) * 7 + (gr, None)
        x, w, *saved = ctx.saved_tensors
        drop = ctx.drop
        group = 1 if drop is None or not drop[3] else math.prod(g._shape[2:])
        if drop is not None and (ctx.act is None or STATE.enabled or group > 1):
            g = Dropout.apply(g, drop[0], drop[1], drop[2], group)      # dropout's backward: the same mask
            drop = None
        if ctx.act is not None:     # g through the activation: one kernel, or recorded ops under create_graph
            a, bias = saved
            if STATE.enabled:
                if ctx.save_a:      # the saved a has no history: recompute it, recorded
                    a = Conv.apply(x, w, bias, ctx.geo, g._shape[2:], ctx.act, ctx.alpha)
                g = UNARY[ctx.act].bwd_composite(g, a, a, ctx.alpha)
            else:                   # with an element dropout's mask in the same kernel
                g2 = g.reshape(-1, g._shape[-1])
                g = act_grad(g2, a.reshape(g2._shape), ctx.act, ctx.alpha,
                             None if drop is None else drop[:3]).reshape(g._shape)
        return conv_grads(ctx, x, w, g) + (None,) * 4 + (gr, None)


def conv_grads(ctx, x, w, g):
    """(gx, gw, gb) of a convolution from the gradient g of its result before any activation: ``ctx`` as
    ``save_conv`` filled it, x and w its saved tensors."""
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx = ConvTranspose.apply(g, w, None, ctx.geo, ctx.in_hw) if need_x else None
    if need_w and need_b and not STATE.enabled and g._storage.device.type != "cpu":
        gw, gb = _conv_wgrad(x, g, ctx.geo, ctx.k_hw, bias=True)     # the bias's sum in the same launch
    else:
        gw = ConvWeight.apply(x, g, ctx.geo, ctx.k_hw) if need_w else None
        gb = _bias_grad(g) if need_b else None
    return gx, gw, gb


class ConvTranspose(Function):
    """y = conv_transpose2d(x, w) + bias: the input gradient of a convolution of output size ``out_hw`` with
    weight w (in_channels, out_channels/groups, KH, KW)."""

    @staticmethod
    def forward(ctx, x, w, bias, geo, out_hw):
        y = _conv_dgrad(x, w, bias, geo, out_hw)
        save_conv(ctx, x, w, geo)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = Conv.apply(g, w, None, ctx.geo, ctx.in_hw) if need_x else None
        gw = ConvWeight.apply(g, x, ctx.geo, ctx.k_hw) if need_w else None
        gb = _bias_grad(g) if need_b else None
        return gx, gw, gb, None, None


class ConvWeight(Function):
    """gw = the weight gradient of conv2d(x, .) for an output gradient gy (kernel size ``k_hw``): bilinear in
    (x, gy), so its own backward is a transposed convolution (for x) and a convolution (for gy)."""

    @staticmethod
    def forward(ctx, x, gy, geo, k_hw):
        gw = _conv_wgrad(x, gy, geo, k_hw)
        if any(ctx.needs_input_grad[:2]):
            ctx._name = "ConvolutionBackwardBackward0"
            ctx.geo, ctx.in_hw, ctx.out_hw = geo, x._shape[2:], gy._shape[2:]
            ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, gy if ctx.needs_input_grad[0] else None)
        return gw

    @staticmethod
    def backward(ctx, g):
        x, gy = ctx.saved_tensors
        need_x, need_gy = ctx.needs_input_grad[:2]
        gx = ConvTranspose.apply(gy, g, None, ctx.geo, ctx.in_hw) if need_x else None
        ggy = Conv.apply(x, g, None, ctx.geo, ctx.out_hw) if need_gy else None
        return gx, ggy, None, None


# ====================================================================================================================
# Validation and the public functions
# ====================================================================================================================

_C_NAMES = _mm._C_NAMES
_T_NAMES = _mm._T_NAMES


def _tuple(name, v, nd):
    if isinstance(v, bool) or not isinstance(v, (int, tuple, list)):
        raise TypeError(f"{name} must be an int or a tuple of {nd} ints, got {v!r}")
    t = (v,) * nd if isinstance(v, int) else tuple(v)
    if len(t) == 1 and nd > 1:
        t = t * nd
    if len(t) != nd or not all(isinstance(i, int) and not isinstance(i, bool) for i in t):
        raise RuntimeError(f"expected {name} to be a single integer value or a list of {nd} values to match the "
                           f"convolution dimensions, but got {name}={list(t)}")
    return t


def _fmt_sizes(s):
    return " x ".join(str(i) for i in s)


def _prepare(op, input, weight, bias, nd, transposed):
    """Type, device, dtype and dim checks shared by every convolution; returns the batched input and whether the
    input had a batch dim."""
    for arg, pos, t in (("input", 1, input), ("weight", 2, weight)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}(): argument '{arg}' (position {pos}) must be Tensor, not {type(t).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(f"{op}(): argument 'bias' (position 3) must be Tensor, not {type(bias).__name__}")
    check_same_device(op, input, weight, bias)
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to {op}, but got input of "
                           f"size: {list(input._shape)}")
    if weight.ndim != nd + 2:
        x = input if input.ndim == nd + 2 else input.unsqueeze(0)
        raise RuntimeError(f"Expected {weight.ndim}-dimensional input for {weight.ndim}-dimensional weight "
                           f"{list(weight._shape)}, but got {x.ndim}-dimensional input of size {list(x._shape)} "
                           "instead")
    if input.dtype is not weight.dtype:
        raise RuntimeError(f"Input type ({_C_NAMES[input.dtype]}) and weight type ({_C_NAMES[weight.dtype]}) "
                           "should be the same")
    if bias is not None and bias.dtype is not input.dtype:
        raise RuntimeError(f"Input type ({_C_NAMES[input.dtype]}) and bias type ({_C_NAMES[bias.dtype]}) should "
                           "be the same")
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"\"{'slow_conv_transpose2d' if transposed else 'slow_conv2d'}_"
                           f"{'cpu' if input.device.type == 'cpu' else 'cuda'}\" not implemented for "
                           f"'{_T_NAMES[input.dtype]}'")
    batched = input.ndim == nd + 2
    return (input if batched else input.unsqueeze(0)), batched


def _check_groups(groups, weight):
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    oc = weight._shape[0]
    if oc < groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be at least {groups} at dimension 0, but got "
                           f"weight of size {list(weight._shape)} instead")
    if oc % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, but "
                           f"got weight of size {list(weight._shape)} instead")


def _check_bias(bias, weight, n):
    if bias is not None and (bias.ndim != 1 or bias._shape[0] != n):
        raise RuntimeError(f"Given weight of size {list(weight._shape)}, expected bias to be 1-dimensional with {n} "
                           f"elements, but got bias of size {list(bias._shape)} instead")


def _check_geometry(stride, dilation):
    if any(s <= 0 for s in stride):
        raise RuntimeError("non-positive stride is not supported")
    if any(d <= 0 for d in dilation):
        raise RuntimeError("dilation should be greater than zero")


# The activations a convolution's epilogue applies: those differentiated from their result (relu, sigmoid, tanh),
# so that the backward needs no pre-activation saved.
EPILOGUE_ACTIVATIONS = tuple(a for a in ACTIVATIONS if UNARY[a].bwd_uses == "y")


def conv_setup(op, input, weight, bias, stride, padding, dilation, groups, nd, activation=None):
    """(x with a batch dim, whether it had one, stride, (before, after) padding per dim, dilation, output sizes) of
    a convolution of rank ``nd``, its arguments checked with PyTorch's messages."""
    if activation is not None and activation not in EPILOGUE_ACTIVATIONS:
        raise ValueError(f"{op}: unknown activation {activation!r}, expected None or one of "
                         f"{', '.join(EPILOGUE_ACTIVATIONS)}")
    x, batched = _prepare(op, input, weight, bias, nd, False)
    stride, dilation = _tuple("stride", stride, nd), _tuple("dilation", dilation, nd)
    _check_geometry(stride, dilation)
    _check_groups(groups, weight)
    ksize = weight._shape[2:]
    if x._shape[1] != weight._shape[1] * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {list(weight._shape)}, expected input"
                           f"{list(x._shape)} to have {weight._shape[1] * groups} channels, but got {x._shape[1]} "
                           "channels instead")
    _check_bias(bias, weight, weight._shape[0])
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * nd
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for d, k in zip(dilation, ksize)]
        else:
            raise RuntimeError(f"Invalid padding string: '{padding}'")
    else:
        pads = [(p, p) for p in _tuple("padding", padding, nd)]
        if any(p < 0 for p, _ in pads):
            raise RuntimeError("negative padding is not supported")
    spatial = x._shape[2:]
    padded = [s + a + b for s, (a, b) in zip(spatial, pads)]
    dk = [d * (k - 1) + 1 for d, k in zip(dilation, ksize)]
    if any(p < k for p, k in zip(padded, dk)):
        raise RuntimeError(f"Calculated padded input size per channel: ({_fmt_sizes(padded)}). Kernel size: "
                           f"({_fmt_sizes(dk)}). Kernel size can't be greater than actual input size")
    out = tuple((p - k) // s + 1 for p, k, s in zip(padded, dk, stride))
    return x, batched, stride, pads, dilation, out


def _convnd(op, input, weight, bias, stride, padding, dilation, groups, nd, activation=None, dropout_p=0.0,
            dropout_channels=False, residual=None):
    x, batched, stride, pads, dilation, out = conv_setup(op, input, weight, bias, stride, padding, dilation, groups,
                                                         nd, activation)
    r, drop = _epilogue_args(op, x, weight, out, batched, dropout_p, dropout_channels, residual)
    if nd == 1:        # the 2-D kernels on (N, C, 1, L) views
        x, w = x.unsqueeze(2), weight.unsqueeze(2)
        geo = Geometry((1, stride[0]), (0, pads[0][0]), (1, dilation[0]), groups)
        r = None if r is None else r.unsqueeze(2)
        y = Conv.apply(x, w, bias, geo, (1,) + out, activation, 0.0, r, drop).squeeze(2)
    elif nd == 3:
        y = _conv3d(x, weight, bias, stride, pads, dilation, groups, out)
    else:
        geo = Geometry(stride, tuple(a for a, _ in pads), dilation, groups)
        y = Conv.apply(x, weight, bias, geo, out, activation, 0.0, r, drop)
    return y if batched else y.squeeze(0)


def _epilogue_args(op, x, weight, out, batched, p, channels, residual):
    """(the residual with a batch dim, dropout's counters (seed, offset, p, channels) or None) of a convolution's
    epilogue, checked: x the batched input, ``out`` the output's spatial size."""
    p = float(p)
    check_p(p)
    shape = (x._shape[0], weight._shape[0]) + tuple(out)
    if residual is not None:
        if not isinstance(residual, Tensor):
            raise TypeError(f"{op}(): argument 'residual' must be Tensor, not {type(residual).__name__}")
        check_same_device(op, x, residual)
        want = shape if batched else shape[1:]
        if residual._shape != want or residual.dtype is not x.dtype:
            raise RuntimeError(f"{op}: residual must have the result's shape {list(want)} and dtype "
                               f"{_T_NAMES[x.dtype]}, got {list(residual._shape)} and {_T_NAMES[residual.dtype]}")
        residual = residual if batched else residual.unsqueeze(0)
    drop = None
    if p:
        n_masks = shape[0] * shape[1] if channels else math.prod(shape)
        drop = (*draw(n_masks, x._storage.device), p, bool(channels))
    return residual, drop


def _conv3d(x, w, bias, stride, pads, dilation, groups, out):
    """A 3-D convolution as one 2-D one: the KD depth taps of each output depth are stacked beside the channels,
    (N, C, D, H, W) -> (N * OD, C * KD, H, W), and the weight (O, C/groups, KD, KH, KW) read as (O, C/groups * KD,
    KH, KW): channel-major, then tap, so each group's channels stay together. The 2-D kernels do the work (the
    stacked copy costs KD times the input's memory), autograd the backward through the same views."""
    n, c = x._shape[:2]
    o, kd = w._shape[0], w._shape[2]
    od, sd, dd = out[0], stride[0], dilation[0]
    if pads[0] != (0, 0):
        x = pad(x, (0, 0, 0, 0) + pads[0])
    span = sd * (od - 1) + 1
    taps = stack([x[:, :, i * dd:i * dd + span:sd] for i in range(kd)], 3)      # (N, C, OD, KD, H, W)
    taps = taps.permute(0, 2, 1, 3, 4, 5).reshape(n * od, c * kd, *x._shape[3:])
    geo = Geometry(stride[1:], tuple(a for a, _ in pads[1:]), dilation[1:], groups)
    y = Conv.apply(taps, w.reshape(o, -1, *w._shape[3:]), bias, geo, out[1:])    # (N * OD, O, OH, OW)
    return y.reshape(n, od, o, *out[1:]).permute(0, 2, 1, 3, 4).contiguous()


def _conv_transposend(op, input, weight, bias, stride, padding, output_padding, groups, dilation, nd):
    x, batched = _prepare(op, input, weight, bias, nd, True)
    stride, dilation = _tuple("stride", stride, nd), _tuple("dilation", dilation, nd)
    if isinstance(padding, str):
        raise TypeError(f"{op}(): argument 'padding' must be tuple of ints, not str")
    padding, output_padding = _tuple("padding", padding, nd), _tuple("output_padding", output_padding, nd)
    _check_geometry(stride, dilation)
    if any(p < 0 for p in padding):
        raise RuntimeError("negative padding is not supported")
    if any(p < 0 for p in output_padding):
        raise RuntimeError("negative output_padding is not supported")
    if any(op_ >= s and op_ >= d for op_, s, d in zip(output_padding, stride, dilation)):
        hw = ("height", "width") if nd == 2 else ("width",)
        raise RuntimeError("output padding must be smaller than either stride or dilation, but got " + " ".join(
            f"output_padding_{n}: {v}" for n, v in zip(hw, output_padding)) + " " + " ".join(
            f"stride_{n}: {v}" for n, v in zip(hw, stride)) + " " + " ".join(
            f"dilation_{n}: {v}" for n, v in zip(hw, dilation)))
    _check_groups(groups, weight)
    if x._shape[1] != weight._shape[0]:
        raise RuntimeError(f"Given transposed=1, weight of size {list(weight._shape)}, expected input"
                           f"{list(x._shape)} to have {weight._shape[0]} channels, but got {x._shape[1]} channels "
                           "instead")
    _check_bias(bias, weight, weight._shape[1] * groups)
    ksize = weight._shape[2:]
    spatial = x._shape[2:]
    out = tuple((i - 1) * s - 2 * p + d * (k - 1) + op_ + 1
                for i, s, p, d, k, op_ in zip(spatial, stride, padding, dilation, ksize, output_padding))
    if any(o < 1 for o in out):
        raise RuntimeError(f"Given input size per channel: ({_fmt_sizes(spatial)}). Calculated output size per "
                           f"channel: ({_fmt_sizes(out)}). Output size is too small")
    if nd == 1:
        geo = Geometry((1, stride[0]), (0, padding[0]), (1, dilation[0]), groups)
        y = ConvTranspose.apply(x.unsqueeze(2), weight.unsqueeze(2), bias, geo, (1,) + out).squeeze(2)
    else:
        y = ConvTranspose.apply(x, weight, bias, Geometry(stride, padding, dilation, groups), out)
    return y if batched else y.squeeze(0)


@register("conv1d", method=False)
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None, dropout_p=0.0,
           dropout_channels=False, residual=None):
    """1-D convolution (cross-correlation) of input (N, C_in, L) or (C_in, L) with weight (C_out, C_in/groups, K);
    ``padding``: an int, a 1-tuple, ``'valid'`` or ``'same'`` (stride 1 only). The epilogue, in the kernel
    (``tritorch.compile`` fuses ``relu(conv1d(...))``, a dropout of it and a skip connection ``r + conv1d(...)``):
    ``activation``, None or one of ``EPILOGUE_ACTIVATIONS``; then with ``dropout_p`` training-mode dropout, the
    elements the separate ``dropout`` (with ``dropout_channels``, the channels ``dropout2d``/``dropout1d``) would
    drop, the counters taken from the generator here (backward regenerates the mask); then ``residual``, a tensor of
    the result's shape and dtype, added. Each step rounds as the separate op would."""
    return _convnd("conv1d", input, weight, bias, stride, padding, dilation, groups, 1, activation, dropout_p,
                   dropout_channels, residual)


@register("conv2d", method=False)
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None, dropout_p=0.0,
           dropout_channels=False, residual=None):
    """2-D convolution (cross-correlation) of input (N, C_in, H, W) or (C_in, H, W) with weight
    (C_out, C_in/groups, KH, KW); ``padding``: an int, a pair, ``'valid'`` or ``'same'`` (stride 1 only, extra
    padding on the bottom/right for an even dilated kernel, as in PyTorch); the epilogue (``activation``,
    ``dropout_p``, ``dropout_channels``, ``residual``): as conv1d's."""
    return _convnd("conv2d", input, weight, bias, stride, padding, dilation, groups, 2, activation, dropout_p,
                   dropout_channels, residual)


@register("conv3d", method=False)
def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D convolution of input (N, C_in, D, H, W) or (C_in, D, H, W) with weight (C_out, C_in/groups, KD, KH, KW);
    ``padding``: an int, a triple, ``'valid'`` or ``'same'`` (stride 1 only)."""
    return _convnd("conv3d", input, weight, bias, stride, padding, dilation, groups, 3)


@register("conv_transpose1d", method=False)
def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """1-D transposed convolution of input (N, C_in, L) with weight (C_in, C_out/groups, K): the gradient of
    conv1d w.r.t. its input. Note the argument order (groups before dilation), as in PyTorch."""
    return _conv_transposend("conv_transpose1d", input, weight, bias, stride, padding, output_padding, groups,
                             dilation, 1)


@register("conv_transpose2d", method=False)
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution of input (N, C_in, H, W) with weight (C_in, C_out/groups, KH, KW); output size
    (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1 (likewise for W)."""
    return _conv_transposend("conv_transpose2d", input, weight, bias, stride, padding, output_padding, groups,
                             dilation, 2)
