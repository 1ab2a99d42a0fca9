"""``scaled_dot_product_attention`` and ``masked_attention``: fused flash attention, forward, backward, reference.

Shapes follow PyTorch: query (..., L, E), key (..., S, E), value (..., S, Ev), batch dims broadcast; the result is
(..., L, Ev). ``attn = softmax(q @ k^T * scale + bias) @ v`` with ``scale = 1/sqrt(E)`` by default, where a boolean
``attn_mask`` lets a query see a key where it is True, a float one is added, and ``is_causal`` lets query i see keys
j <= i (the lower triangle aligned to the top-left, as PyTorch's ``tril(ones(L, S))``). A query that sees no key gets
zeros (PyTorch's safe softmax), not NaN; ``masked_attention`` has masked_fill + softmax's semantics instead (NaN).

NaN and inf follow PyTorch's math path (``softmax(q @ k^T * scale + bias) @ v``, bias -inf where a boolean mask hides
a key): a NaN or +inf score makes its row NaN, also where a mask hides it (NaN - inf and inf - inf are NaN), while
-inf scores only hide their keys; a NaN in v reaches every output row that multiplies it, even by a weight of 0.
The one difference: the scores of keys hidden by ``is_causal`` are not computed (as in PyTorch's flash and efficient
kernels, the default on CPU and GPU), so a NaN or inf there does not reach the rows that cannot see them. A NaN or
inf in v does reach every row (weight 0 times NaN), as in the math path and PyTorch's CPU default (whose key blocks
are 512 wide; past them its causal kernel skips keys, which no size-independent rule can copy): when v holds one
(``nonfinite_probe``, read on the device), the causal kernels walk every key block instead of stopping at the
diagonal.

The batch dims are folded into two, (Z, H), and every tensor is read through its strides. The forward kernel takes
BLOCK_M queries per program and streams the keys in blocks of BLOCK_N, keeping a running row max m, the running sum
l of exp(s - m) and the float32 (float64) accumulator of p @ v, rescaled whenever m grows (online softmax): the L x S
score matrix never reaches memory. It saves the row log-sum-exp ``lse = m + log(l)``, from which backward
recomputes p = exp(s - lse) block by block, in one launch: some programs each walk the keys for a block of queries
(dQ), the others each walk the queries for a block of keys (dK, dV); each computes the softmax term delta =
rowsum(dO * O) of the query rows it reads, so the two kinds share nothing and run side by side, no gradient is
accumulated with atomics and delta needs no launch (nor buffer) of its own.

Dropout is in the kernels: p_ij is kept (and scaled by 1/(1-p)) when Philox ``rand(seed, offset + (zh*L + i)*S + j)
>= dropout_p``, the counter scheme of ``kernels/dropout.py``; backward regenerates the same mask. The NumPy reference
draws the same stream (``dropout_mask_np``), so every device drops the same weights for the same seed.
"""
import math

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from ._launch import ACC, ptr, cdiv, next_pow2, broadcast_shapes, interp_bf16_in
from ._common import check_same_device, empty, np_ct, sum_to, wrap
from .elementwise import where
from .dropout import Dropout, dropout_mask_np, dropout_scale
from .matmul import _dot_precision, nonfinite_probe, uses_fma
from .random import _generator

__all__ = ["scaled_dot_product_attention", "masked_attention", "np_sdpa_forward", "np_sdpa_backward"]

# ====================================================================================================================
# The kernels
# ====================================================================================================================


@triton.jit
def _scores(q, k, rows, cols, z, h, L, S, scale, m_ptr, smz, smh, smm, smn,
            MASK: tl.constexpr, CAUSAL: tl.constexpr, PREC: tl.constexpr, CT: tl.constexpr):
    """The (BLOCK_M, BLOCK_N) block of scores q @ k^T * scale + bias: -inf where ``is_causal`` hides a key or past
    L or S; where a boolean mask (``MASK`` 1) hides a key, s - inf (NaN for a NaN or +inf score, as PyTorch's bias of
    -inf); ``MASK`` 2: a float mask added; ``MASK`` 3: -inf where the boolean mask is True (``masked_fill``);
    ``MASK`` 4: none (as 0), with 3's softmax of a row of -inf."""
    s = tl.dot(q, tl.trans(k), input_precision=PREC, out_dtype=CT) * scale
    valid = (rows[:, None] < L) & (cols[None, :] < S)
    offs = m_ptr + z * smz + h * smh + rows[:, None] * smm + cols[None, :] * smn
    if MASK == 1:
        s = tl.where(tl.load(offs, mask=valid, other=0) != 0, s, s - float("inf"))
    if MASK == 2:
        s += tl.load(offs, mask=valid, other=0.0).to(CT)
    if MASK == 3:
        s = tl.where(tl.load(offs, mask=valid, other=0) != 0, -float("inf"), s)
    if CAUSAL:
        valid = valid & (cols[None, :] <= rows[:, None])
    return tl.where(valid, s, -float("inf"))


@triton.jit
def _hidden_zero(ds, rows, cols, z, h, L, S, m_ptr, smz, smh, smm, smn, MASK: tl.constexpr):
    """The score gradient ds, 0 where the boolean mask of ``MASK`` 3 hides the score (and past L or S):
    ``masked_fill``'s backward, which keeps a row that saw no key (p NaN) from reaching dK (``MASK`` 4, no mask: ds
    as it is, NaN there as softmax's)."""
    if MASK == 3:
        valid = (rows[:, None] < L) & (cols[None, :] < S)
        hidden = tl.load(m_ptr + z * smz + h * smh + rows[:, None] * smm + cols[None, :] * smn, mask=valid, other=1)
        ds = tl.where(hidden != 0, 0.0, ds)
    return ds


@triton.jit
def _causal_end(full, diag, vmax_ptr, CAUSAL: tl.constexpr):
    """Where a causal loop over blocks stops (or starts): ``diag``, the diagonal block, unless v holds an inf or a
    NaN (vmax, 0-d max |v|, not finite: every block, so that weight 0 times it gives NaN as in PyTorch's math path);
    ``full`` without ``CAUSAL``."""
    if CAUSAL:
        return tl.where(tl.load(vmax_ptr) < float("inf"), diag, full)
    return full


@triton.jit
def _inv_keep(scale_bits, CT: tl.constexpr):
    """Dropout's 1 / (1 - p) from its float64 bits (``dropout_scale``), as the dropout op scales (a float argument
    would reach the kernel as float32)."""
    return scale_bits.to(tl.int64).to(tl.float64, bitcast=True).to(CT)


@triton.jit
def _keep(seed, offset, zh, rows, cols, L, S, p_drop):
    """The dropout keep-mask of a block: rand(seed, offset + (zh*L + i)*S + j) >= p."""
    idx = (zh * L + rows[:, None].to(tl.int64)) * S + cols[None, :]
    return tl.rand(seed, offset.to(tl.int64) + idx) >= p_drop


@triton.jit(do_not_specialize=["seed", "offset", "p_drop", "scale_bits"])
def _attn_fwd_kernel(q_ptr, k_ptr, v_ptr, m_ptr, vmax_ptr, o_ptr, lse_ptr, H, L, S, E, EV, scale, seed, offset,
                     p_drop, scale_bits, sqz, sqh, sqm, sqk, skz, skh, skn, skk, svz, svh, svn, svk, smz, smh, smm, smn,
                     soz, soh, som, sok,
                     MASK: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, PREC: tl.constexpr,
                     CT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_DV: tl.constexpr):
    """O and lse of BLOCK_M queries of one (z, h): an online softmax over the key blocks (with ``CAUSAL``, those up
    to the diagonal, or all of them when vmax, a 0-d max |v|, is not finite). A row that sees no key gets zeros, or
    with ``MASK`` 3 or 4 (``masked_fill`` then softmax, or softmax alone) NaN, when S > 0."""
    start_m = tl.program_id(0) * BLOCK_M
    zh = tl.program_id(1).to(tl.int64)
    z, h = zh // H, zh % H
    rows = start_m + tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    q = tl.load(q_ptr + z * sqz + h * sqh + rows[:, None] * sqm + d[None, :] * sqk,
                mask=(rows[:, None] < L) & (d[None, :] < E), other=0.0)
    m_i = tl.full([BLOCK_M], -float("inf"), CT)
    l_i = tl.zeros([BLOCK_M], CT)
    nan_i = tl.zeros([BLOCK_M], tl.int32)         # 1: a NaN or +inf score, the row's softmax is NaN
    acc = tl.zeros([BLOCK_M, BLOCK_DV], CT)
    inv_keep = _inv_keep(scale_bits, CT)
    hi = _causal_end(S, tl.minimum(S, start_m + BLOCK_M), vmax_ptr, CAUSAL)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        k = tl.load(k_ptr + z * skz + h * skh + cols[:, None] * skn + d[None, :] * skk,
                    mask=(cols[:, None] < S) & (d[None, :] < E), other=0.0)
        s = _scores(q, k, rows, cols, z, h, L, S, scale, m_ptr, smz, smh, smm, smn, MASK, CAUSAL, PREC, CT)
        bad = (s != s) | (s == float("inf"))
        nan_i = tl.maximum(nan_i, tl.max(bad.to(tl.int32), axis=1))
        s = tl.where(bad, -float("inf"), s)               # the online softmax runs on the rest
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == -float("inf"), 0.0, m_new)   # rows that saw no key yet: p = 0, not NaN
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if DROPOUT:
            p = tl.where(_keep(seed, offset, zh, rows, cols, L, S, p_drop), p * inv_keep, 0.0)
        v = tl.load(v_ptr + z * svz + h * svh + cols[:, None] * svn + dv[None, :] * svk,
                    mask=(cols[:, None] < S) & (dv[None, :] < EV), other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC, out_dtype=CT)
        m_i = m_new
    seen = l_i > 0
    if MASK >= 3:                   # softmax of a row of -inf: NaN, as the ops it replaces
        nan_i = tl.where(seen | (S == 0), nan_i, 1)
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    lse = tl.where(seen, m_i + tl.log(tl.where(seen, l_i, 1.0)), float("inf"))   # +inf: backward's p = 0
    out = tl.where(nan_i[:, None] > 0, float("nan"), out)
    lse = tl.where(nan_i > 0, float("nan"), lse)                                  # NaN: backward's p = NaN
    tl.store(o_ptr + z * soz + h * soh + rows[:, None] * som + dv[None, :] * sok, out.to(o_ptr.dtype.element_ty),
             mask=(rows[:, None] < L) & (dv[None, :] < EV))
    tl.store(lse_ptr + zh * L + rows, lse.to(lse_ptr.dtype.element_ty), mask=rows < L)


@triton.jit
def _delta(o_ptr, do, z, h, rows, dvr, L, EV, soz, soh, som, sok, CT: tl.constexpr):
    """delta = rowsum(dO * O) of the query rows ``rows`` (the softmax backward's term), dO's tile ``do`` loaded."""
    o = tl.load(o_ptr + z * soz + h * soh + rows[:, None] * som + dvr[None, :] * sok,
                mask=(rows[:, None] < L) & (dvr[None, :] < EV), other=0.0)
    return tl.sum(o.to(CT) * do.to(CT), axis=1)


@triton.jit
def _dkdv_block(blk, zh, q_ptr, k_ptr, v_ptr, m_ptr, vmax_ptr, do_ptr, lse_ptr, o_ptr, dk_ptr, dv_ptr,
                H, L, S, E, EV, scale, seed, offset, p_drop, scale_bits,
                sqz, sqh, sqm, sqk, skz, skh, skn, skk, svz, svh, svn, svk, smz, smh, smm, smn,
                sdz, sdh, sdm, sdk, soz, soh, som, sok, sgkz, sgkh, sgkn, sgkk, sgvz, sgvh, sgvn, sgvk,
                MASK: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, PREC: tl.constexpr,
                CT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                BLOCK_DV: tl.constexpr):
    """dK and dV of key block ``blk`` (BLOCK_N keys) of one (z, h), walking the query blocks that can see them, with
    the delta = rowsum(dO * O) of each (dK, dV through their strides ``sgk*``, ``sgv*``: contiguous, or views of
    one buffer laid out as q, k, v are)."""
    start_n = blk * BLOCK_N
    z, h = zh // H, zh % H
    cols = start_n + tl.arange(0, BLOCK_N)
    d = tl.arange(0, BLOCK_D)
    dvr = tl.arange(0, BLOCK_DV)
    k = tl.load(k_ptr + z * skz + h * skh + cols[:, None] * skn + d[None, :] * skk,
                mask=(cols[:, None] < S) & (d[None, :] < E), other=0.0)
    v = tl.load(v_ptr + z * svz + h * svh + cols[:, None] * svn + dvr[None, :] * svk,
                mask=(cols[:, None] < S) & (dvr[None, :] < EV), other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], CT)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], CT)
    inv_keep = _inv_keep(scale_bits, CT)
    lo = _causal_end(0, (start_n // BLOCK_M) * BLOCK_M, vmax_ptr, CAUSAL)
    for start_m in range(lo, L, BLOCK_M):
        rows = start_m + tl.arange(0, BLOCK_M)
        q = tl.load(q_ptr + z * sqz + h * sqh + rows[:, None] * sqm + d[None, :] * sqk,
                    mask=(rows[:, None] < L) & (d[None, :] < E), other=0.0)
        do = tl.load(do_ptr + z * sdz + h * sdh + rows[:, None] * sdm + dvr[None, :] * sdk,
                     mask=(rows[:, None] < L) & (dvr[None, :] < EV), other=0.0)
        lse = tl.load(lse_ptr + zh * L + rows, mask=rows < L, other=float("inf")).to(CT)
        delta = _delta(o_ptr, do, z, h, rows, dvr, L, EV, soz, soh, som, sok, CT)
        s = _scores(q, k, rows, cols, z, h, L, S, scale, m_ptr, smz, smh, smm, smn, MASK, CAUSAL, PREC, CT)
        p = tl.exp(s - lse[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=PREC, out_dtype=CT)
        if DROPOUT:
            keep = _keep(seed, offset, zh, rows, cols, L, S, p_drop)
            dv += tl.dot(tl.trans(tl.where(keep, p * inv_keep, 0.0).to(do.dtype)), do, input_precision=PREC,
                         out_dtype=CT)
            dp = tl.where(keep, dp * inv_keep, 0.0)
        else:
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC, out_dtype=CT)
        ds = _hidden_zero(p * (dp - delta[:, None]), rows, cols, z, h, L, S, m_ptr, smz, smh, smm, smn, MASK)
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PREC, out_dtype=CT)
    tl.store(dk_ptr + z * sgkz + h * sgkh + cols[:, None] * sgkn + d[None, :] * sgkk,
             (dk * scale).to(dk_ptr.dtype.element_ty), mask=(cols[:, None] < S) & (d[None, :] < E))
    tl.store(dv_ptr + z * sgvz + h * sgvh + cols[:, None] * sgvn + dvr[None, :] * sgvk, dv.to(dv_ptr.dtype.element_ty),
             mask=(cols[:, None] < S) & (dvr[None, :] < EV))


@triton.jit
def _dq_block(blk, zh, q_ptr, k_ptr, v_ptr, m_ptr, vmax_ptr, do_ptr, lse_ptr, o_ptr, dq_ptr, dm_ptr,
              H, L, S, E, EV, scale, seed, offset, p_drop, scale_bits,
              sqz, sqh, sqm, sqk, skz, skh, skn, skk, svz, svh, svn, svk, smz, smh, smm, smn,
              sdz, sdh, sdm, sdk, soz, soh, som, sok, sgqz, sgqh, sgqm, sgqk,
              MASK: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, PREC: tl.constexpr,
              CT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
              BLOCK_DV: tl.constexpr, MASK_GRAD: tl.constexpr):
    """dQ of query block ``blk`` (BLOCK_M queries) of one (z, h), walking the key blocks they can see (dQ through its
    strides ``sgq*``); with MASK_GRAD also the score gradient dS, which is the gradient of an additive float mask
    (contiguous (Z, H, L, S))."""
    start_m = blk * BLOCK_M
    z, h = zh // H, zh % H
    rows = start_m + tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    dvr = tl.arange(0, BLOCK_DV)
    q = tl.load(q_ptr + z * sqz + h * sqh + rows[:, None] * sqm + d[None, :] * sqk,
                mask=(rows[:, None] < L) & (d[None, :] < E), other=0.0)
    do = tl.load(do_ptr + z * sdz + h * sdh + rows[:, None] * sdm + dvr[None, :] * sdk,
                 mask=(rows[:, None] < L) & (dvr[None, :] < EV), other=0.0)
    lse = tl.load(lse_ptr + zh * L + rows, mask=rows < L, other=float("inf")).to(CT)
    delta = _delta(o_ptr, do, z, h, rows, dvr, L, EV, soz, soh, som, sok, CT)
    dq = tl.zeros([BLOCK_M, BLOCK_D], CT)
    inv_keep = _inv_keep(scale_bits, CT)
    hi = _causal_end(S, tl.minimum(S, start_m + BLOCK_M), vmax_ptr, CAUSAL)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        k = tl.load(k_ptr + z * skz + h * skh + cols[:, None] * skn + d[None, :] * skk,
                    mask=(cols[:, None] < S) & (d[None, :] < E), other=0.0)
        v = tl.load(v_ptr + z * svz + h * svh + cols[:, None] * svn + dvr[None, :] * svk,
                    mask=(cols[:, None] < S) & (dvr[None, :] < EV), other=0.0)
        s = _scores(q, k, rows, cols, z, h, L, S, scale, m_ptr, smz, smh, smm, smn, MASK, CAUSAL, PREC, CT)
        p = tl.exp(s - lse[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=PREC, out_dtype=CT)
        if DROPOUT:
            dp = tl.where(_keep(seed, offset, zh, rows, cols, L, S, p_drop), dp * inv_keep, 0.0)
        ds = _hidden_zero(p * (dp - delta[:, None]), rows, cols, z, h, L, S, m_ptr, smz, smh, smm, smn, MASK)
        if MASK_GRAD:
            tl.store(dm_ptr + (zh * L + rows[:, None]) * S + cols[None, :], ds.to(dm_ptr.dtype.element_ty),
                     mask=(rows[:, None] < L) & (cols[None, :] < S))
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC, out_dtype=CT)
    tl.store(dq_ptr + z * sgqz + h * sgqh + rows[:, None] * sgqm + d[None, :] * sgqk,
             (dq * scale).to(dq_ptr.dtype.element_ty), mask=(rows[:, None] < L) & (d[None, :] < E))


@triton.jit(do_not_specialize=["seed", "offset", "p_drop", "scale_bits"])
def _attn_bwd_kernel(q_ptr, k_ptr, v_ptr, m_ptr, vmax_ptr, do_ptr, lse_ptr, o_ptr, dq_ptr, dk_ptr, dv_ptr, dm_ptr,
                     H, L, S, E, EV, scale, seed, offset, p_drop, scale_bits,
                     sqz, sqh, sqm, sqk, skz, skh, skn, skk, svz, svh, svn, svk, smz, smh, smm, smn,
                     sdz, sdh, sdm, sdk, soz, soh, som, sok, sgqz, sgqh, sgqm, sgqk, sgkz, sgkh, sgkn, sgkk,
                     sgvz, sgvh, sgvn, sgvk, Q_BLOCKS,
                     MASK: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, PREC: tl.constexpr,
                     CT: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, MASK_GRAD: tl.constexpr,
                     Q_BLOCK_M: tl.constexpr, Q_BLOCK_N: tl.constexpr, KV_BLOCK_M: tl.constexpr,
                     KV_BLOCK_N: tl.constexpr):
    """The backward of one (z, h) (program axis 1) in one launch: programs [0, Q_BLOCKS) of axis 0 each compute the
    dQ of a block of Q_BLOCK_M queries (``_dq_block``), the others the dK and dV of a block of KV_BLOCK_N keys
    (``_dkdv_block``). Each computes the delta = rowsum(dO * O) of the query rows it reads, so the two kinds share
    no intermediate and run side by side; no gradient is accumulated with atomics."""
    blk = tl.program_id(0)
    zh = tl.program_id(1).to(tl.int64)
    if blk < Q_BLOCKS:
        _dq_block(blk, zh, q_ptr, k_ptr, v_ptr, m_ptr, vmax_ptr, do_ptr, lse_ptr, o_ptr, dq_ptr, dm_ptr,
                  H, L, S, E, EV, scale, seed, offset, p_drop, scale_bits,
                  sqz, sqh, sqm, sqk, skz, skh, skn, skk, svz, svh, svn, svk, smz, smh, smm, smn,
                  sdz, sdh, sdm, sdk, soz, soh, som, sok, sgqz, sgqh, sgqm, sgqk,
                  MASK, CAUSAL, DROPOUT, PREC, CT, Q_BLOCK_M, Q_BLOCK_N, BLOCK_D, BLOCK_DV, MASK_GRAD)
    else:
        _dkdv_block(blk - Q_BLOCKS, zh, q_ptr, k_ptr, v_ptr, m_ptr, vmax_ptr, do_ptr, lse_ptr, o_ptr, dk_ptr, dv_ptr,
                    H, L, S, E, EV, scale, seed, offset, p_drop, scale_bits,
                    sqz, sqh, sqm, sqk, skz, skh, skn, skk, svz, svh, svn, svk, smz, smh, smm, smn,
                    sdz, sdh, sdm, sdk, soz, soh, som, sok, sgkz, sgkh, sgkn, sgkk, sgvz, sgvh, sgvn, sgvk,
                    MASK, CAUSAL, DROPOUT, PREC, CT, KV_BLOCK_M, KV_BLOCK_N, BLOCK_D, BLOCK_DV)


# ====================================================================================================================
# Launch
# ====================================================================================================================

def _blocks(E, EV, dtype):
    """(BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, num_warps). tl.dot needs dims >= 16; the interpreter runs small blocks
    so that tests cover several blocks and partial last ones. On a GPU, head dims above 64 and float64 take
    narrower key blocks to stay within registers."""
    bd, bdv = max(16, next_pow2(E)), max(16, next_pow2(EV))
    if INTERPRET:
        return 16, 16, bd, bdv, 4
    if dtype is D.float64:
        return 32, 32, bd, bdv, 4
    if uses_fma(dtype):          # float32 "ieee" dots run on CUDA cores: 64 x 64 with 4 warps spilled 7-29 KB
        return 64, 32, bd, bdv, 8
    return (64, 32, bd, bdv, 8) if max(bd, bdv) > 64 else (64, 64, bd, bdv, 4)


def _bwd_blocks(bm, bn, bd, bdv, warps, dtype):
    """(Q_BLOCK_M, Q_BLOCK_N, KV_BLOCK_M, KV_BLOCK_N, num_warps, num_stages) of the backward: the forward's blocks,
    at most 32 keys wide for the dK/dV programs, which hold k, v, dk and dv tiles across their loop (64 x 64 with 4
    warps spilled in float16/bfloat16). For float32 "ieee" (CUDA-core FMA dots) 32 x 16 for dQ (the forward's 64 x
    32 with 8 warps, and 32 x 32, spilled 4-8 B under triton 3.6's ptxas) and 16 x 16 for dK/dV, 4 warps and no
    software pipelining (with it every dK/dV tile ``tritorch compile-check`` tried spilled, 64 x 64 by 13-30 KB; 32
    x 16 with 8 warps spilled 8-12 B in the dropout specialization under triton 3.6 and 3.9); for head dims above
    64 16 x 16 for both with 8 warps (with 4, or dQ 32 x 16, the one launch spilled 300-550 B, triton 3.9)."""
    if INTERPRET:
        return bm, bn, bm, bn, warps, 3
    if uses_fma(dtype):
        return (32, 16, 16, 16, 4, 1) if max(bd, bdv) <= 64 else (16, 16, 16, 16, 8, 1)
    return bm, bn, bm, min(bn, 32), warps, 3


def _strides4(t):
    return list(t._stride)


def _packed_grads(q, k, v):
    """dq, dk, dv as views of one new buffer with the relative layout of q, k, v, when these are equally shaped
    and strided views of one storage ``d`` elements apart that do not overlap (the heads of one packed projection,
    ``nn.MultiheadAttention``'s self-attention): the gradient of the projection is then that buffer, no copy
    (``unbind``'s backward sees it). None otherwise."""
    if not (q._storage is k._storage is v._storage and q._shape == k._shape == v._shape and
            q._stride == k._stride == v._stride and q.dtype is k.dtype is v.dtype and q.numel() > 0):
        return None
    d = k._offset - q._offset
    if d <= 0 or v._offset - k._offset != d:
        return None
    dims = sorted([(st, n) for st, n in zip(q._stride, q._shape) if n > 1] + [(d, 3)])
    if any(st < pst * pn for (pst, pn), (st, _) in zip(dims, dims[1:])) or dims[0][0] <= 0:
        return None                         # overlapping elements: a sum of gradients, not one buffer
    span = 2 * d + sum((n - 1) * st for st, n in zip(q._stride, q._shape)) + 1
    buf = empty((span,), q.dtype, q.device)
    return [buf._view(q._shape, q._stride, buf._offset + i * d) for i in range(3)]


class _Launch:
    """The 4-d views and the constexprs shared by the forward and backward launches."""

    def __init__(self, q, k, v, mask, causal, scale, seed, offset, p_drop, fill=False):
        self.q, self.k, self.v, self.mask = q, k, v, mask
        Z, H, L, E = q._shape
        self.Z, self.H, self.L, self.E, self.S, self.EV = Z, H, L, E, k._shape[2], v._shape[3]
        self.scale, self.seed, self.offset, self.p_drop = float(scale), int(seed), int(offset), float(p_drop)
        self.kind = (4 if fill else 0) if mask is None else 3 if fill else 1 if mask.dtype is D.bool_ else 2
        self.causal = bool(causal)
        self.vmax = nonfinite_probe(v) if self.causal and v.numel() else None
        self.bm, self.bn, self.bd, self.bdv, self.warps = _blocks(E, self.EV, q.dtype)
        if Z * H > 65535:
            raise RuntimeError(f"scaled_dot_product_attention: {Z * H} batch x head pairs exceed the 65535 of one "
                               "grid axis; split the batch")

    def common(self):
        m = self.mask if self.mask is not None else self.q
        mst = _strides4(self.mask) if self.mask is not None else [0, 0, 0, 0]
        return [ptr(self.q), ptr(self.k), ptr(self.v), ptr(m), ptr(self.vmax if self.vmax is not None else m)], [
            self.H, self.L, self.S, self.E, self.EV, self.scale, self.seed, self.offset, self.p_drop,
            dropout_scale(self.p_drop)[1],
            *_strides4(self.q), *_strides4(self.k), *_strides4(self.v), *mst]

    def consts(self):
        return dict(MASK=self.kind, CAUSAL=self.causal, DROPOUT=self.p_drop > 0, PREC=_dot_precision(self.q.dtype),
                    CT=ACC[self.q.dtype], BLOCK_M=self.bm, BLOCK_N=self.bn, BLOCK_D=self.bd, BLOCK_DV=self.bdv,
                    num_warps=self.warps)

    def forward(self):
        Z, H, L, EV = self.Z, self.H, self.L, self.EV
        if self.q._stride[1] < self.q._stride[2]:
            # q is a (Z, L, H, E) tensor seen as (Z, H, L, E) (heads of a projection): out takes that layout too, as
            # PyTorch's does, so that merging the heads back ((Z, L, H * EV)) is a view, not a copy
            out = empty((Z, L, H, EV), self.q.dtype, self.q.device)
            out = out._view((Z, H, L, EV), (out._stride[0], out._stride[2], out._stride[1], 1), out._offset)
        else:
            out = empty((Z, H, L, EV), self.q.dtype, self.q.device)
        lse = empty((self.Z, self.H, self.L), D.float64 if self.q.dtype is D.float64 else D.float32, self.q.device)
        if out.numel():
            ptrs, args = self.common()
            _attn_fwd_kernel[(cdiv(self.L, self.bm), self.Z * self.H)](
                *ptrs, ptr(out), ptr(lse), *args, *_strides4(out), **self.consts())
        return out, lse

    def backward(self, out, lse, g, mask_grad=False):
        """(dq, dk, dv, dmask or None) as 4-d tensors: contiguous, or (``_packed_grads``) laid out as q, k, v."""
        dq, dk, dv = _packed_grads(self.q, self.k, self.v) or \
            [empty(t._shape, t.dtype, t.device) for t in (self.q, self.k, self.v)]
        dm = empty((self.Z, self.H, self.L, self.S), self.q.dtype, self.q.device) if mask_grad else None
        q_bm, q_bn, kv_bm, kv_bn, warps, stages = _bwd_blocks(self.bm, self.bn, self.bd, self.bdv, self.warps,
                                                               self.q.dtype)
        q_blocks = cdiv(self.L, q_bm)
        blocks = q_blocks + cdiv(self.S, kv_bn)
        if blocks:
            ptrs, args = self.common()
            tail = {k: v for k, v in self.consts().items() if k not in ("BLOCK_M", "BLOCK_N")}
            _attn_bwd_kernel[(blocks, self.Z * self.H)](
                *ptrs, ptr(g), ptr(lse), ptr(out), ptr(dq), ptr(dk), ptr(dv), ptr(dm if mask_grad else dq), *args,
                *_strides4(g), *_strides4(out), *_strides4(dq), *_strides4(dk), *_strides4(dv), q_blocks,
                **dict(tail, num_warps=warps, num_stages=stages), MASK_GRAD=mask_grad, Q_BLOCK_M=q_bm,
                Q_BLOCK_N=q_bn, KV_BLOCK_M=kv_bm, KV_BLOCK_N=kv_bn)
        return dq, dk, dv, dm


# ====================================================================================================================
# NumPy references
# ====================================================================================================================

def _np_scores(q, k, mask, causal, scale, fill=False):
    """q @ k^T * scale + bias, as ``_scores``: s - inf where a boolean mask hides a key (with ``fill``: -inf where
    it is True), -inf where causal does."""
    s = (q @ np.swapaxes(k, -1, -2)) * scale
    L, S = s.shape[-2:]
    if mask is not None and fill:
        s = np.where(mask, -np.inf, s)
    elif mask is not None:
        s = np.where(mask, s, s - np.inf) if mask.dtype == np.bool_ else s + mask
    if causal:
        s = np.where(np.tril(np.ones((L, S), dtype=bool)), s, -np.inf)
    return s


def _np_keep(shape, seed, offset, p):
    n = int(np.prod(shape))
    return dropout_mask_np(n, 1, seed, offset, p).reshape(shape)


def np_sdpa_forward(q, k, v, mask=None, causal=False, scale=None, p_drop=0.0, seed=0, offset=0, fill=False):
    """(out, lse, weights) of attention in the type of the arrays, the softmax written out (a row that sees no key
    gets weights 0 and lse +inf, with ``fill`` NaN; one with a NaN or +inf score NaN); ``weights`` are the
    probabilities before dropout."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        s = _np_scores(q, k, mask, causal, scale, fill)
        bad = np.isnan(s) | (s == np.inf)
        nan_rows = np.any(bad, axis=-1, keepdims=True)
        if fill and s.shape[-1]:                   # masked_attention: softmax of a row of -inf is NaN
            nan_rows |= np.all(s == -np.inf, axis=-1, keepdims=True)
        s = np.where(bad, -np.inf, s)
        m = np.max(s, axis=-1, keepdims=True) if s.shape[-1] else np.full(s.shape[:-1] + (1,), -np.inf, s.dtype)
        m = np.where(np.isneginf(m), 0.0, m)
        e = np.exp(s - m)
        l = np.sum(e, axis=-1, keepdims=True)
        w = np.where(nan_rows, np.nan, np.where(l > 0, e / np.where(l > 0, l, 1.0), 0.0)).astype(q.dtype)
        lse = np.where(nan_rows, np.nan, np.where(l > 0, m + np.log(np.where(l > 0, l, 1.0)), np.inf))[..., 0]
    wd = w
    if p_drop > 0:
        wd = np.where(_np_keep(w.shape, seed, offset, p_drop), w / (1.0 - p_drop), 0.0).astype(q.dtype)
    return (wd @ v).astype(q.dtype), lse.astype(q.dtype), w


def np_sdpa_backward(q, k, v, g, mask=None, causal=False, scale=None, p_drop=0.0, seed=0, offset=0, fill=False):
    """(dq, dk, dv, ds) of ``np_sdpa_forward`` for the output gradient ``g``, in the full broadcast batch shape;
    ds, the gradient of the scores, is that of an additive float mask (with ``fill``, 0 where the mask hides)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    _, _, w = np_sdpa_forward(q, k, v, mask, causal, scale, p_drop, seed, offset, fill)
    keep = _np_keep(w.shape, seed, offset, p_drop) if p_drop > 0 else None
    wd = w if keep is None else np.where(keep, w / (1.0 - p_drop), 0.0)
    dv = np.swapaxes(wd, -1, -2) @ g
    dp = g @ np.swapaxes(v, -1, -2)
    if keep is not None:
        dp = np.where(keep, dp / (1.0 - p_drop), 0.0)
    with np.errstate(invalid="ignore"):
        ds = w * (dp - np.sum(dp * w, axis=-1, keepdims=True))
        if fill and mask is not None:
            ds = np.where(mask, 0.0, ds)
    dq = (ds @ k) * scale
    dk = (np.swapaxes(ds, -1, -2) @ q) * scale
    return dq.astype(q.dtype), dk.astype(q.dtype), dv.astype(q.dtype), ds.astype(q.dtype)


# ====================================================================================================================
# The autograd Function and the public function
# ====================================================================================================================

def _to4(t, batch):
    """``t`` expanded to ``batch + t.shape[-2:]`` and folded to 4-d (Z, H, rows, cols), a view where it can be."""
    t = t.expand(tuple(batch) + tuple(t._shape[-2:]))
    if len(batch) == 2:
        return t
    if len(batch) < 2:
        return t.reshape((1,) * (2 - len(batch)) + tuple(t._shape))
    return t.reshape((-1,) + tuple(t._shape[-3:]))


def _host(t, ct):
    return None if t is None else np.asarray(t._np, dtype=ct if t.dtype is not D.bool_ else np.bool_)


class SDPA(Function):
    """Attention; ``fill``: the boolean mask marks the hidden keys, with ``masked_fill`` + softmax semantics
    (``masked_attention``)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, causal, scale, p_drop, seed, offset, fill=False):
        batch = broadcast_shapes(q._shape[:-2], k._shape[:-2], v._shape[:-2])
        L, S, EV = q._shape[-2], k._shape[-2], v._shape[-1]
        ctx._name = "ScaledDotProductFlashAttentionBackward0" if mask is None else \
            "ScaledDotProductEfficientAttentionBackward0"
        ctx.meta = (batch, causal, scale, p_drop, seed, offset, fill)
        if q._storage.device.type == "cpu":
            ct = np_ct(q.dtype)
            out, lse, _ = np_sdpa_forward(_host(q, ct), _host(k, ct), _host(v, ct), _host(mask, ct), causal, scale,
                                          p_drop, seed, offset, fill)
            out = wrap(np.broadcast_to(out, batch + (L, EV)).astype(q.dtype.np), q.dtype, q.device)
            ctx.save_for_backward(q, k, v, mask, out)
            return out
        qi, ki, vi, mi = (interp_bf16_in(t) for t in (q, k, v, mask))
        m4 = None if mi is None else _to4(mi.expand(batch + (L, S)), batch)
        run = _Launch(_to4(qi, batch), _to4(ki, batch), _to4(vi, batch), m4, causal, scale, seed, offset, p_drop,
                      fill)
        o4, lse = run.forward()
        out = o4.reshape(batch + (L, EV))
        if out.dtype is not q.dtype:
            out = out.to(q.dtype)
        ctx.run, ctx.lse = run, lse
        ctx.save_for_backward(q, k, v, mask, o4)
        return out

    @staticmethod
    def backward(ctx, g):
        q, k, v, mask, out = ctx.saved_tensors
        batch, causal, scale, p_drop, seed, offset, fill = ctx.meta
        mask_grad = mask is not None and mask.dtype.is_floating_point and ctx.needs_input_grad[3]
        ins = (q, k, v, mask) if mask_grad else (q, k, v)
        if STATE.enabled:
            grads = _composed_backward(q, k, v, mask, causal, scale, p_drop, g, fill, seed, offset)
        elif q._storage.device.type == "cpu":
            ct = np_ct(q.dtype)
            grads = np_sdpa_backward(_host(q, ct), _host(k, ct), _host(v, ct),
                                     np.broadcast_to(g._np, batch + out._shape[-2:]).astype(ct), _host(mask, ct),
                                     causal, scale, p_drop, seed, offset, fill)
            grads = [wrap(np.ascontiguousarray(a).astype(t.dtype.np), t.dtype, t.device) for a, t in zip(grads, ins)]
        else:
            grads4 = ctx.run.backward(out, ctx.lse, _to4(interp_bf16_in(g), batch), mask_grad)
            grads = []
            for d4, t in zip(grads4, ins):
                shape = batch + tuple(d4._shape[-2:])
                d = d4 if d4._shape == shape else d4.reshape(shape)     # (no view: a leaf's .grad adopts it)
                grads.append(d if d.dtype is t.dtype else d.to(t.dtype))
        grads = [sum_to(d, t._shape) for d, t in zip(grads, ins)]
        return (*grads[:3], grads[3] if mask_grad else None, None, None, None, None, None, None)


def _composed_backward(q, k, v, mask, causal, scale, p_drop, g, fill=False, seed=0, offset=0):
    """(dq, dk, dv) written in tensor ops, which record: the backward of create_graph=True (no dropout but in
    ``masked_attention``, whose dropout is the ``dropout`` op's on the weights, the same counters)."""
    if p_drop > 0 and not fill:
        raise NotImplementedError("scaled_dot_product_attention: double backward with dropout_p > 0 is not supported")
    L, S = q._shape[-2], k._shape[-2]
    s = (q @ k.transpose(-2, -1)) * scale
    if fill:                        # masked_attention: the ops it stands for, and masked_fill's backward
        w = (s if mask is None else s.masked_fill(mask, float("-inf"))).softmax(-1)
        drop = (lambda t: Dropout.apply(t, seed, offset, p_drop, 1)) if p_drop > 0 else (lambda t: t)
        dv = drop(w).transpose(-2, -1) @ g
        dp = drop(g @ v.transpose(-2, -1))
        ds = w * (dp - (dp * w).sum(-1, keepdim=True))
        ds = ds if mask is None else ds.masked_fill(mask, 0.0)
        return [ds @ k * scale, ds.transpose(-2, -1) @ q * scale, dv, ds]
    if mask is not None and mask.dtype is D.bool_:
        s = s + where(mask, 0.0, float("-inf")).to(s.dtype)      # a bias, as the kernels: NaN - inf stays NaN
    elif mask is not None:
        s = s + mask
    if causal:
        upper = Tensor._wrap_numpy(np.triu(np.ones((L, S), dtype=bool), 1), q.device, D.bool_)
        s = s.masked_fill(upper, float("-inf"))
    w = s.softmax(-1)
    w = w.masked_fill((s == float("-inf")).all(-1, keepdim=True), 0.0)   # rows that see no key: weights 0
    dv = w.transpose(-2, -1) @ g
    dp = g @ v.transpose(-2, -1)
    ds = w * (dp - (dp * w).sum(-1, keepdim=True))
    return [ds @ k * scale, ds.transpose(-2, -1) @ q * scale, dv, ds]


def _check(query, key, value, attn_mask, dropout_p, is_causal):
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"scaled_dot_product_attention(): argument '{name}' must be Tensor, not "
                            f"{type(t).__name__}")
        if t.ndim < 2:
            raise RuntimeError(f"scaled_dot_product_attention: expected {name} to have at least 2 dimensions, but "
                               f"got a {t.ndim}-D tensor of shape {tuple(t._shape)}")
    check_same_device("scaled_dot_product_attention", query, key, value, attn_mask)
    if not (query.dtype is key.dtype is value.dtype):
        raise RuntimeError("Expected query, key, and value to have the same dtype, but got query.dtype: "
                           f"{query.dtype} key.dtype: {key.dtype} and value.dtype: {value.dtype} instead.")
    if not query.dtype.is_floating_point:
        raise RuntimeError(f"scaled_dot_product_attention: expected a floating point query, but got {query.dtype}")
    if query._shape[-1] != key._shape[-1]:
        raise RuntimeError(f"scaled_dot_product_attention: query {tuple(query._shape)} and key {tuple(key._shape)} "
                           f"must have the same embedding size (last dim), but got {query._shape[-1]} and "
                           f"{key._shape[-1]}")
    if key._shape[-2] != value._shape[-2]:
        raise RuntimeError(f"scaled_dot_product_attention: key {tuple(key._shape)} and value "
                           f"{tuple(value._shape)} must have the same sequence length (dim -2)")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout probability has to be in [0, 1), but got {dropout_p}")
    if attn_mask is not None:
        if is_causal:
            raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                               "is_causal=True")
        if attn_mask.dtype is not D.bool_ and attn_mask.dtype is not query.dtype:
            raise RuntimeError("Expected attn_mask dtype to be bool or float or to match query dtype, but got "
                               f"attn_mask.dtype: {attn_mask.dtype} and  query.dtype: {query.dtype} instead.")


def _weights_shape(query, key, value, mask, name):
    """(batch, L, S) of the attention weights, the mask (if any) checked to broadcast to them."""
    batch = broadcast_shapes(query._shape[:-2], key._shape[:-2], value._shape[:-2])
    L, S = query._shape[-2], key._shape[-2]
    if mask is not None:
        target = batch + (L, S)
        try:
            ok = broadcast_shapes(tuple(mask._shape), target) == target
        except RuntimeError:
            ok = False
        if not ok:
            raise RuntimeError(f"{name}: attn_mask of shape {tuple(mask._shape)} cannot be broadcast to the "
                               f"attention weights' shape {target} (batch, L, S)")
    return batch, L, S


@register("scaled_dot_product_attention", method=False, function=False)
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """softmax(query @ key^T * scale + mask) @ value in one fused flash-attention kernel (see the module doc)."""
    _check(query, key, value, attn_mask, dropout_p, is_causal)
    if enable_gqa:
        raise NotImplementedError("scaled_dot_product_attention: enable_gqa=True is not supported")
    batch, L, S = _weights_shape(query, key, value, attn_mask, "scaled_dot_product_attention")
    scale = 1.0 / math.sqrt(query._shape[-1]) if scale is None else float(scale)
    seed = offset = 0
    if dropout_p > 0:
        n = L * S
        for b in batch:
            n *= b
        seed, offset = _generator(None, query._storage.device)._take(max(n, 1))
    return SDPA.apply(query, key, value, attn_mask, bool(is_causal), scale, float(dropout_p), seed, offset)


def masked_attention(query, key, value, mask, scale, dropout_p=0.0):
    """``dropout(softmax((query @ key^T * scale).masked_fill(mask, -inf), -1), dropout_p) @ value`` (no mask: None)
    in the flash-attention kernels, with those ops' semantics: a hidden score is -inf whatever it was, a row whose
    keys are all hidden is NaN, no gradient flows through a hidden score, and dropout (training mode) draws the
    counters the ``dropout`` op would and drops the same weights. What ``tritorch.compile``'s ``fuse_attention``
    makes of attention written in ops; ``mask``: boolean, True where a key is hidden."""
    _check(query, key, value, mask, dropout_p, False)
    if mask is not None and mask.dtype is not D.bool_:
        raise RuntimeError(f"masked_attention: expected a boolean mask, but got {mask.dtype}")
    batch, L, S = _weights_shape(query, key, value, mask, "masked_attention")
    seed = offset = 0
    if dropout_p > 0:
        seed, offset = _generator(None, query._storage.device)._take(max(math.prod(batch) * L * S, 1))
    return SDPA.apply(query, key, value, mask, False, float(scale), float(dropout_p), seed, offset, True)
