"""Sorting and what is built on it: ``sort``, ``argsort``, ``msort``, ``topk``, ``kthvalue``, ``unique``, and the
searching and counting ops ``searchsorted``, ``bucketize``, ``histc``, ``bincount``.

The sort is built once, on two Triton kernels, for a tensor seen as rows along ``dim`` (as kernels/softmax.py):

- ``_sort_rows_kernel`` sorts BLOCK_N-long chunks of rows in registers: a bitonic network over the padded power-of-two
  tile of (value, index) pairs; the partner of each compare-and-swap is found by an XOR over a pair axis, so any
  dtype sorts, NaN included.
- ``_merge_runs_kernel`` merges neighbouring sorted runs of width W into runs of 2W, for rows longer than one chunk:
  each element finds its place by a binary search in the other run (merge path), log2(N / BLOCK_N) passes.

The order is total: values ascending (descending), NaN above everything as in PyTorch, ties by position. So every
sort is stable and the two kernels agree on each comparison. ``topk`` and ``kthvalue`` take the head of that sort
(a full sort: O(N log N), not a selection). The gradient of values goes back to the indices (a scatter).
"""
import builtins
import math

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET, device
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import no_grad
from tritorch._creation import zeros
from ._launch import ptr, next_pow2, cdiv, interp_bf16_in
from ._common import copy_host, empty, wrap
from .reduce import _return_type, aminmax
from .scan import cumsum
from .softmax import _as_rows

__all__ = ["sort", "argsort", "msort", "topk", "kthvalue", "unique", "searchsorted", "bucketize", "histc",
           "bincount"]

# ====================================================================================================================
# The kernels
# ====================================================================================================================


@triton.jit
def _before(a, ia, b, ib, N, DESC: tl.constexpr):
    """Whether (a, ia) sorts before (b, ib): values in order with NaN the largest, ties by position, padding
    (index >= N) last."""
    pa = ia >= N
    pb = ib >= N
    a_nan = a != a
    b_nan = b != b
    if DESC:
        lt = (a > b) | (a_nan & (b == b))
    else:
        lt = (a < b) | ((a == a) & b_nan)
    eq = (a == b) | (a_nan & b_nan)
    return (pb & (ia < N)) | ((pa == pb) & (lt | (eq & (ia < ib))))


@triton.jit
def _partner(x, j: tl.constexpr):
    """The element 2**j places away along the last axis (its partner in a compare-and-swap): ``x`` viewed as pairs
    along an axis of 2, each XORed with the pair's XOR. Floats go through their integer bits (NaN-safe)."""
    bits: tl.constexpr = x.dtype.primitive_bitwidth
    if x.dtype.is_floating():
        if bits == 64:
            ix = x.to(tl.int64, bitcast=True)
        elif bits == 32:
            ix = x.to(tl.int32, bitcast=True)
        else:
            ix = x.to(tl.int16, bitcast=True)
    else:
        ix = x
    y = tl.reshape(ix, [x.numel // (2 << j), 2, 1 << j])
    y = y ^ tl.xor_sum(y, 1, keep_dims=True)
    y = tl.reshape(y, x.shape)
    if x.dtype.is_floating():
        y = y.to(x.dtype, bitcast=True)
    return y


@triton.jit
def _sort_rows_kernel(x_ptr, v_ptr, i_ptr, M, N, INNER, sxo, sxi, sxn, svo, svi, svn,
                      DESC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, LOG_N: tl.constexpr):
    """Sort chunk ``program_id(1)`` (columns [c * BLOCK_N, (c + 1) * BLOCK_N)) of BLOCK_M rows of length N.

    x_ptr: the input; row m = (m // INNER, m % INNER) starts at (m // INNER) * sxo + (m % INNER) * sxi, elements sxn
    apart. v_ptr (values, x's dtype) and i_ptr (int64 positions along the row) are written in the same way through
    sv*, each chunk sorted in place of itself."""
    pid = tl.program_id(0)
    c = tl.program_id(1).to(tl.int64)
    rows = pid.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M
    pos = tl.arange(0, BLOCK_N)[None, :]
    cols = c * BLOCK_N + pos.to(tl.int64)
    mask = rmask[:, None] & (cols < N)
    x_rows = x_ptr + ((rows // INNER) * sxo + (rows % INNER) * sxi)[:, None]
    v = tl.load(x_rows + cols * sxn, mask=mask, other=0)
    ix = cols + tl.zeros([BLOCK_M, BLOCK_N], tl.int64)
    for stage in tl.static_range(1, LOG_N + 1):
        flip = (pos >> stage) & 1                     # merge direction of this 2**stage block (0 at the last stage)
        for j in tl.static_range(stage - 1, -1, -1):  # (j counted down, not assigned: triton 3.9 refuses a
            # constexpr assigned again in a loop and makes an unannotated one a tensor)
            pv = _partner(v, j)
            pi = _partner(ix, j)
            right = (pos >> j) & 1
            swap = _before(pv, pi, v, ix, N, DESC) != ((right ^ flip) == 1)
            v = tl.where(swap, pv, v)
            ix = tl.where(swap, pi, ix)
    o_rows = ((rows // INNER) * svo + (rows % INNER) * svi)[:, None]
    tl.store(v_ptr + o_rows + cols * svn, v, mask=mask)
    tl.store(i_ptr + o_rows + cols * svn, ix, mask=mask)


@triton.jit
def _merge_runs_kernel(v_in, i_in, v_out, i_out, N, W, INNER, soo, soi, son,
                       DESC: tl.constexpr, BLOCK: tl.constexpr, STEPS: tl.constexpr):
    """Merge sorted runs [2kW, 2kW + W) and [2kW + W, 2kW + 2W) of each row into one run of 2W.

    v_in, i_in: (M, N) contiguous values and int64 positions, sorted in runs of W. v_out, i_out: row m = (m // INNER,
    m % INNER) starts at (m // INNER) * soo + (m % INNER) * soi, elements son apart. Program (m, b) places elements
    [b * BLOCK, (b + 1) * BLOCK) of row m: its rank in its own run plus the count of elements of the other run that
    sort before it (a binary search of STEPS >= log2(W + 1) steps)."""
    m = tl.program_id(0).to(tl.int64)
    q = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    qmask = q < N
    row = m * N
    v = tl.load(v_in + row + q, mask=qmask, other=0)
    ix = tl.load(i_in + row + q, mask=qmask, other=0)
    s0 = (q // (2 * W)) * (2 * W)
    mid = tl.minimum(s0 + W, N)
    end = tl.minimum(s0 + 2 * W, N)
    in_a = q < mid
    own = tl.where(in_a, s0, mid)
    lo = tl.where(in_a, mid, s0)
    other = lo
    hi = tl.where(in_a, end, mid)
    for _ in tl.static_range(STEPS):
        active = (lo < hi) & qmask
        h = (lo + hi) // 2
        ov = tl.load(v_in + row + h, mask=active, other=0)
        oi = tl.load(i_in + row + h, mask=active, other=0)
        go = _before(ov, oi, v, ix, N, DESC)
        lo = tl.where(active & go, h + 1, lo)
        hi = tl.where(active & (go == 0), h, hi)
    dest = s0 + (q - own) + (lo - other)
    o = (m // INNER) * soo + (m % INNER) * soi + dest * son
    tl.store(v_out + o, v, mask=qmask)
    tl.store(i_out + o, ix, mask=qmask)


@triton.jit
def _searchsorted_kernel(seq_ptr, val_ptr, sorter_ptr, out_ptr, n, N, V, s_row,
                         RIGHT: tl.constexpr, HAS_SORTER: tl.constexpr, STEPS: tl.constexpr, BLOCK: tl.constexpr):
    """out[e] = the insertion point of val[e] in row e // V of the sorted sequence (PyTorch's comparisons: left finds
    the first element not below val, right the first above it).

    seq_ptr: rows of N elements, row r at r * s_row (s_row 0: one sequence for all values), contiguous; sorter_ptr:
    int64 of the same layout (the order of each row) when HAS_SORTER; val_ptr, out_ptr: n contiguous elements."""
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    emask = e < n
    val = tl.load(val_ptr + e, mask=emask, other=0)
    row = (e // V) * s_row
    lo = tl.zeros([BLOCK], tl.int64)
    hi = tl.zeros([BLOCK], tl.int64) + N
    for _ in tl.static_range(STEPS):
        active = (lo < hi) & emask
        h = (lo + hi) // 2
        j = h
        if HAS_SORTER:
            j = tl.load(sorter_ptr + row + h, mask=active, other=0)
        mv = tl.load(seq_ptr + row + j, mask=active, other=0)
        if RIGHT:
            go = (mv > val) == 0
        else:
            go = (mv >= val) == 0
        lo = tl.where(active & go, h + 1, lo)
        hi = tl.where(active & (go == 0), h, hi)
    tl.store(out_ptr + e, lo.to(out_ptr.dtype.element_ty), mask=emask)


@triton.jit
def _histc_kernel(x_ptr, range_ptr, out_ptr, n, BINS: tl.constexpr, CT: tl.constexpr, BLOCK: tl.constexpr):
    """out[b] += number of x in bin b of BINS equal bins over [lo, hi] (hi in the last bin; outside and NaN dropped).
    x_ptr: n contiguous elements; range_ptr: (lo, hi) in CT (a float argument would be rounded to float32);
    out_ptr: BINS int64 counts."""
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    lo = tl.load(range_ptr).to(CT)
    hi = tl.load(range_ptr + 1).to(CT)
    x = tl.load(x_ptr + e, mask=e < n, other=0).to(CT)
    inside = (e < n) & (x >= lo) & (x <= hi)
    b = ((x - lo) * BINS / (hi - lo)).to(tl.int64)
    b = tl.where(b >= BINS, BINS - 1, b)
    b = tl.where(inside, b, 0)
    tl.atomic_add(out_ptr + b, tl.where(inside, 1, 0).to(tl.int64), mask=inside)


@triton.jit
def _bincount_kernel(x_ptr, w_ptr, out_ptr, n, HAS_W: tl.constexpr, BLOCK: tl.constexpr):
    """out[x[e]] += w[e] (or 1): x_ptr n contiguous non-negative integers, w_ptr n contiguous weights of out's
    dtype, out_ptr the counts (int64, or the weights' float type)."""
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    emask = e < n
    x = tl.load(x_ptr + e, mask=emask, other=0).to(tl.int64)
    if HAS_W:
        w = tl.load(w_ptr + e, mask=emask, other=0).to(out_ptr.dtype.element_ty)
    else:
        w = tl.full([BLOCK], 1, out_ptr.dtype.element_ty)
    tl.atomic_add(out_ptr + x, w, mask=emask)


# ====================================================================================================================
# Launching and the NumPy references
# ====================================================================================================================

SORT_N = 256 if INTERPRET else 1024       # the longest chunk sorted in registers; longer rows are merged
SORT_TILE = 1024 if INTERPRET else 4096
BLOCK_1D = 256 if INTERPRET else 1024


def _np_sort(a, dim, descending):
    """The NumPy reference of the kernels: a stable sort with NaN the largest, ties kept in order."""
    if descending:
        if a.dtype.kind == "f":
            # a stable ascending sort of the negated values, with NaN first: NaN, then large to small
            key = np.where(np.isnan(a), -np.inf, -a.astype(np.float64))
            nan_first = np.argsort(~np.isnan(a), axis=dim, kind="stable")
            idx = np.take_along_axis(nan_first, np.argsort(np.take_along_axis(key, nan_first, dim), axis=dim,
                                                           kind="stable"), dim)
        else:
            idx = np.argsort(-a.astype(np.int64) if a.dtype != np.uint64 else ~a, axis=dim, kind="stable")
    else:
        idx = np.argsort(a, axis=dim, kind="stable")
    return np.take_along_axis(a, idx, dim), idx.astype(np.int64)


def _sort_triton(x, dim, descending, block_n=None):
    """(values, indices) of a stable sort of ``x`` along ``dim`` on the Triton kernels; contiguous, x's shape."""
    vals = empty(x._shape, x.dtype, x.device)
    idx = empty(x._shape, D.int64, x.device)
    if x.numel() == 0:
        return vals, idx
    if INTERPRET and x.dtype is D.bfloat16:
        v32, idx = _sort_triton(interp_bf16_in(x), dim, descending, block_n)
        return copy_host(vals, v32), idx
    if x.dtype is D.bool_:
        v8, idx = _sort_triton(x.to(D.uint8), dim, descending, block_n)
        return v8.to(D.bool_), idx
    tensors, (m, n, inner, strides) = _as_rows(dim, x, vals)
    x = tensors[0]
    bn = builtins.min(next_pow2(n), block_n or SORT_N)
    bm = builtins.max(1, builtins.min(next_pow2(m), SORT_TILE // bn))
    chunks = cdiv(n, bn)
    if chunks == 1:
        _sort_rows_kernel[(cdiv(m, bm), 1)](ptr(x), ptr(vals), ptr(idx), m, n, inner, *strides[0], *strides[1],
                                            DESC=descending, BLOCK_M=bm, BLOCK_N=bn, LOG_N=bn.bit_length() - 1)
        return vals, idx
    bufs = [(empty((m, n), x.dtype, x.device), empty((m, n), D.int64, x.device)) for _ in range(2)]
    flat = (n, 0, 1)                                  # (soo, soi, son) of an (m, n) scratch buffer, INNER = 1
    _sort_rows_kernel[(cdiv(m, bm), chunks)](ptr(x), ptr(bufs[0][0]), ptr(bufs[0][1]), m, n, inner, *strides[0],
                                             inner * n, n, 1, DESC=descending, BLOCK_M=bm, BLOCK_N=bn,
                                             LOG_N=bn.bit_length() - 1)
    w, k = bn, 0
    while w < n:
        src, last = bufs[k % 2], 2 * w >= n
        dst = (vals, idx) if last else bufs[(k + 1) % 2]
        lay = (inner, *strides[1]) if last else (1, *flat)
        _merge_runs_kernel[(m, cdiv(n, BLOCK_1D))](ptr(src[0]), ptr(src[1]), ptr(dst[0]), ptr(dst[1]), n, w, *lay,
                                                   DESC=descending, BLOCK=BLOCK_1D, STEPS=w.bit_length() + 1)
        w, k = 2 * w, k + 1
    return vals, idx


def sort_(x, dim, descending, block_n=None):
    """(values, indices) of the stable sort of ``x`` along ``dim`` (wrapped): NumPy on ``cpu``, Triton on cuda.
    ``block_n``: the chunk sorted in registers (tests force small ones to run the merge passes)."""
    shape = x._shape
    if x.ndim == 0:
        x, dim = x.reshape(1), 0
    if x._storage.device.type == "cpu":
        v, i = _np_sort(x._np, dim, descending)
        v, i = wrap(v, x.dtype, x.device), wrap(i, D.int64, x.device)
    else:
        v, i = _sort_triton(x, dim, descending, block_n)
    return v.reshape(shape), i.reshape(shape)


# ====================================================================================================================
# sort, argsort, msort, topk, kthvalue
# ====================================================================================================================

class Sort(Function):
    """The sort, and the heads of it that topk (``k`` first along dim) and kthvalue (element ``k - 1``, dim dropped
    unless keepdim) take: (values, indices); the gradient of the values goes to their indices."""

    @staticmethod
    def forward(ctx, x, dim, descending, name, k=None, drop=False):
        ctx._name = name
        v, i = sort_(x, dim, descending)
        if k is not None and x.ndim:
            if drop:
                v, i = v.select(dim, k - 1), i.select(dim, k - 1)
            else:
                v, i = v.narrow(dim, 0, k), i.narrow(dim, 0, k)
            v, i = v.contiguous(), i.contiguous()
        ctx.mark_non_differentiable(i)
        ctx.set_materialize_grads(False)
        ctx.dim, ctx.shape, ctx.drop = dim, x._shape, drop
        if builtins.any(ctx.needs_input_grad):
            ctx.save_for_backward(i)
        return v, i

    @staticmethod
    def backward(ctx, g, _gi):
        (i,) = ctx.saved_tensors
        if g is None:
            return None
        if not ctx.shape:
            return g
        if ctx.drop:
            g, i = g.unsqueeze(ctx.dim), i.unsqueeze(ctx.dim)
        return zeros(ctx.shape, dtype=g.dtype, device=g.device).scatter(ctx.dim, i, g)


_SortRT = _return_type("sort", ("values", "indices"))
_TopkRT = _return_type("topk", ("values", "indices"))
_KthRT = _return_type("kthvalue", ("values", "indices"))


def _check(name, input, arg="input"):
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument '{arg}' must be Tensor, not {type(input).__name__}")


@register("sort")
def sort(input, dim=-1, descending=False, *, stable=False):
    """(values, indices) sorted along ``dim``; always stable (equal elements keep their order), NaN the largest."""
    _check("sort", input)
    return _SortRT(*Sort.apply(input, input._wrap_dim(dim), bool(descending), "SortBackward0"))


@register("argsort")
def argsort(input, dim=-1, descending=False, *, stable=False):
    """The indices that sort ``input`` along ``dim`` (a stable sort)."""
    _check("argsort", input)
    with no_grad():
        return sort_(input, input._wrap_dim(dim), bool(descending))[1]


@register("msort")
def msort(input):
    """``sort(input, dim=0).values``."""
    _check("msort", input)
    return sort(input, 0).values


@register("topk")
def topk(input, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (smallest) elements along ``dim``, in order, and their indices; NaN counts as the largest."""
    _check("topk", input)
    d = input._wrap_dim(dim)
    n = input._shape[d] if input.ndim else 1
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 0 <= k <= n:
        raise RuntimeError("selected index k out of range")
    return _TopkRT(*Sort.apply(input, d, bool(largest), "TopkBackward0", int(k)))


@register("kthvalue")
def kthvalue(input, k, dim=-1, keepdim=False):
    """The ``k``-th smallest element along ``dim`` (1-based) and its index; NaN counts as the largest."""
    _check("kthvalue", input)
    d = input._wrap_dim(dim)
    n = input._shape[d] if input.ndim else 1
    if input.numel() == 0 and n == 0:
        raise IndexError(f"kthvalue(): Expected reduction dim {d} to have non-zero size.")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= builtins.max(n, 1):
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {d}")
    v, i = Sort.apply(input, d, False, "KthvalueBackward0", int(k), True)
    if keepdim and input.ndim:
        v, i = v.unsqueeze(d), i.unsqueeze(d)
    return _KthRT(v, i)


# ====================================================================================================================
# unique
# ====================================================================================================================

@register("unique")
def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct elements, sorted (also for ``sorted=False``, which PyTorch allows), with the index of each
    element's value (``return_inverse``, input's shape) and each value's count; NaNs are each distinct, as in
    PyTorch. No gradient. Only ``dim=None`` (unique of the flattened tensor)."""
    _check("unique", input)
    if dim is not None:
        raise NotImplementedError("unique(): dim is not supported by tritorch (only the flattened form, dim=None)")
    with no_grad():
        flat = input.detach().reshape(-1)
        v, order = sort_(flat, 0, False)
        n = v.numel()
        start = empty((n,), D.bool_, input.device)
        if n:
            start[:1] = True
            start[1:] = v[1:] != v[:-1]
        group = cumsum(start, 0) - 1
        values = v.masked_select(start)
        out = [values]
        if return_inverse:
            inv = empty((n,), D.int64, input.device).scatter_(0, order, group)
            out.append(inv.reshape(input._shape))
        if return_counts:
            out.append(bincount(group, minlength=values.numel()) if n else empty((0,), D.int64, input.device))
    return tuple(out) if len(out) > 1 else values


# ====================================================================================================================
# searchsorted, bucketize
# ====================================================================================================================

def _as_tensor(v, like):
    if isinstance(v, Tensor):
        return v
    return wrap(np.asarray(v, dtype=D.result_type(like, v).np), D.result_type(like, v), like.device)


def _search(seq, values, right, out_int32, sorter):
    ct = D.promote_types(seq.dtype, values.dtype)
    seq, values = seq.to(ct).contiguous(), values.to(ct).contiguous()
    out_dtype = D.int32 if out_int32 else D.int64
    n_seq = seq._shape[-1]
    s_row = 0 if seq.ndim == 1 else n_seq
    v_per_row = values._shape[-1] if values.ndim else 1
    if seq._storage.device.type == "cpu":
        s2 = seq._np.reshape(-1, n_seq)
        if sorter is not None:
            s2 = np.take_along_axis(s2, sorter._np.reshape(-1, n_seq), 1)
        val = values._np.reshape(-1)
        row = np.arange(val.size) // v_per_row if s_row else np.zeros(val.size, np.int64)
        lo, hi = np.zeros(val.size, np.int64), np.full(val.size, n_seq, np.int64)
        for _ in range(n_seq.bit_length() + 1 if n_seq else 0):     # the kernel's search, NaN rules included
            active = lo < hi
            h = (lo + hi) // 2
            mv = s2[row, np.minimum(h, n_seq - 1)]
            go = ~(mv > val) if right else ~(mv >= val)
            lo, hi = np.where(active & go, h + 1, lo), np.where(active & ~go, h, hi)
        out = wrap(lo.astype(out_dtype.np).reshape(values._shape), out_dtype, seq.device)
    else:
        out = empty(values._shape, out_dtype, seq.device)
        n = values.numel()
        if n:
            vin = interp_bf16_in(values)
            sin = interp_bf16_in(seq)
            srt = sorter.contiguous() if sorter is not None else out
            _searchsorted_kernel[(cdiv(n, BLOCK_1D),)](ptr(sin), ptr(vin), ptr(srt), ptr(out), n, n_seq, v_per_row,
                                                       s_row, RIGHT=bool(right), HAS_SORTER=sorter is not None,
                                                       STEPS=n_seq.bit_length() + 1, BLOCK=BLOCK_1D)
    return out


@register("searchsorted", method=False)
def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None, sorter=None):
    """Insertion points of ``input`` in the innermost dim of ``sorted_sequence`` (1-d, or with input's leading
    dims): ``right``/``side='right'`` takes the last one. ``sorter``: the indices that sort each row."""
    name = "torch.searchsorted(): "
    _check("searchsorted", sorted_sequence, "sorted_sequence")
    scalar = not isinstance(input, Tensor)
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(name + f"side can only be 'left' or 'right' but got {side}")
        if right and side == "left":
            raise RuntimeError(name + "side and right can't be set to opposites, got side of left while right was "
                               "True")
        right = side == "right"
    seq = sorted_sequence
    if seq.ndim == 0:
        raise RuntimeError(name + "boundaries tensor should have positive dimension, but got 0 dimension")
    values = _as_tensor(input, seq)
    if scalar and seq.ndim != 1:
        raise RuntimeError(name + "input value can be a scalar only when boundaries tensor dimension is 1, but we "
                           f"got boundaries tensor dim({seq.ndim}) and input value's dim(0) numel(1)")
    if seq.ndim != 1 and (values.ndim == 0 or seq._shape[:-1] != values._shape[:-1]):
        raise RuntimeError(name + "boundaries tensor should be 1 dimension or the first N-1 dimensions of boundaries "
                           f"tensor and input value tensor must match, but we got boundaries tensor "
                           f"{list(seq._shape)} and input value tensor {list(values._shape)}")
    for t in (values, sorter):
        if isinstance(t, Tensor) and t.device != seq.device:
            raise RuntimeError(name + "boundaries and input value tensors should be on the same device")
    if sorter is not None:
        if sorter._shape != seq._shape:
            raise RuntimeError(name + f"boundary and sorter must have the same size, but got boundary tensor "
                               f"{list(seq._shape)}and got sorter tensor {list(sorter._shape)}")
        if sorter.dtype is not D.int64:
            raise RuntimeError(name + f"sorter must be a tensor of long dtype but got {D.scalar_name(sorter.dtype)}")
        if sorter.numel():
            lo_hi = aminmax(sorter)
            if int(lo_hi.min.item()) < 0 or int(lo_hi.max.item()) >= seq._shape[-1]:
                raise RuntimeError(name + "sorter index out of range")
    with no_grad():
        return _search(seq.detach(), values.detach(), right, out_int32, sorter)


@register("bucketize", method=False)
def bucketize(input, boundaries, *, out_int32=False, right=False):
    """The bucket of each element of ``input`` among the 1-d sorted ``boundaries`` (``searchsorted``)."""
    _check("bucketize", boundaries, "boundaries")
    if boundaries.ndim != 1:
        raise RuntimeError(f"boundaries tensor must be 1 dimension, but got dim({boundaries.ndim})")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


# ====================================================================================================================
# histc, bincount
# ====================================================================================================================

@register("histc")
def histc(input, bins=100, min=0, max=0):
    """Histogram of ``input`` in ``bins`` equal bins over [min, max] (the data's range when both are equal; elements
    outside, and NaN, are not counted); input's float dtype. No gradient."""
    _check("histc", input)
    if not input.dtype.is_floating_point:
        raise NotImplementedError(f"\"histogram_{'cpu' if input.device.type == 'cpu' else 'cuda'}\" not implemented "
                                  f"for '{D.scalar_name(input.dtype)}'")
    if bins <= 0:
        raise RuntimeError(f"torch.histogram(): bins must be > 0, but got {bins} for dimension 0")
    lo, hi = float(min), float(max)
    x = input.detach().reshape(-1).contiguous()
    if lo == hi and x.numel():
        r = aminmax(x)
        lo, hi = float(r.min.item()), float(r.max.item())
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    cast = np.float64 if input.dtype is D.float64 else np.float32
    lo, hi = float(cast(lo)), float(cast(hi))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        def fmt(v):
            return "nan" if v != v else ("inf" if v > 0 else "-inf") if math.isinf(v) else f"{v:g}"
        raise RuntimeError(f"torch.histc: range of [{fmt(lo)}, {fmt(hi)}] is not finite")
    if lo > hi:
        raise RuntimeError("torch.histc: max must be larger than min")
    if x._storage.device.type == "cpu":
        a = x._np.astype(cast)
        keep = (a >= lo) & (a <= hi)
        b = ((a[keep] - cast(lo)) * cast(bins) / (cast(hi) - cast(lo))).astype(np.int64)
        counts = np.bincount(np.minimum(b, bins - 1), minlength=bins)
        return wrap(counts.astype(input.dtype.np), input.dtype, input.device)
    counts = zeros(bins, dtype=D.int64, device=input.device)
    if x.numel():
        xin = interp_bf16_in(x)
        bounds = wrap(np.array([lo, hi], dtype=cast), D.float64 if cast is np.float64 else D.float32, device("cpu"))
        bounds = bounds.to(input.device)
        _histc_kernel[(cdiv(x.numel(), BLOCK_1D),)](ptr(xin), ptr(bounds), ptr(counts), x.numel(), BINS=bins,
                                                    CT=tl.float64 if input.dtype is D.float64 else tl.float32,
                                                    BLOCK=BLOCK_1D)
    return counts.to(input.dtype)


@register("bincount")
def bincount(input, weights=None, minlength=0):
    """Count of each value 0 .. max(input) of a 1-d non-negative integer tensor (at least ``minlength`` bins),
    or the sum of ``weights`` per value: float32 for float32 weights, float64 for any others, as PyTorch."""
    _check("bincount", input)
    if input.dtype.is_floating_point:
        raise NotImplementedError(f"\"bincount_{'cpu' if input.device.type == 'cpu' else 'cuda'}\" not implemented "
                                  f"for '{D.scalar_name(input.dtype)}'")
    if minlength < 0:
        raise RuntimeError("minlength should be >= 0")
    if input.ndim != 1 or input.dtype is D.bool_:
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if weights is not None and (weights.ndim != 1 or weights._shape[0] != input._shape[0]):
        raise RuntimeError("weights should be 1-d and have the same length as input")
    length = minlength
    if input.numel():
        r = aminmax(input)
        if int(r.min.item()) < 0:
            raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
        length = builtins.max(length, int(r.max.item()) + 1)
    out_dtype = D.int64 if weights is None else D.float32 if weights.dtype is D.float32 else D.float64
    if input._storage.device.type == "cpu":
        w = None if weights is None else weights.detach()._np.astype(out_dtype.np)
        res = np.bincount(input._np.astype(np.int64), w, minlength=length) if input.numel() else \
            np.zeros(length, out_dtype.np)
        return wrap(res.astype(out_dtype.np), out_dtype, input.device)
    out = zeros(length, dtype=out_dtype, device=input.device)
    n = input.numel()
    if n:
        x = input.contiguous()
        w = weights.detach().to(out_dtype).contiguous() if weights is not None else out
        _bincount_kernel[(cdiv(n, BLOCK_1D),)](ptr(x), ptr(w), ptr(out), n, HAS_W=weights is not None,
                                               BLOCK=BLOCK_1D)
    return out
