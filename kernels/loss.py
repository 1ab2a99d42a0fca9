"""Loss functions: cross-entropy and NLL as fused row kernels, the pointwise losses (MSE, L1, smooth L1, Huber,
BCE, BCE with logits, KL divergence) as fused elementwise kernels, each with its NumPy reference side by side.

Cross-entropy sees its input as rows of C logits: row r = (n, i), n the batch index and i the position in the
trailing dims d1... (none for (N, C) input; one row for (C,) input), elements ``sc`` apart. One forward kernel
walks each row once in blocks of BLOCK_C (an online max and sum of exp), picks the target logit, and writes the
row's loss, its log-sum-exp and its weight (the 'mean' denominator); no (N, C) intermediate exists. One backward
kernel writes ``g * (softmax - smoothed one-hot) * weight`` straight into the input's gradient. With class
probabilities as targets the kernels take the target row alongside the logits.

The public functions follow ``torch.nn.functional``: names, arguments, reductions and error messages. Targets
are checked before any loss kernel runs (class indices by one min/max kernel and a read of its two results), so a
bad target is a Python exception, never a fault inside a kernel. Arithmetic runs in float32 for half types.
"""
import math
import warnings

import numpy as np
import triton
import triton.language as tl

from tritorch import _creation, _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE, no_grad
from ._launch import ACC, ptr, in_ptr, broadcast_shapes, block_for, interp_bf16_in, next_pow2, cdiv
from ._checks import check_index_range, check_range
from ._common import check_same_device, copy_host, empty, host_check, np_ct, read_as, sum_to, wrap
from ._pointwise import launch_pointwise
from .elementwise import _log1p, _sigmoid, _np_sigmoid, softplus
from .softmax import _rows, softmax, log_softmax

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"]

# ====================================================================================================================
# Cross-entropy and NLL: the row kernels
# ====================================================================================================================


@triton.jit
def _row_base(rows, INNER, so, si):
    """Offset of the first element of each row r = (r // INNER, r % INNER)."""
    return (rows // INNER) * so + (rows % INNER) * si


@triton.jit
def _online_lse_step(m, s, x):
    """One block of the online log-sum-exp: per lane, the running max m and the sum s of exp(x - m)."""
    m_new = tl.maximum(m, x)
    nothing_yet = m_new == -float("inf")          # only -inf seen so far: keep s = 0 instead of NaN
    s = tl.where(nothing_yet, 0.0, s * tl.exp(m - m_new) + tl.exp(x - m_new))
    return m_new, s


@triton.jit
def _finish_lse(m, s):
    """The row's log-sum-exp from the per-lane (max, sum) pairs, as (row max, log of the sum of exp(x - max)):
    kept apart so that lse - x[t] is computed as (max - x[t]) + log-sum, without cancellation for large logits."""
    row_max = tl.max(m, axis=1)
    lane = tl.where(m == -float("inf"), 0.0, s * tl.exp(m - row_max[:, None]))
    return row_max, tl.log(tl.sum(lane, axis=1))


@triton.jit
def _shifted_sum_step(acc, q_seen, m_old, m_new, q, x, mask):
    """Per lane, acc = sum of q * (m - x) over the elements seen so far, re-based from the old running max to the
    new one (q_seen: the lane's sum of q before this block). The terms stay small however large the logits, where
    lse * sum(q) - sum(q * x) would cancel."""
    shift = tl.where(m_old == -float("inf"), 0.0, m_new - m_old)
    # x = -inf with no finite max yet: m - x is +inf for whatever finite max comes (never -inf - -inf = NaN)
    gap = tl.where(m_new == -float("inf"), -x, m_new - x)
    return acc + q_seen * shift + tl.where(mask, q * gap, 0.0)


@triton.jit
def _finish_shifted_sum(acc, q_seen, m, row_max):
    """sum of q * (row_max - x) over each row, from the per-lane sums based at the lane maxima m."""
    lane = tl.where(m == -float("inf"), acc, acc + q_seen * (row_max[:, None] - m))
    return tl.sum(lane, axis=1)


@triton.jit
def _rows_or_mean(loss, w_t, rows, row_mask, loss_ptr, den_ptr, MEAN: tl.constexpr, CT: tl.constexpr):
    """The rows' losses stored at loss_ptr[rows]; or with ``MEAN`` (the program holds every row) their 'mean' at
    loss_ptr (0-d), sum(loss) / den, and den = sum(w[t]) at den_ptr, as ``_weighted_mean_kernel`` would take them."""
    if MEAN:
        den = tl.sum(w_t, axis=0).to(den_ptr.dtype.element_ty)
        tl.store(den_ptr, den)
        tl.store(loss_ptr, (tl.sum(loss, axis=0) / den.to(CT)).to(loss_ptr.dtype.element_ty))
    else:
        tl.store(loss_ptr + rows, loss.to(loss_ptr.dtype.element_ty), mask=row_mask)


@triton.jit
def _ce_fwd_kernel(x_ptr, t_ptr, w_ptr, loss_ptr, lse_ptr, wt_ptr, range_ptr, den_ptr, R, C, INNER, xso, xsi, xsc,
                   ignore_index, eps,
                   HAS_W: tl.constexpr, SMOOTH: tl.constexpr, EPS_PTR: tl.constexpr, MEAN: tl.constexpr,
                   CT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Cross-entropy with class-index targets, BLOCK_R rows per program:
    loss = (1 - eps) * w[t] * (lse - x[t]) + eps / C * sum_c w[c] * (lse - x[c]), 0 where t == ignore_index.
    Also writes lse (for backward), w[t] (0 where ignored: the denominator of 'mean') and the target check's numbers:
    range[pid] = (smallest, largest) of the program's counted targets ((programs, 2) int64; 0 stands in for ignored
    ones), which the host reads to raise on a target outside [0, C) (``_ce_rows``); such a target reads nothing.
    With ``MEAN`` (one program holding every row) the rows' losses are not stored: loss_ptr is the 'mean' (0-d),
    sum(loss) / den, and den_ptr den = sum(w[t]), as ``_weighted_mean_kernel`` would take them."""
    if EPS_PTR:
        eps = tl.load(eps)
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows < R
    x_row = x_ptr + _row_base(rows, INNER, xso, xsi)
    cols = tl.arange(0, BLOCK_C)
    m = tl.full([BLOCK_R, BLOCK_C], -float("inf"), CT)
    s = tl.zeros([BLOCK_R, BLOCK_C], CT)
    wx = tl.zeros([BLOCK_R, BLOCK_C], CT)           # label smoothing: sum_c w[c] * (m - x[c])
    wsum = tl.zeros([BLOCK_C], CT)                  # label smoothing: sum_c w[c]
    for start in range(0, C, BLOCK_C):
        c = start + cols
        c_mask = c < C
        mask = row_mask[:, None] & c_mask[None, :]
        x = tl.load(x_row[:, None] + c[None, :] * xsc, mask=mask, other=-float("inf")).to(CT)
        m_old = m
        m, s = _online_lse_step(m, s, x)
        if SMOOTH:
            if HAS_W:
                w = tl.load(w_ptr + c, mask=c_mask, other=0.0).to(CT)
            else:
                w = c_mask.to(CT)
            wx = _shifted_sum_step(wx, wsum[None, :], m_old, m, w[None, :], x, mask)
            wsum += w
    row_max, log_sum = _finish_lse(m, s)
    lse = row_max + log_sum

    t = tl.load(t_ptr + rows, mask=row_mask, other=ignore_index)
    counted = row_mask & (t != ignore_index)
    t = tl.where(counted, t, 0)
    tl.store(range_ptr + 2 * tl.program_id(0), tl.min(t, axis=0))
    tl.store(range_ptr + 2 * tl.program_id(0) + 1, tl.max(t, axis=0))
    valid = counted & (t >= 0) & (t < C)
    t = tl.where(valid, t, 0)
    x_t = tl.load(x_row + t * xsc, mask=valid, other=0.0).to(CT)
    if HAS_W:
        w_t = tl.load(w_ptr + t, mask=valid, other=0.0).to(CT)
    else:
        w_t = valid.to(CT)
    loss = w_t * ((row_max - x_t) + log_sum)
    if SMOOTH:
        smooth = _finish_shifted_sum(wx, wsum[None, :], m, row_max) + tl.sum(wsum, axis=0) * log_sum
        loss = (1.0 - eps) * loss + eps / C * smooth
    _rows_or_mean(tl.where(valid, loss, 0.0), w_t, rows, row_mask, loss_ptr, den_ptr, MEAN, CT)
    tl.store(lse_ptr + rows, lse.to(lse_ptr.dtype.element_ty), mask=row_mask)
    tl.store(wt_ptr + rows, w_t.to(wt_ptr.dtype.element_ty), mask=row_mask)


@triton.jit
def _ce_bwd_kernel(x_ptr, t_ptr, w_ptr, lse_ptr, g_ptr, den_ptr, dx_ptr, R, C, INNER, xso, xsi, xsc, dso, dsi, dsc,
                   gs, ignore_index, eps,
                   HAS_W: tl.constexpr, SMOOTH: tl.constexpr, EPS_PTR: tl.constexpr, HAS_DEN: tl.constexpr,
                   CT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """dx[c] = g * (softmax[c] * A - (1 - eps) * w[t] * [c == t] - eps / C * w[c]) with
    A = (1 - eps) * w[t] + eps / C * sum(w): the gradient of ``_ce_fwd_kernel``'s loss, 0 on ignored rows.
    ``gs`` is the stride of the per-row gradient g (0 when one value is broadcast to every row); with ``HAS_DEN``
    g is the gradient of the 'mean' and the rows' is g / den (den: ``_weighted_mean_kernel``'s sum of weights)."""
    if EPS_PTR:
        eps = tl.load(eps)
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows < R
    x_row = x_ptr + _row_base(rows, INNER, xso, xsi)
    d_row = dx_ptr + _row_base(rows, INNER, dso, dsi)
    cols = tl.arange(0, BLOCK_C)
    t = tl.load(t_ptr + rows, mask=row_mask, other=ignore_index)
    valid = row_mask & (t != ignore_index)
    t = tl.where(valid, t, 0)
    g = tl.load(g_ptr + rows * gs, mask=valid, other=0.0).to(CT)
    if HAS_DEN:
        g = g / tl.load(den_ptr).to(CT)
    lse = tl.load(lse_ptr + rows, mask=valid, other=0.0).to(CT)
    if HAS_W:
        w_t = tl.load(w_ptr + t, mask=valid, other=0.0).to(CT)
    else:
        w_t = valid.to(CT)
    if SMOOTH:
        hot = (1.0 - eps) * w_t
    else:
        hot = w_t
    a = hot
    if SMOOTH:
        if HAS_W:
            wsum = tl.zeros([BLOCK_C], CT)
            for start in range(0, C, BLOCK_C):
                c = start + cols
                wsum += tl.load(w_ptr + c, mask=c < C, other=0.0).to(CT)
            a = hot + eps / C * tl.sum(wsum, axis=0)
        else:
            a = hot + eps
    a = g * a
    hot = g * hot
    for start in range(0, C, BLOCK_C):
        c = start + cols
        c_mask = c < C
        mask = row_mask[:, None] & c_mask[None, :]
        x = tl.load(x_row[:, None] + c[None, :] * xsc, mask=mask, other=0.0).to(CT)
        dx = tl.exp(x - lse[:, None]) * a[:, None] - tl.where(c[None, :] == t[:, None], hot[:, None], 0.0)
        if SMOOTH:
            if HAS_W:
                w = tl.load(w_ptr + c, mask=c_mask, other=0.0).to(CT)
            else:
                w = c_mask.to(CT)
            dx -= (g * eps / C)[:, None] * w[None, :]
        dx = tl.where(valid[:, None], dx, 0.0)
        tl.store(d_row[:, None] + c[None, :] * dsc, dx.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _ce_prob_fwd_kernel(x_ptr, t_ptr, w_ptr, loss_ptr, lse_ptr, sq_ptr, R, C, INNER, xso, xsi, xsc, tso, tsi, tsc,
                        eps,
                        HAS_W: tl.constexpr, SMOOTH: tl.constexpr, EPS_PTR: tl.constexpr, CT: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Cross-entropy with class probabilities: q = w * ((1 - eps) * p + eps / C),
    loss = sum_c q[c] * (lse - x[c]) = sum_c q[c] * (max - x[c]) + sum(q) * log-sum. Writes loss, lse, sum(q)."""
    if EPS_PTR:
        eps = tl.load(eps)
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows < R
    x_row = x_ptr + _row_base(rows, INNER, xso, xsi)
    t_row = t_ptr + _row_base(rows, INNER, tso, tsi)
    cols = tl.arange(0, BLOCK_C)
    m = tl.full([BLOCK_R, BLOCK_C], -float("inf"), CT)
    s = tl.zeros([BLOCK_R, BLOCK_C], CT)
    qx = tl.zeros([BLOCK_R, BLOCK_C], CT)
    qs = tl.zeros([BLOCK_R, BLOCK_C], CT)
    for start in range(0, C, BLOCK_C):
        c = start + cols
        c_mask = c < C
        mask = row_mask[:, None] & c_mask[None, :]
        x = tl.load(x_row[:, None] + c[None, :] * xsc, mask=mask, other=-float("inf")).to(CT)
        q = tl.load(t_row[:, None] + c[None, :] * tsc, mask=mask, other=0.0).to(CT)
        if SMOOTH:
            q = tl.where(mask, (1.0 - eps) * q + eps / C, 0.0)
        if HAS_W:
            q = q * tl.load(w_ptr + c, mask=c_mask, other=0.0).to(CT)[None, :]
        m_old = m
        m, s = _online_lse_step(m, s, x)
        qx = _shifted_sum_step(qx, qs, m_old, m, q, x, mask)
        qs += q
    row_max, log_sum = _finish_lse(m, s)
    lse = row_max + log_sum
    sq = tl.sum(qs, axis=1)
    loss = _finish_shifted_sum(qx, qs, m, row_max) + sq * log_sum
    tl.store(loss_ptr + rows, loss.to(loss_ptr.dtype.element_ty), mask=row_mask)
    tl.store(lse_ptr + rows, lse.to(lse_ptr.dtype.element_ty), mask=row_mask)
    tl.store(sq_ptr + rows, sq.to(sq_ptr.dtype.element_ty), mask=row_mask)


@triton.jit
def _ce_prob_bwd_kernel(x_ptr, t_ptr, w_ptr, lse_ptr, sq_ptr, g_ptr, dx_ptr, dt_ptr, R, C, INNER,
                        xso, xsi, xsc, tso, tsi, tsc, dso, dsi, dsc, eso, esi, esc, gs, eps,
                        HAS_W: tl.constexpr, SMOOTH: tl.constexpr, EPS_PTR: tl.constexpr, DX: tl.constexpr,
                        DT: tl.constexpr, CT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """dx[c] = g * (softmax[c] * sum(q) - q[c]); for the target (DT), dp[c] = -g * (1 - eps) * w[c] * (x[c] - lse)
    written through strides (eso, esi, esc)."""
    if EPS_PTR:
        eps = tl.load(eps)
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows < R
    x_row = x_ptr + _row_base(rows, INNER, xso, xsi)
    t_row = t_ptr + _row_base(rows, INNER, tso, tsi)
    d_row = dx_ptr + _row_base(rows, INNER, dso, dsi)
    e_row = dt_ptr + _row_base(rows, INNER, eso, esi)
    cols = tl.arange(0, BLOCK_C)
    g = tl.load(g_ptr + rows * gs, mask=row_mask, other=0.0).to(CT)
    lse = tl.load(lse_ptr + rows, mask=row_mask, other=0.0).to(CT)
    sq = tl.load(sq_ptr + rows, mask=row_mask, other=0.0).to(CT)
    for start in range(0, C, BLOCK_C):
        c = start + cols
        c_mask = c < C
        mask = row_mask[:, None] & c_mask[None, :]
        x = tl.load(x_row[:, None] + c[None, :] * xsc, mask=mask, other=0.0).to(CT)
        if HAS_W:
            w = tl.load(w_ptr + c, mask=c_mask, other=0.0).to(CT)[None, :]
        else:
            w = tl.full([1, BLOCK_C], 1.0, CT)
        if DX:
            q = tl.load(t_row[:, None] + c[None, :] * tsc, mask=mask, other=0.0).to(CT)
            if SMOOTH:
                q = (1.0 - eps) * q + eps / C
            dx = g[:, None] * (tl.exp(x - lse[:, None]) * sq[:, None] - w * q)
            tl.store(d_row[:, None] + c[None, :] * dsc, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        if DT:
            dt = -g[:, None] * (1.0 - eps) * w * (x - lse[:, None])
            tl.store(e_row[:, None] + c[None, :] * esc, dt.to(dt_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _nll_fwd_kernel(x_ptr, t_ptr, w_ptr, loss_ptr, wt_ptr, den_ptr, R, INNER, xso, xsi, xsc, ignore_index,
                    HAS_W: tl.constexpr, MEAN: tl.constexpr, CT: tl.constexpr, BLOCK: tl.constexpr):
    """loss = -w[t] * x[t] per row (a gather), 0 where t == ignore_index; also writes w[t]. With ``MEAN`` (one
    program holding every row) loss_ptr is the 'mean' (0-d), sum(loss) / den, and den_ptr den = sum(w[t])."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    row_mask = rows < R
    t = tl.load(t_ptr + rows, mask=row_mask, other=ignore_index)
    valid = row_mask & (t != ignore_index)
    t = tl.where(valid, t, 0)
    x_t = tl.load(x_ptr + _row_base(rows, INNER, xso, xsi) + t * xsc, mask=valid, other=0.0).to(CT)
    if HAS_W:
        w_t = tl.load(w_ptr + t, mask=valid, other=0.0).to(CT)
    else:
        w_t = valid.to(CT)
    _rows_or_mean(tl.where(valid, -w_t * x_t, 0.0), w_t, rows, row_mask, loss_ptr, den_ptr, MEAN, CT)
    tl.store(wt_ptr + rows, w_t.to(wt_ptr.dtype.element_ty), mask=row_mask)


@triton.jit
def _nll_bwd_kernel(t_ptr, w_ptr, g_ptr, den_ptr, dx_ptr, R, C, INNER, dso, dsi, dsc, gs, ignore_index,
                    HAS_W: tl.constexpr, HAS_DEN: tl.constexpr, CT: tl.constexpr, BLOCK_R: tl.constexpr,
                    BLOCK_C: tl.constexpr):
    """dx[c] = -g * w[t] at c == t, 0 elsewhere: every element of the gradient written once. ``gs``: the stride of
    the per-row g (0: one value for every row); with ``HAS_DEN`` g is the 'mean''s gradient and the rows' g / den."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows < R
    d_row = dx_ptr + _row_base(rows, INNER, dso, dsi)
    t = tl.load(t_ptr + rows, mask=row_mask, other=ignore_index)
    valid = row_mask & (t != ignore_index)
    t = tl.where(valid, t, -1)
    g = tl.load(g_ptr + rows * gs, mask=valid, other=0.0).to(CT)
    if HAS_DEN:
        g = g / tl.load(den_ptr).to(CT)
    if HAS_W:
        g = g * tl.load(w_ptr + t, mask=valid, other=0.0).to(CT)
    cols = tl.arange(0, BLOCK_C)
    for start in range(0, C, BLOCK_C):
        c = start + cols
        mask = row_mask[:, None] & (c < C)[None, :]
        dx = tl.where(c[None, :] == t[:, None], -g[:, None], 0.0)
        tl.store(d_row[:, None] + c[None, :] * dsc, dx.to(dx_ptr.dtype.element_ty), mask=mask)


# ====================================================================================================================
# Cross-entropy and NLL: NumPy references (rows of C: x2 is (R, C), t and the per-row values are (R,))
# ====================================================================================================================

def _np_lse(x2):
    """(row max, log of the sum of exp(x - max)) of each row, as ``_finish_lse``."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x2, axis=1, keepdims=True) if x2.shape[1] else np.full((x2.shape[0], 1), -np.inf, x2.dtype)
        finite = np.isfinite(m[:, 0])
        m = np.where(np.isfinite(m), m, 0.0)
        # an infinite row max gives NaN (x - max is NaN at it), as PyTorch's log_softmax and the kernels
        return m[:, 0], np.where(finite, np.log(np.exp(x2 - m).sum(axis=1)), np.nan)


def _np_ce_fwd(x2, t, w, ignore_index, eps):
    """(loss, lse, w[t]) of each row, as ``_ce_fwd_kernel``."""
    R, C = x2.shape
    valid = t != ignore_index
    tc = np.where(valid, t, 0)
    m, log_sum = _np_lse(x2)
    lse = m + log_sum
    wv = np.ones(C, x2.dtype) if w is None else w
    w_t = np.where(valid, wv[tc] if C else 0.0, 0.0).astype(x2.dtype)
    x_t = x2[np.arange(R), tc] if C else np.zeros(R, x2.dtype)
    with np.errstate(invalid="ignore"):
        loss = w_t * ((m - x_t) + log_sum)
        if eps:
            loss = (1 - eps) * loss + eps / C * ((wv * (m[:, None] - x2)).sum(axis=1) + wv.sum() * log_sum)
    return np.where(valid, loss, 0.0).astype(x2.dtype), lse, w_t


def _np_ce_bwd(x2, t, w, lse, g, ignore_index, eps):
    R, C = x2.shape
    valid = t != ignore_index
    tc = np.where(valid, t, 0)
    wv = np.ones(C, x2.dtype) if w is None else w
    w_t = np.where(valid, wv[tc] if C else 0.0, 0.0)
    hot = (1 - eps) * w_t
    a = hot + eps / C * wv.sum() if C else hot
    with np.errstate(invalid="ignore", over="ignore"):
        dx = np.exp(x2 - lse[:, None]) * a[:, None] - eps / C * wv[None, :] if C else np.zeros_like(x2)
    dx[np.arange(R), tc] -= hot if C else 0
    return np.where(valid[:, None], g[:, None] * dx, 0.0).astype(x2.dtype)


def _np_smoothed(p2, w, eps):
    C = p2.shape[1]
    q = (1 - eps) * p2 + eps / C if eps else p2
    return q if w is None else q * w


def _np_ce_prob_fwd(x2, p2, w, eps):
    m, log_sum = _np_lse(x2)
    q = _np_smoothed(p2, w, eps)
    sq = q.sum(axis=1)
    with np.errstate(invalid="ignore"):
        return ((q * (m[:, None] - x2)).sum(axis=1) + sq * log_sum).astype(x2.dtype), m + log_sum, sq


def _np_ce_prob_bwd(x2, p2, w, lse, sq, g, eps):
    """(dx, dp)."""
    q = _np_smoothed(p2, w, eps)
    wv = 1.0 if w is None else w
    with np.errstate(invalid="ignore", over="ignore"):
        dx = g[:, None] * (np.exp(x2 - lse[:, None]) * sq[:, None] - q)
        dp = -g[:, None] * (1 - eps) * wv * (x2 - lse[:, None])
    return dx.astype(x2.dtype), dp.astype(x2.dtype)


def _np_nll_fwd(x2, t, w, ignore_index):
    R, C = x2.shape
    valid = t != ignore_index
    tc = np.where(valid, t, 0)
    wv = np.ones(C, x2.dtype) if w is None else w
    w_t = np.where(valid, wv[tc] if C else 0.0, 0.0).astype(x2.dtype)
    x_t = x2[np.arange(R), tc] if C else np.zeros(R, x2.dtype)
    return np.where(valid, -w_t * x_t, 0.0).astype(x2.dtype), w_t


def _np_nll_bwd(x2, t, w, g, ignore_index):
    R, C = x2.shape
    valid = t != ignore_index
    tc = np.where(valid, t, 0)
    wv = np.ones(C, x2.dtype) if w is None else w
    dx = np.zeros_like(x2)
    if C:
        dx[np.arange(R), tc] = np.where(valid, -g * wv[tc], 0.0)
    return dx


# ====================================================================================================================
# Cross-entropy and NLL: launch
# ====================================================================================================================

def row_config(R, C, whole=False):
    """(BLOCK_R, BLOCK_C, num_warps) of a row-kernel launch over R rows of C classes: a row streams through in
    blocks of at most BLOCK_C; short rows are packed BLOCK_R to a program. The interpreter uses small blocks so
    that tests cover rows of several blocks. ``whole``: all R rows in one program where a GPU's program would hold
    them (the caller reduces over them there), the interpreter's too, so that it launches what a GPU does."""
    max_c, tile = (32, 256) if INTERPRET else (2048, 4096)
    block_c = min(next_pow2(C), max_c)
    if block_c == 2048:         # one row per program: two (8 warps) spilled 4 B in _ce_fwd_kernel (triton 3.8)
        return 1, block_c, 8
    gpu_c = min(next_pow2(C), 2048)
    if whole and (R == 1 or gpu_c < 2048 and next_pow2(R) * gpu_c <= 4096):
        return next_pow2(R), block_c, 4 if next_pow2(R) * block_c <= 2048 else 8
    block_r = max(1, min(next_pow2(R), tile // block_c))
    num_warps = 4 if block_r * block_c <= 2048 else 8
    return block_r, block_c, num_warps


def _class_rows(t):
    """``t`` (the input, shape (N, C, d...) or (C,)) as rows along the class dim: (tensor, s_outer, s_inner,
    s_class), made contiguous where the dims after the class dim do not merge into one stride."""
    if t.ndim == 1:
        return t, 0, 0, t._stride[0]
    lay = _rows(t._shape, 1, t)
    if lay is None:
        t = t.contiguous()
        lay = _rows(t._shape, 1, t)
    _, _, _, [(so, si, sc)] = lay
    return t, so, si, sc


def _inner(x):
    return math.prod(x._shape[2:]) if x.ndim > 2 else 1


class _ScalarArg:
    """A float kernel argument: by value, or for float64 a pointer to it where float32 would round it. The object
    owns the tensor behind the pointer, so keep it alive until the launch has been queued."""

    def __init__(self, v, ct, device):
        self.is_ptr = ct is tl.float64 and float(np.float32(v)) != v
        self.tensor = Tensor._wrap_numpy(np.array([v], dtype=np.float64), device) if self.is_ptr else None
        self.arg = ptr(self.tensor) if self.is_ptr else float(v)


def _row_grad(g, R):
    """The per-row gradient as (tensor, stride): stride 0 for one value broadcast to every row."""
    if all(s == 0 for s in g._stride):
        return g, 0
    return g.contiguous(), 1


def _to_rows(a, cd):
    """NumPy: (N, C, d...) -> (R, C) rows along the class dim ``cd``."""
    if cd == a.ndim - 1:                    # (N, C) or (C): rows already
        return a.reshape(-1, a.shape[cd])
    return np.moveaxis(a, cd, -1).reshape(-1, a.shape[cd])


def _from_rows(a2, shape, cd):
    if cd == len(shape) - 1:
        return a2.reshape(shape)
    lead = tuple(s for i, s in enumerate(shape) if i != cd)
    return np.moveaxis(a2.reshape(lead + (shape[cd],)), -1, cd)


def _row_dtype(dtype):
    """Per-row results are kept in the compute type (float32 for half inputs) until the reduction."""
    return dtype if dtype in (D.float32, D.float64) else D.float32


def _host(t, dtype=None):
    a = t._np
    return a if dtype is None else a.astype(dtype, copy=False)


def _ce_rows(x, t, w, ignore_index, eps, mean=False):
    """(loss, lse, w[t], den): loss, lse and w[t] per row of a cross-entropy with class-index targets, each shaped
    like the target, den None; on cuda the targets' range is checked from the numbers the kernel writes (no launch
    of its own: see ``_check_class_targets``). With ``mean``, where one program holds every row (``row_config``'s
    ``whole``), that program also takes the 'mean': loss is then the 0-d mean, den its sum of the weights."""
    cd = 1 if x.ndim > 1 else 0
    C = x._shape[cd]
    rdt = _row_dtype(x.dtype)
    if x._storage.device.type == "cpu":
        ct = np_ct(x.dtype)
        loss, lse, wt = _np_ce_fwd(_to_rows(_host(x, ct), cd), _host(t).reshape(-1), None if w is None else
                                   _host(w, ct), ignore_index, eps)
        return tuple(wrap(a.reshape(t._shape).astype(rdt.np), rdt, x.device) for a in (loss, lse, wt)) + (None,)
    loss, lse, wt = (empty(t._shape, rdt, x.device) for _ in range(3))
    R, den = t.numel(), None
    if R:
        xr, so, si, sc = _class_rows(interp_bf16_in(x))
        ct = ACC[x.dtype]
        e = _ScalarArg(eps, ct, x.device)
        block_r, block_c, nw = row_config(R, C, whole=mean)
        if mean and block_r >= R:
            loss, den = empty((), rdt, x.device), empty((), rdt, x.device)
        parts = empty((cdiv(R, block_r), 2), D.int64, x.device)
        _ce_fwd_kernel[(cdiv(R, block_r),)](
            ptr(xr), ptr(t), in_ptr(w) if w is not None else ptr(t), ptr(loss), ptr(lse),
            ptr(wt), ptr(parts), ptr(den if den is not None else wt), R, C, _inner(x), so, si, sc, ignore_index,
            e.arg, HAS_W=w is not None, SMOOTH=eps > 0, EPS_PTR=e.is_ptr, MEAN=den is not None, CT=ct,
            BLOCK_R=block_r, BLOCK_C=block_c, num_warps=nw)
        host_check(parts, lambda values: check_range(values, C, _bad_target))
    return loss, lse, wt, den


def _ce_rows_grad(ctx, g, den=None):
    """dx of ``_ce_rows``'s loss from the per-row gradient g (one value broadcast to every row, or a tensor shaped
    like the target), divided by ``den`` (the 'mean''s sum of weights) when given: one ``_ce_bwd_kernel``."""
    x, t, w, lse, wt = ctx.saved_tensors
    if ctx.needs_input_grad[2]:
        raise RuntimeError("the derivative for 'weight' is not implemented.")
    if STATE.enabled:
        g = g if den is None else (g / den).expand(t._shape)
        return _ce_index_grad_composite(x, t, w, wt, g, ctx.ignore_index, ctx.eps)
    cd = 1 if x.ndim > 1 else 0
    C = x._shape[cd]
    if x._storage.device.type == "cpu":
        ct = np_ct(x.dtype)
        gr = _host(g, ct) if den is None else _host(g, ct) / _host(den, ct)
        dx2 = _np_ce_bwd(_to_rows(_host(x, ct), cd), _host(t).reshape(-1), None if w is None else _host(w, ct),
                         _host(lse, ct).reshape(-1), np.broadcast_to(gr, t._shape).reshape(-1),
                         ctx.ignore_index, ctx.eps)
        return wrap(_from_rows(dx2, x._shape, cd).astype(x.dtype.np), x.dtype, x.device)
    dx = empty(x._shape, x.dtype, x.device)
    R = t.numel()
    if R == 0 or C == 0:
        return dx.zero_() if dx.numel() else dx
    out = empty(x._shape, D.float32, x.device) if INTERPRET and x.dtype is D.bfloat16 else dx
    xr, so, si, sc = _class_rows(interp_bf16_in(x))
    _, dso, dsi, dsc = _class_rows(out)
    gr, gs = _row_grad(g, R)
    ct = ACC[x.dtype]
    e = _ScalarArg(ctx.eps, ct, x.device)
    block_r, block_c, nw = row_config(R, C)
    _ce_bwd_kernel[(cdiv(R, block_r),)](
        ptr(xr), ptr(t), in_ptr(w) if w is not None else ptr(t), ptr(lse), in_ptr(gr),
        ptr(den) if den is not None else ptr(lse), ptr(out), R, C, _inner(x), so, si, sc, dso, dsi, dsc, gs,
        ctx.ignore_index, e.arg, HAS_W=w is not None, SMOOTH=ctx.eps > 0, EPS_PTR=e.is_ptr, HAS_DEN=den is not None,
        CT=ct, BLOCK_R=block_r, BLOCK_C=block_c, num_warps=nw)
    if out is not dx:
        copy_host(dx, out)
    return dx


class CrossEntropyRows(Function):
    """Per-row cross-entropy with class-index targets: returns (loss, w[t]), both shaped like the target."""

    @staticmethod
    def forward(ctx, x, t, w, ignore_index, eps):
        ctx._name = "NllLossBackward0" if not eps else "CrossEntropyLossBackward0"
        loss, lse, wt = _ce_rows(x, t, w, ignore_index, eps)[:3]
        ctx.mark_non_differentiable(wt)
        ctx.ignore_index, ctx.eps = ignore_index, eps
        ctx.save_for_backward(x, t, w, lse, wt)
        return loss, wt

    @staticmethod
    def backward(ctx, g, _gw):
        return _ce_rows_grad(ctx, g), None, None, None, None


class CrossEntropyMean(Function):
    """The 'mean' cross-entropy with class-index targets, ``loss.sum() / w[t].sum()`` of ``_ce_rows``, as one node:
    its backward divides the gradient by the sum of weights inside ``_ce_bwd_kernel`` (the two nodes of
    ``CrossEntropyRows`` and ``WeightedMean`` take a launch more for that quotient). Rows that one program holds
    take the mean in ``_ce_fwd_kernel`` too: one launch forward."""

    @staticmethod
    def forward(ctx, x, t, w, ignore_index, eps):
        ctx._name = "NllLossBackward0" if not eps else "CrossEntropyLossBackward0"
        loss, lse, wt, den = _ce_rows(x, t, w, ignore_index, eps, mean=True)
        out, ctx.den = (loss, den) if den is not None else _weighted_mean(loss, wt)    # (den: the kernel took it)
        ctx.ignore_index, ctx.eps = ignore_index, eps
        ctx.save_for_backward(x, t, w, lse, wt)
        return out

    @staticmethod
    def backward(ctx, g):
        return _ce_rows_grad(ctx, g, ctx.den), None, None, None, None


def _class_shape(x, C):
    """The shape that puts C along the class dim of ``x`` and 1 elsewhere (broadcasts a per-class vector)."""
    cd = 1 if x.ndim > 1 else 0
    return tuple(C if i == cd else 1 for i in range(x.ndim)), cd


def _ce_index_grad_composite(x, t, w, wt, g, ignore_index, eps):
    """The backward of ``CrossEntropyRows`` in differentiable tensor ops (create_graph=True)."""
    cshape, cd = _class_shape(x, x._shape[1 if x.ndim > 1 else 0])
    C = cshape[cd]
    with no_grad():
        onehot = (t.unsqueeze(cd) == _creation.arange(C, device=x.device).reshape(cshape)).to(x.dtype)
        wt_b = wt.to(x.dtype).unsqueeze(cd)
        target = onehot * wt_b * (1 - eps)
        a = wt_b * (1 - eps)
        if eps:
            valid = (t != ignore_index).to(x.dtype).unsqueeze(cd)
            wc = w.reshape(cshape).to(x.dtype) if w is not None else _creation.ones(cshape, dtype=x.dtype,
                                                                                   device=x.device)
            target = target + valid * wc * (eps / C)
            a = a + valid * (wc.sum() * (eps / C))
    p = softmax(x, cd)
    return g.to(x.dtype).unsqueeze(cd) * (p * a - target)


class CrossEntropyProb(Function):
    """Per-row cross-entropy with class probabilities as targets (shaped like the input)."""

    @staticmethod
    def forward(ctx, x, p, w, eps):
        ctx._name = "CrossEntropyLossBackward0"
        cd = 1 if x.ndim > 1 else 0
        C = x._shape[cd]
        lead = tuple(s for i, s in enumerate(x._shape) if i != cd)
        rdt = _row_dtype(x.dtype)
        if x._storage.device.type == "cpu":
            ct = np_ct(x.dtype)
            loss, lse, sq = _np_ce_prob_fwd(_to_rows(_host(x, ct), cd), _to_rows(_host(p, ct), cd),
                                            None if w is None else _host(w, ct), eps)
            loss, lse, sq = (wrap(a.reshape(lead).astype(rdt.np), rdt, x.device) for a in (loss, lse, sq))
        else:
            loss, lse, sq = (empty(lead, rdt, x.device) for _ in range(3))
            R = math.prod(lead)
            if R:
                xr, so, si, sc = _class_rows(interp_bf16_in(x))
                pr, tso, tsi, tsc = _class_rows(interp_bf16_in(p))
                ct = ACC[x.dtype]
                e = _ScalarArg(eps, ct, x.device)
                block_r, block_c, nw = row_config(R, C)
                _ce_prob_fwd_kernel[(cdiv(R, block_r),)](
                    ptr(xr), ptr(pr), in_ptr(w) if w is not None else ptr(pr), ptr(loss), ptr(lse),
                    ptr(sq), R, C, _inner(x), so, si, sc, tso, tsi, tsc, e.arg,
                    HAS_W=w is not None, SMOOTH=eps > 0, EPS_PTR=e.is_ptr, CT=ct, BLOCK_R=block_r, BLOCK_C=block_c,
                    num_warps=nw)
        ctx.eps = eps
        ctx.save_for_backward(x, p, w, lse, sq)
        return loss

    @staticmethod
    def backward(ctx, g):
        x, p, w, lse, sq = ctx.saved_tensors
        if ctx.needs_input_grad[2]:
            raise RuntimeError("the derivative for 'weight' is not implemented.")
        eps = ctx.eps
        need_x, need_p = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if STATE.enabled:
            dx, dp = _ce_prob_grad_composite(x, p, w, g, eps)
            return dx if need_x else None, dp if need_p else None, None, None
        cd = 1 if x.ndim > 1 else 0
        C = x._shape[cd]
        if x._storage.device.type == "cpu":
            ct = np_ct(x.dtype)
            dx2, dp2 = _np_ce_prob_bwd(_to_rows(_host(x, ct), cd), _to_rows(_host(p, ct), cd),
                                       None if w is None else _host(w, ct), _host(lse, ct).reshape(-1),
                                       _host(sq, ct).reshape(-1),
                                       np.broadcast_to(_host(g, ct), lse._shape).reshape(-1), eps)
            dx = wrap(_from_rows(dx2, x._shape, cd).astype(x.dtype.np), x.dtype, x.device) if need_x else None
            dp = wrap(_from_rows(dp2, x._shape, cd).astype(p.dtype.np), p.dtype, x.device) if need_p else None
            return dx, dp, None, None
        dx = empty(x._shape, x.dtype, x.device) if need_x else None
        dp = empty(x._shape, p.dtype, x.device) if need_p else None
        R = lse.numel()
        if R and C:
            bf = INTERPRET and x.dtype is D.bfloat16
            ox = empty(x._shape, D.float32, x.device) if bf and need_x else dx
            op = empty(x._shape, D.float32, x.device) if bf and need_p else dp
            xr, so, si, sc = _class_rows(interp_bf16_in(x))
            pr, tso, tsi, tsc = _class_rows(interp_bf16_in(p))
            _, dso, dsi, dsc = _class_rows(ox) if need_x else (None, 0, 0, 0)
            _, eso, esi, esc = _class_rows(op) if need_p else (None, 0, 0, 0)
            gr, gs = _row_grad(g, R)
            ct = ACC[x.dtype]
            e = _ScalarArg(eps, ct, x.device)
            block_r, block_c, nw = row_config(R, C)
            _ce_prob_bwd_kernel[(cdiv(R, block_r),)](
                ptr(xr), ptr(pr), in_ptr(w) if w is not None else ptr(pr), ptr(lse), ptr(sq),
                in_ptr(gr), ptr(ox if need_x else lse), ptr(op if need_p else lse), R, C, _inner(x),
                so, si, sc, tso, tsi, tsc, dso, dsi, dsc, eso, esi, esc, gs, e.arg,
                HAS_W=w is not None, SMOOTH=eps > 0, EPS_PTR=e.is_ptr, DX=need_x, DT=need_p, CT=ct, BLOCK_R=block_r,
                BLOCK_C=block_c, num_warps=nw)
            if bf:
                for dst, src in ((dx, ox), (dp, op)):
                    if dst is not None:
                        copy_host(dst, src)
        else:
            dx = dx.zero_() if dx is not None and dx.numel() else dx
            dp = dp.zero_() if dp is not None and dp.numel() else dp
        return dx, dp, None, None


def _ce_prob_grad_composite(x, p, w, g, eps):
    cshape, cd = _class_shape(x, x._shape[1 if x.ndim > 1 else 0])
    C = cshape[cd]
    q = p * (1 - eps) + eps / C if eps else p
    wc = w.reshape(cshape) if w is not None else None
    wq = q * wc if wc is not None else q
    gb = g.to(x.dtype).unsqueeze(cd)
    dx = gb * (softmax(x, cd) * wq.sum(cd, keepdim=True) - wq)
    dp = gb * log_softmax(x, cd) * (-(1 - eps))
    if wc is not None:
        dp = dp * wc
    return dx, dp


def _nll_rows(x, t, w, ignore_index, mean=False):
    """(loss, w[t], den) of a negative log-likelihood, per row (shaped like the target; den None) by
    ``_nll_fwd_kernel``; with ``mean``, where one program of a GPU holds every row (1024, as ``block_for``'s; the
    interpreter's too, so that it launches what a GPU does), loss is the 0-d 'mean' and den its sum of weights."""
    cd = 1 if x.ndim > 1 else 0
    rdt = _row_dtype(x.dtype)
    if x._storage.device.type == "cpu":
        ct = np_ct(x.dtype)
        loss, wt = _np_nll_fwd(_to_rows(_host(x, ct), cd), _host(t).reshape(-1),
                               None if w is None else _host(w, ct), ignore_index)
        return tuple(wrap(a.reshape(t._shape).astype(rdt.np), rdt, x.device) for a in (loss, wt)) + (None,)
    loss, wt, den = empty(t._shape, rdt, x.device), empty(t._shape, rdt, x.device), None
    R = t.numel()
    if R:
        xr, so, si, sc = _class_rows(interp_bf16_in(x))
        block = block_for(R)
        if mean and R <= 1024:
            block, loss, den = next_pow2(R), empty((), rdt, x.device), empty((), rdt, x.device)
        _nll_fwd_kernel[(cdiv(R, block),)](
            ptr(xr), ptr(t), in_ptr(w) if w is not None else ptr(t), ptr(loss), ptr(wt),
            ptr(den if den is not None else wt), R, _inner(x), so, si, sc, ignore_index, HAS_W=w is not None,
            MEAN=den is not None, CT=ACC[x.dtype], BLOCK=block)
    return loss, wt, den


def _nll_rows_grad(ctx, g, den=None):
    """dx of ``_nll_rows``'s loss from the per-row gradient g (one value for every row, or shaped like the target),
    divided by ``den`` (the 'mean''s sum of weights) when given: one ``_nll_bwd_kernel``."""
    t, w, wt = ctx.saved_tensors
    if ctx.needs_input_grad[2]:
        raise RuntimeError("the derivative for 'weight' is not implemented.")
    shape, dtype, dev = ctx.x_meta
    cd = 1 if len(shape) > 1 else 0
    C = shape[cd]
    if STATE.enabled or dev.type == "cpu":
        g = g if den is None else (g / den).expand(t._shape)
    if STATE.enabled:
        cshape = tuple(C if i == cd else 1 for i in range(len(shape)))
        with no_grad():
            hot = (t.unsqueeze(cd) == _creation.arange(C, device=dev).reshape(cshape)).to(dtype)
            hot = hot * wt.to(dtype).unsqueeze(cd) * -1.0
        return g.to(dtype).unsqueeze(cd) * hot
    if dev.type == "cpu":
        ct = np_ct(dtype)
        x2 = np.zeros((t.numel(), C), ct)
        dx2 = _np_nll_bwd(x2, _host(t).reshape(-1), None if w is None else _host(w, ct),
                          np.broadcast_to(_host(g, ct), t._shape).reshape(-1), ctx.ignore_index)
        return wrap(_from_rows(dx2, shape, cd).astype(dtype.np), dtype, dev)
    dx = empty(shape, dtype, dev)
    R = t.numel()
    if R == 0 or C == 0:
        return dx
    out = empty(shape, D.float32, dev) if INTERPRET and dtype is D.bfloat16 else dx
    _, dso, dsi, dsc = _class_rows(out)
    gr, gs = _row_grad(g, R)
    block_r, block_c, nw = row_config(R, C)
    _nll_bwd_kernel[(cdiv(R, block_r),)](
        ptr(t), in_ptr(w) if w is not None else ptr(t), in_ptr(gr), ptr(den) if den is not None else ptr(t),
        ptr(out), R, C, math.prod(shape[2:]) if len(shape) > 2 else 1, dso, dsi, dsc, gs, ctx.ignore_index,
        HAS_W=w is not None, HAS_DEN=den is not None, CT=ACC[dtype], BLOCK_R=block_r, BLOCK_C=block_c,
        num_warps=nw)
    if out is not dx:
        copy_host(dx, out)
    return dx


class NllRows(Function):
    """Per-row negative log-likelihood: returns (loss, w[t]), both shaped like the target."""

    @staticmethod
    def forward(ctx, x, t, w, ignore_index):
        ctx._name = "NllLossBackward0"
        loss, wt, _ = _nll_rows(x, t, w, ignore_index)
        ctx.mark_non_differentiable(wt)
        ctx.ignore_index = ignore_index
        ctx.x_meta = (x._shape, x.dtype, x.device)
        ctx.save_for_backward(t, w, wt)
        return loss, wt

    @staticmethod
    def backward(ctx, g, _gw):
        return _nll_rows_grad(ctx, g), None, None, None


class NllMean(Function):
    """The 'mean' negative log-likelihood, ``loss.sum() / w[t].sum()``, as one node: its backward divides by the
    sum of weights inside ``_nll_bwd_kernel``, and rows that one program holds take the mean in
    ``_nll_fwd_kernel`` (``NllRows`` and ``WeightedMean`` take a launch more each way)."""

    @staticmethod
    def forward(ctx, x, t, w, ignore_index):
        ctx._name = "NllLossBackward0"
        loss, wt, den = _nll_rows(x, t, w, ignore_index, mean=True)
        out, ctx.den = (loss, den) if den is not None else _weighted_mean(loss, wt)
        ctx.ignore_index = ignore_index
        ctx.x_meta = (x._shape, x.dtype, x.device)
        ctx.save_for_backward(t, w, wt)
        return out

    @staticmethod
    def backward(ctx, g):
        return _nll_rows_grad(ctx, g, ctx.den), None, None, None


# ====================================================================================================================
# Pointwise losses: the math of each (loss, d/dinput, d/dtarget), Triton and NumPy side by side
# ====================================================================================================================

@triton.jit
def _mse(x, y, a, b):
    d = x - y
    return d * d


@triton.jit
def _mse_dx(g, x, y, a, b):
    return 2.0 * g * (x - y)


@triton.jit
def _mse_dy(g, x, y, a, b):
    return -2.0 * g * (x - y)


@triton.jit
def _sgn(d):
    return (d > 0).to(d.dtype) - (d < 0).to(d.dtype)


@triton.jit
def _l1(x, y, a, b):
    return tl.abs(x - y)


@triton.jit
def _l1_dx(g, x, y, a, b):
    return g * _sgn(x - y)


@triton.jit
def _l1_dy(g, x, y, a, b):
    return -g * _sgn(x - y)


@triton.jit
def _smooth_l1(x, y, beta, b):
    z = tl.abs(x - y)
    return tl.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta)


@triton.jit
def _smooth_l1_grad(d, beta):
    return tl.where(d < -beta, -1.0, tl.where(d > beta, 1.0, d / beta))


@triton.jit
def _smooth_l1_dx(g, x, y, beta, b):
    return g * _smooth_l1_grad(x - y, beta)


@triton.jit
def _smooth_l1_dy(g, x, y, beta, b):
    return -g * _smooth_l1_grad(x - y, beta)


@triton.jit
def _huber(x, y, delta, b):
    z = tl.abs(x - y)
    return tl.where(z < delta, 0.5 * z * z, delta * (z - 0.5 * delta))


@triton.jit
def _huber_grad(d, delta):
    return tl.where(d < -delta, -delta, tl.where(d > delta, delta, d))


@triton.jit
def _huber_dx(g, x, y, delta, b):
    return g * _huber_grad(x - y, delta)


@triton.jit
def _huber_dy(g, x, y, delta, b):
    return -g * _huber_grad(x - y, delta)


@triton.jit
def _clamped_logs(x):
    """(log(x), log(1 - x)), each at least -100, as PyTorch's binary_cross_entropy."""
    return tl.maximum(tl.log(x), -100.0), tl.maximum(_log1p(-x), -100.0)


@triton.jit
def _bce(x, y, a, b):
    log_x, log_1mx = _clamped_logs(x)
    return (y - 1.0) * log_1mx - y * log_x


@triton.jit
def _bce_dx(g, x, y, a, b):
    return g * (x - y) / tl.maximum((1.0 - x) * x, 1e-12)


@triton.jit
def _bce_dy(g, x, y, a, b):
    log_x, log_1mx = _clamped_logs(x)
    return g * (log_1mx - log_x)


@triton.jit
def _bce_logits(x, y, a, b):
    # (1 - y) * x + softplus(-x), written so that exp never overflows (nor x - x * y near the float max)
    return tl.where(x > 0, (1.0 - y) * x, -x * y) + _log1p(tl.exp(-tl.abs(x)))


@triton.jit
def _bce_logits_dx(g, x, y, a, b):
    return g * (_sigmoid(x) - y)


@triton.jit
def _bce_logits_dy(g, x, y, a, b):
    return -g * x


@triton.jit
def _kl_div(x, y, a, b):
    # xlogy(y, y) - y * x: 0 where y == 0
    return tl.where(y == 0, 0.0, y * tl.log(y)) - y * x


@triton.jit
def _kl_div_dx(g, x, y, a, b):
    return -g * y


@triton.jit
def _kl_div_dy(g, x, y, a, b):
    return g * (tl.log(y) + 1.0 - x)


@triton.jit
def _kl_div_log(x, y, a, b):
    return tl.exp(y) * (y - x)


@triton.jit
def _kl_div_log_dx(g, x, y, a, b):
    return -g * tl.exp(y)


@triton.jit
def _kl_div_log_dy(g, x, y, a, b):
    return g * tl.exp(y) * (y - x + 1.0)


def _np_smooth_l1_grad(d, beta):
    return np.where(d < -beta, -1.0, np.where(d > beta, 1.0, d / beta))


def _np_huber_grad(d, delta):
    return np.where(d < -delta, -delta, np.where(d > delta, delta, d))


def _np_clamped_logs(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(np.log(x), -100.0), np.maximum(np.log1p(-x), -100.0)


def _np_bce(x, y, a):
    lx, l1x = _np_clamped_logs(x)
    return (y - 1) * l1x - y * lx


def _np_xlogy_self(y):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y == 0, 0.0, y * np.log(np.where(y == 0, 1.0, y)))


class PointwiseLoss:
    """One pointwise loss, declared in one ``_loss(...)`` row: its autograd node's name, the forward as a Triton
    function and its NumPy reference, and the gradient for input (``dx``) and target (``dy``), each as
    ``(Triton function, rule)`` or ``(Triton function, NumPy rule, tensor rule)``. A rule of two is written in
    operators only, so the same function runs on the NumPy arrays (``cpu``) and on tensors (a recorded backward);
    one that needs a function (np.sign / Tensor.sign, np.exp / Tensor.exp) is written once for each."""

    def __init__(self, name, node, fwd, ref, dx, dy):
        self.name, self.node, self.fwd, self.ref = name, node, fwd, ref
        self.dx, self.dx_ref, self.dx_comp = dx[0], dx[1], dx[-1]
        self.dy, self.dy_ref, self.dy_comp = dy[0], dy[1], dy[-1]


POINTWISE = {}


def _loss(name, node, fwd, ref, *, dx, dy):
    POINTWISE[name] = PointwiseLoss(name, node, fwd, ref, dx, dy)


_loss("mse", "MseLossBackward0", _mse, lambda x, y, a: (x - y) ** 2,
      dx=(_mse_dx, lambda g, x, y, a: g * 2 * (x - y)), dy=(_mse_dy, lambda g, x, y, a: g * -2 * (x - y)))
_loss("l1", "L1LossBackward0", _l1, lambda x, y, a: np.abs(x - y),
      dx=(_l1_dx, lambda g, x, y, a: g * np.sign(x - y), lambda g, x, y, a: g * (x - y).sign()),
      dy=(_l1_dy, lambda g, x, y, a: -g * np.sign(x - y), lambda g, x, y, a: g * (y - x).sign()))
_loss("smooth_l1", "SmoothL1LossBackward0", _smooth_l1,
      lambda x, y, a: np.where(np.abs(x - y) < a, 0.5 * (x - y) ** 2 / a, np.abs(x - y) - 0.5 * a),
      dx=(_smooth_l1_dx, lambda g, x, y, a: g * _np_smooth_l1_grad(x - y, a),
          lambda g, x, y, a: g * ((x - y) / a).clamp(-1.0, 1.0)),
      dy=(_smooth_l1_dy, lambda g, x, y, a: -g * _np_smooth_l1_grad(x - y, a),
          lambda g, x, y, a: g * ((y - x) / a).clamp(-1.0, 1.0)))
_loss("huber", "HuberLossBackward0", _huber,
      lambda x, y, a: np.where(np.abs(x - y) < a, 0.5 * (x - y) ** 2, a * (np.abs(x - y) - 0.5 * a)),
      dx=(_huber_dx, lambda g, x, y, a: g * _np_huber_grad(x - y, a), lambda g, x, y, a: g * (x - y).clamp(-a, a)),
      dy=(_huber_dy, lambda g, x, y, a: -g * _np_huber_grad(x - y, a), lambda g, x, y, a: g * (y - x).clamp(-a, a)))
_loss("bce", "BinaryCrossEntropyBackward0", _bce, _np_bce,
      dx=(_bce_dx, lambda g, x, y, a: g * (x - y) / np.maximum((1 - x) * x, 1e-12),
          lambda g, x, y, a: g * (x - y) / ((1 - x) * x).clamp(min=1e-12)),
      dy=(_bce_dy, lambda g, x, y, a: g * (_np_clamped_logs(x)[1] - _np_clamped_logs(x)[0]),
          lambda g, x, y, a: g * ((-x).log1p().clamp(min=-100.0) - x.log().clamp(min=-100.0))))
_loss("bce_logits", "BinaryCrossEntropyWithLogitsBackward0", _bce_logits,
      lambda x, y, a: np.where(x > 0, (1 - y) * x, -x * y) + np.log1p(np.exp(-np.abs(x))),
      dx=(_bce_logits_dx, lambda g, x, y, a: g * (_np_sigmoid(x) - y), lambda g, x, y, a: g * (x.sigmoid() - y)),
      dy=(_bce_logits_dy, lambda g, x, y, a: g * -x))
_loss("kl_div", "KlDivBackward0", _kl_div, lambda x, y, a: _np_xlogy_self(y) - y * x,
      dx=(_kl_div_dx, lambda g, x, y, a: g * -y),
      dy=(_kl_div_dy, lambda g, x, y, a: g * (np.log(y) + 1 - x), lambda g, x, y, a: g * (y.log() + 1 - x)))
_loss("kl_div_log", "KlDivBackward0", _kl_div_log, lambda x, y, a: np.exp(y) * (y - x),
      dx=(_kl_div_log_dx, lambda g, x, y, a: -g * np.exp(y), lambda g, x, y, a: g * -y.exp()),
      dy=(_kl_div_log_dy, lambda g, x, y, a: g * np.exp(y) * (y - x + 1), lambda g, x, y, a: g * y.exp() * (y - x + 1)))


class Pointwise(Function):
    """``op(input, target)`` elementwise (broadcast), unreduced; one fused kernel forward and per gradient."""

    @staticmethod
    def forward(ctx, x, y, op, a):
        ctx._name = op.node
        shape = broadcast_shapes(x._shape, y._shape)
        if x._storage.device.type == "cpu":
            ct = np_ct(x.dtype)
            with np.errstate(all="ignore"):
                res = op.ref(_host(x, ct), _host(y, ct), a)
            out = wrap(np.broadcast_to(res, shape).astype(x.dtype.np), x.dtype, x.device)
        else:
            out = launch_pointwise(op.fwd, (x, y), empty(shape, x.dtype, x.device), ACC[x.dtype], float(a))
        ctx.op, ctx.a = op, a
        ctx.save_for_backward(x, y)
        return out

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        op, a = ctx.op, ctx.a
        if all(ctx.needs_input_grad[:2]) and not STATE.enabled and x._storage.device.type != "cpu" \
                and x.dtype == y.dtype:
            dx, dy = launch_pointwise((op.dx, op.dy), (g, x, y), (empty(g._shape, x.dtype, x.device),
                                                                  empty(g._shape, y.dtype, y.device)),
                                      ACC[x.dtype], float(a))       # both gradients from one read of g, x, y
            return sum_to(dx, x._shape), sum_to(dy, y._shape), None, None
        grads = []
        for k, (tfn, ref, comp, t) in enumerate(((op.dx, op.dx_ref, op.dx_comp, x), (op.dy, op.dy_ref, op.dy_comp,
                                                                                   y))):
            if not ctx.needs_input_grad[k]:
                grads.append(None)
                continue
            if STATE.enabled:
                d = comp(g, x, y, a)
            elif x._storage.device.type == "cpu":
                ct = np_ct(x.dtype)
                with np.errstate(all="ignore"):
                    res = ref(_host(g, ct), _host(x, ct), _host(y, ct), a)
                d = wrap(np.broadcast_to(res, g._shape).astype(t.dtype.np), t.dtype, t.device)
            else:
                d = launch_pointwise(tfn, (g, x, y), empty(g._shape, t.dtype, t.device), ACC[t.dtype], float(a))
            grads.append(sum_to(d, t._shape))
        return grads[0], grads[1], None, None


# ====================================================================================================================
# The public functions (``torch.nn.functional`` names and arguments)
# ====================================================================================================================

_REDUCTIONS = ("none", "mean", "sum")


def legacy_reduction(size_average, reduce, reduction):
    """PyTorch's mapping of the deprecated ``size_average`` / ``reduce`` flags onto ``reduction``."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    reduction = "none" if not reduce else "mean" if size_average else "sum"
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{reduction}' instead.",
                  UserWarning, stacklevel=3)
    return reduction


def _check_reduction(reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _check_tensor(name, arg, value):
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}(): argument '{arg}' must be Tensor, not {type(value).__name__}")


def _check_float(name, x):
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"{name}: expected a floating point input, but got a tensor of dtype "
                           f"{D.scalar_name(x.dtype)}")


def _reduce(loss, reduction):
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    return loss


def _check_class_targets(x, t, weight, ignore_index, in_kernel=False):
    """nll_loss's checks on class-index targets and weights: dtype, shapes, and every target in [0, C) or equal to
    ``ignore_index`` (on the device, one min/max kernel, before any other kernel reads them; ``in_kernel``: not on
    the device, where the loss kernel writes the numbers of that check itself, ``_ce_rows``)."""
    if x.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {x.ndim})")
    if t.dtype is not D.int64:
        raise RuntimeError(f"expected scalar type Long but found {D.scalar_name(t.dtype)}")
    if x.ndim == 1:
        if t.ndim != 0:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported" if t.ndim > 1 else
                               f"size mismatch (got input: {list(x._shape)}, target: {list(t._shape)})")
    else:
        if t.ndim == 0 or x._shape[0] != t._shape[0]:
            raise ValueError(f"Expected input batch_size ({x._shape[0]}) to match target batch_size "
                             f"({t._shape[0] if t.ndim else 0}).")
        if x.ndim == 2 and t.ndim != 1:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
        if t._shape[1:] != x._shape[2:]:
            raise RuntimeError(f"Expected target size {[x._shape[0], *x._shape[2:]]}, got {list(t._shape)}")
    C = x._shape[1 if x.ndim > 1 else 0]
    if weight is not None and (weight.ndim != 1 or weight.numel() != C):
        raise RuntimeError(f"weight tensor should be defined either for all {C} classes or no classes but got "
                           f"weight tensor of shape: {list(weight._shape)}")
    if t.numel() == 0:
        return
    if t._storage.device.type == "cpu":
        a = t._np
        a = a[a != ignore_index]
        check_range([(int(a.min()), int(a.max())) if a.size else (0, 0)], C, _bad_target)
    elif not in_kernel:
        check_index_range(t.contiguous(), C, _bad_target, ignore_index)


def _bad_target(t):
    return IndexError(f"Target {t} is out of bounds.")


def _weight_arg(weight, x, name, dtype=None):
    """The class weights as the kernels read them: contiguous, in x's dtype (or ``dtype``, the computation's)."""
    if weight is None:
        return None
    _check_tensor(name, "weight", weight)
    check_same_device(name, x, weight)
    dtype = dtype or x.dtype
    # the kernels read the class weights with stride 1: a view (sliced, expanded) goes through a contiguous copy
    return (weight if weight.dtype is dtype else weight.to(dtype)).contiguous()


@register("nll_loss", method=False, function=False)
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """The negative log-likelihood of class-index targets given log-probabilities ``input`` (C), (N, C) or
    (N, C, d1, ...): ``-weight[t] * input[n, t]``; 'mean' divides by the sum of the weights of the counted
    targets (targets equal to ``ignore_index`` count for nothing)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_tensor("nll_loss", "input", input)
    _check_tensor("nll_loss", "target", target)
    _check_reduction(reduction)
    check_same_device("nll_loss", input, target)
    _check_float("nll_loss", input)
    _check_class_targets(input, target, weight, ignore_index)
    w = _weight_arg(weight, input, "nll_loss")
    if reduction == "mean":
        out = NllMean.apply(input, target.contiguous(), w, int(ignore_index))
        return out if out.dtype is input.dtype else out.to(input.dtype)
    loss, wt = NllRows.apply(input, target.contiguous(), w, int(ignore_index))
    return _reduce_rows(loss, wt, input.dtype, reduction)


@triton.jit
def _weighted_mean_kernel(loss_ptr, wt_ptr, out_ptr, den_ptr, n, CT: tl.constexpr, BLOCK: tl.constexpr):
    """The 'mean' of per-row losses in one program: out = sum(loss) / den, den = sum(wt), both sums in CT over blocks
    of BLOCK rows. loss, wt: (n,) contiguous; out: () in loss's dtype; den: () in wt's dtype."""
    acc = tl.zeros((BLOCK,), CT)
    acc_w = tl.zeros((BLOCK,), CT)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        m = offs < n
        acc += tl.load(loss_ptr + offs, mask=m, other=0.0).to(CT)
        acc_w += tl.load(wt_ptr + offs, mask=m, other=0.0).to(CT)
    total = tl.sum(acc, axis=0)
    den = tl.sum(acc_w, axis=0).to(den_ptr.dtype.element_ty)
    tl.store(den_ptr, den)
    tl.store(out_ptr, (total / den.to(CT)).to(out_ptr.dtype.element_ty))


def _weighted_mean(loss, wt):
    """(loss.sum() / wt.sum(), wt.sum()) as 0-d tensors: on ``cpu`` the NumPy sums, on cuda one kernel for both sums
    and the quotient."""
    if loss._storage.device.type == "cpu":
        with np.errstate(all="ignore"):
            den = wt._np.sum(dtype=np.float64)
            out = np.asarray(loss._np.sum(dtype=np.float64) / den, dtype=loss.dtype.np)
        return wrap(out, loss.dtype, loss.device), Tensor._wrap_numpy(np.asarray(den, dtype=loss.dtype.np),
                                                                      loss.device)
    out, den = empty((), loss.dtype, loss.device), empty((), wt.dtype, wt.device)
    lc, wc = loss.contiguous(), wt.contiguous()
    _weighted_mean_kernel[(1,)](ptr(lc), ptr(wc), ptr(out), ptr(den), lc.numel(), CT=ACC[loss.dtype], BLOCK=1024)
    return out, den


class WeightedMean(Function):
    """'mean' of per-row losses: ``loss.sum() / wt.sum()`` (``wt``: the weights of the counted targets) as one
    node (``_weighted_mean``)."""

    @staticmethod
    def forward(ctx, loss, wt):
        ctx._name = "DivBackward0"
        ctx.shape = loss._shape
        out, ctx.den = _weighted_mean(loss, wt)
        return out

    @staticmethod
    def backward(ctx, g):
        return (g / ctx.den).expand(ctx.shape), None


def _reduce_rows(loss, wt, dtype, reduction):
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = loss.sum()
    else:
        out = WeightedMean.apply(loss, wt)
    return out if out.dtype is dtype else out.to(dtype)


@register("cross_entropy", method=False, function=False)
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0, *, dtype=None):
    """Cross-entropy between logits ``input`` ((C), (N, C) or (N, C, d1, ...)) and ``target``: class indices
    ((), (N) or (N, d1, ...), int64) or class probabilities (shaped like ``input``). ``label_smoothing`` mixes
    the target with the uniform distribution; 'mean' divides by the summed weights of the counted targets
    (class indices) or by the number of rows (probabilities). One fused kernel forward and one backward.

    ``dtype`` (tritorch's, as ``softmax``'s): the loss of ``input.to(dtype)``, in ``dtype``. float32 for half logits
    with class-index targets (what autocast passes, whose policy computes losses in float32) reads the half logits
    in the kernels, which compute in float32 anyway: no float32 copy of the logits forward, nor of their gradient
    backward (the gradient is written in the logits' dtype), with the values of ``input.float()``'s loss."""
    input, dtype = read_as(input, dtype) if isinstance(input, Tensor) else (input, None)
    if dtype is not None and not (isinstance(target, Tensor) and not target.dtype.is_floating_point):
        input, dtype = input.to(dtype), None        # probability targets: the loss of the cast input
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_tensor("cross_entropy", "input", input)
    _check_tensor("cross_entropy", "target", target)
    _check_reduction(reduction)
    check_same_device("cross_entropy", input, target)
    label_smoothing = float(label_smoothing)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if input.ndim == 0:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    _check_float("cross_entropy", input)
    if input._shape == target._shape:
        if not target.dtype.is_floating_point:
            raise RuntimeError(f"Expected floating point type for target with class probabilities, got "
                               f"{D.scalar_name(target.dtype)}")
        if ignore_index >= 0:
            raise RuntimeError("ignore_index is not supported for floating point target")
        C = input._shape[1 if input.ndim > 1 else 0]
        if weight is not None and (weight.ndim != 1 or weight.numel() != C):
            raise RuntimeError(f"weight tensor should be defined either for all {C} classes or no classes but got "
                               f"weight tensor of shape: {list(weight._shape)}")
        w = _weight_arg(weight, input, "cross_entropy")
        p = target if target.dtype is input.dtype else target.to(input.dtype)
        loss = CrossEntropyProb.apply(input, p, w, label_smoothing)
        if reduction == "mean":
            out = loss.sum() / loss.numel()
        else:
            out = _reduce(loss, reduction)
        return out if out.dtype is input.dtype else out.to(input.dtype)
    _check_class_targets(input, target, weight, ignore_index, in_kernel=True)
    w = _weight_arg(weight, input, "cross_entropy", dtype)
    out_dtype = dtype or input.dtype        # the rows are float32 for half logits: ``dtype`` float32 keeps them
    if reduction == "mean":
        out = CrossEntropyMean.apply(input, target.contiguous(), w, int(ignore_index), label_smoothing)
        return out if out.dtype is out_dtype else out.to(out_dtype)
    loss, wt = CrossEntropyRows.apply(input, target.contiguous(), w, int(ignore_index), label_smoothing)
    return _reduce_rows(loss, wt, out_dtype, reduction)


def _pointwise(name, op, input, target, reduction, a=0.0, *, same_shape=None, warn=True):
    _check_tensor(name, "input", input)
    _check_tensor(name, "target", target)
    check_same_device(name, input, target)
    if same_shape is not None and input._shape != target._shape:
        raise ValueError(same_shape.format(t=list(target._shape), i=list(input._shape)))
    if input._shape != target._shape:
        if warn:
            warnings.warn(f"Using a target size ({list(target._shape)}) that is different to the input size "
                          f"({list(input._shape)}). This will likely lead to incorrect results due to broadcasting. "
                          "Please ensure they have the same size.", UserWarning, stacklevel=3)
        try:
            broadcast_shapes(input._shape, target._shape)
        except RuntimeError:
            raise RuntimeError(f"The size of tensor a ({list(input._shape)}) must match the size of tensor b "
                               f"({list(target._shape)}): they cannot be broadcast together") from None
    dt = D.result_type(input, target)
    if not dt.is_floating_point:
        raise RuntimeError(f"{name}: expected floating point input and target, but got "
                           f"{D.scalar_name(input.dtype)} and {D.scalar_name(target.dtype)}")
    x = input if input.dtype is dt else input.to(dt)
    y = target if target.dtype is dt else target.to(dt)
    return Pointwise.apply(x, y, POINTWISE[op], a)


@register("mse_loss", method=False, function=False)
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error ``(input - target) ** 2``, reduced."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    loss = _pointwise("mse_loss", "mse", input, target, reduction)
    return _reduce(loss if weight is None else loss * weight, reduction)


@register("l1_loss", method=False, function=False)
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean absolute error ``|input - target|``, reduced."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    loss = _pointwise("l1_loss", "l1", input, target, reduction)
    return _reduce(loss if weight is None else loss * weight, reduction)


@register("smooth_l1_loss", method=False, function=False)
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """``0.5 * d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 * beta`` (d = input - target); beta = 0 is
    the L1 loss."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    if beta == 0:
        return _reduce(_pointwise("smooth_l1_loss", "l1", input, target, reduction), reduction)
    return _reduce(_pointwise("smooth_l1_loss", "smooth_l1", input, target, reduction, float(beta)), reduction)


@register("huber_loss", method=False, function=False)
def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """``0.5 * d**2`` where ``|d| < delta``, else ``delta * (|d| - 0.5 * delta)`` (d = input - target)."""
    _check_reduction(reduction)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    loss = _pointwise("huber_loss", "huber", input, target, reduction, float(delta))
    return _reduce(loss if weight is None else loss * weight, reduction)


def _check_range(x, name):
    """BCE's input and target must be probabilities (NaN is not), checked on the host as PyTorch does."""
    if x.numel() == 0:
        return
    with no_grad():
        xd = x.detach()
        host_check((~((xd >= 0) & (xd <= 1))).any(), lambda bad: _out_of_range(bad, name))


def _out_of_range(bad, name):
    if bad:
        raise RuntimeError(f"all elements of {name} should be between 0 and 1")


@register("binary_cross_entropy", method=False, function=False)
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """``-(target * log(input) + (1 - target) * log(1 - input))`` (logs clamped at -100), times ``weight``."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _check_tensor("binary_cross_entropy", "input", input)
    _check_tensor("binary_cross_entropy", "target", target)
    if target._shape != input._shape:
        raise ValueError(f"Using a target size ({list(target._shape)}) that is different to the input size "
                         f"({list(input._shape)}) is deprecated. Please ensure they have the same size.")
    if target.dtype is not input.dtype:
        raise RuntimeError(f"Found dtype {D.scalar_name(target.dtype)} but expected {D.scalar_name(input.dtype)}")
    _check_float("binary_cross_entropy", input)
    _check_range(input, "input")
    _check_range(target, "target")
    loss = _pointwise("binary_cross_entropy", "bce", input, target, reduction)
    if weight is not None:
        check_same_device("binary_cross_entropy", input, weight)
        broadcast_shapes(weight._shape, input._shape)
        loss = loss * weight
    return _reduce(loss, reduction)


@register("binary_cross_entropy_with_logits", method=False, function=False)
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    """``binary_cross_entropy(sigmoid(input), target)`` computed stably from the logits; ``pos_weight`` weighs
    the positive term (broadcast along the last dim, one per class)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _check_tensor("binary_cross_entropy_with_logits", "input", input)
    _check_tensor("binary_cross_entropy_with_logits", "target", target)
    if target._shape != input._shape:
        raise ValueError(f"Target size ({list(target._shape)}) must be the same as input size "
                         f"({list(input._shape)})")
    if pos_weight is None:
        loss = _pointwise("binary_cross_entropy_with_logits", "bce_logits", input, target, reduction)
    else:
        check_same_device("binary_cross_entropy_with_logits", input, target, pos_weight)
        try:
            broadcast_shapes(pos_weight._shape, input._shape)
        except RuntimeError:
            raise RuntimeError(f"pos_weight of shape {list(pos_weight._shape)} cannot be broadcast to the input "
                               f"shape {list(input._shape)}") from None
        # (1 - y) * x + (1 + (pos_weight - 1) * y) * softplus(-x)
        log_weight = (pos_weight - 1) * target + 1
        loss = (1 - target) * input + log_weight * softplus(-input)
    if weight is not None:
        check_same_device("binary_cross_entropy_with_logits", input, weight)
        loss = loss * weight
    return _reduce(loss, reduction)


@register("kl_div", method=False, function=False)
def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """The KL divergence of ``target`` from the distribution whose log-probabilities are ``input``:
    ``target * (log(target) - input)`` (``log_target``: target given as log-probabilities). 'batchmean' divides
    the sum by the batch size, the mathematically correct KL divergence."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, _REDUCTIONS + ("batchmean",))
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      UserWarning, stacklevel=2)
    loss = _pointwise("kl_div", "kl_div_log" if log_target else "kl_div", input, target, reduction, warn=False)
    if reduction == "batchmean":
        return loss.sum() / input._shape[0] if input.ndim else loss.sum()
    return _reduce(loss, reduction)
