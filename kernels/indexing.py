"""Indexing: ``x[idx]`` and ``x[idx] = v`` (basic and advanced), gather/scatter, index_select/index_add,
masked_fill/masked_select and nonzero, with their backward rules.

Basic indices (ints, slices, None, Ellipsis) make a view (``views.basic_index``). Advanced indices (integer tensors,
lists, NumPy arrays, boolean masks) follow PyTorch: ints select first, masks become ``nonzero`` index tensors, the
index tensors broadcast to one shape ``B``, and the result has shape ``pre + B + post``, where the indexed dims stay
in place when they are adjacent and move to the front otherwise. Every advanced index op is one of two kernels over
that ``(pre, B, post)`` decomposition: a gather (``out[p, b, q] = x[pre(p) + off[b] + post(q)]``) and a put (the
mirror, storing or atomically adding). ``off[b]`` (the summed ``index * stride`` of the indexed dims) is computed
once per call by a small kernel that also checks bounds.

Nondeterminism on a GPU: every op that adds with ``tl.atomic_add`` (``index_put_(accumulate=True)``, ``index_add``,
``scatter_add``, and so the backward of ``x[idx]``, ``index_select`` and ``gather``) sums repeated indices in an
unspecified order, so floating-point results may differ in the last bits from run to run; ``x[idx] = v``,
``index_copy``-like puts and ``scatter`` with repeated indices keep an unspecified one of the written values, as
in PyTorch.
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
from ._launch import (ACC, Ptr, ptr, coalesce, nd_coords, nd_offset, block_for, broadcast_shapes, broadcast_strides,
                      MAXD, interp_bf16_in, is_int64_index, on_cpu)
from tritorch._creation import tensor, zeros
from ._common import check_inplace, empty, host_check, sum_to, wrap
from ._pointwise import launch_pointwise, _where
from .copy import copy_into, fill_
from .creation import scalar_value
from .elementwise import where
from .views import CopySlices, apply_inplace, as_strided, basic_index, view_scatter

__all__ = ["getitem", "setitem", "apply_inplace", "index_put_", "nonzero", "masked_select", "masked_fill", "gather",
           "scatter", "scatter_add", "index_select", "index_add"]

# ====================================================================================================================
# The kernels
# ====================================================================================================================


@triton.jit
def _index_offsets_kernel(idx_ptr, off_ptr, err_ptr, nb, size, stride, lo, S1, S2, S3, S4, S5,
                          is0, is1, is2, is3, is4, is5, ACCUM: tl.constexpr, I64: tl.constexpr,
                          BLOCK: tl.constexpr):
    """off[b] (+)= idx[b] * stride over the broadcast index shape (idx read through strides, negative indices
    wrapped). An index outside [lo, size) is written to err = (1, index) and replaced by 0. The position math runs
    in int32 unless ``I64`` (int64 division spilled registers); the offsets are int64."""
    pid = tl.program_id(0)
    if I64:
        pid = pid.to(tl.int64)
    b = pid * BLOCK + tl.arange(0, BLOCK)
    mask = b < nb
    c0, c1, c2, c3, c4, c5 = nd_coords(b, S1, S2, S3, S4, S5)
    idx = tl.load(idx_ptr + nd_offset(c0, c1, c2, c3, c4, c5, is0, is1, is2, is3, is4, is5), mask=mask,
                  other=0).to(tl.int64)
    bad = mask & ((idx < lo) | (idx >= size))
    zero = tl.zeros([BLOCK], tl.int64)
    tl.store(err_ptr + zero, zero + 1, mask=bad)
    tl.store(err_ptr + 1 + zero, idx, mask=bad)
    idx = tl.where(bad, 0, tl.where(idx < 0, idx + size, idx))
    off = idx * stride
    if ACCUM:
        off += tl.load(off_ptr + b, mask=mask, other=0)
    tl.store(off_ptr + b, off, mask=mask)


@triton.jit
def _pbq_offsets(i, NB, Q, P1, P2, P3, P4, P5, ps0, ps1, ps2, ps3, ps4, ps5,
                 Q1, Q2, Q3, Q4, Q5, qs0, qs1, qs2, qs3, qs4, qs5):
    """Split the linear index ``i`` of a contiguous (P, NB, Q) array into (b, strided offset of p and q)."""
    q = i % Q
    t = i // Q
    b = t % NB
    p = t // NB
    a0, a1, a2, a3, a4, a5 = nd_coords(p, P1, P2, P3, P4, P5)
    c0, c1, c2, c3, c4, c5 = nd_coords(q, Q1, Q2, Q3, Q4, Q5)
    rest = nd_offset(a0, a1, a2, a3, a4, a5, ps0, ps1, ps2, ps3, ps4, ps5) + \
        nd_offset(c0, c1, c2, c3, c4, c5, qs0, qs1, qs2, qs3, qs4, qs5)
    return b, rest


@triton.jit
def _index_gather_kernel(x_ptr, off_ptr, out_ptr, n, NB, Q, P1, P2, P3, P4, P5, ps0, ps1, ps2, ps3, ps4, ps5,
                         Q1, Q2, Q3, Q4, Q5, qs0, qs1, qs2, qs3, qs4, qs5, BLOCK: tl.constexpr):
    """out[p, b, q] = x[pre(p) + off[b] + post(q)]: advanced indexing, ``index_select``. ``out`` is contiguous."""
    pid = tl.program_id(0)
    i = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    b, rest = _pbq_offsets(i, NB, Q, P1, P2, P3, P4, P5, ps0, ps1, ps2, ps3, ps4, ps5,
                           Q1, Q2, Q3, Q4, Q5, qs0, qs1, qs2, qs3, qs4, qs5)
    off = tl.load(off_ptr + b, mask=mask, other=0)
    tl.store(out_ptr + i, tl.load(x_ptr + rest + off, mask=mask), mask=mask)


@triton.jit
def _index_put_kernel(dst_ptr, off_ptr, val_ptr, n, NB, Q, P1, P2, P3, P4, P5, ps0, ps1, ps2, ps3, ps4, ps5,
                      Q1, Q2, Q3, Q4, Q5, qs0, qs1, qs2, qs3, qs4, qs5, alpha,
                      VAL_BCAST: tl.constexpr, ACCUM: tl.constexpr, BLOCK: tl.constexpr):
    """dst[pre(p) + off[b] + post(q)] = val[p, b, q], or ``+= alpha * val`` with ``ACCUM`` (atomically, so that
    repeated indices add up). ``val`` is contiguous of shape (P, NB, Q), or one element with ``VAL_BCAST``."""
    pid = tl.program_id(0)
    i = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    b, rest = _pbq_offsets(i, NB, Q, P1, P2, P3, P4, P5, ps0, ps1, ps2, ps3, ps4, ps5,
                           Q1, Q2, Q3, Q4, Q5, qs0, qs1, qs2, qs3, qs4, qs5)
    off = tl.load(off_ptr + b, mask=mask, other=0)
    if VAL_BCAST:
        v = tl.load(val_ptr + i * 0, mask=mask)
    else:
        v = tl.load(val_ptr + i, mask=mask)
    if ACCUM:
        v = v * alpha
        tl.atomic_add(dst_ptr + rest + off, v.to(dst_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(dst_ptr + rest + off, v.to(dst_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gather_kernel(x_ptr, idx_ptr, out_ptr, err_ptr, n, size, dstride, S1, S2, S3, S4, S5,
                   xs0, xs1, xs2, xs3, xs4, xs5, is0, is1, is2, is3, is4, is5, BLOCK: tl.constexpr):
    """out[c] = x[c with c[dim] := idx[c]] (``gather``): ``out`` is contiguous in the index's shape; ``xs`` are
    x's strides with 0 at ``dim``, whose stride ``dstride`` multiplies the index. Bad indices go to ``err``."""
    pid = tl.program_id(0)
    i = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    c0, c1, c2, c3, c4, c5 = nd_coords(i, S1, S2, S3, S4, S5)
    idx = tl.load(idx_ptr + nd_offset(c0, c1, c2, c3, c4, c5, is0, is1, is2, is3, is4, is5), mask=mask,
                  other=0).to(tl.int64)
    bad = mask & ((idx < 0) | (idx >= size))
    zero = tl.zeros([BLOCK], tl.int64)
    tl.store(err_ptr + zero, zero + 1, mask=bad)
    tl.store(err_ptr + 1 + zero, idx, mask=bad)
    x_off = nd_offset(c0, c1, c2, c3, c4, c5, xs0, xs1, xs2, xs3, xs4, xs5) + idx * dstride
    tl.store(out_ptr + i, tl.load(x_ptr + x_off, mask=mask & ~bad), mask=mask)


@triton.jit
def _scatter_kernel(dst_ptr, idx_ptr, src_ptr, err_ptr, n, size, dstride, S1, S2, S3, S4, S5,
                    ds0, ds1, ds2, ds3, ds4, ds5, is0, is1, is2, is3, is4, is5, ss0, ss1, ss2, ss3, ss4, ss5,
                    ADD: tl.constexpr, BLOCK: tl.constexpr):
    """dst[c with c[dim] := idx[c]] = src[c] (``scatter``), or ``+=`` atomically with ``ADD`` (``scatter_add``),
    over the index's shape. ``src`` strides are 0 for a broadcast value."""
    pid = tl.program_id(0)
    i = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    c0, c1, c2, c3, c4, c5 = nd_coords(i, S1, S2, S3, S4, S5)
    idx = tl.load(idx_ptr + nd_offset(c0, c1, c2, c3, c4, c5, is0, is1, is2, is3, is4, is5), mask=mask,
                  other=0).to(tl.int64)
    bad = mask & ((idx < 0) | (idx >= size))
    zero = tl.zeros([BLOCK], tl.int64)
    tl.store(err_ptr + zero, zero + 1, mask=bad)
    tl.store(err_ptr + 1 + zero, idx, mask=bad)
    ok = mask & ~bad
    v = tl.load(src_ptr + nd_offset(c0, c1, c2, c3, c4, c5, ss0, ss1, ss2, ss3, ss4, ss5), mask=ok)
    d_off = nd_offset(c0, c1, c2, c3, c4, c5, ds0, ds1, ds2, ds3, ds4, ds5) + idx * dstride
    if ADD:
        tl.atomic_add(dst_ptr + d_off, v.to(dst_ptr.dtype.element_ty), mask=ok)
    else:
        tl.store(dst_ptr + d_off, v.to(dst_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _count_kernel(m_ptr, counts_ptr, n, S1, S2, S3, S4, S5, ms0, ms1, ms2, ms3, ms4, ms5, BLOCK: tl.constexpr):
    """counts[pid] = number of nonzero mask elements in block ``pid`` (row-major order)."""
    pid = tl.program_id(0)
    i = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    c0, c1, c2, c3, c4, c5 = nd_coords(i, S1, S2, S3, S4, S5)
    m = tl.load(m_ptr + nd_offset(c0, c1, c2, c3, c4, c5, ms0, ms1, ms2, ms3, ms4, ms5), mask=i < n, other=0) != 0
    tl.store(counts_ptr + pid, tl.sum(m.to(tl.int32), axis=0))


@triton.jit
def _compact_kernel(m_ptr, x_ptr, out_ptr, starts_ptr, n, S1, S2, S3, S4, S5, ms0, ms1, ms2, ms3, ms4, ms5,
                    xs0, xs1, xs2, xs3, xs4, xs5, NDIM: tl.constexpr, COORDS: tl.constexpr, BLOCK: tl.constexpr):
    """Stream compaction of the nonzero mask elements, in row-major order, block ``pid`` starting at
    ``starts[pid]``: with ``COORDS`` write each one's coordinates (the last NDIM of 6) as a row of out (N, NDIM)
    (``nonzero``), else the value of x there (``masked_select``)."""
    pid = tl.program_id(0)
    i = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    c0, c1, c2, c3, c4, c5 = nd_coords(i, S1, S2, S3, S4, S5)
    m = tl.load(m_ptr + nd_offset(c0, c1, c2, c3, c4, c5, ms0, ms1, ms2, ms3, ms4, ms5), mask=i < n, other=0) != 0
    m = m & (i < n)
    pos = tl.load(starts_ptr + pid).to(tl.int64) + tl.cumsum(m.to(tl.int32), axis=0).to(tl.int64) - 1
    if COORDS:
        row = out_ptr + pos * NDIM
        if NDIM >= 6:
            tl.store(row + (NDIM - 6), c0, mask=m)
        if NDIM >= 5:
            tl.store(row + (NDIM - 5), c1, mask=m)
        if NDIM >= 4:
            tl.store(row + (NDIM - 4), c2, mask=m)
        if NDIM >= 3:
            tl.store(row + (NDIM - 3), c3, mask=m)
        if NDIM >= 2:
            tl.store(row + (NDIM - 2), c4, mask=m)
        if NDIM >= 1:
            tl.store(row + (NDIM - 1), c5, mask=m)
    else:
        v = tl.load(x_ptr + nd_offset(c0, c1, c2, c3, c4, c5, xs0, xs1, xs2, xs3, xs4, xs5), mask=m)
        tl.store(out_ptr + pos, v, mask=m)


# ====================================================================================================================
# Launch helpers
# ====================================================================================================================

def _mv(t):
    """Kernel argument of a tensor whose elements are only moved (never computed on): in the interpreter, which
    has no bfloat16, a bf16 tensor is passed as its int16 bit pattern."""
    p = ptr(t)
    if INTERPRET and t.dtype is D.bfloat16:
        return Ptr(p.addr, D.int16)
    return p


def _err_buffer(dev, n=1):
    """(flag, bad index) pairs for ``n`` index tensors, zeroed on the device (a kernel sets a pair on a bad index)."""
    return zeros(2 * n, dtype=D.int64, device=dev)


def _check_err(err, size, dim, prefix=""):
    """Raise the bounds error a kernel recorded (one small device-to-host read, ``host_check``)."""
    host_check(err, lambda flags: _raise_bounds(flags, [(dim, size)], prefix))


def _raise_bounds(flags, dims, prefix):
    """The IndexError of the first (dim, size) whose (flag, bad index) pair in the flat ``flags`` is set."""
    for k, (dim, size) in enumerate(dims):
        if flags[2 * k]:
            raise IndexError(f"{prefix}index {flags[2 * k + 1]} is out of bounds for dimension {dim} with size {size}")


def _np_check_bounds(a, size, dim, lo=None, prefix=""):
    lo = -size if lo is None else lo
    bad = (a < lo) | (a >= size)
    if bad.any():
        raise IndexError(f"{prefix}index {int(a[bad].reshape(-1)[0])} is out of bounds for dimension {dim} with "
                         f"size {size}")


def _grid(n):
    block = block_for(n)
    return (triton.cdiv(n, block),), block


def _pad6(shape, *strides):
    """``shape`` padded on the left to 6 dims with its operands' strides, without merging dims."""
    if len(shape) > MAXD:
        raise NotImplementedError(f"tensors with more than {MAXD} dims are not supported here (shape {shape})")
    pad = MAXD - len(shape)
    return [1] * pad + list(shape), [[0] * pad + list(s) for s in strides]


# ====================================================================================================================
# Advanced indexing: the (pre, B, post) plan and its two kernels
# ====================================================================================================================

class _Plan:
    """Where advanced indices apply to a tensor of shape ``shape``: ``dims[k]`` is indexed by ``index[k]`` (a long
    tensor on the tensor's device); ``pre``/``post`` are the other dims before/after the result's ``B`` dims."""

    def __init__(self, shape, dims, index, lo=None, trusted=False):
        self.trusted = trusted                 # indices known in bounds (from nonzero): no bounds check
        self.shape = tuple(shape)
        self.dims = tuple(dims)
        self.index = tuple(index)
        self.lo = lo                           # lowest allowed index (None: -size, negative indices wrap)
        try:
            self.bshape = broadcast_shapes(*(t._shape for t in index))
        except RuntimeError:
            raise IndexError("shape mismatch: indexing tensors could not be broadcast together with shapes "
                             + ", ".join(str(list(t._shape)) for t in index)) from None
        adjacent = list(self.dims) == list(range(self.dims[0], self.dims[0] + len(self.dims)))
        rest = [d for d in range(len(shape)) if d not in self.dims]
        self.pre = [d for d in rest if d < self.dims[0]] if adjacent else []
        self.post = [d for d in rest if d not in self.pre]

    @property
    def out_shape(self):
        s = self.shape
        return tuple(s[d] for d in self.pre) + self.bshape + tuple(s[d] for d in self.post)

    def np_key(self):
        """The same indexing as a NumPy index tuple (the reference)."""
        key = [slice(None)] * len(self.shape)
        for d, t in zip(self.dims, self.index):
            key[d] = t._np
        return tuple(key)

    def check_np(self, prefix=""):
        for d, t in zip(self.dims, self.index):
            _np_check_bounds(t._np, self.shape[d], d, self.lo, prefix)

    def offsets(self, strides, dev, check=True, prefix=""):
        """off[b] = sum_k index[k][b] * strides[dims[k]] over B, as a contiguous int64 tensor."""
        nb = math.prod(self.bshape)
        off = empty((nb,), D.int64, dev)
        if nb == 0:
            return off
        check = check and not self.trusted
        k_all = len(self.dims)
        err = _err_buffer(dev, k_all) if check else off
        grid, block = _grid(nb)
        for k, (d, t) in enumerate(zip(self.dims, self.index)):
            sizes, (ist,) = coalesce(self.bshape, broadcast_strides(t, self.bshape))
            lo = -self.shape[d] if self.lo is None else self.lo
            e = Ptr(ptr(err).addr + 16 * k, D.int64) if check else ptr(off)
            _index_offsets_kernel[grid](ptr(t), ptr(off), e, nb, self.shape[d], strides[d], lo, *sizes[1:], *ist,
                                        ACCUM=k > 0, I64=is_int64_index(nb, t), BLOCK=block)
        if check:                                     # one device-to-host read for all the index tensors
            dims = [(d, self.shape[d]) for d in self.dims]
            host_check(err, lambda flags: _raise_bounds(flags, dims, prefix))
        return off

    def rest_args(self, strides):
        """Kernel arguments of the pre and post dims of a tensor with ``strides``."""
        args = []
        for dims in (self.pre, self.post):
            sizes, (st,) = coalesce([self.shape[d] for d in dims], [strides[d] for d in dims])
            args.append((sizes[1:], st))
        (psz, pst), (qsz, qst) = args
        q = math.prod(self.shape[d] for d in self.post)
        return q, [*psz, *pst, *qsz, *qst]


def _gather_plan(x, plan, check=True, prefix=""):
    """x indexed by ``plan``: a new contiguous tensor of shape ``plan.out_shape``."""
    if on_cpu(x):
        plan.check_np(prefix)
        return wrap(np.asarray(x._np[plan.np_key()], order="C"), x.dtype, x.device)   # (0-d stays 0-d)
    out = empty(plan.out_shape, x.dtype, x.device)
    off = plan.offsets(x._stride, x.device, check, prefix)
    n = out.numel()
    if n:
        q, rest = plan.rest_args(x._stride)
        grid, block = _grid(n)
        _index_gather_kernel[grid](_mv(x), ptr(off), _mv(out), n, off.numel(), q, *rest, BLOCK=block)
    return out


def _put_plan(dst, plan, val, accumulate, alpha=1, check=True, prefix=""):
    """dst[plan] = val (or += alpha * val, repeated indices adding up) in place; ``val`` broadcasts to the
    indexed shape. Returns dst."""
    shape = plan.out_shape
    val = _strip_ones(val, len(shape))
    if not _broadcasts_to(val._shape, shape):
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(val._shape)} cannot be broadcast to "
                           f"indexing result of shape {list(shape)}")
    if on_cpu(dst):
        plan.check_np(prefix)
        v = val._np.astype(dst.dtype.np, copy=False)
        if accumulate:
            acc = dst._np.astype(np.float32) if dst.dtype in (D.float16, D.bfloat16) else dst._np
            v = v.astype(acc.dtype, copy=False)
            np.add.at(acc, plan.np_key(), np.broadcast_to(v * alpha if alpha != 1 else v, shape))
            if acc is not dst._np:
                dst._np[...] = acc.astype(dst.dtype.np)
        else:
            dst._np[plan.np_key()] = v
        return dst
    off = plan.offsets(dst._stride, dst.device, check, prefix)
    n = math.prod(shape)
    if n == 0:
        return dst
    target, cast_back = _atomic_target(dst) if accumulate else (dst, False)
    if val._storage.data is dst._storage.data:        # x[idx] = x[...]: read a copy, not what is being written
        val = copy_into(empty(val._shape, val.dtype, val.device), val)
    bcast = val.numel() == 1
    if bcast:
        val = val.reshape(())
    elif val._shape != shape or not val.is_contiguous():
        val = copy_into(empty(shape, val.dtype, val.device), val.expand(shape))
    val = _as_dtype(val, target.dtype)
    q, rest = plan.rest_args(target._stride)
    grid, block = _grid(n)
    _index_put_kernel[grid](_mv(target) if not accumulate else ptr(target), ptr(off),
                            _mv(val) if not accumulate else ptr(val), n, off.numel(), q, *rest, alpha,
                            VAL_BCAST=bcast, ACCUM=accumulate, BLOCK=block)
    if cast_back:
        copy_into(dst, target)
    return dst


def _broadcasts_to(shape, target):
    if len(shape) > len(target):
        return False
    return all(a == b or a == 1 for a, b in zip(reversed(shape), reversed(target)))


def _strip_ones(val, ndim):
    """Drop leading size-1 dims of a value with more dims than its destination (PyTorch's setitem does)."""
    while val.ndim > ndim and val._shape[0] == 1:
        val = val.reshape(val._shape[1:])
    return val


def _as_dtype(t, dt):
    if t.dtype is dt:
        return t
    return copy_into(empty(t._shape, dt, t.device), t)


_ATOMIC_OK = (D.float32, D.float64, D.int32, D.int64)


def _atomic_target(dst):
    """The tensor atomics add into: ``dst`` itself for float32/float64/int32/int64, else a float32 (half types) or
    int64 (small integers, bool) copy that is cast back after (no half/bf16/8-bit atomics on every GPU)."""
    if dst.dtype in _ATOMIC_OK:
        return dst, False
    acc = D.float32 if dst.dtype.is_floating_point else D.int64
    return copy_into(empty(dst._shape, acc, dst.device), dst), True


class AdvancedIndex(Function):
    """``x[indices]`` for advanced indices, as planned by ``_Plan``; backward puts the gradient back with
    accumulation (repeated indices sum)."""

    @staticmethod
    def forward(ctx, x, plan, prefix=""):
        ctx._name = "IndexBackward0"
        ctx.plan = plan
        return _gather_plan(x, plan, prefix=prefix)

    @staticmethod
    def backward(ctx, g):
        return IndexPutGrad.apply(g, ctx.plan), None, None


class IndexPutGrad(Function):
    """zeros(plan.shape) with ``g`` accumulated at the plan's indices: the backward of a gather, differentiable
    (its own backward is the gather again)."""

    @staticmethod
    def forward(ctx, g, plan):
        ctx.plan = plan
        out = zeros(plan.shape, dtype=g.dtype, device=g.device)
        return _put_plan(out, plan, g, True, check=False)

    @staticmethod
    def backward(ctx, gg):
        return AdvancedIndex.apply(gg, ctx.plan), None


# ====================================================================================================================
# Parsing an index
# ====================================================================================================================

_INT_DTYPES = (D.int64, D.int32, D.int16, D.int8)


def _as_index_tensor(obj, dev):
    """A tensor index (integer or bool) from a tensor, list, tuple inside a tuple, or NumPy array."""
    if isinstance(obj, Tensor):
        t = obj.detach()
    else:
        a = np.asarray(obj)
        if a.size == 0 and a.dtype.kind == "f":
            a = a.astype(np.int64)
        if a.dtype.kind not in "biu":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        if a.dtype.kind == "u" and a.dtype != np.uint8:
            a = a.astype(np.int64)
        t = tensor(a)
    if t.dtype.is_floating_point or not (t.dtype in _INT_DTYPES or t.dtype in (D.bool_, D.uint8)):
        raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    if t.device != dev:
        if t.device.type == "cpu":
            t = Tensor._wrap_numpy(np.ascontiguousarray(t._np).reshape(t._shape), dev, t.dtype)
        else:
            raise RuntimeError(f"indices should be either on cpu or on the same device as the indexed tensor "
                               f"({dev})")
    return t


def _is_basic(i):
    return i is None or i is Ellipsis or isinstance(i, slice) or (
        isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_)))


def _parse(x, idx):
    """Split ``idx`` into the basic index that makes a view, and the advanced part on that view: the dims it
    indexes and their index tensors (masks become ``nonzero`` index tensors); both None when there is none."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    items = []
    for i in idx:
        if _is_basic(i):
            items.append(i)
        elif isinstance(i, (bool, np.bool_)):                      # a 0-d mask: a new dim of size 1 or 0
            items.append(_as_index_tensor(np.asarray(bool(i)), x.device))
        else:
            items.append(_as_index_tensor(i, x.device))
    if all(_is_basic(i) for i in items):
        return items, None, None, False
    trusted = all(i.dtype in (D.bool_, D.uint8) for i in items if isinstance(i, Tensor))
    consumed = sum(1 if not isinstance(i, Tensor) or i.dtype not in (D.bool_, D.uint8) else i.ndim
                   for i in items if i is not None and i is not Ellipsis)
    if consumed > x.ndim:
        raise IndexError(f"too many indices for tensor of dimension {x.ndim}")
    if sum(1 for i in items if i is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if any(i is Ellipsis for i in items):
        k = next(j for j, i in enumerate(items) if i is Ellipsis)
        items = items[:k] + [slice(None)] * (x.ndim - consumed) + items[k + 1:]
    basic, adv = [], []           # adv: (dim in the view, index tensor)
    d_in, d_out = 0, 0
    for i in items:
        if isinstance(i, Tensor):
            if i.dtype in (D.bool_, D.uint8):
                k = i.ndim
                if k == 0:                                          # a 0-d mask: a new dim of size 1 or 0
                    basic.append(None)
                    adv.append((d_out, nonzero(i.reshape((1,)), as_tuple=True)[0]))
                    d_out += 1
                    continue
                want = x._shape[d_in:d_in + k]
                for j, (a, b) in enumerate(zip(i._shape, want)):
                    if a != b:
                        raise IndexError(f"The shape of the mask {list(i._shape)} at index {j} does not match the "
                                         f"shape of the indexed tensor {list(x._shape)} at index {d_in + j}")
                for j, t in enumerate(nonzero(i, as_tuple=True)):
                    basic.append(slice(None))
                    adv.append((d_out + j, t))
                d_in += k
                d_out += k
            else:
                basic.append(slice(None))
                adv.append((d_out, i))
                d_in += 1
                d_out += 1
        elif i is None:
            basic.append(None)
            d_out += 1
        elif isinstance(i, slice):
            basic.append(i)
            d_in += 1
            d_out += 1
        else:
            basic.append(i)
            d_in += 1
    return basic, [d for d, _ in adv], [t for _, t in adv], trusted


def _view_and_plan(x, idx):
    basic, dims, index, trusted = _parse(x, idx)
    v = basic_index(x, tuple(basic))
    if v is None:
        v = x
    if dims is None:
        return v, None
    return v, _Plan(v._shape, dims, index, trusted=trusted)


# ====================================================================================================================
# x[idx] and x[idx] = value
# ====================================================================================================================

def getitem(self, idx):
    """``x[idx]``: a view for basic indices, a new tensor (the gather kernel) for advanced ones."""
    if isinstance(idx, Tensor) and idx.dtype is D.bool_ and idx._shape == self._shape and idx.ndim \
            and idx.device == self.device:
        return MaskedSelect.apply(self, idx)          # x[mask]: one compaction pass, no index tensors
    v, plan = _view_and_plan(self, idx)
    if plan is None:
        return v
    return AdvancedIndex.apply(v, plan)


Tensor.__getitem__ = getitem


def _value_tensor(value, dst):
    """The value of ``dst[idx] = value`` as a tensor of dst's device and dtype (a 0-d cpu tensor moves)."""
    if isinstance(value, Tensor):
        if value.device != dst.device:
            if value.device.type == "cpu" and value.ndim == 0:
                value = value.to(dst.device)
            else:
                raise RuntimeError(f"expected device {dst.device} but got device {value.device}")
        return value if value.dtype is dst.dtype else value.to(dst.dtype)
    if isinstance(value, (list, tuple, np.ndarray)):
        return tensor(value, dtype=dst.dtype, device=dst.device)
    if not isinstance(value, (bool, int, float, np.number, np.bool_)):
        raise TypeError(f"can't assign a {type(value).__name__} to a {dst.dtype} tensor")
    if dst.dtype not in (D.float16, D.bfloat16):    # PyTorch: 300 into uint8 is an error here, 1e10 into half inf
        value = scalar_value(value, dst.dtype)
    return Tensor._wrap_numpy(np.asarray(value).astype(dst.dtype.np), dst.device, dst.dtype)


def _write(x, idx, val):
    """The write of ``x[idx] = val`` (no autograd), through x's strides."""
    v, plan = _view_and_plan(x, idx)
    if plan is None:
        copy_into(v, _strip_ones(val, v.ndim))
    else:
        _put_plan(v, plan, val, False)
    x._storage.version += 1


class IndexPut(Function):
    """``x[idx] = value`` recorded: x's history is rebased onto this node; value gets ``grad[idx]``."""

    @staticmethod
    def forward(ctx, x, value, idx):
        ctx._name = "IndexPutBackward0"
        ctx.idx, ctx.vshape = idx, value._shape
        _write(x, idx, value)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx, g):
        gx = gv = None
        if ctx.needs_input_grad[1]:
            gv = sum_to(g[ctx.idx], ctx.vshape)
        if ctx.needs_input_grad[0]:
            gx = g.clone()
            gx[ctx.idx] = 0
        return gx, gv, None


def setitem(self, idx, value):
    """``x[idx] = value`` (scalar or tensor, broadcast), written in place through x's strides."""
    check_inplace(self)
    val = _value_tensor(value, self)
    idx = _normalize_for_replay(self, idx)
    if STATE.enabled and (self.requires_grad or val.requires_grad):
        apply_inplace(IndexPut, self, val, idx)
    else:
        _write(self, idx, val)


def _normalize_for_replay(x, idx):
    """Index objects that are cheap and safe to replay in backward (lists/arrays become tensors once)."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    return tuple(_as_index_tensor(i, x.device) if isinstance(i, (list, np.ndarray)) else i for i in idx)


Tensor.__setitem__ = setitem


@register("index_put_", function=False)
def index_put_(self, indices, values, accumulate=False):
    """``self[indices] = values`` (``+=`` with ``accumulate``, repeated indices adding up)."""
    check_inplace(self)
    indices = tuple(indices)
    val = _value_tensor(values, self)
    if STATE.enabled and (self.requires_grad or val.requires_grad):
        return apply_inplace(IndexPutAccumulate if accumulate else IndexPut, self, val, indices)
    _index_put_acc(self, indices, val) if accumulate else _write(self, indices, val)
    return self


@register("index_put", method=True)
def index_put(input, indices, values, accumulate=False):
    return index_put_(input.clone(), indices, values, accumulate)


def _index_put_acc(x, indices, val):
    v, plan = _view_and_plan(x, indices)
    if plan is None:
        raise IndexError("index_put_ with accumulate=True needs tensor indices")
    _put_plan(v, plan, val, True)
    x._storage.version += 1


class IndexPutAccumulate(Function):
    @staticmethod
    def forward(ctx, x, value, idx):
        ctx._name = "IndexPutBackward0"
        ctx.idx, ctx.vshape = idx, value._shape
        _index_put_acc(x, idx, value)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx, g):
        gv = sum_to(g[ctx.idx], ctx.vshape) if ctx.needs_input_grad[1] else None
        return (g if ctx.needs_input_grad[0] else None), gv, None


# ====================================================================================================================
# nonzero, masked_select, masked_fill
# ====================================================================================================================

def _compact(mask, x=None):
    """The nonzero elements of ``mask``: their coordinates as (N, ndim) int64 (x None) or x's values there."""
    mask = interp_bf16_in(mask)
    n = mask.numel()
    ndim = mask.ndim
    shape = mask._shape
    if x is None:
        sizes, (ms, xs) = _pad6(shape, mask._stride, [0] * ndim)
    else:
        sizes, (ms, xs) = coalesce(shape, broadcast_strides(mask, shape), broadcast_strides(x, shape))
    grid, block = _grid(n)
    counts = empty((grid[0],), D.int32, mask.device)
    mp = ptr(mask)
    if n:
        _count_kernel[grid](mp, ptr(counts), n, *sizes[1:], *ms, BLOCK=block)
    c = counts._to_host_array().astype(np.int64) if n else np.zeros(0, np.int64)
    total = int(c.sum())
    starts = Tensor._wrap_numpy(np.concatenate([[0], np.cumsum(c)[:-1]]).astype(np.int64), mask.device)
    out = empty((total, ndim) if x is None else (total,), D.int64 if x is None else x.dtype, mask.device)
    if total:
        _compact_kernel[grid](mp, ptr(out) if x is None else _mv(x), ptr(out) if x is None else _mv(out),
                              ptr(starts), n, *sizes[1:], *ms, *xs, NDIM=ndim, COORDS=x is None, BLOCK=block)
    return out


@register("nonzero")
def nonzero(input, *, as_tuple=False):
    """Coordinates of the nonzero elements in row-major order: (N, ndim) int64, or a tuple of ndim (N,) tensors."""
    if on_cpu(input):
        res = np.argwhere(input._np).astype(np.int64)
        out = wrap(res.reshape(len(res), input.ndim), D.int64, input.device)
    else:
        out = _compact(input)
    if not as_tuple:
        return out
    if input.ndim == 0:
        return (zeros(out._shape[0], dtype=D.int64, device=input.device),)
    if out._shape[0] == 0:
        return tuple(empty((0,), D.int64, input.device) for _ in range(input.ndim))
    return tuple(out[:, d] for d in range(input.ndim))


@register("argwhere")
def argwhere(input):
    return nonzero(input)


def _check_mask(mask, name):
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name}(): argument 'mask' must be Tensor, not {type(mask).__name__}")
    if mask.dtype is not D.bool_:
        raise RuntimeError(f"{name}: expected BoolTensor for mask")


class MaskedSelect(Function):
    @staticmethod
    def forward(ctx, x, mask):
        ctx._name = "MaskedSelectBackward0"
        shape = broadcast_shapes(x._shape, mask._shape)
        ctx.save_for_backward(mask)
        ctx.shapes = (x._shape, shape)
        if on_cpu(x):
            return wrap(np.broadcast_to(x._np, shape)[np.broadcast_to(mask._np, shape)], x.dtype, x.device)
        return _compact(mask.expand(shape), x.expand(shape))

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        xshape, shape = ctx.shapes
        gx = zeros(shape, dtype=g.dtype, device=g.device)
        if STATE.enabled:
            gx = index_put(gx, (mask.expand(shape),), g)
        else:
            gx[mask.expand(shape)] = g
        return sum_to(gx, xshape), None


@register("masked_select")
def masked_select(input, mask):
    """The elements of ``input`` where ``mask`` (both broadcast) is True, as a 1-D tensor."""
    _check_mask(mask, "masked_select")
    if mask.device != input.device:
        raise RuntimeError(f"masked_select(): expected mask and input on the same device, got {mask.device} and "
                           f"{input.device}")
    return MaskedSelect.apply(input, mask)


def _masked_fill_into(x, mask, value):
    """x[mask] = value in place (mask broadcast to x; value a 1-element tensor of x's dtype)."""
    if x.numel() == 0:
        return x
    if on_cpu(x):
        np.copyto(x._np, value._np.reshape(()), where=np.broadcast_to(mask._np, x._shape))
        return x
    # x = where(mask, value, x) through x's strides: the shared pointwise kernel, in place
    return launch_pointwise(_where, (mask, value, x), x, ACC[x.dtype])


def _moved_value(value, x):
    """A 0-d value tensor on another device (a cpu scalar for a cuda tensor) moved to x's, keeping its history."""
    if isinstance(value, Tensor) and value.device != x.device and value.ndim == 0:
        return value.to(x.device)
    return value


def _fill_value(value, x, name):
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"{name} only supports a 0-dimensional value tensor, but got tensor with "
                               f"{value.ndim} dimension(s).")
        v = value.detach()
        if v.dtype is not x.dtype:
            scalar_value(v.item(), x.dtype)                  # PyTorch checks a value tensor's number too
        if v.device != x.device:
            v = Tensor._wrap_numpy(np.array(v._to_host_array()), x.device)
        return v.to(x.dtype) if v.dtype is not x.dtype else v
    return Tensor._wrap_numpy(np.asarray(scalar_value(value, x.dtype)).astype(x.dtype.np), x.device, x.dtype)


class MaskedFill(Function):
    @staticmethod
    def forward(ctx, x, mask, value, inplace):
        ctx._name = "MaskedFillBackward0"
        shape = x._shape if inplace else broadcast_shapes(x._shape, mask._shape)
        if inplace and not _broadcasts_to(mask._shape, shape):
            mask.expand(shape)                           # raises PyTorch's expand error naming both shapes
        ctx.save_for_backward(mask)
        ctx.shapes = (x._shape, value._shape if isinstance(value, Tensor) else None)
        val = _fill_value(value, x, "masked_fill_")
        if inplace:
            out = x
            x._storage.version += 1
            ctx.mark_dirty(x)
        else:
            out = copy_into(empty(shape, x.dtype, x.device), x)
        return _masked_fill_into(out, mask, val)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        xshape, vshape = ctx.shapes
        gx = gv = None
        if ctx.needs_input_grad[0]:
            gx = sum_to(masked_fill(g, mask, 0.0), xshape)
        if vshape is not None and ctx.needs_input_grad[2]:
            gv = where(mask, g, 0.0).sum().reshape(vshape)
        return gx, None, gv, None


@register("masked_fill")
def masked_fill(input, mask, value):
    """``input`` with ``value`` where ``mask`` is True (mask broadcast)."""
    _check_mask(mask, "masked_fill")
    if mask.device != input.device:
        mask = mask.to(input.device) if mask.ndim == 0 else _raise_dev(mask, input)
    return MaskedFill.apply(input, mask, _moved_value(value, input), False)


@register("masked_fill_", function=False)
def masked_fill_(self, mask, value):
    check_inplace(self)
    _check_mask(mask, "masked_fill_")
    if mask.device != self.device:
        mask = mask.to(self.device) if mask.ndim == 0 else _raise_dev(mask, self)
    value = _moved_value(value, self)
    if STATE.enabled and (self.requires_grad or (isinstance(value, Tensor) and value.requires_grad)):
        return apply_inplace(MaskedFill, self, mask, value, True)
    MaskedFill.forward(_Dummy(), self, mask, value, True)
    return self


class _Dummy:
    """A ctx for running a forward without recording."""

    def save_for_backward(self, *a):
        pass

    def mark_dirty(self, *a):
        pass


def _raise_dev(a, b):
    raise RuntimeError(f"expected all tensors to be on the same device, but found at least two devices, "
                       f"{a.device} and {b.device}!")


# ====================================================================================================================
# gather / scatter / scatter_add
# ====================================================================================================================

def _check_gather_args(name, x, dim, index, src=None):
    if not isinstance(index, Tensor):
        raise TypeError(f"{name}(): argument 'index' must be Tensor, not {type(index).__name__}")
    if index.dtype is not D.int64:
        raise RuntimeError(f"{name}(): Expected dtype int64 for index")
    d = x._wrap_dim(dim)
    if index.device != x.device:
        raise RuntimeError(f"{name}(): Expected all tensors to be on the same device, but found {x.device} and "
                           f"{index.device}")
    xnd, ind = max(x.ndim, 1), max(index.ndim, 1)
    if index.numel() and xnd != ind:
        what = "input" if name == "gather" else "self"
        raise RuntimeError(f"Index tensor must have the same number of dimensions as {what} tensor")
    if index.numel():
        xs = x._shape or (1,)
        is_ = index._shape or (1,)
        for k in range(len(is_)):
            if k != d and is_[k] > xs[k]:
                raise RuntimeError(f"Size does not match at dimension {k} expected index {list(is_)} to be smaller "
                                   f"than self {list(xs)} apart from dimension {d}")
            if src is not None and isinstance(src, Tensor) and is_[k] > (src._shape or (1,))[k]:
                raise RuntimeError(f"Size does not match at dimension {k} expected index {list(is_)} to be smaller "
                                   f"than src {list(src._shape)} apart from dimension {d}")
    return d


def _np_take(x, d, idx):
    """gather reference: out[c] = x[c with c[d] := idx[c]] (x cut to idx's extent on the other dims)."""
    if x.ndim == 0:
        return x.reshape(1)[idx.reshape(-1)].reshape(idx.shape)
    xs = x[tuple(slice(0, n) if k != d else slice(None) for k, n in enumerate(idx.shape))]
    return np.take_along_axis(xs, idx, axis=d)


def _np_scatter(dst, d, idx, src, add):
    """scatter / scatter_add reference on ``dst`` (in place)."""
    if dst.ndim == 0:
        dst, idx, src = dst.reshape(1), idx.reshape(1), np.asarray(src).reshape(-1)
    grid = np.indices(idx.shape, sparse=True)
    key = tuple(idx if k == d else g for k, g in enumerate(grid))
    s = np.broadcast_to(src, idx.shape) if np.ndim(src) == 0 else \
        np.asarray(src)[tuple(slice(0, n) for n in idx.shape)]
    if add:
        np.add.at(dst, key, s)
    else:
        dst[key] = s


class Gather(Function):
    @staticmethod
    def forward(ctx, x, d, index):
        ctx._name = "GatherBackward0"
        ctx.d, ctx.xshape = d, x._shape
        ctx.save_for_backward(index)
        size = x._shape[d] if x.ndim else 1
        if on_cpu(x):
            _np_check_bounds(index._np, size, d, 0, "gather(): ")
            return wrap(_np_take(x._np, d, index._np).astype(x.dtype.np), x.dtype, x.device)
        out = empty(index._shape, x.dtype, x.device)
        n = out.numel()
        if n == 0:
            return out
        xst = list(x._stride) or [0]
        dstride = xst[d]
        xst[d] = 0
        shape = index._shape or (1,)
        sizes, (xs, is_) = coalesce(shape, xst, list(index._stride) or [0])
        err = _err_buffer(x.device)
        grid, block = _grid(n)
        _gather_kernel[grid](_mv(x), ptr(index), _mv(out), ptr(err), n, size, dstride, *sizes[1:], *xs, *is_,
                             BLOCK=block)
        _check_err(err, size, d, "gather(): ")
        return out

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        return scatter_add(zeros(ctx.xshape, dtype=g.dtype, device=g.device), ctx.d, index, g), None, None


@register("gather")
def gather(input, dim, index, *, sparse_grad=False):
    """out[i][j][k] = input[i][index[i][j][k]][k] for dim=1 (and likewise for other dims)."""
    d = _check_gather_args("gather", input, dim, index)
    return Gather.apply(input, d, index)


def _scatter_into(dst, d, index, src, add):
    """The scatter kernel (or its reference) into ``dst`` in place; ``src`` a tensor or a 1-element value."""
    size = dst._shape[d] if dst.ndim else 1
    if on_cpu(dst):
        _np_check_bounds(index._np, size, d, 0, "scatter(): ")
        _np_scatter(dst._np, d, index._np, src._np.astype(dst.dtype.np, copy=False), add)
        return dst
    n = index.numel()
    if n == 0:
        return dst
    target, cast_back = _atomic_target(dst) if add else (dst, False)
    if src.dtype is not target.dtype:
        src = _as_dtype(src, target.dtype)
    shape = index._shape or (1,)
    dst_st = list(target._stride) or [0]
    dstride = dst_st[d]
    dst_st[d] = 0
    src_st = [0] * len(shape) if src.ndim == 0 or not src._shape else list(src._stride)
    sizes, (ds, is_, ss) = coalesce(shape, dst_st, list(index._stride) or [0], src_st)
    err = _err_buffer(dst.device)
    grid, block = _grid(n)
    _scatter_kernel[grid](ptr(target) if add else _mv(target), ptr(index), ptr(src) if add else _mv(src), ptr(err),
                          n, size, dstride, *sizes[1:], *ds, *is_, *ss, ADD=add, BLOCK=block)
    _check_err(err, size, d, "scatter(): ")
    if cast_back:
        copy_into(dst, target)
    return dst


class Scatter(Function):
    """scatter / scatter_add, out of place (``inplace`` False) or into ``x`` (in place)."""

    @staticmethod
    def forward(ctx, x, d, index, src, add, inplace):
        ctx._name = "ScatterAddBackward0" if add else "ScatterBackward0"
        ctx.d, ctx.add = d, add
        ctx.src_shape = src._shape if isinstance(src, Tensor) else None
        ctx.save_for_backward(index)
        out = x if inplace else copy_into(empty(x._shape, x.dtype, x.device), x)
        val = src if isinstance(src, Tensor) else _fill_value(src, x, "scatter")
        _scatter_into(out, d, index, val, add)
        if inplace:
            x._storage.version += 1
            ctx.mark_dirty(x)
        return out

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        gx = gs = None
        if ctx.needs_input_grad[0]:
            gx = g if ctx.add else scatter(g, ctx.d, index, 0.0)
        if ctx.src_shape is not None and ctx.needs_input_grad[3]:
            gs = gather(g, ctx.d, index)
            if gs._shape != ctx.src_shape:
                full = zeros(ctx.src_shape, dtype=g.dtype, device=g.device)
                full[tuple(slice(0, n) for n in gs._shape)] = gs
                gs = full
        return gx, None, None, gs, None, None


def _scatter(x, dim, index, src, value, add, inplace, name):
    if src is None:
        src = value
    if src is None:
        raise TypeError(f"{name}() missing 1 required argument: 'src' or 'value'")
    if isinstance(src, Tensor):
        if src.dtype is not x.dtype:
            raise RuntimeError(f"{name}(): Expected self.dtype to be equal to src.dtype")
        if src.device != x.device:
            raise RuntimeError(f"{name}(): Expected all tensors to be on the same device, but found {x.device} "
                               f"and {src.device}")
    d = _check_gather_args(name, x, dim, index, src)
    if inplace:
        check_inplace(x)
        if not (STATE.enabled and (x.requires_grad or (isinstance(src, Tensor) and src.requires_grad))):
            Scatter.forward(_Dummy(), x, d, index, src, add, True)
            return x
        return apply_inplace(Scatter, x, d, index, src, add, True)
    return Scatter.apply(x, d, index, src, add, inplace)


@register("scatter")
def scatter(input, dim, index, src=None, value=None, *, reduce=None):
    """out = input with out[c with c[dim] := index[c]] = src[c] (or the scalar ``value``)."""
    if reduce is not None:
        if reduce != "add":
            raise NotImplementedError(f"scatter(reduce={reduce!r}) is not supported; use 'add' or scatter_reduce")
        return _scatter(input, dim, index, src, value, True, False, "scatter")
    if not isinstance(src, Tensor) and src is not None:
        value, src = src, None
    return _scatter(input, dim, index, src, value, False, False, "scatter")


@register("scatter_", function=False)
def scatter_(self, dim, index, src=None, value=None, *, reduce=None):
    if not isinstance(src, Tensor) and src is not None:
        value, src = src, None
    return _scatter(self, dim, index, src, value, reduce == "add", True, "scatter_")


@register("scatter_add")
def scatter_add(input, dim, index, src):
    """out = input with src[c] added at out[c with c[dim] := index[c]] (repeated indices accumulate)."""
    return _scatter(input, dim, index, src, None, True, False, "scatter_add")


@register("scatter_add_", function=False)
def scatter_add_(self, dim, index, src):
    return _scatter(self, dim, index, src, None, True, True, "scatter_add_")


# ====================================================================================================================
# index_select / index_add
# ====================================================================================================================

def _check_vector_index(name, x, index):
    if not isinstance(index, Tensor):
        raise TypeError(f"{name}(): argument 'index' (position 2) must be Tensor, not {type(index).__name__}")
    if index.dtype not in (D.int64, D.int32):
        raise RuntimeError(f"{name}(): Expected dtype int32/int64 for index")
    if index.ndim > 1:
        raise IndexError(f"{name}(): Index is supposed to be a vector")
    if index.device != x.device:
        raise RuntimeError(f"{name}(): Expected all tensors to be on the same device, but found {x.device} and "
                           f"{index.device}")
    return index.reshape(-1)


@register("index_select")
def index_select(input, dim, index):
    """The slices of ``input`` at ``index`` (a vector) along ``dim``: the advanced-index gather kernel."""
    index = _check_vector_index("index_select", input, index)
    d = input._wrap_dim(dim)
    if input.ndim == 0:
        if index.numel() != 1:
            raise IndexError(f"index_select(): Index to scalar can have only 1 value, got {index.numel()} value(s)")
        plan = _Plan((1,), (0,), (index,), lo=0)
        return AdvancedIndex.apply(input.reshape(1), plan, "index_select(): ").reshape(())
    return AdvancedIndex.apply(input, _Plan(input._shape, (d,), (index,), lo=0), "index_select(): ")


class IndexAdd(Function):
    @staticmethod
    def forward(ctx, x, d, index, source, alpha, inplace):
        ctx._name = "IndexAddBackward0"
        plan = _Plan(x._shape, (d,), (index,), lo=0)
        ctx.plan, ctx.alpha = plan, alpha
        out = x if inplace else copy_into(empty(x._shape, x.dtype, x.device), x)
        _put_plan(out, plan, source, True, alpha, prefix="index_add(): ")
        if inplace:
            x._storage.version += 1
            ctx.mark_dirty(x)
        return out

    @staticmethod
    def backward(ctx, g):
        gs = None
        if ctx.needs_input_grad[3]:
            gs = AdvancedIndex.apply(g, ctx.plan)
            if ctx.alpha != 1:
                gs = gs * ctx.alpha
        return (g if ctx.needs_input_grad[0] else None), None, None, gs, None, None


def _index_add(x, dim, index, source, alpha, inplace):
    index = _check_vector_index("index_add", x, index)
    d = x._wrap_dim(dim)
    if not isinstance(source, Tensor):
        raise TypeError(f"index_add(): argument 'source' must be Tensor, not {type(source).__name__}")
    if source.dtype is not x.dtype:
        raise RuntimeError(f"index_add_(): self ({x.dtype.name}) and source ({source.dtype.name}) must have the "
                           f"same scalar type")
    want = x._shape[:d] + (index.numel(),) + x._shape[d + 1:]
    if source._shape != want and not (source.ndim == 0 and want == (1,)):
        raise RuntimeError(f"index_add_(): source shape {list(source._shape)} does not match the expected shape "
                           f"{list(want)} (self's shape with dimension {d} of index's length)")
    # alpha as PyTorch reads it for x's dtype: truncated for integers (0.5 adds nothing), checked for overflow
    alpha = scalar_value(alpha.item() if isinstance(alpha, Tensor) else alpha, x.dtype)
    if x.dtype is D.bool_:
        alpha = int(alpha)
    if inplace:
        check_inplace(x)
        if not (STATE.enabled and (x.requires_grad or source.requires_grad)):
            IndexAdd.forward(_Dummy(), x, d, index, source, alpha, True)
            return x
        return apply_inplace(IndexAdd, x, d, index, source, alpha, True)
    return IndexAdd.apply(x, d, index, source, alpha, inplace)


@register("index_add")
def index_add(input, dim, index, source, *, alpha=1):
    """input with ``alpha * source`` slices added at ``index`` along ``dim`` (repeated indices accumulate)."""
    return _index_add(input, dim, index, source, alpha, False)


@register("index_add_", function=False)
def index_add_(self, dim, index, source, *, alpha=1):
    return _index_add(self, dim, index, source, alpha, True)
