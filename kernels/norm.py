"""Normalisation: ``batch_norm``, ``layer_norm``, ``group_norm``, ``instance_norm``, forward and backward.

Batch norm sees its input as (N, C, L) (L = the product of the spatial dims, read through one stride). The forward
kernel normalises a chunk of a channel's N * L elements per program, with the statistics in float32 (float64 for
float64): computed in the kernel in two passes (the mean, then the variance around it, rather than
E[x^2] - E[x]^2, which cancels) when a channel is one chunk, or combined from per-chunk Welford partials (count,
mean, squared deviations; Chan's formula) of a first kernel when channels are few and long, so that the GPU has
enough programs. In training it also updates the running statistics in place (the unbiased variance, as PyTorch
does) and saves mean and 1/sqrt(var + eps) for backward. Backward has the same shape: the sums of g and
g * x_hat (in the kernel, or from per-chunk partials) give grad weight and grad bias, and the input gradient
``w * rstd * (g - mean(g) - x_hat * mean(g * x_hat))`` (eval: ``w * rstd * g``).

Layer norm (and the normalisation inside group and instance norm) is a row kernel: a row of the normalised shape
per program, mean and rstd saved per row, as in the Triton tutorial. Its backward reads x and g once: a program
per chunk of rows computes the rows' input gradients, a tile of rows at a time, and sums g * x_hat and g down its
rows, the chunks' partial sums then added by a column sum for the weight and bias (rows that fit one tile: one
program, one launch). Rows longer than a block (4096) take two kernels instead:
one per row for the input gradient, one per (block of columns, chunk of rows) for the partial sums.
Group norm and instance norm normalise rows of a (N * groups, C / groups * L) view with that kernel and apply
their per-channel affine with broadcast tensor ops (recorded by autograd like any other op).
"""
import numpy as np
import triton
import triton.language as tl

from tritorch import _creation, _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function, pending_grad
from tritorch.autograd.grad_mode import STATE, no_grad
from ._launch import ACC, ptr, cdiv, next_pow2, interp_bf16_in, interp_bf16_out
from ._common import empty, read_as, wrap

__all__ = ["batch_norm", "layer_norm", "rms_norm", "group_norm", "instance_norm"]

# ====================================================================================================================
# Batch norm kernels
# ====================================================================================================================


@triton.jit
def _chan_offsets(j, L, sn, sl):
    """Offset of element j of a channel: (n, l) = divmod(j, L)."""
    return (j // L) * sn + (j % L) * sl


@triton.jit
def _bn_part_kernel(x_ptr, g_ptr, mean_ptr, rstd_ptr, part_ptr, M, L, CHUNK, S, sxn, sxc, sxl, sgn, sgc, sgl,
                    GRAD: tl.constexpr, CT: tl.constexpr, BLOCK: tl.constexpr):
    """Program (c, s) reduces rows [s * CHUNK, (s + 1) * CHUNK) of channel c into part[c, s, :3]: the count, the
    mean and the sum of squared deviations of x (a Welford partial, forward), or the sums of g and of g * x_hat
    (GRAD, backward). Used when a channel is long and channels are few, so that more programs share the work."""
    c = tl.program_id(0).to(tl.int64)
    s = tl.program_id(1).to(tl.int64)
    lo = s * CHUNK
    hi = tl.minimum(lo + CHUNK, M)
    xc = x_ptr + c * sxc
    offs = tl.arange(0, BLOCK).to(tl.int64)
    base = part_ptr + (c * S + s) * 3
    if GRAD:
        gc = g_ptr + c * sgc
        mean = tl.load(mean_ptr + c)
        rstd = tl.load(rstd_ptr + c)
        sg = tl.zeros([BLOCK], CT)
        sgx = tl.zeros([BLOCK], CT)
        for start in range(0, CHUNK, BLOCK):
            j = lo + start + offs
            x = tl.load(xc + _chan_offsets(j, L, sxn, sxl), mask=j < hi, other=0.0).to(CT)
            g = tl.load(gc + _chan_offsets(j, L, sgn, sgl), mask=j < hi, other=0.0).to(CT)
            sg += g
            sgx += tl.where(j < hi, g * (x - mean) * rstd, 0.0)
        tl.store(base, tl.sum(sg, axis=0))
        tl.store(base + 1, tl.sum(sgx, axis=0))
    else:
        n = (hi - lo).to(CT)
        acc = tl.zeros([BLOCK], CT)
        for start in range(0, CHUNK, BLOCK):
            j = lo + start + offs
            acc += tl.load(xc + _chan_offsets(j, L, sxn, sxl), mask=j < hi, other=0.0).to(CT)
        mu = tl.sum(acc, axis=0) / n
        acc = tl.zeros([BLOCK], CT)
        for start in range(0, CHUNK, BLOCK):
            j = lo + start + offs
            x = tl.load(xc + _chan_offsets(j, L, sxn, sxl), mask=j < hi, other=0.0).to(CT)
            d = tl.where(j < hi, x - mu, 0.0)
            acc += d * d
        tl.store(base, n)
        tl.store(base + 1, mu)
        tl.store(base + 2, tl.sum(acc, axis=0))


@triton.jit(do_not_specialize=["eps", "momentum_bits"])
def _bn_fwd_kernel(x_ptr, y_ptr, w_ptr, b_ptr, rm_ptr, rv_ptr, mean_ptr, rstd_ptr, part_ptr, M, L, CHUNK, S,
                   sxn, sxc, sxl, syn, syc, syl, eps, momentum_bits,
                   TRAINING: tl.constexpr, UPDATE: tl.constexpr, AFFINE: tl.constexpr, PARTS: tl.constexpr,
                   SB: tl.constexpr, CT: tl.constexpr, BLOCK: tl.constexpr):
    """y = (x - mean) * rstd * w[c] + b[c] on rows [s * CHUNK, (s + 1) * CHUNK) of channel c, program (c, s).

    Statistics: in training the batch ones, computed here in two passes over the channel (S = 1) or combined from
    the S Welford partials of ``_bn_part_kernel`` (PARTS: Chan's formula); in eval the running ones. Program
    (c, 0) saves mean and rstd and, with UPDATE, updates the running statistics (unbiased variance). The momentum
    comes as the int64 bit pattern of a float64 (a Python float argument would be rounded to float32)."""
    c = tl.program_id(0).to(tl.int64)
    s = tl.program_id(1).to(tl.int64)
    xc = x_ptr + c * sxc
    yc = y_ptr + c * syc
    offs = tl.arange(0, BLOCK).to(tl.int64)
    if TRAINING:
        if PARTS:
            k = tl.arange(0, SB)
            pb = part_ptr + c * S * 3 + k * 3
            n = tl.load(pb, mask=k < S, other=0.0)
            mu = tl.load(pb + 1, mask=k < S, other=0.0)
            m2 = tl.load(pb + 2, mask=k < S, other=0.0)
            mean = tl.sum(n * mu, axis=0) / M
            d = mu - mean
            var = tl.sum(m2 + n * d * d, axis=0) / M
        else:
            acc = tl.zeros([BLOCK], CT)
            for start in range(0, M, BLOCK):
                j = start + offs
                acc += tl.load(xc + _chan_offsets(j, L, sxn, sxl), mask=j < M, other=0.0).to(CT)
            mean = tl.sum(acc, axis=0) / M
            acc = tl.zeros([BLOCK], CT)
            for start in range(0, M, BLOCK):
                j = start + offs
                x = tl.load(xc + _chan_offsets(j, L, sxn, sxl), mask=j < M, other=0.0).to(CT)
                d = tl.where(j < M, x - mean, 0.0)
                acc += d * d
            var = tl.sum(acc, axis=0) / M
        if UPDATE:
            if s == 0:
                momentum = momentum_bits.to(tl.int64).to(tl.float64, bitcast=True).to(CT)
                rm = tl.load(rm_ptr + c).to(CT)
                rv = tl.load(rv_ptr + c).to(CT)
                tl.store(rm_ptr + c, ((1.0 - momentum) * rm + momentum * mean).to(rm_ptr.dtype.element_ty))
                unbiased = var * M / tl.maximum(M - 1, 1)
                tl.store(rv_ptr + c, ((1.0 - momentum) * rv + momentum * unbiased).to(rv_ptr.dtype.element_ty))
    else:
        mean = tl.load(rm_ptr + c).to(CT)
        var = tl.load(rv_ptr + c).to(CT)
    rstd = 1.0 / tl.sqrt(var + eps)
    if TRAINING:
        # PyTorch's batch statistics give a constant channel with eps = 0 an rstd of 0 (y = b), not inf
        rstd = tl.where((var == 0) & (eps == 0), 0.0, rstd)
    if s == 0:
        tl.store(mean_ptr + c, mean)
        tl.store(rstd_ptr + c, rstd)
    if AFFINE:
        scale = tl.load(w_ptr + c).to(CT) * rstd
        shift = tl.load(b_ptr + c).to(CT) - mean * scale
    else:
        scale = rstd
        shift = -mean * rstd
    lo = s * CHUNK
    hi = tl.minimum(lo + CHUNK, M)
    for start in range(0, CHUNK, BLOCK):
        j = lo + start + offs
        x = tl.load(xc + _chan_offsets(j, L, sxn, sxl), mask=j < hi, other=0.0).to(CT)
        tl.store(yc + _chan_offsets(j, L, syn, syl), (x * scale + shift).to(y_ptr.dtype.element_ty), mask=j < hi)


@triton.jit
def _bn_bwd_kernel(x_ptr, g_ptr, dx_ptr, w_ptr, mean_ptr, rstd_ptr, dw_ptr, db_ptr, part_ptr, M, L, CHUNK, S,
                   sxn, sxc, sxl, sgn, sgc, sgl, sdn, sdc, sdl,
                   TRAINING: tl.constexpr, AFFINE: tl.constexpr, PARTS: tl.constexpr, SB: tl.constexpr,
                   CT: tl.constexpr, BLOCK: tl.constexpr):
    """Program (c, s): dx on rows [s * CHUNK, (s + 1) * CHUNK) of channel c; program (c, 0) also writes
    dw[c] = sum(g * x_hat) and db[c] = sum(g). With batch statistics the means of g and of g * x_hat are
    subtracted from g, since mean and var moved with x. The sums are computed here (S = 1) or added up from the
    partials of ``_bn_part_kernel`` (PARTS)."""
    c = tl.program_id(0).to(tl.int64)
    s = tl.program_id(1).to(tl.int64)
    xc = x_ptr + c * sxc
    gc = g_ptr + c * sgc
    offs = tl.arange(0, BLOCK).to(tl.int64)
    mean = tl.load(mean_ptr + c)
    rstd = tl.load(rstd_ptr + c)
    if PARTS:
        k = tl.arange(0, SB)
        pb = part_ptr + c * S * 3 + k * 3
        sum_g = tl.sum(tl.load(pb, mask=k < S, other=0.0), axis=0)
        sum_gx = tl.sum(tl.load(pb + 1, mask=k < S, other=0.0), axis=0)
    else:
        sg = tl.zeros([BLOCK], CT)
        sgx = tl.zeros([BLOCK], CT)
        for start in range(0, M, BLOCK):
            j = start + offs
            x = tl.load(xc + _chan_offsets(j, L, sxn, sxl), mask=j < M, other=0.0).to(CT)
            g = tl.load(gc + _chan_offsets(j, L, sgn, sgl), mask=j < M, other=0.0).to(CT)
            sg += g
            sgx += tl.where(j < M, g * (x - mean) * rstd, 0.0)
        sum_g = tl.sum(sg, axis=0)
        sum_gx = tl.sum(sgx, axis=0)
    if s == 0:
        tl.store(dw_ptr + c, sum_gx)
        tl.store(db_ptr + c, sum_g)
    if AFFINE:
        kk = tl.load(w_ptr + c).to(CT) * rstd
    else:
        kk = rstd
    lo = s * CHUNK
    hi = tl.minimum(lo + CHUNK, M)
    for start in range(0, CHUNK, BLOCK):
        j = lo + start + offs
        x = tl.load(xc + _chan_offsets(j, L, sxn, sxl), mask=j < hi, other=0.0).to(CT)
        g = tl.load(gc + _chan_offsets(j, L, sgn, sgl), mask=j < hi, other=0.0).to(CT)
        if TRAINING:
            dx = kk * (g - sum_g / M - (x - mean) * rstd * (sum_gx / M))
        else:
            dx = kk * g
        tl.store(dx_ptr + c * sdc + _chan_offsets(j, L, sdn, sdl), dx.to(dx_ptr.dtype.element_ty), mask=j < hi)


# ====================================================================================================================
# Row (layer) norm kernels
# ====================================================================================================================


@triton.jit
def row_stats(rows, sk, K, eps, RMS: tl.constexpr, CT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """(mean, rstd) of the BLOCK_M rows whose first elements are at the pointers ``rows`` (BLOCK_M,), each of K
    elements ``sk`` apart: the mean, then the mean squared deviation from it (two passes, no cancellation),
    rstd = 1 / sqrt(that + eps); ``RMS``: the mean is 0. The stats of ``_ln_fwd_kernel`` (one row, (1, BLOCK) tiles)
    and of a linear's row-norm prologue (``kernels/linear.py``'s ``x_norm``), which then read the normalized rows a
    (BLOCK_M, BLOCK_K) tile at a time (``norm_tile``)."""
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_K), CT)
    if not RMS:
        for k in range(0, tl.cdiv(K, BLOCK_K)):
            c = k * BLOCK_K + offs_k
            acc += tl.load(rows[:, None] + c[None, :] * sk, mask=c[None, :] < K, other=0.0).to(CT)
    mean = tl.sum(acc, axis=1) / K
    acc = tl.zeros((BLOCK_M, BLOCK_K), CT)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        c = k * BLOCK_K + offs_k
        x = tl.load(rows[:, None] + c[None, :] * sk, mask=c[None, :] < K, other=0.0).to(CT)
        d = tl.where(c[None, :] < K, x - mean[:, None], 0.0)
        acc += d * d
    return mean, 1.0 / tl.sqrt(tl.sum(acc, axis=1) / K + eps)


@triton.jit
def norm_tile(x, mean, rstd, w_ptr, b_ptr, c, K, HAS_W: tl.constexpr, HAS_B: tl.constexpr, CT: tl.constexpr):
    """The (BLOCK_M, BLOCK_K) tile x of columns ``c`` (BLOCK_K,) normalized with ``row_stats``' (mean, rstd): (x -
    mean) * rstd [* w] [+ b] in CT, w and b contiguous (K,); 0 in the columns past K."""
    y = (x.to(CT) - mean[:, None]) * rstd[:, None]
    if HAS_W:
        y = y * tl.load(w_ptr + c, mask=c < K, other=0.0).to(CT)[None, :]
    if HAS_B:
        y = y + tl.load(b_ptr + c, mask=c < K, other=0.0).to(CT)[None, :]
    return tl.where(c[None, :] < K, y, 0.0)


@triton.jit(do_not_specialize=["eps"])
def _ln_fwd_kernel(x_ptr, y_ptr, w_ptr, b_ptr, mean_ptr, rstd_ptr, N, eps,
                   HAS_W: tl.constexpr, HAS_B: tl.constexpr, RMS: tl.constexpr, CT: tl.constexpr,
                   BLOCK: tl.constexpr):
    """Row r = program id of contiguous (M, N): y = (x - mean) * rstd * w + b; mean and rstd saved per row. ``RMS``
    (root-mean-square norm): the mean is 0, so rstd = 1 / sqrt(mean(x * x) + eps). The row is a (1, BLOCK) tile of
    ``row_stats`` and ``norm_tile``, the norm a linear's prologue also runs (``kernels/linear.py``'s ``x_norm``)."""
    r = tl.program_id(0).to(tl.int64) + tl.zeros([1], tl.int64)
    cols = tl.arange(0, BLOCK)
    mean, rstd = row_stats(x_ptr + r * N, 1, N, eps, RMS, CT, 1, BLOCK)
    tl.store(mean_ptr + r, mean)
    tl.store(rstd_ptr + r, rstd)
    for start in range(0, N, BLOCK):
        c = start + cols
        offs = r[:, None] * N + c[None, :]
        x = tl.load(x_ptr + offs, mask=c[None, :] < N, other=0.0)
        y = norm_tile(x, mean, rstd, w_ptr, b_ptr, c, N, HAS_W, HAS_B, CT)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=c[None, :] < N)


@triton.jit
def _ln_x_wg(xr, gr, w_ptr, c, m, HAS_W: tl.constexpr, CT: tl.constexpr):
    """Columns ``c`` of a row: x, and the output gradient times the weight."""
    x = tl.load(xr + c, mask=m, other=0.0).to(CT)
    wg = tl.load(gr + c, mask=m, other=0.0).to(CT)
    if HAS_W:
        wg = wg * tl.load(w_ptr + c, mask=m, other=0.0).to(CT)
    return x, wg


@triton.jit
def _ln_acc(dx, acc_ptrs, m, dx_ptr, HAS_ACC: tl.constexpr, CT: tl.constexpr):
    """dx, plus (``HAS_ACC``) the pending gradient at ``acc_ptrs``: after rounding dx to its dtype, as the engine's
    separate add of the two would see it."""
    if HAS_ACC:
        dx = dx.to(dx_ptr.dtype.element_ty).to(CT) + tl.load(acc_ptrs, mask=m, other=0.0).to(CT)
    return dx


@triton.jit
def _ln_bwd_dx_kernel(x_ptr, g_ptr, w_ptr, mean_ptr, rstd_ptr, dx_ptr, acc_ptr, N,
                      HAS_W: tl.constexpr, HAS_ACC: tl.constexpr, RMS: tl.constexpr, CT: tl.constexpr,
                      BLOCK: tl.constexpr):
    """Row r: dx = rstd * (wg - mean(wg) - x_hat * mean(wg * x_hat)), wg = w * g (``RMS``: without the mean(wg)
    term, the mean being 0 and no function of x); with ``HAS_ACC`` plus the gradient already waiting for x (acc,
    contiguous like dx), added to dx rounded as the separate add would."""
    r = tl.program_id(0).to(tl.int64)
    xr = x_ptr + r * N
    gr = g_ptr + r * N
    mean = tl.load(mean_ptr + r)
    rstd = tl.load(rstd_ptr + r)
    cols = tl.arange(0, BLOCK)
    s1 = tl.zeros([BLOCK], CT)
    s2 = tl.zeros([BLOCK], CT)
    for start in range(0, N, BLOCK):
        c = start + cols
        m = c < N
        x, wg = _ln_x_wg(xr, gr, w_ptr, c, m, HAS_W, CT)
        s1 += wg
        s2 += tl.where(m, wg * (x - mean) * rstd, 0.0)
    c1 = tl.sum(s1, axis=0) / N
    if RMS:
        c1 = 0.0
    c2 = tl.sum(s2, axis=0) / N
    for start in range(0, N, BLOCK):
        c = start + cols
        m = c < N
        x, wg = _ln_x_wg(xr, gr, w_ptr, c, m, HAS_W, CT)
        dx = _ln_acc(rstd * (wg - c1 - (x - mean) * rstd * c2), acc_ptr + r * N + c, m, dx_ptr, HAS_ACC, CT)
        tl.store(dx_ptr + r * N + c, dx.to(dx_ptr.dtype.element_ty), mask=m)


@triton.jit
def _ln_bwd_kernel(x_ptr, g_ptr, w_ptr, mean_ptr, rstd_ptr, dx_ptr, acc_ptr, pw_ptr, pb_ptr, M, N, ROWS,
                   HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_ACC: tl.constexpr, RMS: tl.constexpr,
                   HAS_DX: tl.constexpr, CT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK: tl.constexpr):
    """Rows [s * ROWS, (s + 1) * ROWS) of program s, BLOCK_M rows at a time, each a whole row of N <= BLOCK columns:
    (``HAS_DX``: x needs a gradient) dx as in ``_ln_bwd_dx_kernel`` (with ``HAS_ACC`` plus acc), and the chunk's
    column sums pw[s] = sum of g * x_hat, (``HAS_B``) pb[s] = sum of g over its rows ((chunks, N) contiguous;
    ``_ln_dwdb_sum_kernel`` adds the chunks, or with one chunk they are the gradients): x and g are read once for all
    three gradients."""
    s = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mc = cols < N
    w = tl.load(w_ptr + cols, mask=mc, other=0.0).to(CT) if HAS_W else tl.full([BLOCK], 1.0, CT)
    pw = tl.zeros([BLOCK], CT)
    pb = tl.zeros([BLOCK], CT)
    row0 = s.to(tl.int64) * ROWS
    end = tl.minimum(row0 + ROWS, M)
    for r0 in range(row0, end, BLOCK_M):
        rows = r0 + tl.arange(0, BLOCK_M)
        mr = rows < end
        m = mr[:, None] & mc[None, :]
        offs = rows[:, None] * N + cols[None, :]
        mean = tl.load(mean_ptr + rows, mask=mr, other=0.0)[:, None]
        rstd = tl.load(rstd_ptr + rows, mask=mr, other=0.0)[:, None]
        x = tl.load(x_ptr + offs, mask=m, other=0.0).to(CT)
        g = tl.load(g_ptr + offs, mask=m, other=0.0).to(CT)
        x_hat = tl.where(m, (x - mean) * rstd, 0.0)
        if HAS_DX:
            wg = g * w[None, :]
            c2 = (tl.sum(wg * x_hat, axis=1) / N)[:, None]
            if RMS:
                dx = rstd * (wg - x_hat * c2)
            else:
                dx = rstd * (wg - (tl.sum(wg, axis=1) / N)[:, None] - x_hat * c2)
            dx = _ln_acc(dx, acc_ptr + offs, m, dx_ptr, HAS_ACC, CT)
            tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=m)
        pw += tl.sum(g * x_hat, axis=0)
        if HAS_B:
            pb += tl.sum(g, axis=0)
    tl.store(pw_ptr + s * N + cols, pw.to(pw_ptr.dtype.element_ty), mask=mc)
    if HAS_B:
        tl.store(pb_ptr + s * N + cols, pb.to(pb_ptr.dtype.element_ty), mask=mc)


@triton.jit
def _ln_bwd_dwdb_kernel(x_ptr, g_ptr, mean_ptr, rstd_ptr, dw_ptr, db_ptr, M, N, ROWS,
                        HAS_B: tl.constexpr, CT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Partial sums of a (row chunk, column block) = program (1, 0): dw[s] = sum of g * x_hat over the ROWS rows of
    chunk s, (``HAS_B``) db[s] = sum of g (the chunks are then added by a column sum)."""
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    s = tl.program_id(1)
    cm = cols < N
    row0 = s.to(tl.int64) * ROWS
    row_end = tl.minimum(row0 + ROWS, M)
    dw = tl.zeros([BLOCK_M, BLOCK_N], CT)
    db = tl.zeros([BLOCK_M, BLOCK_N], CT)
    for start in range(0, ROWS, BLOCK_M):
        rows = row0 + start + tl.arange(0, BLOCK_M)
        rm = rows < row_end
        m = rm[:, None] & cm[None, :]
        off = rows[:, None] * N + cols[None, :]
        x = tl.load(x_ptr + off, mask=m, other=0.0).to(CT)
        g = tl.load(g_ptr + off, mask=m, other=0.0).to(CT)
        mean = tl.load(mean_ptr + rows, mask=rm, other=0.0)[:, None]
        rstd = tl.load(rstd_ptr + rows, mask=rm, other=0.0)[:, None]
        dw += tl.where(m, g * (x - mean) * rstd, 0.0)
        if HAS_B:
            db += g
    tl.store(dw_ptr + s * N + cols, tl.sum(dw, axis=0).to(dw_ptr.dtype.element_ty), mask=cm)
    if HAS_B:
        tl.store(db_ptr + s * N + cols, tl.sum(db, axis=0).to(db_ptr.dtype.element_ty), mask=cm)


@triton.jit
def _ln_dwdb_sum_kernel(pw_ptr, pb_ptr, dw_ptr, db_ptr, R, N, HAS_B: tl.constexpr, CT: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """dw = the column sums of the (R, N) partials pw, (``HAS_B``) db those of pb (both contiguous, in CT), for
    BLOCK_N columns per program; dw, db: (N,) in the parameters' dtype."""
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cm = cols < N
    dw = tl.zeros([BLOCK_R, BLOCK_N], CT)
    db = tl.zeros([BLOCK_R, BLOCK_N], CT)
    for start in range(0, R, BLOCK_R):
        rows = start + tl.arange(0, BLOCK_R)
        m = (rows[:, None] < R) & cm[None, :]
        off = rows[:, None] * N + cols[None, :]
        dw += tl.load(pw_ptr + off, mask=m, other=0.0)
        if HAS_B:
            db += tl.load(pb_ptr + off, mask=m, other=0.0)
    tl.store(dw_ptr + cols, tl.sum(dw, axis=0).to(dw_ptr.dtype.element_ty), mask=cm)
    if HAS_B:
        tl.store(db_ptr + cols, tl.sum(db, axis=0).to(db_ptr.dtype.element_ty), mask=cm)


# ====================================================================================================================
# NumPy references
# ====================================================================================================================

def _np_bn_fwd(x, w, b, rm, rv, training, momentum, eps):
    """x: (N, C, L). Returns y, mean, rstd, and the new running statistics (or None)."""
    M = x.shape[0] * x.shape[2]
    if training and M == 0:           # an empty batch: no statistics (the output is empty, rm is not updated)
        mean, var, new = np.zeros(x.shape[1], x.dtype), np.ones(x.shape[1], x.dtype), None
    elif training:
        mean = x.mean(axis=(0, 2))
        var = ((x - mean[None, :, None]) ** 2).mean(axis=(0, 2))
        new = None
        if rm is not None:
            new = ((1 - momentum) * rm + momentum * mean, (1 - momentum) * rv + momentum * var * M / max(M - 1, 1))
    else:
        mean, var, new = rm, rv, None
    with np.errstate(divide="ignore"):
        rstd = 1.0 / np.sqrt(var + eps)
    if training:        # the kernel's rule: a constant channel with eps = 0 gets rstd 0
        rstd = np.where((var == 0) & (eps == 0), 0.0, rstd).astype(x.dtype)
    # y = x * scale + shift, as the kernel (and PyTorch) computes it
    scale = rstd if w is None else w * rstd
    shift = -mean * scale if b is None else b - mean * scale
    with np.errstate(invalid="ignore"):
        y = x * scale[None, :, None] + shift[None, :, None]
    return y, mean, rstd, new


def _np_bn_bwd(x, g, w, mean, rstd, training):
    M = max(x.shape[0] * x.shape[2], 1)      # (an empty batch: dx is empty, the sums are 0)
    xhat = (x - mean[None, :, None]) * rstd[None, :, None]
    sg = g.sum(axis=(0, 2))
    sgx = (g * xhat).sum(axis=(0, 2))
    k = rstd if w is None else w * rstd
    if training:
        dx = k[None, :, None] * (g - sg[None, :, None] / M - xhat * (sgx / M)[None, :, None])
    else:
        dx = k[None, :, None] * g
    return dx, sgx, sg


def _np_ln_fwd(x, w, b, eps, rms=False):
    mean = np.zeros(x.shape[0], x.dtype) if rms else x.mean(axis=1)
    rstd = 1.0 / np.sqrt(((x - mean[:, None]) ** 2).mean(axis=1) + eps)
    y = (x - mean[:, None]) * rstd[:, None]
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y, mean, rstd


def _np_ln_bwd(x, g, w, mean, rstd, rms=False):
    xhat = (x - mean[:, None]) * rstd[:, None]
    wg = g if w is None else g * w
    c1 = 0.0 if rms else wg.mean(axis=1, keepdims=True)
    c2 = (wg * xhat).mean(axis=1, keepdims=True)
    dx = rstd[:, None] * (wg - c1 - xhat * c2)
    return dx, (g * xhat).sum(axis=0), g.sum(axis=0)


# ====================================================================================================================
# Launch helpers
# ====================================================================================================================

def _ct(dtype):
    return np.float64 if dtype is D.float64 else np.float32


def _stat_dtype(dtype):
    return D.float64 if dtype is D.float64 else D.float32


def _block(n, cap=1024):
    if INTERPRET:
        return max(16, min(next_pow2(n), 128))
    return max(16, min(next_pow2(n), cap))


def _bn_split(M, C):
    """(S, CHUNK, BLOCK) of a batch-norm launch: each channel's M elements in S chunks of CHUNK rows. One chunk
    (one program per channel) while there are channels enough to fill the GPU or channels are short; otherwise
    up to 64 chunks, so that about four programs run per SM. The interpreter splits channels longer than 64, so
    that the tests cover both paths."""
    block = _block(M)
    if INTERPRET:
        target = 3 if M > 64 else 1
    else:
        target = min(64, cdiv(4 * 132, max(C, 1))) if M >= 8192 else 1
    if target <= 1:
        return 1, M, block
    chunk = cdiv(cdiv(M, target), block) * block
    return cdiv(M, chunk), chunk, block


def _warps(block):
    """The layer-norm tutorial's rule: a warp per 256 elements of a block, 1 to 8."""
    return min(max(block // 256, 1), 8)


def _ncl(x):
    """x as (N, C, L) with one stride for L (a copy where the spatial dims do not merge)."""
    N, C = x._shape[0], x._shape[1]
    L = 1
    for n in x._shape[2:]:
        L *= n
    sp = [(n, s) for n, s in zip(x._shape[2:], x._stride[2:]) if n != 1]
    ok = all(sp[i][1] == sp[i + 1][1] * sp[i + 1][0] for i in range(len(sp) - 1))
    if not ok:
        x = x.contiguous()
        sp = [(n, s) for n, s in zip(x._shape[2:], x._stride[2:]) if n != 1]
    sl = sp[-1][1] if sp else 1
    return x, N, C, L, (x._stride[0], x._stride[1], sl)


def _ln_dwdb(x, g, mean, rstd, M, N, dtype, has_b=True):
    """Weight and bias gradients of a row norm, in ``dtype`` (the bias's None without ``has_b``): partial column sums
    over chunks of rows (enough chunks to fill the GPU), then one kernel summing the (chunks, N) partials (one chunk:
    no second kernel)."""
    bn = 32 if INTERPRET else 64
    bm = min(next_pow2(M), 16 if INTERPRET else 32)
    chunks = min(cdiv(M, bm), 2 if INTERPRET else max(1, 4 * 132 // cdiv(N, bn)))
    rows = cdiv(cdiv(M, chunks), bm) * bm
    chunks = cdiv(M, rows)
    dw, db, pw, pb = _dwdb_buffers(N, chunks, dtype, mean.dtype, x.device, has_b)
    _ln_bwd_dwdb_kernel[(cdiv(N, bn), chunks)](ptr(x), ptr(g), ptr(mean), ptr(rstd), ptr(pw), ptr(pb), M, N, rows,
                                               HAS_B=has_b, CT=ACC[x.dtype], BLOCK_M=bm, BLOCK_N=bn)
    _dwdb_sum(pw, pb, dw, db, chunks, N, bn, has_b, ACC[x.dtype])
    return dw, db if has_b else None


def _dwdb_buffers(N, chunks, dtype, part_dtype, device, has_b):
    """(dw, db, pw, pb): the gradients and the (chunks, N) partials (the gradients themselves for one chunk); without
    ``has_b`` the bias's buffers are dw's and pw's (never written)."""
    dw = empty((N,), dtype, device)
    db = empty((N,), dtype, device) if has_b else dw
    pw = empty((chunks, N), part_dtype, device) if chunks > 1 else dw
    pb = (empty((chunks, N), part_dtype, device) if chunks > 1 else db) if has_b else pw
    return dw, db, pw, pb


def _dwdb_sum(pw, pb, dw, db, chunks, N, bn, has_b, ct):
    """The chunks' partials summed into dw (and db), by ``_ln_dwdb_sum_kernel``: nothing for one chunk."""
    if chunks > 1:
        _ln_dwdb_sum_kernel[(cdiv(N, bn),)](ptr(pw), ptr(pb), ptr(dw), ptr(db), chunks, N, HAS_B=has_b, CT=ct,
                                            BLOCK_R=min(next_pow2(chunks), 16), BLOCK_N=bn)


def _ln_bwd(x, g, w, mean, rstd, dx, M, N, dtype, acc=None, rms=False, has_b=True):
    """dx (written in place; None: not computed) and the weight and bias gradients (in ``dtype``) of a row norm whose
    rows fit one block, by ``_ln_bwd_kernel`` over chunks of rows (enough to fill the GPU), then one kernel summing
    the chunks' partials. Rows that fit one tile of ``_ln_bwd_tile`` are one chunk: one launch, no partials."""
    block = _block(N, 4096)
    bm = _ln_bwd_tile(M, block, x.dtype)
    tiles = cdiv(M, bm)
    chunks = 1 if tiles == 1 else min(tiles, 3 if INTERPRET else 4 * 132)
    rows = cdiv(tiles, chunks) * bm
    chunks = cdiv(M, rows)
    dw, db, pw, pb = _dwdb_buffers(N, chunks, dtype, mean.dtype, x.device, has_b)
    out = dx if dx is not None else x
    _ln_bwd_kernel[(chunks,)](ptr(x), ptr(g), ptr(w) if w is not None else ptr(x), ptr(mean), ptr(rstd), ptr(out),
                              ptr(acc if acc is not None else out), ptr(pw), ptr(pb), M, N, rows, HAS_W=w is not None,
                              HAS_B=has_b, HAS_ACC=acc is not None, RMS=rms, HAS_DX=dx is not None,
                              CT=ACC[x.dtype], BLOCK_M=bm,
                              BLOCK=block, num_warps=_warps(bm * block))
    _dwdb_sum(pw, pb, dw, db, chunks, N, 32 if INTERPRET else 64, has_b, ACC[x.dtype])
    return dw, db if has_b else None


def _ln_bwd_tile(M, block, dtype):
    """Rows per iteration of ``_ln_bwd_kernel``: up to 4096 elements a tile (2048 in float64, whose registers are
    twice as wide), no more rows than there are."""
    cap = (2048 if dtype is D.float64 else 4096) // block
    return max(1, min(cap, next_pow2(M)))


def _shaped(t, shape):
    """``t`` as ``shape``: ``t`` itself when it has that shape, so that a parameter's fresh gradient is stored as its
    ``.grad`` as is (a view of it would be copied there)."""
    return t if t._shape == tuple(shape) else t.reshape(shape)


def _host(t, ct):
    return None if t is None else t._np.astype(ct)


def _flat_param(t, N):
    """A row-norm weight or bias as a contiguous (N,): the kernels read it with stride 1, and a view (an expanded
    or sliced parameter) keeps its own strides through ``reshape``."""
    return None if t is None else t.contiguous().reshape(N)


def _np_ncl(a):
    """An (N, C, *) array as (N, C, L), L given explicitly so that an empty batch reshapes too."""
    return a.reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:], dtype=np.int64)))


# ====================================================================================================================
# Functions
# ====================================================================================================================

class BatchNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        affine = weight is not None
        # an empty batch has no statistics: PyTorch leaves the running ones as they are
        update = training and running_mean is not None and x.numel() > 0
        sd = _stat_dtype(x.dtype)
        if x._storage.device.type == "cpu":
            ct = _ct(x.dtype)
            xa = _np_ncl(x._np.astype(ct))
            y, mean, rstd, new = _np_bn_fwd(xa, _host(weight, ct), _host(bias, ct), _host(running_mean, ct),
                                            _host(running_var, ct), training, momentum, eps)
            if new is not None:
                running_mean._np[...] = new[0].astype(running_mean.dtype.np)
                running_var._np[...] = new[1].astype(running_var.dtype.np)
            y = wrap(y.reshape(x._shape).astype(x.dtype.np), x.dtype, x.device)
            mean = wrap(np.asarray(mean, sd.np), sd, x.device)
            rstd = wrap(np.asarray(rstd, sd.np), sd, x.device)
        else:
            xin = interp_bf16_in(x)
            xv, N, C, L, sx = _ncl(xin)
            y = empty(x._shape, xin.dtype, x.device)
            mean = empty((C,), sd, x.device)
            rstd = empty((C,), sd, x.device)
            M = N * L
            if C and M:           # (an empty batch: nothing to normalise, no statistics to update)
                # the kernel reads parameters and statistics with stride 1: a strided one goes through a copy
                rm, rv = (running_mean.contiguous(), running_var.contiguous()) if running_mean is not None else \
                    (mean, rstd)
                w, b = (interp_bf16_in(weight.contiguous()), interp_bf16_in(bias.contiguous())) if affine else \
                    (mean, mean)
                S, chunk, block = _bn_split(M, C)
                parts = empty((C, S, 3), sd, x.device) if S > 1 and training else mean
                if S > 1 and training:
                    _bn_part_kernel[(C, S)](ptr(xv), ptr(xv), ptr(mean), ptr(rstd), ptr(parts), M, L, chunk, S,
                                            *sx, *sx, GRAD=False, CT=ACC[xin.dtype], BLOCK=block,
                                            num_warps=_warps(block))
                _bn_fwd_kernel[(C, S)](
                    ptr(xv), ptr(y), ptr(w), ptr(b), ptr(rm), ptr(rv), ptr(mean), ptr(rstd), ptr(parts), M, L,
                    chunk, S, *sx, C * L, L, 1, float(eps), int(np.float64(momentum or 0.0).view(np.int64)),
                    TRAINING=training, UPDATE=update, AFFINE=affine, PARTS=S > 1 and training, SB=next_pow2(S),
                    CT=ACC[xin.dtype], BLOCK=block, num_warps=_warps(block))
                if update and rm is not running_mean:
                    running_mean.copy_(rm)
                    running_var.copy_(rv)
            y = interp_bf16_out(y, x.dtype)
        if update:
            running_mean._storage.version += 1
            running_var._storage.version += 1
        ctx._name = "NativeBatchNormBackward0"
        ctx.training, ctx.affine, ctx.eps = training, affine, eps
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, rstd = ctx.saved_tensors
        affine, training = ctx.affine, ctx.training
        if STATE.enabled:
            dx, dw, db = _bn_backward_ops(x, g, weight, mean, rstd, training, ctx.eps)
            return dx, dw, db, None, None, None, None, None
        if x._storage.device.type == "cpu":
            ct = _ct(x.dtype)
            dx, dw, db = _np_bn_bwd(_np_ncl(x._np.astype(ct)), _np_ncl(np.broadcast_to(g._np, x._shape).astype(ct)),
                                    weight._np.astype(ct) if affine else None, mean._np.astype(ct),
                                    rstd._np.astype(ct), training)
            dx = wrap(dx.reshape(x._shape).astype(x.dtype.np), x.dtype, x.device)
            if affine:
                dw = wrap(dw.astype(weight.dtype.np), weight.dtype, x.device)
                db = wrap(db.astype(weight.dtype.np), weight.dtype, x.device)
        else:
            xin = interp_bf16_in(x)
            gin = interp_bf16_in(g.expand(x._shape) if g._shape != x._shape else g)
            xv, N, C, L, sx = _ncl(xin)
            gv, _, _, _, sg = _ncl(gin)
            dx = empty(x._shape, xin.dtype, x.device)
            sd = mean.dtype
            dw_, db_ = empty((C,), sd, x.device), empty((C,), sd, x.device)
            M = N * L
            if not M:             # an empty batch: the sums of the parameter gradients are over nothing
                dw_.fill_(0)
                db_.fill_(0)
            elif C:
                w = interp_bf16_in(weight.contiguous()) if affine else mean
                S, chunk, block = _bn_split(M, C)
                parts = empty((C, S, 3), sd, x.device) if S > 1 else mean
                if S > 1:
                    _bn_part_kernel[(C, S)](ptr(xv), ptr(gv), ptr(mean), ptr(rstd), ptr(parts), M, L, chunk, S,
                                            *sx, *sg, GRAD=True, CT=ACC[xin.dtype], BLOCK=block,
                                            num_warps=_warps(block))
                _bn_bwd_kernel[(C, S)](
                    ptr(xv), ptr(gv), ptr(dx), ptr(w), ptr(mean), ptr(rstd), ptr(dw_), ptr(db_), ptr(parts), M, L,
                    chunk, S, *sx, *sg, C * L, L, 1, TRAINING=training, AFFINE=affine, PARTS=S > 1,
                    SB=next_pow2(S), CT=ACC[xin.dtype], BLOCK=block, num_warps=_warps(block))
            dx = interp_bf16_out(dx, x.dtype)
            dw, db = (dw_.to(weight.dtype), db_.to(weight.dtype)) if affine else (None, None)
        if not affine:
            dw = db = None
        return dx, dw, db, None, None, None, None, None


class RowNorm(Function):
    """(x - mean) * rstd [* w] [+ b] over rows of the last N elements of x (x seen as a contiguous (M, N)); with
    ``rms`` the root-mean-square norm x * rstd [* w], rstd = 1 / sqrt(mean(x * x) + eps) (no bias). On a GPU
    backward adds the gradient already waiting for x into dx (``_accumulates``). ``dtype`` float32 of a half x
    (autocast's): the kernels read x as it is and compute in float32 as they do for it anyway, so the result is the
    cast x's, in float32, and the gradient is written in x's dtype, without a float32 copy either way."""

    _accumulates = (0,)

    @staticmethod
    def forward(ctx, x, weight, bias, eps, N, rms=False, dtype=None):
        sd = _stat_dtype(x.dtype)
        out = dtype or x.dtype
        ctx.cast = out is not x.dtype
        M = x.numel() // N if N else 0
        x2 = x.contiguous().reshape(M, N)
        w, b = _flat_param(weight, N), _flat_param(bias, N)
        if x._storage.device.type == "cpu":
            ct = _ct(x.dtype)
            y, mean, rstd = _np_ln_fwd(x2._np.astype(ct), _host(w, ct), _host(b, ct), eps, rms)
            y = wrap(y.reshape(x._shape).astype(out.np), out, x.device)
            mean = wrap(np.asarray(mean, sd.np), sd, x.device)
            rstd = wrap(np.asarray(rstd, sd.np), sd, x.device)
        else:
            xin = interp_bf16_in(x2)
            y = empty(x._shape, out if ctx.cast else xin.dtype, x.device)
            mean, rstd = empty((M,), sd, x.device), empty((M,), sd, x.device)
            if M and N:
                w, b = interp_bf16_in(w), interp_bf16_in(b)
                _ln_fwd_kernel[(M,)](ptr(xin), ptr(y), ptr(w) if w is not None else ptr(y),
                                     ptr(b) if b is not None else ptr(y), ptr(mean), ptr(rstd), N, float(eps),
                                     HAS_W=w is not None, HAS_B=b is not None, RMS=rms, CT=ACC[xin.dtype],
                                     BLOCK=_block(N, 4096), num_warps=_warps(_block(N, 4096)))
            y = interp_bf16_out(y, out)
        RowNorm.keep(ctx, x, weight, bias, eps, N, rms, mean, rstd)
        return y

    @staticmethod
    def keep(ctx, x, weight, bias, eps, N, rms, mean, rstd):
        """What ``backward`` reads, kept in ``ctx`` (also by a kernel that normalizes x as it loads it, with the
        stats it stored: ``kernels/linear_chain.py``)."""
        ctx._name = "RmsNormBackward0" if rms else "NativeLayerNormBackward0"
        ctx.has_b, ctx.eps, ctx.N, ctx.rms = bias is not None, eps, N, rms
        # the shape of the parameter gradients: normalized_shape, read off whichever parameter there is
        ctx.pshape = next((t._shape for t in (weight, bias) if t is not None), (N,))
        ctx.save_for_backward(x, weight, mean, rstd)

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, rstd = ctx.saved_tensors
        N = ctx.N
        M = x.numel() // N if N else 0
        w = _flat_param(weight, N)
        wshape = ctx.pshape
        if STATE.enabled:
            dx, dw, db = _ln_backward_ops(x.reshape(M, N).to(g.dtype), g.reshape(M, N), w, ctx.eps, ctx.rms)
            return (dx.reshape(x._shape).to(x.dtype), dw.reshape(wshape) if dw is not None else None,
                    db.reshape(wshape) if ctx.has_b else None, None, None, None)
        x2 = x.contiguous().reshape(M, N)
        g2 = g.contiguous().reshape(M, N)
        if x._storage.device.type == "cpu":
            ct = _ct(x.dtype)
            dx, dw, db = _np_ln_bwd(x2._np.astype(ct), g2._np.astype(ct), _host(w, ct), mean._np.astype(ct),
                                    rstd._np.astype(ct), ctx.rms)
            dx = wrap(dx.reshape(x._shape).astype(x.dtype.np), x.dtype, x.device)
            pd = weight.dtype if weight is not None else x.dtype
            dw = wrap(dw.reshape(wshape).astype(pd.np), pd, x.device)
            db = wrap(db.reshape(wshape).astype(pd.np), pd, x.device)
        else:
            xin = interp_bf16_in(x2)
            gin = interp_bf16_in(g2)
            need_dx = ctx.needs_input_grad[0]        # (x a data input: no dx, its reads nor its write)
            dx = empty(x._shape, xin.dtype, x.device) if need_dx else None
            pd = weight.dtype if weight is not None else x.dtype
            # the parameters' gradients straight in their dtype (the interpreter: bfloat16 by a float32 pass)
            sd = mean.dtype if INTERPRET and pd is D.bfloat16 else pd
            dw, db = empty((N,), sd, x.device), empty((N,), sd, x.device) if ctx.has_b else None
            # the gradient already waiting for x (a residual block's skip connection), added in the kernel (not to
            # a gradient rounded to x's dtype from float32: the separate cast and add round twice)
            acc = pending_grad(ctx, 0, x) if need_dx and M and N and xin.dtype is x.dtype and not ctx.cast else None
            if M and N and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]) and N <= _block(N, 4096):
                dw, db = _ln_bwd(xin, gin, interp_bf16_in(w), mean, rstd, dx, M, N, sd, acc, ctx.rms,
                                 ctx.has_b)                                         # x and g read once
            elif M and N:
                w = interp_bf16_in(w)
                if need_dx:
                    _ln_bwd_dx_kernel[(M,)](ptr(xin), ptr(gin), ptr(w) if w is not None else ptr(xin), ptr(mean),
                                            ptr(rstd), ptr(dx), ptr(acc if acc is not None else dx), N,
                                            HAS_W=w is not None, HAS_ACC=acc is not None, RMS=ctx.rms,
                                            CT=ACC[xin.dtype], BLOCK=_block(N, 4096),
                                            num_warps=_warps(_block(N, 4096)))
                if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
                    dw, db = _ln_dwdb(xin, gin, mean, rstd, M, N, sd, ctx.has_b)
            else:
                for t in (dw, db):
                    if t is not None:
                        t.fill_(0)
            dx = interp_bf16_out(dx, x.dtype) if need_dx else None
            dw, db = _shaped(dw.to(pd), wshape), _shaped(db.to(pd), wshape) if db is not None else None
        return dx, dw if weight is not None else None, db if ctx.has_b else None, None, None, None


def _normalize_ops(x, dims, eps):
    mean = x.mean(dims, keepdim=True)
    xc = x - mean
    rstd = ((xc * xc).mean(dims, keepdim=True) + eps).rsqrt()
    return xc * rstd, rstd


def _ln_backward_ops(x, g, weight, eps, rms=False):
    """The row-norm backward in recorded tensor ops (create_graph=True), statistics recomputed from x."""
    if rms:
        rstd = ((x * x).mean(1, keepdim=True) + eps).rsqrt()
        xhat = x * rstd
    else:
        xhat, rstd = _normalize_ops(x, 1, eps)
    wg = g * weight if weight is not None else g
    dx = wg if rms else wg - wg.mean(1, keepdim=True)
    dx = rstd * (dx - xhat * (wg * xhat).mean(1, keepdim=True))
    return dx, (g * xhat).sum(0) if weight is not None else None, g.sum(0)


def _bn_backward_ops(x, g, weight, mean, rstd, training, eps):
    """The batch-norm backward in recorded tensor ops (create_graph=True)."""
    dims = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        xhat, r = _normalize_ops(x, dims, eps)
    else:
        r = rstd.to(x.dtype).reshape(shape)
        xhat = (x - mean.to(x.dtype).reshape(shape)) * r
    k = r * weight.reshape(shape) if weight is not None else r
    if training:
        dx = k * (g - g.mean(dims, keepdim=True) - xhat * (g * xhat).mean(dims, keepdim=True))
    else:
        dx = k * g
    if weight is None:
        return dx, None, None
    return dx, (g * xhat).sum(dims), g.sum(dims)


# ====================================================================================================================
# Public functions
# ====================================================================================================================

def _verify_batch_size(size, shown):
    """PyTorch's check that a batch (or group) has more than one value per channel to take statistics of:
    ``size[0] * prod(size[2:])``, the values of a channel in an (N, C, *) shape."""
    n = size[0]
    for d in size[2:]:
        n *= d
    if n == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {shown}")


def _check_float(name, x):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"\"{name}\" not implemented for '{x.dtype}'")


@register("batch_norm", method=False)
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalise each channel (dim 1) of (N, C, *) by its batch statistics (``training``) or the running ones,
    updating ``running_mean``/``running_var`` in place when training: ``r = (1 - momentum) * r + momentum * s``,
    with the unbiased batch variance for ``running_var``."""
    _check_float("batch_norm", input)
    if input.ndim < 2:
        raise ValueError(f"expected 2D or more input (got {input.ndim}D input)")
    C = input._shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and t.numel() != C:
            raise RuntimeError(f"{name} should contain {C} elements not {t.numel()}")
    if not training and (running_mean is None or running_var is None):
        raise RuntimeError("running_mean and running_var must be defined in evaluation mode")
    if training:
        _verify_batch_size(input._shape, input.shape)
        if eps <= 0.0:      # a constant channel would divide 0 by 0
            raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    elif eps < 0.0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
    if (weight is None) != (bias is None):
        C_ones = (weight if weight is not None else bias)
        if weight is None:
            weight = _creation.ones((C,), dtype=C_ones.dtype, device=C_ones.device)
        else:
            bias = _creation.zeros((C,), dtype=C_ones.dtype, device=C_ones.device)
    momentum = 0.0 if momentum is None else float(momentum)
    return BatchNorm.apply(input, weight, bias, running_mean, running_var, bool(training), momentum, eps)


def _normalized_shape(input, normalized_shape, weight, bias=None):
    """``normalized_shape`` as a tuple, checked against the input's trailing dims and the affine tensors' shapes."""
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(ns)
    if k == 0 or input.ndim < k or tuple(input._shape[input.ndim - k:]) != ns:
        raise RuntimeError(f"Given normalized_shape={list(ns)}, expected input with shape [*, "
                           f"{', '.join(str(n) for n in ns)}], but got input of size{list(input.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t._shape) != ns:
            raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but got {name} of shape "
                               f"{list(t.shape)} and normalized_shape = {list(ns)}")
    return ns


@register("layer_norm", method=False)
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, *, dtype=None):
    """Normalise over the last ``len(normalized_shape)`` dims (mean and biased variance), then ``* weight +
    bias`` elementwise. ``dtype`` (tritorch's, as ``softmax``'s): the norm of ``input.to(dtype)``; float32 of a half
    input (what autocast's float32 policy passes) is read by the kernels as it is, no float32 copy made."""
    input, dtype = read_as(input, dtype) if isinstance(input, Tensor) else (input, None)
    _check_float("layer_norm", input)
    ns = _normalized_shape(input, normalized_shape, weight, bias)
    N = 1
    for n in ns:
        N *= n
    return RowNorm.apply(input, weight, bias, eps, N, False, dtype)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """PyTorch's ``rms_norm``: ``input / sqrt(mean(input ** 2) + eps) * weight`` over the last
    ``len(normalized_shape)`` dims, in float32 for half types (as PyTorch); ``eps`` defaults to the dtype's machine
    epsilon. Written in published ops and not routed itself, so a capture sees those ops (and exports them to ONNX);
    ``tritorch.compile`` runs them as the row-norm kernels (``RowNorm`` with ``rms``; ``compiler/passes/norms.py``)."""
    _check_float("rms_norm", input)
    ns = _normalized_shape(input, normalized_shape, weight)
    eps = float(np.finfo(input.dtype.np).eps) if eps is None else eps
    x = input.float() if input.dtype in (D.float16, D.bfloat16) else input
    out = x * (x * x).mean(tuple(range(-len(ns), 0)), keepdim=True).add(eps).rsqrt()
    if weight is not None:
        out = out * weight
    return out if out.dtype is input.dtype else out.to(input.dtype)


def _affine(y, weight, bias):
    shape = (1, -1) + (1,) * (y.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


@register("group_norm", method=False)
def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5, *, dtype=None):
    """Normalise each of ``num_groups`` groups of channels of (N, C, *) per sample, then a per-channel affine.
    ``dtype``: as ``layer_norm``'s (autocast's float32 of a half input read by the kernels as it is)."""
    input, dtype = read_as(input, dtype) if isinstance(input, Tensor) else (input, None)
    _check_float("group_norm", input)
    if input.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.ndim}")
    N, C = input._shape[:2]
    size = [N * C // num_groups, num_groups] + list(input._shape[2:])
    _verify_batch_size(size, size)
    if C % num_groups != 0:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got input of "
                           f"shape {list(input.shape)} and num_groups={num_groups}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.numel() != C:
            raise RuntimeError(f"Expected {name} to be a vector of size equal to the number of channels in input, "
                               f"but got {name} of shape {list(t.shape)} and input of shape {list(input.shape)}")
    if C == 0:
        raise RuntimeError(f"Expected number of channels to be greater than 0, got {C}")
    hw = 1
    for d in input._shape[2:]:
        hw *= d
    if hw == 0:
        raise RuntimeError(f"Expected HxW to be greater than 0, got {hw}")
    y = RowNorm.apply(input, None, None, eps, C // num_groups * hw, False, dtype)
    return _affine(y, weight, bias)


@register("instance_norm", method=False)
def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Normalise each (sample, channel) plane of (N, C, *) by its own statistics (or, without
    ``use_input_stats``, by the running ones); with running buffers they are updated with the batch mean of the
    per-instance statistics, as PyTorch does."""
    _check_float("instance_norm", input)
    spatial = 1
    for d in input._shape[2:]:
        spatial *= d
    if use_input_stats:
        if spatial == 1:        # one value: nothing to normalise by (the result would be all zeros)
            raise ValueError(f"Expected more than 1 spatial element when training, got input size {input.shape}")
    elif running_mean is None or running_var is None:
        raise RuntimeError("Expected running_mean and running_var to be defined when use_input_stats is false")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must either both be None or neither be None")
    N, C = input._shape[:2]
    if N == 0 and (weight is not None or bias is not None):
        # PyTorch fails here too (an IndexError from repeating the affine parameters zero times)
        raise IndexError("instance_norm(): an affine weight or bias needs a batch of at least one sample, got "
                         f"input size {input.shape}")
    if use_input_stats and running_mean is None and eps != 0:
        y = RowNorm.apply(input, None, None, eps, spatial)
        return _affine(y, weight, bias)
    # PyTorch's route: batch norm of the (1, N * C, *) view with the running statistics repeated N times (taken
    # for eps = 0 too, where a constant plane normalises to 0 as in PyTorch rather than to 0 / 0)
    x = input.contiguous().reshape((1, N * C) + tuple(input._shape[2:]))
    rm = running_mean.reshape(1, C).expand(N, C).contiguous().reshape(N * C) if running_mean is not None else None
    rv = running_var.reshape(1, C).expand(N, C).contiguous().reshape(N * C) if running_var is not None else None
    # (straight to the Function: PyTorch's instance norm skips batch_norm's argument checks, eps=0 included)
    y = BatchNorm.apply(x, None, None, rm, rv, bool(use_input_stats), 0.0 if momentum is None else float(momentum),
                        eps).reshape(input._shape)
    if use_input_stats and running_mean is not None:
        with no_grad():
            running_mean.copy_(rm.reshape(N, C).mean(0))
            running_var.copy_(rv.reshape(N, C).mean(0))
    return _affine(y, weight, bias)
