"""Reductions. (Foundation: sum over dims, used by broadcasting's backward; the full family is built on it.)"""
import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import register
from tritorch.autograd.function import Function
from ._launch import ACC, ptr, next_pow2
from .elementwise import empty, wrap, np_ct


@triton.jit
def _row_sum_kernel(x_ptr, out_ptr, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CT: tl.constexpr):
    """out[m] = sum_n x[m, n] for a contiguous (M, N) input; BLOCK_M rows per program, N in BLOCK_N chunks."""
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    acc = tl.zeros([BLOCK_M, BLOCK_N], CT)
    for start in range(0, N, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        mask = row_mask[:, None] & (cols[None, :] < N)
        acc += tl.load(x_ptr + rows[:, None] * N + cols[None, :], mask=mask, other=0).to(CT)
    tl.store(out_ptr + rows, tl.sum(acc, axis=1).to(out_ptr.dtype.element_ty), mask=row_mask)


def _reduce_dims(x, dims):
    """Move the reduced dims last and make the tensor a contiguous (M, N) matrix."""
    keep = [d for d in range(x.ndim) if d not in dims]
    xp = x.permute(*keep, *dims).contiguous() if keep + list(dims) != list(range(x.ndim)) else x.contiguous()
    m = int(np.prod([x._shape[d] for d in keep], dtype=np.int64))
    n = int(np.prod([x._shape[d] for d in dims], dtype=np.int64))
    return xp, m, n, tuple(x._shape[d] for d in keep)


def _sum_kernel(x, dims, out_dtype):
    xp, m, n, keep_shape = _reduce_dims(x, dims)
    out = empty(keep_shape, out_dtype, x.device)
    if m == 0:
        return out
    block_n = min(next_pow2(max(n, 1)), 256 if INTERPRET else 1024)
    block_m = max(1, min(next_pow2(m), (256 if INTERPRET else 4096) // block_n))
    ct = ACC[out_dtype] if out_dtype.is_floating_point else tl.int64
    _row_sum_kernel[(triton.cdiv(m, block_m),)](ptr(xp), ptr(out), m, n, BLOCK_M=block_m, BLOCK_N=block_n, CT=ct)
    return out


class Sum(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim, out_dtype):
        ctx.in_shape, ctx.dims, ctx.keepdim = x._shape, dims, keepdim
        if x._storage.device.type == "cpu":
            res = np.sum(x._np.astype(np_ct(out_dtype) if out_dtype.is_floating_point else np.int64, copy=False),
                         axis=dims, keepdims=False)
            out = wrap(np.asarray(res).astype(out_dtype.np), out_dtype, x.device)
        else:
            out = _sum_kernel(x, dims, out_dtype)
        if keepdim:
            out = out.reshape([1 if d in dims else s for d, s in enumerate(x._shape)])
        return out

    @staticmethod
    def backward(ctx, g):
        if not ctx.keepdim:
            g = g.reshape([1 if d in ctx.dims else s for d, s in enumerate(ctx.in_shape)])
        return g.expand(ctx.in_shape)


def _dims_arg(x, dim):
    if dim is None:
        return tuple(range(x.ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if not dims:
        return tuple(range(x.ndim))
    out = tuple(sorted({x._wrap_dim(d) for d in dims}))
    if len(out) != len(dims):
        raise RuntimeError("dim appears multiple times in the list of dims")
    return out


@register("sum")
def sum(input, dim=None, keepdim=False, *, dtype=None):
    out_dtype = D.to_dtype(dtype) if dtype is not None else (
        input.dtype if input.dtype.is_floating_point else D.int64)
    return Sum.apply(input, _dims_arg(input, dim), keepdim, out_dtype)


def sum_to_shape(g, shape):
    """Sum a broadcast gradient down to ``shape`` (leading dims dropped, size-1 dims kept)."""
    lead = g.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g._shape[lead + i] != 1)
    out = sum(g, dims, keepdim=True) if dims else g
    return out.reshape(shape)


