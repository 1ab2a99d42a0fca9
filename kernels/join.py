"""Joining tensors: ``cat``/``concat``/``concatenate``, ``stack``, ``hstack``, ``vstack``, ``dstack``, and copies of
one tensor side by side: ``repeat``, ``tile``.

``cat`` allocates the output once and writes the inputs into their slices: inputs of the result's dtype (contiguous,
or of at most four dims with any strides), up to eight at a time, in one launch of ``_cat_kernel`` (as PyTorch's
batched cat kernel; split's backward is such a cat), any other input with the strided-copy kernel (casting to the
promoted dtype on the way). Backward narrows the gradient back into the pieces.
"""
import functools
import math

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D, autotune
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from .copy import copy_into
from ._common import empty, wrap
from ._launch import ptr, is_int64_index, nd_coords
from ._pointwise import EW_CANDIDATES, _ew_default, _ew_prune

__all__ = ["cat", "stack", "hstack", "vstack", "dstack", "repeat", "tile"]


def _is_legacy_empty(t):
    """A 1-D tensor of size 0: skipped by cat whatever the other shapes are (PyTorch's legacy rule)."""
    return t.ndim == 1 and t._shape[0] == 0


def _check_tensors(name, tensors):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{name}(): argument 'tensors' (position 1) must be tuple of Tensors, not "
                        f"{type(tensors).__name__}")
    tensors = tuple(tensors)
    if not tensors:
        raise RuntimeError(f"{name}(): expected a non-empty list of Tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}(): argument 'tensors' (position 1) must be tuple of Tensors, but found element "
                            f"of type {type(t).__name__} at pos {i}")
    devs = []
    for t in tensors:
        if t.device not in devs:
            devs.append(t.device)
    if len(devs) > 1:
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"{devs[0]} and {devs[1]}!")
    return tensors


def _cat_shape(tensors, dim):
    """The output shape and wrapped dim of cat, or PyTorch's error naming the mismatch."""
    for i, t in enumerate(tensors):
        if t.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    live = [(i, t) for i, t in enumerate(tensors) if not _is_legacy_empty(t)]
    if not live:
        return (0,), 0
    i0, ref = live[0]
    d = ref._wrap_dim(dim)
    total = 0
    for i, t in live:
        if t.ndim != ref.ndim:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {ref.ndim} and {t.ndim}")
        for k in range(ref.ndim):
            if k != d and t._shape[k] != ref._shape[k]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {d}. Expected size "
                                   f"{ref._shape[k]} but got size {t._shape[k]} for tensor number {i} in the list.")
        total += t._shape[d]
    return ref._shape[:d] + (total,) + ref._shape[d + 1:], d


MAX_PIECES = 8
"""Inputs one launch of ``_cat_kernel`` copies."""
_RANK = 4
"""The most dims of a strided input it reads (contiguous ones: any)."""


@triton.jit
def _piece(k, v0, v1, v2, v3, v4, v5, v6, v7):
    """v_k, for the program's piece k (one branch per program: k is uniform)."""
    v = v0
    if k == 1:
        v = v1
    if k == 2:
        v = v2
    if k == 3:
        v = v3
    if k == 4:
        v = v4
    if k == 5:
        v = v5
    if k == 6:
        v = v6
    if k == 7:
        v = v7
    return v


_PER_PIECE = [f"{a}{k}" for a in ("w", "c", "s0", "s1", "s2", "s3") for k in range(MAX_PIECES)]


@triton.jit(do_not_specialize=_PER_PIECE)
def _cat_kernel(p0, p1, p2, p3, p4, p5, p6, p7, out_ptr, T0, T1, T2, T3,
                w0, w1, w2, w3, w4, w5, w6, w7, c0, c1, c2, c3, c4, c5, c6, c7,
                s00, s01, s02, s03, s04, s05, s06, s07, s10, s11, s12, s13, s14, s15, s16, s17,
                s20, s21, s22, s23, s24, s25, s26, s27, s30, s31, s32, s33, s34, s35, s36, s37,
                D: tl.constexpr, CONTIG: tl.constexpr, I64: tl.constexpr, BLOCK: tl.constexpr):
    """Program (t, k) copies block t of piece k = ``program_id(1)`` into the contiguous result ``out_ptr`` of shape
    (T0, T1, T2, T3), joined along dim ``D``: piece k is ``p_k``, of out's dtype and shape but for w_k along D, its
    element (i0, i1, i2, i3) at ``p_k`` + i0 * s0_k + ... + i3 * s3_k (with ``CONTIG`` every piece is contiguous and
    read at its flat index), written at out[..., c_k + i_D, ...]. Pieces have different sizes: a program past its
    piece's end stores nothing."""
    k = tl.program_id(1)
    src = _piece(k, p0, p1, p2, p3, p4, p5, p6, p7)
    width = _piece(k, w0, w1, w2, w3, w4, w5, w6, w7)
    start = _piece(k, c0, c1, c2, c3, c4, c5, c6, c7)
    pid = tl.program_id(0)
    if I64:                      # every product below starts from one of these: none overflows 32 bits
        pid = pid.to(tl.int64)
        width = width.to(tl.int64)
        start = start.to(tl.int64)
    i = pid * BLOCK + tl.arange(0, BLOCK)
    # the piece's sizes (out's, w_k along D), its element count, and the start's offset in out (c_k steps along D)
    n0, n1, n2, n3 = T0, T1, T2, T3
    count = width
    shift = start
    if D == 0:
        n0 = width
        count = count * T1 * T2 * T3
        shift = shift * T1 * T2 * T3
    if D == 1:
        n1 = width
        count = count * T0 * T2 * T3
        shift = shift * T2 * T3
    if D == 2:
        n2 = width
        count = count * T0 * T1 * T3
        shift = shift * T3
    if D == 3:
        n3 = width
        count = count * T0 * T1 * T2
    mask = i < count
    i0, _, _, i1, i2, i3 = nd_coords(i, 1, 1, n1, n2, n3)     # successive divisions: no product of sizes
    if CONTIG:
        at = i
    else:
        at = i0 * _piece(k, s00, s01, s02, s03, s04, s05, s06, s07) + \
            i1 * _piece(k, s10, s11, s12, s13, s14, s15, s16, s17) + \
            i2 * _piece(k, s20, s21, s22, s23, s24, s25, s26, s27) + \
            i3 * _piece(k, s30, s31, s32, s33, s34, s35, s36, s37)
    dst = ((i0 * T1 + i1) * T2 + i2) * T3 + i3 + shift          # out's offset: contiguous
    tl.store(out_ptr + dst, tl.load(src + at, mask=mask), mask=mask)


TUNABLE = autotune.Tunable("cat", EW_CANDIDATES, default=_ew_default, prune=_ew_prune, kernels=(_cat_kernel,))


def launch_cat(out, d, pieces, config=None):
    """Copies ``pieces`` = [(tensor, start)], at most ``MAX_PIECES`` non-empty tensors of out's dtype, any strides
    when of at most ``_RANK`` dims, into ``out`` (contiguous) at [start, start + its size) along dim ``d``, in one
    launch. Returns out."""
    pad = _RANK - out.ndim
    contig = all(t.is_contiguous() for t, _ in pieces)
    sizes = (1,) * pad + out._shape if not contig else \
        (math.prod(out._shape[:d]), out._shape[d], math.prod(out._shape[d + 1:]), 1)
    dim = d + pad if not contig else 1
    n = max(t.numel() for t, _ in pieces)
    cfg = config or TUNABLE.pick((out.dtype, contig, autotune.bucket(n)), lambda c: launch_cat(out, d, pieces, c))
    tensors = [t for t, _ in pieces]
    rest = MAX_PIECES - len(pieces)
    strides = [[0] * _RANK if contig else [0] * pad + list(t._stride) for t in tensors] + [[0] * _RANK] * rest
    _cat_kernel[(triton.cdiv(n, cfg.BLOCK), len(pieces))](
        *[ptr(t) for t in tensors], *[ptr(tensors[0])] * rest, ptr(out), *sizes,
        *[t._shape[d] for t in tensors], *[0] * rest, *[s for _, s in pieces], *[0] * rest,
        *[st[j] for j in range(_RANK) for st in strides],
        D=dim, CONTIG=contig, I64=is_int64_index(out.numel(), out, *tensors), BLOCK=cfg.BLOCK,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out


def _batched(t, dtype):
    """Whether ``_cat_kernel`` copies ``t`` (the interpreter has no bfloat16 loads: those go through the strided
    copy, which hands them over as float32)."""
    return t.dtype is dtype and (t.ndim <= _RANK or t.is_contiguous()) and not (INTERPRET and dtype is D.bfloat16)


class Cat(Function):
    @staticmethod
    def forward(ctx, d, shape, dtype, *tensors):
        ctx._name = "CatBackward0"
        ctx.d = d
        ctx.pieces = tuple((t._shape, t.dtype, _is_legacy_empty(t)) for t in tensors)
        live = [t for t in tensors if not _is_legacy_empty(t)]
        dev = tensors[0].device
        if dev.type == "cpu":
            arrs = [t._np.astype(dtype.np, copy=False) for t in live]
            res = np.concatenate(arrs, axis=d) if arrs else np.empty(shape, dtype.np)
            return wrap(res, dtype, dev)
        out = empty(shape, dtype, dev)
        starts = np.cumsum([0] + [t._shape[d] for t in live]).tolist()
        pieces = [(t, start) for t, start in zip(live, starts) if t.numel()]
        batch = [p for p in pieces if _batched(p[0], dtype)]
        batch = batch if len(batch) >= 2 else []
        for k in range(0, len(batch), MAX_PIECES):
            launch_cat(out, d, batch[k:k + MAX_PIECES])
        for t, start in pieces:
            if not (batch and _batched(t, dtype)):
                copy_into(out._view(t._shape, out._stride, out._offset + start * out._stride[d]), t)
        return out

    @staticmethod
    def backward(ctx, g):
        grads, start = [], 0
        for (shape, dtype, legacy), need in zip(ctx.pieces, ctx.needs_input_grad[3:]):
            if legacy:
                grads.append(empty(shape, dtype, g.device) if need else None)
                continue
            n = shape[ctx.d]
            if need:
                gi = g.narrow(ctx.d, start, n)
                grads.append(gi if gi.dtype is dtype else gi.to(dtype))
            else:
                grads.append(None)
            start += n
        return (None, None, None, *grads)


@register("cat", "concat", "concatenate")
def cat(tensors, dim=0, *, axis=None, out=None):
    """Join tensors along an existing dim; dtypes promote as in PyTorch, legacy 1-D empty tensors are skipped."""
    if axis is not None:
        dim = axis
    tensors = _check_tensors("cat", tensors)
    shape, d = _cat_shape(tensors, dim)
    dtype = functools.reduce(D.promote_types, (t.dtype for t in tensors))
    res = Cat.apply(d, shape, dtype, *tensors)
    if out is None:
        return res
    if out._shape != res._shape:
        raise RuntimeError(f"cat(): out tensor has shape {list(out._shape)} but the result has shape "
                           f"{list(res._shape)}")
    return out.copy_(res)


@register("stack")
def stack(tensors, dim=0, *, out=None):
    """Join equally shaped tensors along a new dim."""
    tensors = _check_tensors("stack", tensors)
    ref = tensors[0]
    for i, t in enumerate(tensors):
        if t._shape != ref._shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(ref._shape)} at entry 0 "
                               f"and {list(t._shape)} at entry {i}")
    d = ref._wrap_dim(dim, ref.ndim + 1)
    return cat([t.unsqueeze(d) for t in tensors], d, out=out)


def _atleast(t, n):
    if t.ndim >= n:
        return t
    if n == 1 or t.ndim == 0:
        t = t.reshape((1,) * n)
        return t
    if n == 2:
        return t.unsqueeze(0)
    return t.reshape((1,) + t._shape + (1,)) if t.ndim == 1 else t.unsqueeze(-1)


@register("atleast_1d")
def atleast_1d(*tensors):
    ts = tensors[0] if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) else tensors
    res = tuple(_atleast(t, 1) for t in ts)
    return res[0] if len(res) == 1 and isinstance(tensors[0], Tensor) else res


@register("atleast_2d")
def atleast_2d(*tensors):
    ts = tensors[0] if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) else tensors
    res = tuple(_atleast(t, 2) for t in ts)
    return res[0] if len(res) == 1 and isinstance(tensors[0], Tensor) else res


@register("atleast_3d")
def atleast_3d(*tensors):
    ts = tensors[0] if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) else tensors
    res = tuple(_atleast(t, 3) for t in ts)
    return res[0] if len(res) == 1 and isinstance(tensors[0], Tensor) else res


@register("hstack")
def hstack(tensors, *, out=None):
    """cat along dim 1 (dim 0 for 1-D inputs)."""
    ts = [_atleast(t, 1) for t in _check_tensors("hstack", tensors)]
    return cat(ts, 0 if ts[0].ndim == 1 else 1, out=out)


@register("vstack", "row_stack")
def vstack(tensors, *, out=None):
    """cat along dim 0 of the inputs made at least 2-D."""
    return cat([_atleast(t, 2) for t in _check_tensors("vstack", tensors)], 0, out=out)


@register("dstack")
def dstack(tensors, *, out=None):
    """cat along dim 2 of the inputs made at least 3-D."""
    return cat([_atleast(t, 3) for t in _check_tensors("dstack", tensors)], 2, out=out)


@register("column_stack")
def column_stack(tensors, *, out=None):
    """cat along dim 1 of the inputs, 0-d and 1-D ones made columns."""
    ts = [t.reshape((t.numel(), 1)) if t.ndim <= 1 else t for t in _check_tensors("column_stack", tensors)]
    return cat(ts, 1, out=out)


def _sizes(name, sizes):
    reps = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)) else tuple(sizes)
    if any(isinstance(r, bool) or not isinstance(r, (int, np.integer)) for r in reps):
        raise TypeError(f"{name}(): argument 'repeats' must be a tuple of ints, got {reps!r}")
    if any(r < 0 for r in reps):
        raise RuntimeError(f"Trying to create tensor with negative dimension in {name}: {reps}")
    return tuple(int(r) for r in reps)


@register("repeat", function=False)
def repeat(self, *sizes):
    """``self`` tiled ``sizes`` times along each dim (leading dims added): one strided copy of an expanded view
    (each copy is a broadcast read of the same memory); the backward of expand sums the copies' gradients."""
    reps = _sizes("repeat", sizes)
    if len(reps) < self.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of "
                           "tensor")
    shape = (1,) * (len(reps) - self.ndim) + tuple(self._shape)
    interleaved, expanded = [], []
    for r, d in zip(reps, shape):
        interleaved += [1, d]
        expanded += [r, d]
    out = self.reshape(interleaved).expand(expanded).reshape(tuple(r * d for r, d in zip(reps, shape))).contiguous()
    return out.clone() if out._storage is self._storage else out       # a new tensor, never a view of self


@register("tile")
def tile(input, dims):
    """``repeat`` with ``dims`` padded with leading ones to the tensor's number of dims."""
    reps = _sizes("tile", (dims,) if not isinstance(dims, (list, tuple)) else (dims,))
    return repeat(input, (1,) * (input.ndim - len(reps)) + reps)

