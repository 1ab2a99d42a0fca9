"""Reductions: sum, mean, prod, max/min (values and indices), amax/amin, argmax/argmin, var/std, logsumexp,
all/any and norm, with their backward rules.

Two Triton kernels serve the whole family; each takes the op as ``tl.constexpr`` codes:

- ``_reduce_rows_kernel`` reduces the last axis of an (M, N) view: BLOCK_M rows per program, N walked in BLOCK_N
  chunks. It serves every reduction whose reduced dims are innermost in memory (``x.sum(-1)``).
- ``_reduce_mid_kernel`` reduces the middle axis of an (A, R, B) view: a program owns BLOCK_B neighbouring columns
  of one ``a`` and walks R in BLOCK_R chunks, so reducing dim 0 of a row-major matrix reads whole rows, coalesced,
  and needs no transposed copy.

A reduction is planned on the input's strides (``_plan``): dims are put in memory order, size-1 dims dropped and
neighbours merged; the result fits one of the two kernels or, when the reduced dims are scattered through memory,
is first gathered by a permute + contiguous copy. Each op is ``OP`` (how values combine: sum, prod, max, min, argmax,
argmin, scaled sum of squares) with an elementwise ``PRE`` transform of the input (|x|, x², |x|^p, x != 0,
|x - shift|, exp(x - shift)) and a ``POST`` transform of the result (divide, sqrt, p-th root, log + shift), so
``var`` is two passes (the mean, then the centered sum of squares: stable) and ``logsumexp`` two passes (the max,
then the shifted sum of exps).
The centered squares are summed scaled (``SSQ``, as LAPACK's nrm2: a (sum, scale) pair standing for scale² * sum,
rescaled whenever a larger |x - mean| comes), so no square overflows or underflows: std of float32 [1e20, -1e20]
is 1.41e20.
Everything accumulates in float32 for half types, float64 for float64 and int64 for integer sums.
The NumPy reference of each plan step, ``_reduce_np``, takes the same arguments as the Triton path.
"""
import builtins
import collections
import contextlib
import math

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D, autotune
from tritorch._device import INTERPRET, device
from tritorch._tensor import Tensor, contiguous_strides, register
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from ._launch import TL, ptr, next_pow2, cdiv, interp_bf16_in
from tritorch._creation import full
from ._common import empty, sum_to, wrap
from .copy import copy_into, fill_
from .elementwise import where, binary

__all__ = ["force_blocks"]

# OP: how values combine (SSQ: the scaled sum of squares of the values, which must be >= 0)
SUM, PROD, MAX, MIN, ARGMAX, ARGMIN, SSQ = 0, 1, 2, 3, 4, 5, 6
# PRE: what is combined, per element (``s`` is the per-output shift, ``p`` the norm's order)
P_NONE, P_ABS, P_SQUARE, P_POW, P_NONZERO, P_SUB_ABS, P_SUB_EXP = 0, 1, 2, 3, 4, 5, 6
# POST: what is stored, per output
Q_NONE, Q_DIV, Q_SQRT_DIV, Q_ROOT, Q_LOG_ADD = 0, 1, 2, 3, 4


# ====================================================================================================================
# The kernels
# ====================================================================================================================

@triton.jit
def _max_nan(a, b):
    """max that propagates NaN, as PyTorch's max/amax do."""
    return tl.where((a > b) | (a != a), a, b)


@triton.jit
def _min_nan(a, b):
    return tl.where((a < b) | (a != a), a, b)


@triton.jit
def _mul(a, b):
    return a * b


@triton.jit
def _argmax_combine(a, ia, b, ib):
    """(value, index) pairs: the larger wins, NaN beats everything, ties go to the smaller index (first one)."""
    a_nan = a != a
    pick_a = (a > b) | ((a == b) & (ia < ib)) | (a_nan & ((b == b) | (ia < ib)))
    return tl.where(pick_a, a, b), tl.where(pick_a, ia, ib)


@triton.jit
def _argmin_combine(a, ia, b, ib):
    a_nan = a != a
    pick_a = (a < b) | ((a == b) & (ia < ib)) | (a_nan & ((b == b) | (ia < ib)))
    return tl.where(pick_a, a, b), tl.where(pick_a, ia, ib)


@triton.jit
def _ssq_combine(q1, s1, q2, s2):
    """Scaled sums of squares: (q, s) stands for s² * q. The larger scale wins and the other sum is rescaled to
    it; a NaN scale poisons the sum, an infinite one keeps it finite (the result is then inf)."""
    s = _max_nan(s1, s2)
    r1 = tl.where(s1 == s, 1.0, s1 / s)
    r2 = tl.where(s2 == s, 1.0, s2 / s)
    return q1 * r1 * r1 + q2 * r2 * r2, s


@triton.jit
def _shift_of(s, PRE: tl.constexpr):
    """The shift subtracted before exp: the max, or 0 where the max is infinite (all -inf rows, +inf entries)."""
    if PRE == 6:
        s = tl.where(tl.abs(s) == float("inf"), 0.0, s)
    return s


@triton.jit
def _pre(x, s, p, PRE: tl.constexpr, CT: tl.constexpr):
    if PRE == 4:
        return (x != 0).to(CT)
    v = x.to(CT)
    if PRE == 1:
        v = tl.abs(v)
    elif PRE == 2:
        v = v * v
    elif PRE == 3:
        v = tl.exp(p * tl.log(tl.abs(v)))
    elif PRE == 5:
        v = tl.abs(v - s)
    elif PRE == 6:
        v = tl.exp(v - s)
    return v


@triton.jit
def _combine(acc, iacc, v, iv, OP: tl.constexpr):
    """Fold the values ``v`` (at reduced-axis positions ``iv``) into the running accumulator, elementwise."""
    if OP == 0:
        acc = acc + v
    elif OP == 1:
        acc = acc * v
    elif OP == 2:
        acc = _max_nan(acc, v)
    elif OP == 3:
        acc = _min_nan(acc, v)
    elif OP == 4:
        acc, iacc = _argmax_combine(acc, iacc, v, iv)
    elif OP == 5:
        acc, iacc = _argmin_combine(acc, iacc, v, iv)
    else:
        acc, iacc = _ssq_combine(acc, iacc, 1.0, v)       # SSQ: iacc holds the scale, v is one (1, |v|) pair
    return acc, iacc


@triton.jit
def _finish(acc, iacc, AXIS: tl.constexpr, OP: tl.constexpr):
    """Reduce the accumulator tile along ``AXIS``; returns (values, indices), indices only meaningful for arg ops
    (for SSQ: (sums, scales))."""
    if OP == 0:
        res = tl.sum(acc, axis=AXIS)
        ires = tl.zeros_like(res).to(tl.int64)
    elif OP == 1:
        res = tl.reduce(acc, AXIS, _mul)
        ires = tl.zeros_like(res).to(tl.int64)
    elif OP == 2:
        res = tl.reduce(acc, AXIS, _max_nan)
        ires = tl.zeros_like(res).to(tl.int64)
    elif OP == 3:
        res = tl.reduce(acc, AXIS, _min_nan)
        ires = tl.zeros_like(res).to(tl.int64)
    elif OP == 4:
        res, ires = tl.reduce((acc, iacc), AXIS, _argmax_combine)
    elif OP == 5:
        res, ires = tl.reduce((acc, iacc), AXIS, _argmin_combine)
    else:
        res, ires = tl.reduce((acc, iacc), AXIS, _ssq_combine)
    return res, ires


@triton.jit
def _ssq_post(q, scale, div, POST: tl.constexpr):
    """The variance (POST 1) or its square root (POST 2) from the scaled sum of squares: scale² * q / div."""
    if POST == 2:
        res = scale * tl.sqrt(q / div)
    else:
        res = scale * (q / div) * scale
    return res


@triton.jit
def _post(res, s, div, p, POST: tl.constexpr):
    if POST == 1:
        res = res / div
    elif POST == 2:
        res = tl.sqrt(res / div)
    elif POST == 3:
        res = tl.exp(tl.log(res) / p)
    elif POST == 4:
        res = tl.log(res) + s
    return res


@triton.jit
def _reduce_rows_kernel(x_ptr, s_ptr, out_ptr, idx_ptr, M, N, sxm, sxn, som, ident, p, div,
                        OP: tl.constexpr, PRE: tl.constexpr, POST: tl.constexpr, CT: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """out[m] = POST(OP_n PRE(x[m, n])) for an (M, N) view with strides (sxm, sxn); out (and idx) at m * som.

    Each program owns BLOCK_M rows and keeps a BLOCK_M x BLOCK_N tile of partial results while it walks N; the tile
    is reduced across its columns once at the end. Masked-off lanes hold ``ident``, the identity of OP."""
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    s_raw = tl.zeros([BLOCK_M], CT)
    if PRE >= 5:
        s_raw = tl.load(s_ptr + rows * som, mask=row_mask, other=0).to(CT)
    s = _shift_of(s_raw, PRE)[:, None]
    acc = (tl.zeros([BLOCK_M, BLOCK_N], CT) + ident).to(CT)
    if OP == 6:
        iacc = tl.zeros([BLOCK_M, BLOCK_N], CT)
    else:
        iacc = tl.zeros([BLOCK_M, BLOCK_N], tl.int64)
    x_rows = x_ptr + rows[:, None] * sxm
    for start in range(0, N, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N).to(tl.int64)
        mask = row_mask[:, None] & (cols[None, :] < N)
        x = tl.load(x_rows + cols[None, :] * sxn, mask=mask, other=0)
        v = tl.where(mask, _pre(x, s, p, PRE, CT), ident).to(CT)
        acc, iacc = _combine(acc, iacc, v, cols[None, :] + tl.zeros([BLOCK_M, BLOCK_N], tl.int64), OP)
    res, ires = _finish(acc, iacc, 1, OP)
    if OP == 6:
        res = _ssq_post(res, ires, div, POST)
    else:
        res = _post(res, s_raw, div, p, POST)
    tl.store(out_ptr + rows * som, res.to(out_ptr.dtype.element_ty), mask=row_mask)
    if OP == 4 or OP == 5:
        tl.store(idx_ptr + rows * som, ires, mask=row_mask)


@triton.jit
def _reduce_mid_kernel(x_ptr, s_ptr, out_ptr, idx_ptr, R, B, NB, sxa, sxr, sxb, soa, sob, ident, p, div,
                       OP: tl.constexpr, PRE: tl.constexpr, POST: tl.constexpr, CT: tl.constexpr,
                       BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr):
    """out[a, b] = POST(OP_r PRE(x[a, r, b])) for an (A, R, B) view; out (and idx) at a * soa + b * sob.

    Program ``pid`` owns columns [j * BLOCK_B, (j + 1) * BLOCK_B) of row block ``a`` (pid = a * NB + j) and walks R in
    BLOCK_R chunks: every load reads BLOCK_B neighbouring elements of B, so no transposed copy is needed."""
    pid = tl.program_id(0).to(tl.int64)
    a = pid // NB
    cols = (pid % NB) * BLOCK_B + tl.arange(0, BLOCK_B)
    col_mask = cols < B
    o_off = a * soa + cols * sob
    s_raw = tl.zeros([BLOCK_B], CT)
    if PRE >= 5:
        s_raw = tl.load(s_ptr + o_off, mask=col_mask, other=0).to(CT)
    s = _shift_of(s_raw, PRE)[None, :]
    acc = (tl.zeros([BLOCK_R, BLOCK_B], CT) + ident).to(CT)
    if OP == 6:
        iacc = tl.zeros([BLOCK_R, BLOCK_B], CT)
    else:
        iacc = tl.zeros([BLOCK_R, BLOCK_B], tl.int64)
    x_cols = x_ptr + a * sxa + cols[None, :] * sxb
    for start in range(0, R, BLOCK_R):
        r = start + tl.arange(0, BLOCK_R).to(tl.int64)
        mask = (r[:, None] < R) & col_mask[None, :]
        x = tl.load(x_cols + r[:, None] * sxr, mask=mask, other=0)
        v = tl.where(mask, _pre(x, s, p, PRE, CT), ident).to(CT)
        acc, iacc = _combine(acc, iacc, v, r[:, None] + tl.zeros([BLOCK_R, BLOCK_B], tl.int64), OP)
    res, ires = _finish(acc, iacc, 0, OP)
    if OP == 6:
        res = _ssq_post(res, ires, div, POST)
    else:
        res = _post(res, s_raw, div, p, POST)
    tl.store(out_ptr + o_off, res.to(out_ptr.dtype.element_ty), mask=col_mask)
    if OP == 4 or OP == 5:
        tl.store(idx_ptr + o_off, ires, mask=col_mask)


# ====================================================================================================================
# Planning and launching
# ====================================================================================================================

# A candidate caps the block along the contiguous axis (MAX_N for rows, MAX_B for columns) and packs the other axis
# until the tile holds TILE elements; the default (1024 / 128, 4096, 4 warps) is the former fixed choice.

def _row_cfg(max_n, tile, num_warps=4):
    return autotune.Config(num_warps=num_warps, num_stages=3, MAX_N=max_n, TILE=tile)


def _mid_cfg(max_b, tile, num_warps=4):
    return autotune.Config(num_warps=num_warps, num_stages=3, MAX_B=max_b, TILE=tile)


def _row_blocks(cfg, m, n):
    block_n = builtins.min(next_pow2(n), cfg.MAX_N)
    return builtins.max(1, builtins.min(next_pow2(m), cfg.TILE // block_n)), block_n


def _mid_blocks(cfg, r, b):
    block_b = builtins.min(next_pow2(b), cfg.MAX_B)
    return builtins.max(1, builtins.min(next_pow2(r), cfg.TILE // block_b)), block_b


def _dedupe(blocks):
    """Prune rule: candidates that resolve to the same blocks and warps for the key's sizes are timed once."""
    def prune(configs, key):
        seen, out = set(), []
        for c in configs:
            k = (blocks(c, *key[-3:-1]), c.num_warps)
            if k not in seen:
                seen.add(k)
                out.append(c)
        return out
    return prune


# H100 candidates: reductions are memory bound; they differ in bytes in flight per program and warps per row.
# (1024, 16384, 16 warps) spilled 8-92 B per thread in every dtype (compile-check): left out.
ROW_CANDIDATES = (_row_cfg(1024, 4096), _row_cfg(256, 2048), _row_cfg(512, 1024, 2), _row_cfg(2048, 4096, 8),
                  _row_cfg(4096, 8192, 8), _row_cfg(8192, 8192, 16))
MID_CANDIDATES = (_mid_cfg(128, 4096), _mid_cfg(64, 2048), _mid_cfg(32, 1024, 2), _mid_cfg(256, 4096, 8),
                  _mid_cfg(128, 8192, 8), _mid_cfg(512, 8192, 16))

# keys: (input dtype, accumulation dtype, [bucketed A,] bucketed sizes (rows M, N) / (R, B), contiguous axis or not)
ROW_TUNABLE = autotune.Tunable("reduce_rows", ROW_CANDIDATES, default=lambda k: ROW_CANDIDATES[0],
                               prune=_dedupe(_row_blocks), kernels=(_reduce_rows_kernel,))
MID_TUNABLE = autotune.Tunable("reduce_mid", MID_CANDIDATES, default=lambda k: MID_CANDIDATES[0],
                               prune=_dedupe(_mid_blocks), kernels=(_reduce_mid_kernel,))


@contextlib.contextmanager
def force_blocks(row=None, mid=None):
    """Force the block sizes: ``row=(BLOCK_M, BLOCK_N)``, ``mid=(BLOCK_R, BLOCK_B)`` (powers of 2; an axis shorter
    than its block gets a smaller one). Tests use small blocks to run the multi-chunk loops and the partial edge
    blocks on small inputs. A thin wrapper over :func:`tritorch.autotune.force`."""
    with contextlib.ExitStack() as stack:
        if row is not None:
            stack.enter_context(autotune.force("reduce_rows", _row_cfg(row[1], row[0] * row[1])))
        if mid is not None:
            stack.enter_context(autotune.force("reduce_mid", _mid_cfg(mid[1], mid[0] * mid[1])))
        yield


def _plan(x, dims, ordered):
    """How to run a reduction of ``x`` over ``dims`` with the output contiguous in the kept dims' order.

    Returns ("row", M, N, sxm, sxn, som) or ("mid", A, R, B, sxa, sxr, sxb, soa, sob), or None when the reduced or
    kept dims do not merge into one group each (the caller then gathers them with a copy). ``ordered``: the reduced
    dims must keep their logical order (a flat index over several dims is returned)."""
    red = set(dims)
    out_st, acc = {}, 1
    for d in reversed(range(x.ndim)):
        if d not in red:
            out_st[d] = acc
            acc *= x._shape[d]
    ent = [(x._shape[d], x._stride[d], out_st.get(d, 0), d in red) for d in range(x.ndim) if x._shape[d] != 1]
    if not ordered:
        ent.sort(key=lambda e: -abs(e[1]))
    groups = []
    for n, s, o, r in ent:
        if groups:
            pn, ps, po, pr = groups[-1]
            if pr == r and ps == s * n and (r or po == o * n):
                groups[-1] = (pn * n, s, o, r)
                continue
        groups.append((n, s, o, r))
    if not builtins.any(g[3] for g in groups):
        groups.append((1, 0, 0, True))
    kinds = [g[3] for g in groups]
    if kinds == [True]:
        (n, s, _, _), = groups
        return ("row", 1, n, 0, s, 0)
    if kinds == [False, True]:
        (m, sm, om, _), (n, sn, _, _) = groups
        return ("row", m, n, sm, sn, om)
    if kinds == [True, False]:
        (r, sr, _, _), (b, sb, ob, _) = groups
        return ("mid", 1, r, b, 0, sr, sb, 0, ob)
    if kinds == [False, True, False]:
        (a, sa, oa, _), (r, sr, _, _), (b, sb, ob, _) = groups
        return ("mid", a, r, b, sa, sr, sb, oa, ob)
    return None


def _ident(op, ct):
    if op in (SUM, SSQ):
        return 0 if not ct.is_floating_point else 0.0
    if op == PROD:
        return 1 if not ct.is_floating_point else 1.0
    big = math.inf if ct.is_floating_point else int(np.iinfo(ct.np).max)
    small = -math.inf if ct.is_floating_point else int(np.iinfo(ct.np).min)
    return small if op in (MAX, ARGMAX) else big


def _reduce_triton(x, dims, op, out_dtype, ct, pre=P_NONE, post=Q_NONE, p=0.0, div=1, shift=None):
    """Run the reduction on the Triton kernels; returns (out, indices or None), both contiguous in the kept shape."""
    x = interp_bf16_in(x)
    keep = [d for d in range(x.ndim) if d not in dims]
    kshape = tuple(x._shape[d] for d in keep)
    store_dtype = D.float32 if INTERPRET and out_dtype is D.bfloat16 else out_dtype
    out = empty(kshape, store_dtype, x.device)
    idx = empty(kshape, D.int64, x.device) if op in (ARGMAX, ARGMIN) else None
    if out.numel() == 0:
        return _bf16_out(out, out_dtype), idx
    if x.numel() == 0:           # nothing to read: the empty reduction's value (0, 1, nan, -inf...) from the reference
        host = Tensor._wrap_numpy(np.empty(x._shape, x.dtype.np), device("cpu"))
        val, _ = _reduce_np(host, dims, op, out_dtype, ct, pre, post, p, div, None if shift is None else shift.cpu())
        return copy_into(empty(kshape, out_dtype, x.device), val), idx
    plan = _plan(x, dims, ordered=op in (ARGMAX, ARGMIN) and len(dims) > 1)
    if plan is None:
        x = x.permute(*keep, *dims).contiguous()
        dims = tuple(range(len(keep), x.ndim))
        plan = _plan(x, dims, ordered=True)
    s = ptr(shift) if shift is not None else ptr(out)
    i = ptr(idx) if idx is not None else ptr(out)
    args = (_ident(op, ct), float(p), div)
    meta = dict(OP=op, PRE=pre, POST=post, CT=TL[ct])
    if plan[0] == "row":
        _, m, n, sxm, sxn, som = plan

        def run(cfg):
            bm, bn = _row_blocks(cfg, m, n)
            _reduce_rows_kernel[(cdiv(m, bm),)](ptr(x), s, ptr(out), i, m, n, sxm, sxn, som, *args, **meta,
                                                BLOCK_M=bm, BLOCK_N=bn, num_warps=cfg.num_warps,
                                                num_stages=cfg.num_stages)
        key = (x.dtype, ct, autotune.bucket(m), autotune.bucket(n), "c" if sxn == 1 else "s")
        run(ROW_TUNABLE.pick(key, run))                      # writes only out (and idx): timing runs are harmless
    else:
        _, a, r, b, sxa, sxr, sxb, soa, sob = plan

        def run(cfg):
            br, bb = _mid_blocks(cfg, r, b)
            nb = cdiv(b, bb)
            _reduce_mid_kernel[(a * nb,)](ptr(x), s, ptr(out), i, r, b, nb, sxa, sxr, sxb, soa, sob, *args, **meta,
                                          BLOCK_R=br, BLOCK_B=bb, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        key = (x.dtype, ct, autotune.bucket(a), autotune.bucket(r), autotune.bucket(b), "c" if sxb == 1 else "s")
        run(MID_TUNABLE.pick(key, run))
    return _bf16_out(out, out_dtype), idx


def _bf16_out(out, dtype):
    if out.dtype is dtype:
        return out
    return Tensor._wrap_numpy(out._np.astype(dtype.np), out.device)


def _reduce_np(x, dims, op, out_dtype, ct, pre=P_NONE, post=Q_NONE, p=0.0, div=1, shift=None):
    """The NumPy reference of ``_reduce_triton`` (same arguments, same results)."""
    a = x._np
    with np.errstate(all="ignore"):
        s = None
        if shift is not None:
            s = np.expand_dims(shift._np.astype(ct.np), dims)
            s_pre = np.where(np.isinf(s), 0, s) if pre == P_SUB_EXP else s
        if pre == P_NONZERO:
            v = (a != 0).astype(ct.np)
        else:
            v = a.astype(ct.np)
            if pre == P_ABS:
                v = np.abs(v)
            elif pre == P_SQUARE:
                v = v * v
            elif pre == P_POW:
                v = np.exp(ct.np.type(p) * np.log(np.abs(v)))
            elif pre == P_SUB_ABS:
                v = np.abs(v - s_pre)
            elif pre == P_SUB_EXP:
                v = np.exp(v - s_pre)
        idx = None
        if op == SUM:
            res = np.sum(v, axis=dims, dtype=ct.np)
        elif op == PROD:
            res = np.prod(v, axis=dims, dtype=ct.np)
        elif op == MAX:
            res = np.max(v, axis=dims)
        elif op == MIN:
            res = np.min(v, axis=dims)
        elif op == SSQ:                # the kernels' (sum, scale) pairs, with the largest scale taken at once
            scale = np.max(v, axis=dims, keepdims=True, initial=ct.np.type(0))
            r = np.where(v == scale, ct.np.type(1), v / scale)
            res = np.sum(r * r, axis=dims, dtype=ct.np)
            scale = np.squeeze(scale, axis=dims)
        else:
            keep = [d for d in range(v.ndim) if d not in dims]
            flat = np.transpose(v, keep + list(dims)).reshape([v.shape[d] for d in keep] +
                                                              [math.prod(v.shape[d] for d in dims)])
            idx = (np.argmax if op == ARGMAX else np.argmin)(flat, axis=-1)
            res = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
        res = np.asarray(res, dtype=ct.np)
        if op == SSQ:
            q = res / ct.np.type(div)
            res = scale * np.sqrt(q) if post == Q_SQRT_DIV else scale * q * scale
        elif post == Q_DIV:
            res = res / ct.np.type(div)
        elif post == Q_SQRT_DIV:
            res = np.sqrt(res / ct.np.type(div))
        elif post == Q_ROOT:
            res = np.exp(np.log(res) / ct.np.type(p))
        elif post == Q_LOG_ADD:
            res = np.log(res) + np.squeeze(s, axis=dims)
    out = wrap(np.asarray(res).astype(out_dtype.np), out_dtype, x.device)
    return out, (wrap(np.asarray(idx, dtype=np.int64), D.int64, x.device) if idx is not None else None)


def reduce_(x, dims, op, out_dtype, ct, **kw):
    """Reduce ``x`` over ``dims`` (sorted, wrapped): the NumPy reference on ``cpu``, the Triton kernels on cuda."""
    if x._storage.device.type == "cpu":
        return _reduce_np(x, dims, op, out_dtype, ct, **kw)
    return _reduce_triton(x, dims, op, out_dtype, ct, **kw)


# ====================================================================================================================
# Argument handling shared by the ops
# ====================================================================================================================

_TORCH_NAMES = {D.float32: "Float", D.float64: "Double", D.float16: "Half", D.bfloat16: "BFloat16",
                D.int64: "Long", D.int32: "Int", D.int16: "Short", D.int8: "Char", D.uint8: "Byte",
                D.bool_: "Bool"}


def _dims_arg(x, dim):
    """The sorted, wrapped dims a reduction runs over: all of them for None or an empty list; none for a 0-d
    tensor (whose only valid dims are 0 and -1)."""
    if dim is None:
        return tuple(range(x.ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    if not dims:
        return tuple(range(x.ndim))
    wrapped = [x._wrap_dim(d) for d in dims]
    out = tuple(sorted(set(wrapped)))
    if len(out) != len(dims):
        dup = next(d for i, d in enumerate(wrapped) if d in wrapped[:i])
        raise RuntimeError(f"dim {dup} appears multiple times in the list of dims")
    return out if x.ndim else ()


def _keep_shape(shape, dims):
    return tuple(1 if d in dims else s for d, s in enumerate(shape))


def _kept(out, in_shape, dims, keepdim):
    """The reduced result ``out`` with ``keepdim``'s size-1 dims: a fresh contiguous result keeps its buffer as a
    tensor of its own, not a view of a temporary (so that ``.grad`` can adopt a gradient summed with keepdim)."""
    if not (keepdim and dims):
        return out
    shape = _keep_shape(in_shape, dims)
    if out._base is not None or not out.is_contiguous():
        return out.reshape(shape)
    return Tensor._make(out._storage, out._offset, shape, contiguous_strides(shape), out.dtype)


def _unsqueezed(g, in_shape, dims, keepdim):
    """A gradient of the reduced shape viewed with size-1 dims where the reduced ones were (broadcastable)."""
    return g if keepdim else g.reshape(_keep_shape(in_shape, dims))


def _count(shape, dims):
    return math.prod(shape[d] for d in dims)


def _acc(dtype):
    """The dtype a floating reduction accumulates in."""
    return D.float64 if dtype is D.float64 else D.float32


def _check_floating(x, what):
    if not x.dtype.is_floating_point:
        raise RuntimeError(what.format(name=_TORCH_NAMES[x.dtype]))


def _check_tensor(name, x):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not {type(x).__name__}")


def _check_nonempty(name, x, dims, dim_given):
    """PyTorch refuses max/min/argmax... over a size-0 dim (there is no identity to return)."""
    if x.numel() != 0:
        return
    if not dim_given:
        raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. Specify the "
                           "reduction dim with the 'dim' argument.")
    for d in dims:
        if x._shape[d] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")


def _return_type(name, fields):
    base = collections.namedtuple(name, fields)

    def __repr__(self):
        return f"tritorch.return_types.{name}(\n" + ",\n".join(f"{f}={v!r}" for f, v in zip(fields, self)) + ")"
    return type(name, (base,), {"__slots__": (), "__repr__": __repr__, "__module__": "tritorch.return_types"})


_MaxRT = _return_type("max", ("values", "indices"))
_MinRT = _return_type("min", ("values", "indices"))


# ====================================================================================================================
# sum, mean, prod
# ====================================================================================================================

class Sum(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim, out_dtype):
        ctx._name = "SumBackward1" if dims else "SumBackward0"
        ctx.in_shape, ctx.dims, ctx.keepdim = x._shape, dims, keepdim
        ct = _acc(out_dtype) if out_dtype.is_floating_point else D.int64
        out, _ = reduce_(x, dims, SUM, out_dtype, ct)
        return _kept(out, x._shape, dims, keepdim)

    @staticmethod
    def backward(ctx, g):
        return _unsqueezed(g, ctx.in_shape, ctx.dims, ctx.keepdim).expand(ctx.in_shape)


@register("sum")
def sum(input, dim=None, keepdim=False, *, dtype=None):
    """Sum over ``dim`` (int, tuple or None for all). Integer and bool inputs sum in int64, as in PyTorch."""
    _check_tensor("sum", input)
    out_dtype = None
    if dtype is not None:
        input = _cast_for_dtype(input, dtype)
        out_dtype = input.dtype
    elif not input.dtype.is_floating_point:
        out_dtype = D.int64
    return Sum.apply(input, _dims_arg(input, dim), keepdim, out_dtype or input.dtype)


def _cast_for_dtype(input, dtype):
    """``input`` cast to a reduction's ``dtype=`` (its result type, integer and bool too); PyTorch's error where an
    input that requires grad would give a non-floating result."""
    dt = D.to_dtype(dtype)
    if not dt.is_floating_point and input.requires_grad and STATE.enabled:
        raise RuntimeError(f"Autograd not support dtype: {D.scalar_name(dt)}")
    return input.to(dt)


class Mean(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx._name = "MeanBackward1" if dims else "MeanBackward0"
        n = _count(x._shape, dims)
        ctx.in_shape, ctx.dims, ctx.keepdim, ctx.n = x._shape, dims, keepdim, n
        out, _ = reduce_(x, dims, SUM, x.dtype, _acc(x.dtype), post=Q_DIV, div=n)
        return _kept(out, x._shape, dims, keepdim)

    @staticmethod
    def backward(ctx, g):
        return (_unsqueezed(g, ctx.in_shape, ctx.dims, ctx.keepdim) / ctx.n).expand(ctx.in_shape)


@register("mean")
def mean(input, dim=None, keepdim=False, *, dtype=None):
    _check_tensor("mean", input)
    if dtype is not None:
        input = input.to(D.to_dtype(dtype))
    _check_floating(input, "mean(): could not infer output dtype. " + ("Input" if dtype is None else "Optional") +
                    " dtype must be either a floating point or complex dtype. Got: {name}")
    return Mean.apply(input, _dims_arg(input, dim), keepdim)


class Prod(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim, out_dtype):
        ctx._name = "ProdBackward1" if dims and len(dims) < x.ndim else "ProdBackward0"
        ct = _acc(out_dtype) if out_dtype.is_floating_point else D.int64
        out, _ = reduce_(x, dims, PROD, out_dtype, ct)
        out = _kept(out, x._shape, dims, keepdim)
        ctx.dims, ctx.keepdim = dims, keepdim
        if builtins.any(ctx.needs_input_grad):
            ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx, g):
        """PyTorch's rule: g * prod / x without zeros; where a slice has one zero, that element gets g times the
        product of the others and the rest 0; a slice with two or more zeros gets 0 everywhere."""
        (x,) = ctx.saved_tensors
        dims = ctx.dims
        g = _unsqueezed(g, x._shape, dims, ctx.keepdim)
        zero = x.detach() == 0
        n_zero = zero.sum(dims, keepdim=True)
        x_safe = where(zero, 1.0, x)
        p_nonzero = x_safe.prod(dims, keepdim=True) if len(dims) <= 1 else _prod_all(x_safe, dims)
        grad_nz = g * (p_nonzero / x_safe)          # the product of the others first: no overflow in g * prod
        grad_z = where(_and(zero, n_zero == 1), g * p_nonzero, 0.0)
        if STATE.enabled and bool(n_zero.detach().amax() > 0):
            return g * _prod_others(x, dims)     # create_graph: the rule above has the wrong derivative at zeros
        return where(n_zero == 0, grad_nz, grad_z)


def _prod_others(x, dims):
    """For each element, the product over ``dims`` of all the others, as a differentiable expression (exact with
    zeros, so its own derivatives are right): a (..., R, R) product whose row j has a 1 in place of element j."""
    keep = [d for d in range(x.ndim) if d not in dims]
    kshape = tuple(x._shape[d] for d in keep)
    r = _count(x._shape, dims)
    xr = x.permute(*keep, *dims).reshape(kshape + (1, r))
    eye = Tensor._wrap_numpy(np.eye(r, dtype=bool), x.device)
    others = Prod.apply(where(eye, 1.0, xr), (len(kshape) + 1,), False, x.dtype)
    others = others.reshape(kshape + tuple(x._shape[d] for d in dims))
    return others.permute(*np.argsort(keep + list(dims)).tolist())


def _and(a, b):
    return binary("logical_and", a, b)


def _or(a, b):
    return binary("logical_or", a, b)


def _prod_all(x, dims):
    return Prod.apply(x, dims, True, x.dtype)


@register("prod")
def prod(input, dim=None, keepdim=False, *, dtype=None):
    """Product over one dim, or of all elements (``dim=None``). Integer and bool inputs multiply in int64."""
    _check_tensor("prod", input)
    if dtype is not None:
        input = _cast_for_dtype(input, dtype)
    out_dtype = input.dtype if input.dtype.is_floating_point or dtype is not None else D.int64
    dims = _dims_arg(input, dim) if dim is not None else tuple(range(input.ndim))
    return Prod.apply(input, dims, keepdim if dim is not None else False, out_dtype)


# ====================================================================================================================
# max, min, amax, amin, argmax, argmin
# ====================================================================================================================

def _minmax_ct(dtype):
    if dtype.is_floating_point:
        return _acc(dtype)
    return D.int8 if dtype is D.bool_ else D.int64


def _extreme(x, dims, is_max):
    """amax/amin values (kept shape, no keepdim) of x over dims."""
    ct = _minmax_ct(x.dtype)
    pre = P_NONZERO if x.dtype is D.bool_ else P_NONE
    out, _ = reduce_(x, dims, MAX if is_max else MIN, x.dtype, ct, pre=pre)
    return out


class AMax(Function):
    """amax/amin and max()/min() without dim: the gradient is split evenly among the elements equal to the
    result, as in PyTorch."""

    @staticmethod
    def forward(ctx, x, dims, keepdim, is_max, name):
        ctx._name = name
        out = _kept(_extreme(x, dims, is_max), x._shape, dims, keepdim)
        ctx.dims, ctx.keepdim = dims, keepdim
        if builtins.any(ctx.needs_input_grad):
            ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        if ctx._name in ("AmaxBackward0", "AminBackward0"):
            # PyTorch's amax/amin rule: (g / count) * (x == out), so a NaN result makes its whole slice NaN
            x = x.detach()
            o = _unsqueezed(out.detach(), x._shape, ctx.dims, ctx.keepdim)
            mask = x == o
            return _unsqueezed(g, x._shape, ctx.dims, ctx.keepdim) / mask.sum(ctx.dims, keepdim=True) * mask
        return _spread(g, x, out, ctx.dims, ctx.keepdim)


def _spread(g, x, out, dims, keepdim, value_of=None):
    """g split evenly among the elements of x where ``value_of(x)`` equals the reduced ``out`` (NaN matching NaN)."""
    x = x.detach()
    v = x if value_of is None else value_of(x)
    o = _unsqueezed(out.detach(), x._shape, dims, keepdim)
    mask = _or(v == o, _and(v.isnan(), o.isnan()))
    count = mask.sum(dims, keepdim=True)
    return where(mask, _unsqueezed(g, x._shape, dims, keepdim) / count, 0.0)


class MaxDim(Function):
    """max/min along one dim: (values, indices); the gradient goes to the index that was picked."""

    @staticmethod
    def forward(ctx, x, dim, keepdim, is_max):
        ctx._name = "MaxBackward0" if is_max else "MinBackward0"
        dims = (dim,) if x.ndim else ()
        ct = _minmax_ct(x.dtype)
        pre = P_NONZERO if x.dtype is D.bool_ else P_NONE
        vals, idx = reduce_(x, dims, ARGMAX if is_max else ARGMIN, x.dtype, ct, pre=pre)
        vals, idx = _kept(vals, x._shape, dims, keepdim), _kept(idx, x._shape, dims, keepdim)
        ctx.in_shape, ctx.dims, ctx.keepdim, ctx.dev = x._shape, dims, keepdim, x.device
        ctx.mark_non_differentiable(idx)
        ctx.set_materialize_grads(False)
        if builtins.any(ctx.needs_input_grad):
            ctx.save_for_backward(idx)
        return vals, idx

    @staticmethod
    def backward(ctx, g, _gi):
        (idx,) = ctx.saved_tensors
        return _to_index(g, idx, ctx.in_shape, ctx.dims, ctx.keepdim)


def _to_index(g, idx, in_shape, dims, keepdim):
    """zeros of ``in_shape`` with g written where the reduced dim's position equals idx (a one-hot mask)."""
    if not dims:
        return g.reshape(in_shape)
    (d,) = dims
    pos = Tensor._wrap_numpy(np.arange(in_shape[d], dtype=np.int64).reshape(
        [in_shape[d] if k == d else 1 for k in range(len(in_shape))]), g.device)
    hit = _unsqueezed(idx, in_shape, dims, keepdim) == pos
    return where(hit, _unsqueezed(g, in_shape, dims, keepdim), 0.0)


def _minmax(name, input, dim, keepdim, is_max):
    _check_tensor(name, input)
    if isinstance(dim, Tensor):
        if keepdim:
            raise TypeError(f"{name}(): keepdim is not an argument of the two-tensor form")
        return binary("maximum" if is_max else "minimum", input, dim)
    if dim is None:
        if keepdim:
            raise TypeError(f"{name}() received an invalid combination of arguments: keepdim needs dim")
        _check_nonempty(name, input, (), False)
        return AMax.apply(input, tuple(range(input.ndim)), False, is_max,
                          "MaxBackward1" if is_max else "MinBackward1")
    d = input._wrap_dim(dim)
    dims = (d,) if input.ndim else ()
    _check_nonempty(name, input, dims, True)
    values, indices = MaxDim.apply(input, d, keepdim, is_max)
    return (_MaxRT if is_max else _MinRT)(values, indices)


@register("max")
def max(input, dim=None, keepdim=False):
    """``max(x)``: the largest element; ``max(x, dim)``: (values, indices) along dim; ``max(x, other)``: maximum."""
    return _minmax("max", input, dim, keepdim, True)


@register("min")
def min(input, dim=None, keepdim=False):
    return _minmax("min", input, dim, keepdim, False)


def _amax(name, input, dim, keepdim, is_max):
    _check_tensor(name, input)
    dims = _dims_arg(input, dim)
    given = dim is not None and (isinstance(dim, (int, np.integer)) or len(tuple(dim)) > 0)
    _check_nonempty(name, input, dims, given)
    return AMax.apply(input, dims, keepdim, is_max, "AmaxBackward0" if is_max else "AminBackward0")


@register("amax")
def amax(input, dim=(), keepdim=False):
    return _amax("amax", input, dim, keepdim, True)


@register("amin")
def amin(input, dim=(), keepdim=False):
    return _amax("amin", input, dim, keepdim, False)


_AminmaxRT = _return_type("aminmax", ("min", "max"))


@register("aminmax")
def aminmax(input, *, dim=None, keepdim=False):
    """(min, max) over ``dim`` (all dims for None), as amin and amax: the gradient of each is split evenly among
    the elements equal to it."""
    _check_tensor("aminmax", input)
    dims = _dims_arg(input, dim)
    if input.numel() == 0:
        if dim is None:
            raise RuntimeError("aminmax(): cannot compute aminmax over an empty dimension as the operation has no "
                               "identity.")
        if input.ndim and input._shape[dims[0]] == 0:
            raise IndexError(f"aminmax: Expected reduction dim {dims[0]} to have non-zero size.")
    return _AminmaxRT(AMax.apply(input, dims, keepdim, False, "AminBackward0"),
                      AMax.apply(input, dims, keepdim, True, "AmaxBackward0"))


@register("count_nonzero")
def count_nonzero(input, dim=None):
    """The number of nonzero elements over ``dim`` (int, tuple, or None for all), as int64."""
    _check_tensor("count_nonzero", input)
    dims = _dims_arg(input, dim)
    out, _ = reduce_(input.detach(), dims, SUM, D.int64, D.int64, pre=P_NONZERO)
    return out


def _arg(name, input, dim, keepdim, is_max):
    _check_tensor(name, input)
    if input.dtype is D.bool_:
        raise RuntimeError(f"\"{name}_{'cpu' if input.device.type == 'cpu' else 'cuda'}\" not implemented for "
                           "'Bool'")
    dims = _dims_arg(input, dim) if dim is not None else tuple(range(input.ndim))
    _check_nonempty(name, input, dims, dim is not None)
    _, idx = reduce_(input.detach(), dims, ARGMAX if is_max else ARGMIN, input.dtype, _minmax_ct(input.dtype))
    if keepdim:
        return idx.reshape(_keep_shape(input._shape, dims))
    return idx


@register("argmax")
def argmax(input, dim=None, keepdim=False):
    """Index of the largest element along ``dim`` (of the flattened tensor for None); the first one on ties, the
    first NaN if any."""
    return _arg("argmax", input, dim, keepdim, True)


@register("argmin")
def argmin(input, dim=None, keepdim=False):
    return _arg("argmin", input, dim, keepdim, False)


# ====================================================================================================================
# all, any
# ====================================================================================================================

def _all_any(name, input, dim, keepdim, is_any):
    _check_tensor(name, input)
    if dim is not None and not isinstance(dim, (int, np.integer)) and len(tuple(dim)) == 0:
        dims = ()                  # PyTorch: all/any over an empty dim list reduce nothing (sum, amax... reduce all)
    else:
        dims = _dims_arg(input, dim)
    out_dtype = D.uint8 if input.dtype is D.uint8 else D.bool_
    if _count(input._shape, dims) == 0:
        kshape = tuple(s for d, s in enumerate(input._shape) if d not in dims)
        return _kept(full(kshape, not is_any, dtype=out_dtype, device=input.device), input._shape, dims, keepdim)
    out, _ = reduce_(input.detach(), dims, MAX if is_any else MIN, out_dtype, D.int8, pre=P_NONZERO)
    return _kept(out, input._shape, dims, keepdim)


@register("all")
def all(input, dim=None, keepdim=False):
    """Whether every element (along ``dim``) is nonzero; bool result (uint8 for uint8 input, as PyTorch)."""
    return _all_any("all", input, dim, keepdim, False)


@register("any")
def any(input, dim=None, keepdim=False):
    return _all_any("any", input, dim, keepdim, True)


# ====================================================================================================================
# var, std
# ====================================================================================================================

class Var(Function):
    """var (or its square root, std) with ``correction``: two passes, the mean (in float64) and then the centered
    squares, summed scaled (no overflow or underflow for any finite input)."""

    @staticmethod
    def forward(ctx, x, dims, correction, keepdim, take_sqrt, whole=False):
        ctx._name = "StdBackward0" if take_sqrt else "VarBackward0"
        n = _count(x._shape, dims)
        div = builtins.max(n - correction, 0)
        ct = _acc(x.dtype)
        # the mean (only a shift: any rounding of it cancels to first order) is summed in float64, where no float32
        # or half sum overflows: std of float32 [3e38, 3e38] is 0, as PyTorch's (float64 Welford) says
        mu, _ = reduce_(x, dims, SUM, D.float64, D.float64, post=Q_DIV, div=n)
        out, _ = reduce_(x, dims, SSQ, x.dtype, ct, pre=P_SUB_ABS, post=Q_SQRT_DIV if take_sqrt else Q_DIV,
                         div=div, shift=mu)
        out = _kept(out, x._shape, dims, keepdim)
        # the backward's n - correction: PyTorch's is negative too (a -0 gradient, not NaN) except for a reduction
        # of everything (dim=None, or a 0-d input), whose divisor is clamped at 0 as the forward's
        ctx.dims, ctx.keepdim, ctx.div, ctx.take_sqrt = dims, keepdim, div if whole else n - correction, take_sqrt
        if builtins.any(ctx.needs_input_grad):
            ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        dims = ctx.dims
        g = _unsqueezed(g, x._shape, dims, ctx.keepdim)
        if ctx.take_sqrt:
            std = _unsqueezed(out, x._shape, dims, ctx.keepdim)
            g = where(std.detach() == 0, 0.0, g / (std * 2))
        return (x - x.mean(dims, keepdim=True)) * (g * (2.0 / ctx.div if ctx.div else math.inf))


def _var_args(name, input, dim, unbiased, keepdim, correction):
    _check_tensor(name, input)
    if isinstance(dim, bool):
        unbiased, dim = dim, None
    if unbiased is not None and correction is not None:
        raise RuntimeError(f"{name}(): Only one of \"unbiased\" or \"correction\" must be specified")
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    if not input.dtype.is_floating_point:
        raise RuntimeError("std and var only support floating point and complex dtypes")
    return _dims_arg(input, dim), correction, keepdim


@register("var")
def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim`` with Bessel's ``correction`` (default 1; ``unbiased=False`` means 0)."""
    dims, corr, keepdim = _var_args("var", input, dim, unbiased, keepdim, correction)
    return Var.apply(input, dims, corr, keepdim, False, _whole(input, dim))


@register("std")
def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    dims, corr, keepdim = _var_args("std", input, dim, unbiased, keepdim, correction)
    return Var.apply(input, dims, corr, keepdim, True, _whole(input, dim))


def _whole(input, dim):
    return dim is None or isinstance(dim, bool) or input.ndim == 0


@register("var_mean", method=False)
def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    dims, corr, keepdim = _var_args("var_mean", input, dim, unbiased, keepdim, correction)
    return Var.apply(input, dims, corr, keepdim, False, _whole(input, dim)), Mean.apply(input, dims, keepdim)


@register("std_mean", method=False)
def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    dims, corr, keepdim = _var_args("std_mean", input, dim, unbiased, keepdim, correction)
    return Var.apply(input, dims, corr, keepdim, True, _whole(input, dim)), Mean.apply(input, dims, keepdim)


# ====================================================================================================================
# logsumexp
# ====================================================================================================================

class LogSumExp(Function):
    """log(sum(exp(x))) computed as max + log(sum(exp(x - max))): no overflow; an all -inf slice gives -inf and
    a +inf element gives +inf."""

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx._name = "LogsumexpBackward0"
        ct = _acc(x.dtype)
        if x.numel() == 0:
            m = empty(tuple(s for d, s in enumerate(x._shape) if d not in dims), ct, x.device)
            fill_(m, -math.inf)
        else:
            m, _ = reduce_(x, dims, MAX, ct, ct)
        out, _ = reduce_(x, dims, SUM, x.dtype, ct, pre=P_SUB_EXP, post=Q_LOG_ADD, shift=m)
        out = _kept(out, x._shape, dims, keepdim)
        ctx.dims, ctx.keepdim = dims, keepdim
        if builtins.any(ctx.needs_input_grad):
            ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        o = _unsqueezed(out, x._shape, ctx.dims, ctx.keepdim)
        return _unsqueezed(g, x._shape, ctx.dims, ctx.keepdim) * (x - o).exp()


@register("logsumexp")
def logsumexp(input, dim, keepdim=False):
    _check_tensor("logsumexp", input)
    if not input.dtype.is_floating_point:
        input = input.to(D.get_default_dtype())
    return LogSumExp.apply(input, _dims_arg(input, dim), keepdim)


# ====================================================================================================================
# norm
# ====================================================================================================================

class Norm(Function):
    """The vector p-norm over ``dims``: one pass (sum of |x|^p, or max/min of |x| for +-inf, count of nonzeros for
    0), the root taken as the result is stored."""

    @staticmethod
    def forward(ctx, x, p, dims, keepdim):
        ctx._name = "NormBackward1"
        ct = _acc(x.dtype)
        if p == math.inf or p == -math.inf or (p != 0 and _count(x._shape, dims) == 1):
            # one element per slice: |x| itself, as PyTorch (never squared: the norm of 1e200 is 1e200)
            out, _ = reduce_(x, dims, MAX if p > 0 else MIN, x.dtype, ct, pre=P_ABS)
        elif p == 0:
            out, _ = reduce_(x, dims, SUM, x.dtype, ct, pre=P_NONZERO)
        elif p == 1:
            out, _ = reduce_(x, dims, SUM, x.dtype, ct, pre=P_ABS)
        elif p == 2:
            out, _ = reduce_(x, dims, SUM, x.dtype, ct, pre=P_SQUARE, post=Q_SQRT_DIV, div=1)
        else:
            out, _ = reduce_(x, dims, SUM, x.dtype, ct, pre=P_POW, post=Q_ROOT, p=p)
        out = _kept(out, x._shape, dims, keepdim)
        ctx.p, ctx.dims, ctx.keepdim = p, dims, keepdim
        if builtins.any(ctx.needs_input_grad):
            ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        """PyTorch's rules, 0 where the norm is 0 (p >= 1) or where x is 0 (p < 1)."""
        x, out = ctx.saved_tensors
        p, dims = ctx.p, ctx.dims
        g = _unsqueezed(g, x._shape, dims, ctx.keepdim)
        n = _unsqueezed(out, x._shape, dims, ctx.keepdim)
        if p == 0:
            return x * 0
        if p == 1:
            return x.sign() * g
        if p == 2:
            return x * (g / where(n.detach() == 0, 1.0, n))
        if p == math.inf or p == -math.inf:
            return x.sign() * _spread(g, x, out, dims, ctx.keepdim, value_of=lambda t: t.abs())
        if p < 1:
            scaled = where(x.detach() == 0, 0.0, x.sign() * x.abs().pow(p - 1))
            return scaled * g * n.pow(1 - p)
        scaled = x.sign() * x.abs().pow(p - 1) if p < 2 else x * x.abs().pow(p - 2)
        return scaled * where(n.detach() == 0, 0.0, g / n.pow(p - 1))


@register("norm")
def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """Vector norm of ``input`` over ``dim`` (all dims for None): p = 2 ('fro'), 1, inf, -inf, 0 or any number."""
    _check_tensor("norm", input)
    if dtype is not None:
        input = input.to(D.to_dtype(dtype))
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as input. Got "
                           f"{_TORCH_NAMES[input.dtype]}")
    if p is None or p == "fro":
        p = 2
    elif isinstance(p, str):
        raise NotImplementedError(f"norm: p={p!r} is not supported (matrix norms other than 'fro')")
    p = float(p)
    if input.numel() == 0 and (p < 0 or p == math.inf):
        _check_norm_identity(input, p, dim)
    return Norm.apply(input, p, _dims_arg(input, dim), keepdim)


def _check_norm_identity(x, p, dim):
    """PyTorch refuses the inf and negative norms of an empty slice (max/min/power sum have no identity there)."""
    what = f"linalg.vector_norm cannot compute the {p:g} norm on "
    dims = () if dim is None else (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    if not dims:
        raise RuntimeError(what + "an empty tensor because the operation does not have an identity")
    for d in dims:
        if x._shape[x._wrap_dim(d)] == 0:
            raise RuntimeError(what + f"the dimension {d} because this dimension is empty and the operation does not "
                               "have an identity")


# ====================================================================================================================
# Gradient helpers
# ====================================================================================================================

@register("sum_to_size", function=False)
def sum_to_size(self, *size):
    """Sum this tensor down to ``size``, a shape it is broadcastable from (the reverse of ``expand``)."""
    size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else tuple(size)
    lead = self.ndim - len(size)
    if lead < 0 or builtins.any(s != 1 and s != self._shape[lead + i] for i, s in enumerate(size)):
        raise RuntimeError(f"size {{{list(size)}}} is not expandable to size {{{list(self._shape)}}}.")
    if tuple(size) == self._shape:
        return self
    return sum_to(self, size)
