"""``softmax`` and ``log_softmax`` along any dim, and their backward rules.

A tensor seen along ``dim`` is a set of rows: row r = (o, i), o indexing the dims before ``dim`` and i those after
it, starts at ``o * s_outer + i * s_inner`` and its elements lie ``s_dim`` apart. The kernels read and write through
those three strides, so any dim and most layouts run without a copy (a layout whose outer or inner dims do not
merge into one stride is made contiguous first). Each program takes BLOCK_R rows of a (BLOCK_R, BLOCK_N) tile:
several short rows at once, or one long row. A row that fits one block is read once; a longer one is read twice
(an online max/sum pass over chunks, then the writing pass). Arithmetic runs in float32 for half types.

Numerics follow PyTorch: the max is subtracted first (large logits are fine), -inf entries give 0 (log: -inf),
a row of only -inf gives NaN. Backward is one fused row kernel as well: softmax dx = y * (g - sum(g * y)),
log_softmax dx = g - exp(y) * sum(g), both from the saved output y.
"""
import warnings

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D, autotune
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from ._launch import ACC, ptr, coalesce, is_int64_index, next_pow2, cdiv, interp_bf16_in
from ._common import copy_host, empty, np_ct, read_as, wrap
from .matmul import _T_NAMES

__all__ = ["softmax", "log_softmax"]

# ====================================================================================================================
# The kernels
# ====================================================================================================================


@triton.jit
def _row_offsets(rows, INNER, so, si):
    """Start offset of each row r = (r // INNER, r % INNER), as a column vector."""
    return ((rows // INNER) * so + (rows % INNER) * si)[:, None]


@triton.jit
def _softmax_kernel(x_ptr, y_ptr, R, N, INNER, xso, xsi, xsn, yso, ysi, ysn,
                    LOG: tl.constexpr, SINGLE: tl.constexpr, CT: tl.constexpr, I64: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """y = softmax(x) (or log_softmax with LOG) over rows of N elements; BLOCK_R rows per program."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows[:, None] < R
    x_row = x_ptr + _row_offsets(rows, INNER, xso, xsi)
    y_row = y_ptr + _row_offsets(rows, INNER, yso, ysi)
    cols = tl.arange(0, BLOCK_N)[None, :]
    if I64:
        cols = cols.to(tl.int64)
    if SINGLE:
        mask = row_mask & (cols < N)
        x = tl.load(x_row + cols * xsn, mask=mask, other=-float("inf")).to(CT)
        x = tl.where(row_mask, x, 0.0)                # rows past the end: finite, so no NaN is computed
        z = x - tl.max(x, axis=1)[:, None]          # a row of only -inf: -inf - -inf = NaN, as in PyTorch
        e = tl.exp(z)
        s = tl.sum(e, axis=1)[:, None]
        if LOG:
            y = z - tl.log(s)
        else:
            y = e / s
        tl.store(y_row + cols * ysn, y.to(y_ptr.dtype.element_ty), mask=mask)
    else:
        # pass 1: per lane, a running max m and the sum s of exp(x - m), rescaled whenever m grows
        m = tl.full([BLOCK_R, BLOCK_N], -float("inf"), CT)
        s = tl.zeros([BLOCK_R, BLOCK_N], CT)
        for start in range(0, N, BLOCK_N):
            c = start + cols
            x = tl.load(x_row + c * xsn, mask=row_mask & (c < N), other=-float("inf")).to(CT)
            x = tl.where(row_mask, x, 0.0)
            m_new = tl.maximum(m, x)
            empty_lane = m_new == -float("inf")          # nothing but -inf seen yet: keep s = 0, avoid NaN
            s = tl.where(empty_lane, 0.0, s * tl.exp(m - m_new) + tl.exp(x - m_new))
            m = m_new
        row_max = tl.max(m, axis=1)[:, None]
        row_sum = tl.sum(tl.where(m == -float("inf"), 0.0, s * tl.exp(m - row_max)), axis=1)[:, None]
        # pass 2: write
        if LOG:
            log_sum = tl.log(row_sum)
        else:
            inv = 1.0 / row_sum
        for start in range(0, N, BLOCK_N):
            c = start + cols
            mask = row_mask & (c < N)
            x = tl.load(x_row + c * xsn, mask=mask, other=-float("inf")).to(CT)
            if LOG:
                y = (x - row_max) - log_sum
            else:
                y = tl.exp(x - row_max) * inv
            tl.store(y_row + c * ysn, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_bwd_kernel(y_ptr, g_ptr, dx_ptr, R, N, INNER, yso, ysi, ysn, gso, gsi, gsn, dso, dsi, dsn,
                        LOG: tl.constexpr, SINGLE: tl.constexpr, CT: tl.constexpr, I64: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """dx from the output y and its gradient g: softmax y * (g - sum(g * y)), log_softmax g - exp(y) * sum(g)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows[:, None] < R
    y_row = y_ptr + _row_offsets(rows, INNER, yso, ysi)
    g_row = g_ptr + _row_offsets(rows, INNER, gso, gsi)
    d_row = dx_ptr + _row_offsets(rows, INNER, dso, dsi)
    cols = tl.arange(0, BLOCK_N)[None, :]
    if I64:
        cols = cols.to(tl.int64)
    if SINGLE:
        mask = row_mask & (cols < N)
        y = tl.load(y_row + cols * ysn, mask=mask, other=0.0).to(CT)
        g = tl.load(g_row + cols * gsn, mask=mask, other=0.0).to(CT)
        if LOG:
            dx = g - tl.exp(y) * tl.sum(g, axis=1)[:, None]
        else:
            dx = y * (g - tl.sum(g * y, axis=1)[:, None])
        tl.store(d_row + cols * dsn, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    else:
        acc = tl.zeros([BLOCK_R, BLOCK_N], CT)
        for start in range(0, N, BLOCK_N):
            c = start + cols
            mask = row_mask & (c < N)
            g = tl.load(g_row + c * gsn, mask=mask, other=0.0).to(CT)
            if LOG:
                acc += g
            else:
                acc += g * tl.load(y_row + c * ysn, mask=mask, other=0.0).to(CT)
        total = tl.sum(acc, axis=1)[:, None]
        for start in range(0, N, BLOCK_N):
            c = start + cols
            mask = row_mask & (c < N)
            y = tl.load(y_row + c * ysn, mask=mask, other=0.0).to(CT)
            g = tl.load(g_row + c * gsn, mask=mask, other=0.0).to(CT)
            if LOG:
                dx = g - tl.exp(y) * total
            else:
                dx = y * (g - total)
            tl.store(d_row + c * dsn, dx.to(dx_ptr.dtype.element_ty), mask=mask)


# ====================================================================================================================
# Launch
# ====================================================================================================================

# (max_single, chunk, tile): the longest row held in registers, the streaming chunk, the elements of a program's tile
_LIMITS = (64, 32, 512) if INTERPRET else (16384, 4096, 4096)


def softmax_config(R, N):
    """(SINGLE, BLOCK_R, BLOCK_N, num_warps) of a launch over R rows of N elements: the heuristic default.

    A row up to ``max_single`` elements is held in registers and read once; longer rows stream in chunks. Short
    rows are packed BLOCK_R to a program. The interpreter uses small blocks so that tests cover both paths.
    """
    max_single, chunk, tile = _LIMITS
    single = next_pow2(N) <= max_single
    block_n = next_pow2(N) if single else chunk
    block_r = max(1, min(next_pow2(R), tile // block_n))
    work = block_r * block_n
    num_warps = 4 if work <= 2048 else 8 if work <= 8192 else 16
    return single, block_r, block_n, num_warps


def _blocks(cfg, R, N):
    """(BLOCK_R, BLOCK_N) of a candidate for R rows of N: a single-pass block holds the whole row, a streaming one
    walks it CHUNK at a time; rows are packed until the tile holds TILE elements."""
    block_n = next_pow2(N) if cfg.SINGLE else min(cfg.CHUNK, next_pow2(N))
    return max(1, min(next_pow2(R), cfg.TILE // block_n)), block_n


def _cfg(single, tile, chunk, num_warps):
    return autotune.Config(num_warps=num_warps, num_stages=3, SINGLE=single, TILE=tile, CHUNK=0 if single else chunk)


def _default(key):
    single, _, _, num_warps = softmax_config(key[2], key[3])
    return _cfg(single, _LIMITS[2], _LIMITS[1], num_warps)


def _prune(configs, key):
    """Single-pass candidates only where the row fits the block (at most 64 elements a thread, beyond which
    registers spill); streaming ones only for rows longer than one chunk (a row of one chunk would be read twice
    for nothing)."""
    n = key[3]
    return [c for c in configs if (n <= 64 * 32 * c.num_warps if c.SINGLE else n > c.CHUNK)]


# H100 candidates: short rows packed into 1K-4K element tiles (8K with 16 warps spilled 4-8 B in float16/bfloat16,
# forward and backward); long rows in one pass up to 16K (the default), streamed beyond.
CANDIDATES = (
    _cfg(True, 1024, 0, 4),
    _cfg(True, 4096, 0, 4),
    _cfg(True, 4096, 0, 8),
    _cfg(False, 4096, 2048, 8),
    _cfg(False, 4096, 4096, 8),
    _cfg(False, 8192, 8192, 16),
)


def _key(dtype, log, R, N, sdim):
    """Autotune key: the dtype computed from (the forward's result, the backward's y), log or not, bucketed row count
    and length, unit stride along the row or not. A half input read in float32 (``dtype=float32``) and its float32
    cast then tune alike, so on a GPU both sum their rows in the same order, forward and backward."""
    return (dtype, bool(log), autotune.bucket(R), autotune.bucket(N), "c" if sdim == 1 else "s")


def _prune_bwd(configs, key):
    """The backward holds two tiles (y and dy): single-pass candidates only at up to 16 elements of each a thread
    (at 32 and 64, 40-170 B of spills per thread: tritorch compile-check, sm_90a)."""
    return [c for c in _prune(configs, key) if not c.SINGLE or max(key[3], c.TILE) <= 16 * 32 * c.num_warps]


TUNABLES = {kernel: autotune.Tunable(name, CANDIDATES, default=_default, prune=prune, kernels=(kernel,))
            for name, kernel, prune in (("softmax_fwd", _softmax_kernel, _prune),
                                        ("softmax_bwd", _softmax_bwd_kernel, _prune_bwd))}


def _rows(shape, dim, *tensors):
    """(R, N, INNER, [(s_outer, s_inner, s_dim) per tensor]) of tensors of ``shape`` seen as rows along ``dim``, or
    None where the dims before or after ``dim`` do not merge into a single stride in every tensor."""
    parts = []
    for idx in (range(dim), range(dim + 1, len(shape))):
        sub = [shape[j] for j in idx]
        try:
            sizes, sts = coalesce(sub, *[[t._stride[j] for j in idx] for t in tensors])
        except NotImplementedError:
            return None
        if any(s != 1 for s in sizes[:-1]):
            return None
        parts.append((sizes[-1], [st[-1] for st in sts]))
    (n_outer, so), (inner, si) = parts
    return n_outer * inner, shape[dim], inner, [(so[k], si[k], t._stride[dim]) for k, t in enumerate(tensors)]


def _as_rows(dim, *tensors):
    """``_rows`` of the tensors, making them contiguous if their layout does not fit."""
    lay = _rows(tensors[-1]._shape, dim, *tensors)
    if lay is None:
        tensors = tuple(t.contiguous() for t in tensors)
        lay = _rows(tensors[-1]._shape, dim, *tensors)
    return tensors, lay


def _launch(kernel, ins, out, dim, log, config=None):
    """Run the forward (ins = (x,)) or backward (ins = (y, g)) row kernel into ``out``, with ``config`` or the one
    the autotuner picks (``softmax_fwd`` / ``softmax_bwd``)."""
    if out.numel() == 0:
        return out
    if INTERPRET and out.dtype is D.bfloat16:
        return copy_host(out, _launch(kernel, ins, empty(out._shape, D.float32, out.device), dim, log, config))
    ins = tuple(interp_bf16_in(t) for t in ins)
    res = out
    if out.ndim == 0:
        ins = tuple(t._view((1,), (1,)) for t in ins)
        out, dim = out._view((1,), (1,)), 0
    tensors, (R, N, inner, strides) = _as_rows(dim, *ins, out)
    key_dtype = out.dtype if kernel is _softmax_kernel else tensors[0].dtype
    cfg = config or TUNABLES[kernel].pick(_key(key_dtype, log, R, N, strides[0][2]),
                                          lambda c: _launch(kernel, ins, out, dim, log, c))     # writes only out
    block_r, block_n = _blocks(cfg, R, N)
    kernel[(cdiv(R, block_r),)](
        *[ptr(t) for t in tensors], R, N, inner, *[s for st in strides for s in st],
        LOG=log, SINGLE=cfg.SINGLE, CT=ACC[out.dtype], I64=is_int64_index(out.numel(), *tensors),
        BLOCK_R=block_r, BLOCK_N=block_n, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return res


# ====================================================================================================================
# NumPy references
# ====================================================================================================================

def _np_softmax(x, dim, log):
    if x.size == 0:
        return x.copy()
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        z = x - np.max(x, axis=dim, keepdims=True)
        e = np.exp(z)
        s = np.sum(e, axis=dim, keepdims=True)
        return z - np.log(s) if log else e / s


def _np_softmax_bwd(y, g, dim, log):
    if y.size == 0:
        return g.copy()
    if log:
        return g - np.exp(y) * np.sum(g, axis=dim, keepdims=True)
    return y * (g - np.sum(g * y, axis=dim, keepdims=True))


# ====================================================================================================================
# The autograd Function and the public functions
# ====================================================================================================================

class Softmax(Function):
    """softmax (log_softmax with ``log``) of x along ``dim``, in ``dtype`` (None: x's; float32 for half x, which the
    kernel reads as it is and computes in float32 as it always does, so the result is the cast input's without a
    float32 copy of it, and the gradient is written in x's dtype)."""

    @staticmethod
    def forward(ctx, x, dim, log, dtype=None):
        dtype = dtype or x.dtype
        if x._storage.device.type == "cpu":
            ct = np_ct(dtype)
            out = wrap(_np_softmax(x._np.astype(ct, copy=False), dim if x.ndim else None, log).astype(dtype.np),
                       dtype, x.device)
        else:
            out = _launch(_softmax_kernel, (x,), empty(x._shape, dtype, x.device), dim, log)
        if any(ctx.needs_input_grad):
            ctx._name = "LogSoftmaxBackward0" if log else "SoftmaxBackward0"
            ctx.dim, ctx.log, ctx.x_dtype = dim, log, x.dtype
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        dim, log, xdt = ctx.dim, ctx.log, ctx.x_dtype
        if STATE.enabled:          # create_graph: the same rule in differentiable tensor ops
            if y.ndim == 0:
                dx = g * 0 if not log else g - y.exp() * g
            elif log:
                dx = g - y.exp() * g.sum(dim, keepdim=True)
            else:
                dx = y * (g - (g * y).sum(dim, keepdim=True))
            return (dx if dx.dtype is xdt else dx.to(xdt)), None, None, None
        if y._storage.device.type == "cpu":
            ct = np_ct(y.dtype)
            dx = _np_softmax_bwd(y._np.astype(ct, copy=False), np.broadcast_to(g._np, y._shape).astype(ct),
                                 dim if y.ndim else None, log)
            return wrap(dx.astype(xdt.np), xdt, y.device), None, None, None
        if g._shape != y._shape:
            g = g.expand(y._shape)
        return _launch(_softmax_bwd_kernel, (y, g), empty(y._shape, xdt, y.device), dim, log), None, None, None


def _softmax_dim(ndim):
    """PyTorch's legacy implicit dim of F.softmax(x) called without ``dim``."""
    warnings.warn("Implicit dimension choice for softmax has been deprecated. Change the call to include dim=X as "
                  "an argument.", UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def _apply(name, input, dim, dtype, log):
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")
    if dim is None:
        dim = _softmax_dim(input.ndim)
    input, dtype = read_as(input, dtype)
    if not input.dtype.is_floating_point:
        d = input._wrap_dim(dim)
        if input.numel() == 0:                  # no element reaches the kernel: PyTorch returns the empty input
            return input.detach().clone()
        kind = "log_softmax" if log else "softmax"
        where = "lastdim_" if input.ndim <= 1 or dim in (-1, input.ndim - 1) else ""
        raise NotImplementedError(f"\"{kind}_{where}kernel_impl\" not implemented for '{_T_NAMES[input.dtype]}'")
    d = input._wrap_dim(dim)
    return Softmax.apply(input, d, log, dtype)


@register("softmax")
def softmax(input, dim, dtype=None):
    """exp(x) / sum(exp(x)) along ``dim`` (computed as exp(x - max) / sum(exp(x - max))); with ``dtype`` that of the
    input cast to it (float32 of a half input, autocast's: read by the kernel as it is, no float32 copy made)."""
    return _apply("softmax", input, dim, dtype, False)


@register("log_softmax")
def log_softmax(input, dim, dtype=None):
    """x - max - log(sum(exp(x - max))) along ``dim``: the stable log of ``softmax``."""
    return _apply("log_softmax", input, dim, dtype, True)
