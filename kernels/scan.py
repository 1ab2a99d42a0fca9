"""Scans along one dim: ``cumsum``, ``cumprod``, ``cummax`` / ``cummin`` (values and indices) and ``logcumsumexp``,
their in-place forms and their backward rules.

One Triton kernel serves the family, ``_scan_kernel``: a tensor seen along ``dim`` is a set of rows (as in
kernels/softmax.py: row r = (o, i) starts at ``o * s_outer + i * s_inner``, elements ``s_dim`` apart). A program
owns BLOCK_M rows and walks them in BLOCK_N chunks: each chunk is scanned with ``tl.associative_scan`` and combined
with the carry of the chunks before it (the last scanned column), so any row length runs in one pass. ``REVERSE``
scans from the end (the backward of cumsum and logcumsumexp). Sums and products accumulate in float32 for half
types and int64 for integers (PyTorch's result type for integer cumsum/cumprod).

NaN rules follow PyTorch: cummax/cummin take a NaN as the new extreme and keep it (a later NaN moves the index),
ties move the index to the later element.
"""
import builtins

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from tritorch._creation import zeros
from ._launch import TL, ptr, next_pow2, cdiv, interp_bf16_in, is_int64_index
from ._common import copy_host, empty, np_ct, quiet, wrap
from .elementwise import where
from .reduce import _return_type
from .softmax import _as_rows

__all__ = ["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"]

SUM, PROD, MAX, MIN, LSE = 0, 1, 2, 3, 4

# ====================================================================================================================
# The kernel
# ====================================================================================================================


@triton.jit
def _scan_mul(a, b):
    return a * b


@triton.jit
def _scan_lse(a, b):
    """log(exp(a) + exp(b)) without overflow: -inf + -inf stays -inf, +inf wins, NaN propagates."""
    mx = tl.maximum(a, b)
    mn = tl.minimum(a, b)
    same_inf = (mx == mn) & (tl.abs(mx) == float("inf"))
    res = tl.where(same_inf, mx, mx + tl.log(1.0 + tl.exp(mn - mx)))
    return tl.where((a != a) | (b != b), a + b, res)


@triton.jit
def _scan_max(a, ia, b, ib):
    """(value, index) of the running max, ``a`` before ``b``: a NaN wins and stays, ties go to the later one."""
    take_b = (b != b) | ((a == a) & (b >= a))
    return tl.where(take_b, b, a), tl.where(take_b, ib, ia)


@triton.jit
def _scan_min(a, ia, b, ib):
    take_b = (b != b) | ((a == a) & (b <= a))
    return tl.where(take_b, b, a), tl.where(take_b, ib, ia)


@triton.jit
def _last_col(t, cols, last):
    """Column ``last[m]`` of each row of tile ``t`` (a masked sum: exact, NaN and inf included)."""
    return tl.sum(tl.where(cols[None, :] == last[:, None], t, tl.zeros_like(t)), axis=1)


@triton.jit
def _scan_kernel(x_ptr, out_ptr, idx_ptr, M, N, INNER, sxo, sxi, sxn, soo, soi, son, ident,
                 OP: tl.constexpr, REVERSE: tl.constexpr, CT: tl.constexpr, I64: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """out[m, n] = OP over x[m, :n + 1] (REVERSE: over x[m, n:]) for M rows of length N.

    x_ptr, out_ptr: row m = (m // INNER, m % INNER) starts at (m // INNER) * s?o + (m % INNER) * s?i, its elements
    s?n apart (x: sx*, out and idx: so*). idx_ptr: int64, same layout as out, written for OP MAX/MIN (the index
    along the row of the running extreme). ``ident``: OP's identity, what masked lanes hold. Offsets are int32
    unless ``I64`` (one could pass 2**31): int64 division spilled registers."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M
    x_rows = x_ptr + ((rows // INNER) * sxo + (rows % INNER) * sxi)[:, None]
    o_rows = ((rows // INNER) * soo + (rows % INNER) * soi)[:, None]
    carry = (tl.zeros([BLOCK_M], CT) + ident).to(CT)
    icarry = tl.zeros([BLOCK_M], tl.int64)
    for t in range(0, N, BLOCK_N):
        if REVERSE:
            start = N - t - BLOCK_N
        else:
            start = t
        cols = start + tl.arange(0, BLOCK_N)
        if I64:
            cols = cols.to(tl.int64)
        cmask = (cols >= 0) & (cols < N)
        mask = rmask[:, None] & cmask[None, :]
        v = tl.load(x_rows + cols[None, :] * sxn, mask=mask, other=0).to(CT)
        v = tl.where(mask, v, ident).to(CT)
        if REVERSE:
            last = tl.zeros([BLOCK_M], tl.int64) + tl.maximum(start, 0)
        else:
            last = tl.zeros([BLOCK_M], tl.int64) + tl.minimum(start + BLOCK_N, N) - 1
        if OP == 0:
            s = tl.cumsum(v, axis=1, reverse=REVERSE) + carry[:, None]
        elif OP == 1:
            s = tl.associative_scan(v, 1, _scan_mul, reverse=REVERSE) * carry[:, None]
        elif OP == 4:
            s = _scan_lse(carry[:, None], tl.associative_scan(v, 1, _scan_lse, reverse=REVERSE))
        else:
            iv = cols[None, :] + tl.zeros([BLOCK_M, BLOCK_N], tl.int64)
            if OP == 2:
                s, si = tl.associative_scan((v, iv), 1, _scan_max)
                s, si = _scan_max(carry[:, None], icarry[:, None], s, si)
            else:
                s, si = tl.associative_scan((v, iv), 1, _scan_min)
                s, si = _scan_min(carry[:, None], icarry[:, None], s, si)
            tl.store(idx_ptr + o_rows + cols[None, :] * son, si, mask=mask)
            icarry = _last_col(si, cols, last)
        tl.store(out_ptr + o_rows + cols[None, :] * son, s.to(out_ptr.dtype.element_ty), mask=mask)
        carry = _last_col(s, cols, last).to(CT)


# ====================================================================================================================
# Launching and the NumPy references
# ====================================================================================================================

MAX_N = 256 if INTERPRET else 1024        # a row longer than this is scanned in chunks (with a carry)
TILE = 1024 if INTERPRET else 4096


def _identity(op, ct):
    if op == SUM:
        return 0.0 if ct.is_floating_point else 0
    if op == PROD:
        return 1.0 if ct.is_floating_point else 1
    if op == LSE:
        return -float("inf")
    if ct.is_floating_point:
        return -float("inf") if op == MAX else float("inf")
    info = np.iinfo(ct.np)
    return int(info.min) if op == MAX else int(info.max)


def _scan_triton(x, dim, op, out_dtype, reverse):
    """The scan on the Triton kernel: (out, indices or None), contiguous, x's shape."""
    out = empty(x._shape, out_dtype, x.device)
    idx = empty(x._shape, D.int64, x.device) if op in (MAX, MIN) else None
    if out.numel() == 0:
        return out, idx
    if INTERPRET and out_dtype is D.bfloat16:
        res, idx = _scan_triton(interp_bf16_in(x), dim, op, D.float32, reverse)
        return copy_host(out, res), idx
    xin = x.to(D.uint8) if x.dtype is D.bool_ else x
    ct = D.int64 if op in (SUM, PROD) and not out_dtype.is_floating_point else D.from_numpy_dtype(
        np.dtype(np_ct(xin.dtype)))
    tensors, (m, n, inner, strides) = _as_rows(dim, xin, out)
    xin = tensors[0]
    block_n = builtins.min(next_pow2(n), MAX_N)
    block_m = builtins.max(1, builtins.min(next_pow2(m), TILE // block_n))
    _scan_kernel[(cdiv(m, block_m),)](
        ptr(xin), ptr(out), ptr(idx if idx is not None else out), m, n, inner, *strides[0], *strides[1],
        _identity(op, ct), OP=op, REVERSE=reverse, CT=TL[ct],
        I64=is_int64_index(m * n, xin, out, *(() if idx is None else (idx,))), BLOCK_M=block_m, BLOCK_N=block_n,
        num_warps=8 if block_m * block_n >= 1024 else 4)  # 4 warps on a 16x64 argmax tile spill (compile-check)
    return out, idx


def _scan_np(x, dim, op, out_dtype, reverse):
    """The NumPy reference of ``_scan_triton`` (same arguments, same results)."""
    a = x._np
    ct = np.int64 if op in (SUM, PROD) and not out_dtype.is_floating_point else np_ct(x.dtype)
    a = a.astype(ct)
    if reverse:
        a = np.flip(a, dim)
    idx = None
    if op == SUM:
        res = np.cumsum(a, axis=dim, dtype=ct)
    elif op == PROD:
        res = quiet(np.cumprod, a, dim)
    elif op == LSE:
        res = quiet(np.logaddexp.accumulate, a, dim)
    elif a.size == 0:
        res, idx = a.copy(), np.zeros(a.shape, np.int64)
    else:
        res, idx = np.empty_like(a), np.empty(a.shape, np.int64)
        cur, icur = np.take(a, 0, axis=dim), np.zeros(np.take(a, 0, axis=dim).shape, np.int64)
        cmp = np.greater_equal if op == MAX else np.less_equal
        for k in range(a.shape[dim]):
            v = np.take(a, k, axis=dim)
            take = np.isnan(v) | (~np.isnan(cur) & cmp(v, cur)) if a.dtype.kind == "f" else cmp(v, cur)
            cur, icur = np.where(take, v, cur), np.where(take, k, icur)
            res[(slice(None),) * dim + (k,)] = cur
            idx[(slice(None),) * dim + (k,)] = icur
    if reverse:
        res = np.flip(res, dim)
    out = wrap(np.asarray(res).astype(out_dtype.np), out_dtype, x.device)
    return out, (wrap(idx, D.int64, x.device) if idx is not None else None)


def scan_(x, dim, op, out_dtype, reverse=False):
    """Scan ``x`` along ``dim`` (wrapped; a 0-d ``x`` is a row of one): the NumPy reference on ``cpu``, the Triton
    kernel on cuda. Returns (out, indices or None) in x's shape."""
    shape = x._shape
    if x.ndim == 0:
        x, dim = x.reshape(1), 0
    if x._storage.device.type == "cpu":
        out, idx = _scan_np(x, dim, op, out_dtype, reverse)
    else:
        out, idx = _scan_triton(x, dim, op, out_dtype, reverse)
    return out.reshape(shape), (idx.reshape(shape) if idx is not None else None)


# ====================================================================================================================
# The ops
# ====================================================================================================================

class CumSum(Function):
    """cumsum (or the reverse cumsum): the gradient is the reverse cumsum of the gradient."""

    @staticmethod
    def forward(ctx, x, dim, out_dtype, reverse):
        ctx._name = "CumsumBackward0"
        ctx.dim, ctx.reverse, ctx.in_dtype = dim, reverse, x.dtype
        return scan_(x, dim, SUM, out_dtype, reverse)[0]

    @staticmethod
    def backward(ctx, g):
        return CumSum.apply(g, ctx.dim, g.dtype, not ctx.reverse).to(ctx.in_dtype)


class CumProd(Function):
    """cumprod: PyTorch's gradient, exact with zeros. Before the first zero of a row, reverse_cumsum(g * out) / x;
    at the first zero z, out[z - 1] * sum_{j >= z} g[j] * prod_{z < i <= j} x[i] (a cumprod with x[z] set to 1);
    after it 0."""

    @staticmethod
    def forward(ctx, x, dim, out_dtype):
        ctx._name = "CumprodBackward0"
        out = scan_(x, dim, PROD, out_dtype)[0]
        ctx.dim, ctx.in_dtype = dim, x.dtype
        if builtins.any(ctx.needs_input_grad):
            ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        d = ctx.dim
        x = x.to(g.dtype)
        zero = x.detach() == 0
        n_zero = CumSum.apply(zero, d, D.int64, False)
        before = n_zero == 0
        first = zero & (n_zero == 1)
        grad = where(before, CumSum.apply(where(before, g * out, 0.0), d, g.dtype, True) / where(before, x, 1.0), 0.0)
        out1 = CumProd.apply(where(first, 1.0, x), d, g.dtype)
        at_zero = CumSum.apply(where(n_zero >= 1, g * out1, 0.0), d, g.dtype, True)
        return (grad + where(first, at_zero, 0.0)).to(ctx.in_dtype)


class LogCumSumExp(Function):
    """logcumsumexp (or its reverse). Gradient: d out[j] / d x[k] = exp(x[k] - out[j]) for the j whose scan holds
    k, summed in log space with the sign of g split off (no overflow): exp(x + rev_lcse(log g+ - out)) -
    exp(x + rev_lcse(log g- - out)), as PyTorch computes it."""

    @staticmethod
    def forward(ctx, x, dim, reverse):
        ctx._name = "LogcumsumexpBackward0"
        out = scan_(x, dim, LSE, x.dtype, reverse)[0]
        ctx.dim, ctx.reverse = dim, reverse
        if builtins.any(ctx.needs_input_grad):
            ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        d, rev = ctx.dim, not ctx.reverse
        # PyTorch's rule: the lowest finite number, not -inf, for log 0, so that its own derivative stays finite
        lowest = float(np.finfo(g.dtype.np).min)
        log_g = g.abs().log()
        pos = LogCumSumExp.apply(where(g > 0, log_g, lowest) - out, d, rev)
        neg = LogCumSumExp.apply(where(g < 0, log_g, lowest) - out, d, rev)
        return (x + pos).exp() - (x + neg).exp()


class CumExtreme(Function):
    """cummax / cummin: (values, indices); the gradient of each value goes to its index (summed)."""

    @staticmethod
    def forward(ctx, x, dim, is_max):
        ctx._name = "CummaxBackward0" if is_max else "CumminBackward0"
        vals, idx = scan_(x, dim, MAX if is_max else MIN, x.dtype)
        ctx.mark_non_differentiable(idx)
        ctx.set_materialize_grads(False)
        ctx.dim, ctx.shape = dim, x._shape
        if builtins.any(ctx.needs_input_grad):
            ctx.save_for_backward(idx)
        return vals, idx

    @staticmethod
    def backward(ctx, g, _gi):
        (idx,) = ctx.saved_tensors
        if g is None:
            return None
        if not ctx.shape:
            return g
        return zeros(ctx.shape, dtype=g.dtype, device=g.device).scatter_add(ctx.dim, idx, g)


_CummaxRT = _return_type("cummax", ("values", "indices"))
_CumminRT = _return_type("cummin", ("values", "indices"))


def _check(name, input):
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")


def _sum_dtype(input, dtype):
    """cumsum/cumprod's result type: ``dtype`` if given (the input is cast to it), int64 for integers and bool."""
    if dtype is not None:
        dt = D.to_dtype(dtype)
        return input.to(dt), dt
    return input, input.dtype if input.dtype.is_floating_point else D.int64


@register("cumsum")
def cumsum(input, dim, *, dtype=None):
    """Cumulative sum along ``dim``; integer and bool inputs sum in int64."""
    _check("cumsum", input)
    d = input._wrap_dim(dim)
    input, out_dtype = _sum_dtype(input, dtype)
    return CumSum.apply(input, d, out_dtype, False)


@register("cumprod")
def cumprod(input, dim, *, dtype=None):
    """Cumulative product along ``dim``; integer and bool inputs multiply in int64."""
    _check("cumprod", input)
    d = input._wrap_dim(dim)
    input, out_dtype = _sum_dtype(input, dtype)
    return CumProd.apply(input, d, out_dtype)


def _inplace(self, fn, dim, dtype):
    if dtype is not None and D.to_dtype(dtype) is not self.dtype:
        raise RuntimeError(f"Bad in-place call: input tensor dtype {self.dtype.name} and output tensor dtype "
                           f"{D.to_dtype(dtype).name} should match")
    # computed from a copy: the op may save its input, which the write below changes
    return self.copy_(fn(self.clone(), dim, dtype=self.dtype))


@register("cumsum_", function=False)
def cumsum_(self, dim, *, dtype=None):
    return _inplace(self, cumsum, dim, dtype)


@register("cumprod_", function=False)
def cumprod_(self, dim, *, dtype=None):
    return _inplace(self, cumprod, dim, dtype)


@register("logcumsumexp")
def logcumsumexp(input, dim):
    """log(cumsum(exp(x))) along ``dim``, computed without overflow."""
    _check("logcumsumexp", input)
    d = input._wrap_dim(dim)
    if not input.dtype.is_floating_point:
        raise NotImplementedError(f"\"logcumsumexp_out_{'cpu' if input.device.type == 'cpu' else 'cuda'}\" not "
                                  f"implemented for '{D.scalar_name(input.dtype)}'")
    return LogCumSumExp.apply(input, d, False)


@register("cummax")
def cummax(input, dim):
    """(values, indices) of the running maximum along ``dim``."""
    _check("cummax", input)
    return _CummaxRT(*CumExtreme.apply(input, input._wrap_dim(dim), True))


@register("cummin")
def cummin(input, dim):
    _check("cummin", input)
    return _CumminRT(*CumExtreme.apply(input, input._wrap_dim(dim), False))
