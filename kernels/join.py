"""Joining tensors: ``cat``/``concat``/``concatenate``, ``stack``, ``hstack``, ``vstack``, ``dstack``, and copies of
one tensor side by side: ``repeat``, ``tile``.

``cat`` allocates the output once and writes each input into its slice with the strided-copy kernel (one launch
per input, casting to the promoted dtype on the way); backward narrows the gradient back into the pieces.
"""
import functools

import numpy as np

from tritorch import _dtype as D
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from .copy import copy_into
from ._common import empty, wrap

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
        start = 0
        for t in live:
            n = t._shape[d]
            if n:
                piece = out._view(t._shape, out._stride, out._offset + start * out._stride[d])
                copy_into(piece, t)
            start += n
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

