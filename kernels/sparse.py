"""The sparse COO matrix product: ``out = S @ B`` for a sparse (M, K) matrix S given by its entries (rows, cols,
values) and a dense (K, N) matrix B, and its backward rules. tritorch/sparse/ (the upper layer) builds its sparse
tensors on these; this module knows nothing of them.

``_spmm_kernel`` gathers, for a block of entries e, the dense rows ``B[cols[e], :]``, scales them by ``values[e]``
and adds them into the output rows ``out[rows[e], :]`` with ``tl.atomic_add`` (entries of one row, duplicates
included, meet in the same output row), so the entries need no sorting and duplicates are summed as a coalesce
would. The accumulation buffer is float32 (float64 for float64, int64 for integers); the order of the float
additions, hence the last bits, varies between runs on a GPU, as PyTorch's CUDA sparse product does.

The backward is made of the same two kernels: d B = S^T @ G is the same product with rows and cols swapped, and
d values[e] = sum_n G[rows[e], n] * B[cols[e], n] is G @ B^T sampled at the entries (``_sddmm_kernel``). Both are
``Function`` calls, so a backward with create_graph records and is differentiable again.
"""
import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET
from tritorch.autograd.function import Function
from ._launch import ACC, ptr, cdiv, next_pow2, on_cpu, interp_bf16_in, interp_bf16_out
from ._common import empty, np_ct, wrap, quiet

__all__ = ["coo_mm", "coo_sampled_dot", "coo_mm_np", "coo_sampled_dot_np"]


@triton.jit
def _spmm_kernel(rows_ptr, cols_ptr, vals_ptr, b_ptr, out_ptr, NNZ, N, s_rows, s_cols, s_vals, sb0, sb1,
                 CT: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_N: tl.constexpr):
    """out[rows[e], n] += vals[e] * b[cols[e], n] for this program's BLOCK_E entries e and BLOCK_N columns n;
    grid (cdiv(NNZ, BLOCK_E), cdiv(N, BLOCK_N)).

    rows, cols: (NNZ,) int64 with strides s_rows, s_cols; vals: (NNZ,) with stride s_vals; b: (K, N) with strides
    sb0 (to the next row) and sb1 (to the next column); out: a contiguous zeroed (M, N) buffer of type CT, added to
    atomically.
    """
    e = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    n = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    emask = e < NNZ
    m = emask[:, None] & (n < N)[None, :]
    r = tl.load(rows_ptr + e * s_rows, mask=emask, other=0)
    c = tl.load(cols_ptr + e * s_cols, mask=emask, other=0)
    v = tl.load(vals_ptr + e * s_vals, mask=emask, other=0).to(CT)
    x = tl.load(b_ptr + c[:, None] * sb0 + n[None, :] * sb1, mask=m, other=0).to(CT)
    tl.atomic_add(out_ptr + r[:, None] * N + n[None, :], v[:, None] * x, mask=m)


@triton.jit
def _sddmm_kernel(rows_ptr, cols_ptr, a_ptr, b_ptr, out_ptr, NNZ, N, s_rows, s_cols, sa0, sa1, sb0, sb1,
                  CT: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_N: tl.constexpr):
    """out[e] = sum_n a[rows[e], n] * b[cols[e], n] (a @ b^T sampled at the entries) for this program's BLOCK_E
    entries; grid (cdiv(NNZ, BLOCK_E),).

    rows, cols: (NNZ,) int64 with strides s_rows, s_cols; a: (M, N) and b: (K, N), each with its row stride (sa0,
    sb0) and column stride (sa1, sb1); out: contiguous (NNZ,).
    """
    e = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < NNZ
    r = tl.load(rows_ptr + e * s_rows, mask=emask, other=0)
    c = tl.load(cols_ptr + e * s_cols, mask=emask, other=0)
    acc = tl.zeros([BLOCK_E, BLOCK_N], dtype=CT)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        m = emask[:, None] & (n < N)[None, :]
        x = tl.load(a_ptr + r[:, None] * sa0 + n[None, :] * sa1, mask=m, other=0).to(CT)
        y = tl.load(b_ptr + c[:, None] * sb0 + n[None, :] * sb1, mask=m, other=0).to(CT)
        acc += x * y
    tl.store(out_ptr + e, tl.sum(acc, axis=1).to(out_ptr.dtype.element_ty), mask=emask)


# ---- NumPy references --------------------------------------------------------------------------------------------
def _ct(dtype):
    return np_ct(dtype) if dtype.is_floating_point else np.int64


def coo_mm_np(rows, cols, vals, b, m, dtype):
    """out (m, N) = sum over entries e of vals[e] * b[cols[e]] added into row rows[e], computed in ``_ct``."""
    ct = _ct(dtype)
    out = np.zeros((m, b.shape[1]), ct)
    quiet(np.add.at, out, rows, vals.astype(ct)[:, None] * b[cols].astype(ct))
    return out.astype(dtype.np)


def coo_sampled_dot_np(rows, cols, a, b, dtype):
    """out[e] = a[rows[e]] . b[cols[e]]."""
    ct = _ct(dtype)
    return quiet(np.einsum, "en,en->e", a[rows].astype(ct), b[cols].astype(ct)).astype(dtype.np)


# ---- launchers ---------------------------------------------------------------------------------------------------
def _blocks(nnz, n):
    cap = 32 if INTERPRET else 128
    return max(16, min(next_pow2(max(nnz, 1)), cap)), max(16, min(next_pow2(max(n, 1)), cap))


def _launch_mm(rows, cols, vals, b, m):
    """The (m, N) product in ``vals``' dtype (all inputs on one non-cpu device, of checked types)."""
    dtype, nnz, n = vals.dtype, rows._shape[0], b._shape[1]
    acc_dt = (D.float64 if dtype is D.float64 else D.float32) if dtype.is_floating_point else D.int64
    out = empty((m, n), acc_dt, b.device).zero_()
    if nnz and n and m:
        vals, b = interp_bf16_in(vals), interp_bf16_in(b)
        be, bn = _blocks(nnz, n)
        _spmm_kernel[(cdiv(nnz, be), cdiv(n, bn))](
            ptr(rows), ptr(cols), ptr(vals), ptr(b), ptr(out), nnz, n, rows._stride[0], cols._stride[0],
            vals._stride[0], b._stride[0], b._stride[1], CT=ACC[acc_dt], BLOCK_E=be, BLOCK_N=bn)
    return out if acc_dt is dtype else out.to(dtype)


def _launch_sampled_dot(rows, cols, a, b):
    dtype, nnz, n = a.dtype, rows._shape[0], a._shape[1]
    work = D.float32 if INTERPRET and dtype is D.bfloat16 else dtype
    out = empty((nnz,), work, a.device)
    if nnz:
        if n == 0:
            return out.zero_().to(dtype)
        a, b = interp_bf16_in(a), interp_bf16_in(b)
        be, bn = _blocks(nnz, n)
        _sddmm_kernel[(cdiv(nnz, be),)](
            ptr(rows), ptr(cols), ptr(a), ptr(b), ptr(out), nnz, n, rows._stride[0], cols._stride[0],
            a._stride[0], a._stride[1], b._stride[0], b._stride[1],
            CT=ACC[dtype] if dtype.is_floating_point else tl.int64, BLOCK_E=be, BLOCK_N=bn)
    return interp_bf16_out(out, dtype)


# ---- the autograd Functions --------------------------------------------------------------------------------------
class CooMM(Function):
    """``S @ b`` for S = the (m, K) matrix of entries (rows, cols, values); differentiable in values and b."""

    @staticmethod
    def forward(ctx, rows, cols, values, b, m, name="SparseAddmmBackward0"):
        if on_cpu(b):
            out = wrap(coo_mm_np(rows._np, cols._np, values._np, b._np, m, values.dtype), values.dtype, b.device)
        else:
            out = _launch_mm(rows, cols, values, b, m)
        if any(ctx.needs_input_grad):
            ctx._name = name
            ctx.k = b._shape[0]
            ctx.save_for_backward(rows, cols, values if ctx.needs_input_grad[3] else None,
                                  b if ctx.needs_input_grad[2] else None)
        return out

    @staticmethod
    def backward(ctx, g):
        rows, cols, values, b = ctx.saved_tensors
        gv = gb = None
        if ctx.needs_input_grad[2]:
            gv = CooSampledDot.apply(rows, cols, g, b)
        if ctx.needs_input_grad[3]:
            gb = CooMM.apply(cols, rows, values, g, ctx.k)
        return None, None, gv, gb, None, None


class CooSampledDot(Function):
    """``out[e] = a[rows[e]] . b[cols[e]]``: (a @ b^T) at the entries; differentiable in a and b."""

    @staticmethod
    def forward(ctx, rows, cols, a, b):
        if on_cpu(a):
            out = wrap(coo_sampled_dot_np(rows._np, cols._np, a._np, b._np, a.dtype), a.dtype, a.device)
        else:
            out = _launch_sampled_dot(rows, cols, a, b)
        if any(ctx.needs_input_grad):
            ctx.shapes = (a._shape[0], b._shape[0])
            ctx.save_for_backward(rows, cols, a if ctx.needs_input_grad[3] else None,
                                  b if ctx.needs_input_grad[2] else None)
        return out

    @staticmethod
    def backward(ctx, g):
        rows, cols, a, b = ctx.saved_tensors
        ga = gb = None
        if ctx.needs_input_grad[2]:
            ga = CooMM.apply(rows, cols, g, b, ctx.shapes[0])
        if ctx.needs_input_grad[3]:
            gb = CooMM.apply(cols, rows, g, a, ctx.shapes[1])
        return None, None, ga, gb


def coo_mm(rows, cols, values, b, m, name="SparseAddmmBackward0"):
    """The dense (m, N) product of the sparse matrix with entries ``(rows[e], cols[e], values[e])`` and the dense
    (K, N) matrix ``b``. ``rows``/``cols``: (nnz,) int64 in range (checked by the caller), ``values``: (nnz,) of
    b's dtype, all on b's device. Duplicate entries add up."""
    return CooMM.apply(rows, cols, values, b, m, name)


def coo_sampled_dot(rows, cols, a, b):
    """``(a @ b.T)[rows, cols]`` without forming the product: a (M, N), b (K, N) of one dtype."""
    return CooSampledDot.apply(rows, cols, a, b)
