"""triu and tril: keep the upper or lower triangle of the last two dims (an attention mask's usual maker).

One kernel does both: a masked load that reads only the kept elements and fills the others with zero. The backward
of ``triu(x, k)`` is ``triu(g, k)`` (and the same for tril): the same kernel again.
"""
import numpy as np
import triton
import triton.language as tl

from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from tritorch.kernels._launch import cdiv, interp_bf16_in, interp_bf16_out, ptr
from tritorch.kernels._common import check_inplace, empty, mark_written, wrap
from tritorch.kernels.elementwise import apply_inplace

BLOCK = 1024


@triton.jit
def _triangle_kernel(x_ptr, out_ptr, n, M, N, diagonal, UPPER: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    col = offs % N
    row = (offs // N) % M
    if UPPER:
        keep = col - row >= diagonal
    else:
        keep = col - row <= diagonal
    x = tl.load(x_ptr + offs, mask=mask & keep, other=0)
    tl.store(out_ptr + offs, x, mask=mask)


def triangle_ref(x, diagonal, upper):
    """NumPy's triu/tril over the last two dims of ``x``."""
    return np.triu(x, diagonal) if upper else np.tril(x, diagonal)


def _check(name, x, diagonal):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(x).__name__}")
    if x.dim() < 2:
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions, got {x.dim()}")
    if isinstance(diagonal, bool) or not isinstance(diagonal, (int, np.integer)):
        raise TypeError(f"{name}(): argument 'diagonal' must be int, not {type(diagonal).__name__}")


def _triangle(x, diagonal, upper, out=None):
    """``x``'s triangle into a new contiguous tensor, or into ``out`` (``x`` itself when contiguous: in place)."""
    if x._storage.device.type == "cpu":
        res = triangle_ref(x._np, diagonal, upper)
        if out is not None:
            out._np[...] = res
            return out
        return wrap(np.ascontiguousarray(res), x.dtype, x.device)
    dtype = x.dtype
    src = interp_bf16_in(x.contiguous())
    dst = out if out is not None and src is x else empty(x.shape, src.dtype, x.device)
    n = x.numel()
    if n:
        M, N = x.shape[-2], x.shape[-1]
        _triangle_kernel[(cdiv(n, BLOCK),)](ptr(src), ptr(dst), n, M, N, int(diagonal), UPPER=upper, BLOCK=BLOCK)
    dst = interp_bf16_out(dst, dtype)
    if out is not None and dst is not out:
        out.copy_(dst)
        return out
    return dst


class Triangle(Function):
    _tensor_ctx_attrs = False

    @staticmethod
    def forward(ctx, x, diagonal, upper):
        ctx.diagonal, ctx.upper = diagonal, upper
        ctx._name = "TriuBackward0" if upper else "TrilBackward0"
        return _triangle(x, diagonal, upper)

    @staticmethod
    def backward(ctx, g):
        return Triangle.apply(g, ctx.diagonal, ctx.upper), None, None


class TriangleInplace(Triangle):
    @staticmethod
    def forward(ctx, x, diagonal, upper):
        check_inplace(x, ctx)
        ctx.diagonal, ctx.upper = diagonal, upper
        ctx._name = "TriuBackward0" if upper else "TrilBackward0"
        _triangle(x, diagonal, upper, out=x)
        mark_written(ctx, x)
        return x


@register("triu")
def triu(input, diagonal=0):
    """The upper triangle of the last two dims: elements with ``col - row >= diagonal`` kept, the others zero."""
    _check("triu", input, diagonal)
    return Triangle.apply(input, int(diagonal), True)


@register("tril")
def tril(input, diagonal=0):
    """The lower triangle of the last two dims: elements with ``col - row <= diagonal`` kept, the others zero."""
    _check("tril", input, diagonal)
    return Triangle.apply(input, int(diagonal), False)


@register("triu_", function=False)
def triu_(self, diagonal=0):
    _check("triu_", self, diagonal)
    return apply_inplace(TriangleInplace, self, int(diagonal), True)


@register("tril_", function=False)
def tril_(self, diagonal=0):
    _check("tril_", self, diagonal)
    return apply_inplace(TriangleInplace, self, int(diagonal), False)
