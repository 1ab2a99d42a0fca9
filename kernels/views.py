"""Views: ops that return a tensor sharing storage (no kernel runs) and their backward rules.

view/reshape, expand, permute/transpose/t/T/mT, squeeze/unsqueeze, flatten/unflatten, narrow, select, basic
indexing (ints, slices with steps, None, Ellipsis), split/chunk/unbind, as_strided, diagonal and meshgrid.
``reshape`` copies (through the strided-copy kernel) only when no view is possible, as in PyTorch. The copies that a
view cannot express sit beside them: flip and roll (one index-map copy kernel), diag/diag_embed/trace and
repeat_interleave. Also the recording of an in-place write through a view on its base (``CopySlices``,
``apply_inplace``), which every in-place op family uses.
"""
import math
import warnings

import numpy as np
import triton
import triton.language as tl

from tritorch import _creation, _dtype as D, _impl
from tritorch._tensor import Tensor, register, contiguous_strides
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE, no_grad
from ._launch import MAXD, ptr, block_for, nd_coords, nd_offset
from ._common import empty, sum_to, wrap
from .copy import copy_into, fill_
from .join import cat, stack

__all__ = ["view_strides", "basic_index"]


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _infer_shape(shape, numel):
    shape = list(shape)
    neg = [i for i, s in enumerate(shape) if s == -1]
    if len(neg) > 1:
        raise RuntimeError("only one dimension can be inferred")
    for i, s in enumerate(shape):
        if s < -1:
            raise RuntimeError(f"invalid shape dimension {s} at index {i} of shape {shape}")
    if neg:
        rest = math.prod(s for s in shape if s != -1)
        if rest == 0 and numel == 0:
            raise RuntimeError(f"cannot reshape tensor of 0 elements into shape {list(shape)} because the unspecified "
                               "dimension size -1 can be any value and is ambiguous")
        if rest == 0 or numel % rest:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape[neg[0]] = numel // rest
    if math.prod(shape) != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return tuple(shape)


def view_strides(old_shape, old_strides, new_shape):
    """Strides that view ``old`` as ``new_shape`` without a copy, or None (PyTorch's computeStride)."""
    if math.prod(old_shape) == 0 or not old_shape:
        return contiguous_strides(new_shape)
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base_stride = old_strides[-1]
    tensor_numel = 1
    view_numel = 1
    for tensor_d in range(len(old_shape) - 1, -1, -1):
        tensor_numel *= old_shape[tensor_d]
        if tensor_d == 0 or (old_shape[tensor_d - 1] != 1 and
                             old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_strides[view_d] = view_numel * chunk_base_stride
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if tensor_d > 0:
                chunk_base_stride = old_strides[tensor_d - 1]
                tensor_numel = 1
                view_numel = 1
    if view_d != -1:
        return None
    return tuple(new_strides)


class View(Function):
    """Any view given as (shape, strides, offset): backward scatters the gradient into the input's shape."""

    @staticmethod
    def forward(ctx, x, shape, strides, offset, kind, name):
        ctx._name = name
        ctx.in_shape, ctx.kind = x._shape, kind
        return x._view(shape, strides, offset)

    @staticmethod
    def backward(ctx, g):
        return ctx.kind.backward(g, ctx.in_shape)


class _Reshape:
    @staticmethod
    def backward(g, in_shape):
        return g.reshape(in_shape)


class _Permute:
    def __init__(self, dims):
        self.inv = tuple(np.argsort(dims))

    def backward(self, g, in_shape):
        return g.permute(*self.inv)


class _Expand:
    @staticmethod
    def backward(g, in_shape):
        return sum_to(g, in_shape)


class _Strided:
    """A view that picks elements (slicing, narrow, select, as_strided). ``reapply(t)`` takes the same view of any
    tensor of the input's shape, so backward writes the gradient into zeros at that view."""

    def __init__(self, reapply):
        self.reapply = reapply

    def backward(self, g, in_shape):
        out = _creation.zeros(in_shape, dtype=g.dtype, device=g.device)
        if g.requires_grad:
            return _ViewScatter.apply(g, out, self.reapply)
        with no_grad():
            self.reapply(out).copy_(g)
        return out


class _ViewScatter(Function):
    """zeros with ``g`` written at a view: the differentiable form, for double backward."""

    @staticmethod
    def forward(ctx, g, out, reapply):
        ctx.reapply = reapply
        reapply(out).copy_(g)
        return out

    @staticmethod
    def backward(ctx, gg):
        return ctx.reapply(gg), None, None


@_impl.provide
def view_scatter(g, shape, reapply):
    """zeros of ``shape`` with ``g`` written at the view ``reapply`` takes of them (differentiable in g)."""
    return _ViewScatter.apply(g, _creation.zeros(shape, dtype=g.dtype, device=g.device), reapply)


class _AsStrided:
    """``as_strided`` may pick an element several times (overlapping strides): backward then adds the gradient into
    zeros at each picked position (a scatter-add, so repeats sum); otherwise it writes it there (``_Strided``)."""

    def __init__(self, size, stride, rel):
        self.size, self.stride, self.rel = size, stride, rel

    def reapply(self, t):
        t = t.contiguous()
        return as_strided(t, self.size, self.stride, t._offset + self.rel)

    def overlapping(self):
        """Whether two indices reach the same element: dims in stride order must each step past all the smaller."""
        reach = 0
        for k, s in sorted(((k, s) for k, s in zip(self.size, self.stride) if k > 1), key=lambda e: e[1]):
            if s <= reach:
                return True
            reach += s * (k - 1)
        return False

    def backward(self, g, in_shape):
        n = math.prod(in_shape)
        last = self.rel + sum((k - 1) * s for k, s in zip(self.size, self.stride))
        if g.numel() and (self.rel < 0 or last >= n):
            raise NotImplementedError(f"as_strided backward: the view (size {list(self.size)}, stride "
                                      f"{list(self.stride)}) reaches storage outside its input of shape "
                                      f"{list(in_shape)}; its gradient is not supported")
        if not self.overlapping():
            return _Strided(self.reapply).backward(g, in_shape)
        pos = np.full(self.size, self.rel, dtype=np.int64)
        for d, (k, s) in enumerate(zip(self.size, self.stride)):
            pos = pos + (np.arange(k, dtype=np.int64) * s).reshape([k if j == d else 1 for j in range(len(self.size))])
        flat = _creation.zeros((n,), dtype=g.dtype, device=g.device)
        flat.index_put_((Tensor._wrap_numpy(pos.reshape(-1), g.device),), g.reshape(-1), accumulate=True)
        return flat.view(in_shape)


def _view_op(x, shape, strides, offset, kind, name):
    return View.apply(x, tuple(shape), tuple(strides), offset, kind, name)


# ---- reshape family --------------------------------------------------------------------------------------------

@register("view", function=False)
def view(self, *shape):
    if len(shape) == 1 and not isinstance(shape[0], (tuple, list, int, np.integer)):
        raise NotImplementedError(f"view(dtype) is not supported (got {shape[0]}); use .to({D.to_dtype(shape[0])})")
    shape = _infer_shape(_shape_arg(shape), self.numel())
    st = view_strides(self._shape, self._stride, shape)
    if st is None:
        raise RuntimeError("view size is not compatible with input tensor's size and stride (at least one dimension "
                           "spans across two contiguous subspaces). Use .reshape(...) instead.")
    return _view_op(self, shape, st, self._offset, _Reshape, "ViewBackward0")


@register("reshape")
def reshape(input, *shape):
    shape = _infer_shape(_shape_arg(shape), input.numel())
    st = view_strides(input._shape, input._stride, shape)
    if st is None:
        c = input.contiguous()
        return _view_op(c, shape, contiguous_strides(shape), c._offset, _Reshape, "UnsafeViewBackward0")
    return _view_op(input, shape, st, input._offset, _Reshape, "ViewBackward0")


@register("view_as", function=False)
def view_as(self, other):
    return view(self, other._shape)


@register("reshape_as", function=False)
def reshape_as(self, other):
    return reshape(self, other._shape)


@register("flatten")
def flatten(input, start_dim=0, end_dim=-1):
    if input.ndim == 0:
        input._wrap_dim(start_dim)
        input._wrap_dim(end_dim)
        return reshape(input, (1,))
    s = input._wrap_dim(start_dim)
    e = input._wrap_dim(end_dim)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = input._shape[:s] + (math.prod(input._shape[s:e + 1]),) + input._shape[e + 1:]
    return reshape(input, shape)


@register("unflatten")
def unflatten(input, dim, sizes):
    sizes = tuple(int(s) for s in sizes)
    if not sizes:
        raise RuntimeError("unflatten: sizes must be non-empty")
    d = input._wrap_dim(dim)
    if input.ndim == 0:
        raise RuntimeError("unflatten got an unexpected error:\nDimension specified as 0 but tensor has no dimensions")
    try:
        sizes = _infer_shape(sizes, input._shape[d])
    except RuntimeError as e:
        if "is invalid for input of size" not in str(e):
            raise RuntimeError(f"unflatten got an unexpected error:\n{e}") from None
        raise RuntimeError(f"unflatten: Provided sizes {list(sizes)} don't multiply up to the size of dim {d} "
                           f"({input._shape[d]}) in the input tensor") from None
    return reshape(input, input._shape[:d] + sizes + input._shape[d + 1:])


@register("ravel")
def ravel(input):
    return reshape(input, (-1,))


# ---- dims -------------------------------------------------------------------------------------------------------

@register("permute")
def permute(input, *dims, _name="PermuteBackward0"):
    dims = _shape_arg(dims)
    if len(dims) != input.ndim:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match the length "
                           f"of the desired ordering of dimensions i.e. input.dim() = {input.ndim} is not equal to "
                           f"len(dims) = {len(dims)}")
    dims = tuple(input._wrap_dim(d) for d in dims)
    if sorted(dims) != list(range(input.ndim)):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return _view_op(input, [input._shape[d] for d in dims], [input._stride[d] for d in dims], input._offset,
                    _Permute(dims), _name)


@register("transpose", "swapaxes", "swapdims")
def transpose(input, dim0, dim1, _name="TransposeBackward0"):
    n = input.ndim
    d0, d1 = input._wrap_dim(dim0), input._wrap_dim(dim1)
    if n == 0:
        return input
    perm = list(range(n))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return permute(input, perm, _name=_name)


@register("t")
def t(input):
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return transpose(input, 0, 1, _name="TBackward0") if input.ndim == 2 else input


Tensor.T = property(lambda self: permute(self, tuple(reversed(range(self.ndim)))))


def _mT(self):
    """``x.mT``: the last two dims swapped (the identity on a 0-d tensor, deprecated there, as in PyTorch)."""
    if self.ndim == 0:
        warnings.warn("Tensor.mT is deprecated on 0-D tensors. This function is the identity in these cases.",
                      UserWarning, stacklevel=2)
        return self
    if self.ndim == 1:
        raise RuntimeError("tensor.mT is only supported on matrices or batches of matrices. Got 1-D tensor.")
    return transpose(self, -2, -1)


Tensor.mT = property(_mT)


@register("movedim", "moveaxis")
def movedim(input, source, destination):
    src0 = [source] if isinstance(source, int) else list(source)
    dst0 = [destination] if isinstance(destination, int) else list(destination)
    if len(src0) != len(dst0):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({src0} dims) should contain the same "
                           f"number of dims as destination ({dst0} dims)")
    n = input.ndim
    src = [input._wrap_dim(s) for s in src0]
    dst = [input._wrap_dim(d) for d in dst0]
    for name, given, wrapped in (("source", src0, src), ("destination", dst0, dst)):
        if len(set(wrapped)) != len(wrapped):
            raise RuntimeError(f"movedim: repeated dim in `{name}` ({given})")
    if n == 0:
        return permute(input, ())
    order = [i for i in range(n) if i not in src]
    perm = [None] * n
    for s, d in zip(src, dst):
        perm[d] = s
    it = iter(order)
    perm = [p if p is not None else next(it) for p in perm]
    return permute(input, perm)


@register("squeeze")
def squeeze(input, dim=None):
    if dim is None:
        dims = [i for i, s in enumerate(input._shape) if s == 1]
    else:
        dims = [dim] if isinstance(dim, int) else list(dim)
        dims = [input._wrap_dim(d) for d in dims]
        if len(set(dims)) != len(dims):
            dup = next(d for d in dims if dims.count(d) > 1)
            raise RuntimeError(f"dim {dup} appears multiple times in the list of dims")
        dims = [d for d in dims if input.ndim and input._shape[d] == 1]
    shape = [s for i, s in enumerate(input._shape) if i not in dims]
    strides = [s for i, s in enumerate(input._stride) if i not in dims]
    name = "SqueezeBackward0" if dim is None else "SqueezeBackward1" if isinstance(dim, int) else "SqueezeBackward2"
    return _view_op(input, shape, strides, input._offset, _Reshape, name)


@register("unsqueeze")
def unsqueeze(input, dim):
    d = input._wrap_dim(dim, input.ndim + 1)
    shape = list(input._shape)
    strides = list(input._stride)
    st = shape[d] * strides[d] if d < input.ndim else 1
    shape.insert(d, 1)
    strides.insert(d, st)
    return _view_op(input, shape, strides, input._offset, _Reshape, "UnsqueezeBackward0")


@register("expand", function=False)
def expand(self, *sizes):
    sizes = _shape_arg(sizes)
    if len(sizes) < self.ndim:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to the "
                           f"number of dimensions in the tensor ({self.ndim})")
    pad = len(sizes) - self.ndim
    shape, strides = [], []
    for i, s in enumerate(sizes):
        if i < pad:
            if s < 0:
                raise RuntimeError(f"expand: -1 is not allowed in a leading, non-existing dimension ({list(sizes)})")
            shape.append(s)
            strides.append(0)
            continue
        n, st = self._shape[i - pad], self._stride[i - pad]
        if s == -1:
            s = n
        if n == s:
            shape.append(n)
            strides.append(st)
        elif n == 1:
            shape.append(s)
            strides.append(0)
        else:
            raise RuntimeError(f"The expanded size of the tensor ({s}) must match the existing size ({n}) at "
                               f"non-singleton dimension {i}.  Target sizes: {list(sizes)}.  Tensor sizes: "
                               f"{list(self._shape)}")
    if tuple(shape) == self._shape:
        return self
    return _view_op(self, shape, strides, self._offset, _Expand, "ExpandBackward0")


@register("expand_as", function=False)
def expand_as(self, other):
    return expand(self, other._shape)


@register("broadcast_to")
def broadcast_to(input, size):
    return expand(input, tuple(size))


# ---- slicing ----------------------------------------------------------------------------------------------------

def _strided_view(x, shape, strides, offset, reapply, name):
    return _view_op(x, shape, strides, offset, _Strided(reapply), name)


@_impl.provide
@register("as_strided")
def as_strided(input, size, stride, storage_offset=None):
    off = input._offset if storage_offset is None else storage_offset
    need = off + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else 0
    if need > input._storage.size:
        raise RuntimeError(f"setStorage: sizes {list(size)}, strides {list(stride)}, storage offset {off} require "
                           f"{need} elements, but the storage has {input._storage.size}")
    if not input.is_contiguous():
        raise NotImplementedError("as_strided of a non-contiguous tensor: call .contiguous() first")
    rel = off - input._offset
    return _view_op(input, tuple(size), tuple(stride), off, _AsStrided(tuple(size), tuple(stride), rel),
                    "AsStridedBackward0")


@register("narrow")
def narrow(input, dim, start, length, _name="SliceBackward0"):
    if input.ndim == 0:
        raise RuntimeError("narrow() cannot be applied to a 0-dim tensor.")
    d = input._wrap_dim(dim)
    n = input._shape[d]
    if start < 0:
        start += n
    if not (0 <= start <= n) or length < 0 or start + length > n:
        raise IndexError(f"narrow(): start ({start}) + length ({length}) exceeds dimension size ({n}).")
    shape = list(input._shape)
    shape[d] = length
    return _strided_view(input, shape, input._stride, input._offset + start * input._stride[d],
                         lambda t: narrow(t, d, start, length), _name)


@register("select")
def select(input, dim, index, _name="SelectBackward0"):
    if input.ndim == 0:
        raise IndexError("select() cannot be applied to a 0-dim tensor.")
    d = input._wrap_dim(dim)
    n = input._shape[d]
    if not -n <= index < n:
        raise IndexError(f"index {index} is out of bounds for dimension {d} with size {n}")
    index %= n
    shape = input._shape[:d] + input._shape[d + 1:]
    strides = input._stride[:d] + input._stride[d + 1:]
    return _strided_view(input, shape, strides, input._offset + index * input._stride[d],
                         lambda t: select(t, d, index), _name)


class _Pieces(Function):
    """split/chunk/unbind: each piece a view of the input along ``d`` (``sizes`` None: unbind's selects), all of
    them one node, as PyTorch's. Backward joins the pieces' gradients into the input's gradient with one copy
    each (cat/stack; zeros only for a piece that got none), where one node per piece would fill a zero input per
    piece and add them up."""

    @staticmethod
    def forward(ctx, x, d, sizes, name):
        ctx._name = name
        ctx.set_materialize_grads(False)
        ctx.d, ctx.sizes, ctx.dtype = d, sizes, x.dtype
        ctx.contiguous = x.is_contiguous()
        ctx.in_shape, ctx.in_stride = x._shape, x._stride
        if sizes is None:
            shape, strides = x._shape[:d] + x._shape[d + 1:], x._stride[:d] + x._stride[d + 1:]
            ctx.shapes = [shape] * x._shape[d]
            ctx.starts = list(range(x._shape[d]))
            return tuple(x._view(shape, strides, x._offset + i * x._stride[d]) for i in range(x._shape[d]))
        ctx.shapes, ctx.starts, out, start = [], [], [], 0
        for n in sizes:
            shape = x._shape[:d] + (n,) + x._shape[d + 1:]
            ctx.shapes.append(shape)
            ctx.starts.append(start)
            out.append(x._view(shape, x._stride, x._offset + start * x._stride[d]))
            start += n
        return tuple(out)

    @staticmethod
    def _joined(ctx, grads):
        """The input's gradient as it already is in memory, when the pieces' gradients are the pieces of one
        buffer laid out as the (contiguous) input (attention writes dq, dk, dv so: ``_packed_grads``), else None."""
        g0 = grads[0]
        if not ctx.contiguous or any(g is None or g._storage is not g0._storage or g.dtype is not g0.dtype or
                                     g._requires_grad for g in grads):
            return None
        st = ctx.in_stride
        inner = st[:ctx.d] + st[ctx.d + 1:] if ctx.sizes is None else st
        base = g0._offset - ctx.starts[0] * st[ctx.d]
        if base < 0 or any(g._shape != shape or (g._stride != inner and g.numel() > 1) or
                           g._offset != base + start * st[ctx.d]
                           for g, shape, start in zip(grads, ctx.shapes, ctx.starts)):
            return None
        return g0._view(ctx.in_shape, st, base)

    @staticmethod
    def backward(ctx, *grads):
        if all(g is None for g in grads):
            return None, None, None, None
        joined = None if STATE.enabled else _Pieces._joined(ctx, grads)
        if joined is not None:
            return joined, None, None, None
        dev = next(g for g in grads if g is not None).device
        parts = [g if g is not None else _creation.zeros(shape, dtype=ctx.dtype, device=dev)
                 for g, shape in zip(grads, ctx.shapes)]
        return (stack(parts, ctx.d) if ctx.sizes is None else cat(parts, ctx.d)), None, None, None


@register("unbind")
def unbind(input, dim=0):
    d = input._wrap_dim(dim)
    if input.ndim == 0:
        raise IndexError(f"Dimension specified as {d} but tensor has no dimensions")
    if input._shape[d] == 0:
        return ()
    return _Pieces.apply(input, d, None, "UnbindBackward0")


@register("split")
def split(tensor, split_size_or_sections, dim=0):
    if tensor.ndim == 0:
        raise RuntimeError("split expects at least a 1-dimensional tensor")
    d = tensor._wrap_dim(dim)
    n = tensor._shape[d]
    if isinstance(split_size_or_sections, int):
        s = split_size_or_sections
        if s <= 0 and n:
            raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got dimension size of {n}")
        sizes = [min(s, n - i) for i in range(0, n, s)] if n else [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size at "
                               f"dimension {d}), but got split_sizes={sizes}")
    for s in sizes:
        if s < 0:
            raise RuntimeError(f"split_with_sizes expects split_sizes have only non-negative entries, but got "
                               f"split_sizes={sizes}")
    out = _Pieces.apply(tensor, d, tuple(sizes), "SplitBackward0")
    return out if isinstance(out, tuple) else (out,)


@register("chunk")
def chunk(input, chunks, dim=0):
    if input.ndim == 0:
        raise RuntimeError("chunk expects at least a 1-dimensional tensor")
    if chunks <= 0:
        raise RuntimeError("chunk expects `chunks` to be greater than 0")
    d = input._wrap_dim(dim)
    n = input._shape[d]
    size = -(-n // chunks) if n else 0
    return split(input, size, d) if size else split(input, [0] * chunks, d)     # an empty dim: ``chunks`` empties


def basic_index(x, idx):
    """Apply ints, slices (with steps), None and Ellipsis: one view, or None if ``idx`` has anything else."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    for i in idx:
        if not (i is None or i is Ellipsis or isinstance(i, slice) or
                (isinstance(i, (int, np.integer)) and not isinstance(i, bool))):
            return None
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if n_real > x.ndim:
        if x.ndim == 0 and len(idx) == 1:
            if isinstance(idx[0], slice):
                raise IndexError("slice() cannot be applied to a 0-dim tensor.")
            raise IndexError("invalid index of a 0-dim tensor. Use `tensor.item()` in Python or `tensor.item<T>()` in "
                             "C++ to convert a 0-dim tensor to a number")
        raise IndexError(f"too many indices for tensor of dimension {x.ndim}")
    if sum(1 for i in idx if i is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (x.ndim - n_real) + idx[k + 1:]
    shape, strides, off, d = [], [], x._offset, 0
    for i in idx:
        if i is None:
            shape.append(1)
            strides.append(0)
            continue
        n, st = x._shape[d], x._stride[d]
        if isinstance(i, slice):
            start, stop, step = i.start, i.stop, i.step
            if step is not None and step <= 0:
                raise ValueError("step must be greater than zero")
            start, stop, step = slice(start, stop, step).indices(n)
            length = max(0, -(-(stop - start) // step))
            shape.append(length)
            strides.append(st * step)
            off += start * st if length else 0
        else:
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for dimension {d} with size {n}")
            off += (i % n) * st
        d += 1
    shape += x._shape[d:]
    strides += x._stride[d:]
    if tuple(shape) == x._shape and tuple(strides) == x._stride and off == x._offset:
        return x
    name = "SelectBackward0" if len(idx) == 1 and not isinstance(idx[0], slice) and idx[0] is not None else \
        "SliceBackward0"
    return _strided_view(x, shape, strides, off, lambda t: basic_index(t, idx), name)


# ---- diagonals and grids: views ---------------------------------------------------------------------------------

@register("diagonal")
def diagonal(input, offset=0, dim1=0, dim2=1):
    """The diagonal at ``offset`` of the (dim1, dim2) planes as a strided view (last dim of the result): a write
    through it reaches the input."""
    d1, d2 = input._wrap_dim(dim1), input._wrap_dim(dim2)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    n1, n2 = input._shape[d1], input._shape[d2]
    s1, s2 = input._stride[d1], input._stride[d2]
    size = max(min(n1, n2 - offset), 0) if offset >= 0 else max(min(n1 + offset, n2), 0)
    off = input._offset
    if size:
        off += offset * s2 if offset >= 0 else -offset * s1
    keep = [i for i in range(input.ndim) if i not in (d1, d2)]
    shape = [input._shape[i] for i in keep] + [size]
    strides = [input._stride[i] for i in keep] + [s1 + s2]
    return _strided_view(input, shape, strides, off, lambda t: diagonal(t, offset, d1, d2), "DiagonalBackward0")


@register("diag_embed")
def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """Zeros of one more dim with the last dim of ``input`` written on the ``offset`` diagonal of the (dim1, dim2)
    planes (its backward takes that diagonal of the gradient)."""
    n = input.ndim + 1
    d1, d2 = input._wrap_dim(dim1, n), input._wrap_dim(dim2, n)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    m = (input._shape[-1] if input.ndim else 1) + abs(offset)
    rest = iter(input._shape[:-1])
    shape = tuple(m if i in (d1, d2) else next(rest) for i in range(n))
    src = input if input.ndim else input.reshape(1)
    return view_scatter(src, shape, lambda t: diagonal(t, offset, d1, d2))


@register("diag")
def diag(input, diagonal=0):
    """A 1-D input as the ``diagonal``-th diagonal of a square matrix; a 2-D input's ``diagonal``-th diagonal (copy)."""
    if input.ndim == 1:
        return diag_embed(input, diagonal, 0, 1)
    if input.ndim != 2:
        raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")
    return input.diagonal(diagonal).clone()


@register("trace")
def trace(input):
    """The sum of a matrix's main diagonal (integers sum to int64, as in PyTorch)."""
    if input.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {input.ndim}")
    if input.dtype is D.bool_:
        raise NotImplementedError("\"trace\" not implemented for 'Bool'")
    return diagonal(input).sum()


@register("meshgrid", method=False)
def meshgrid(*tensors, indexing=None):
    """Coordinate grids of 0-D/1-D tensors: each result is an expanded view of its input. ``indexing="ij"`` (the
    default, with PyTorch's warning when not given) puts input k on dim k; ``"xy"`` swaps the first two dims."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument.",
                      UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(f'torch.meshgrid: indexing must be one of "xy" or "ij", but received: {indexing}')
    if not tensors:
        raise RuntimeError("meshgrid expects a non-empty TensorList")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"meshgrid(): argument 'tensors' must be tuple of Tensors, not {type(t).__name__}")
        if t.ndim > 1:
            raise RuntimeError(f"torch.meshgrid: Expected 0D or 1D tensor in the tensor list but got: {t}")
        if t.dtype is not tensors[0].dtype:
            raise RuntimeError("meshgrid expects all tensors to have the same dtype")
        if t.device != tensors[0].device:
            raise RuntimeError("meshgrid expects all tensors to have the same device")
    pos = list(range(len(tensors)))
    if indexing == "xy" and len(tensors) >= 2:
        pos[0], pos[1] = 1, 0
    shape = [0] * len(tensors)
    for t, p in zip(tensors, pos):
        shape[p] = t.numel()
    return tuple(t.reshape([-1 if i == p else 1 for i in range(len(shape))]).expand(shape)
                 for t, p in zip(tensors, pos))


# ---- flip and roll: one index-map copy kernel --------------------------------------------------------------------

@triton.jit
def _index_map_kernel(x_ptr, out_ptr, n, S0, S1, S2, S3, S4, S5, xs0, xs1, xs2, xs3, xs4, xs5,
                      a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5, BLOCK: tl.constexpr):
    """out[c] = x[src(c)]. out: a contiguous tensor of n elements, seen in the 6-d shape S; x: the input, of the
    same shape, ``xs?`` its strides in elements. Along dim d, src_d = (c_d * a_d + b_d) mod S_d, with a_d = +-1 and
    c_d * a_d + b_d >= 0: a_d = -1, b_d = S_d - 1 reverses the dim (flip), a_d = 1, b_d = S_d - shift rotates it
    (roll), a_d = 1, b_d = 0 keeps it."""
    pid = tl.program_id(0)
    i = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    c0, c1, c2, c3, c4, c5 = nd_coords(i, S1, S2, S3, S4, S5)
    off = nd_offset((c0 * a0 + b0) % S0, (c1 * a1 + b1) % S1, (c2 * a2 + b2) % S2, (c3 * a3 + b3) % S3,
                    (c4 * a4 + b4) % S4, (c5 * a5 + b5) % S5, xs0, xs1, xs2, xs3, xs4, xs5)
    tl.store(out_ptr + i, tl.load(x_ptr + off, mask=mask), mask=mask)


def _np_index_map(x, maps):
    """NumPy reference of ``_index_map_kernel``: ``maps`` holds (a_d, b_d) per dim."""
    idx = [(np.arange(n) * a + b) % n if n else np.arange(0) for n, (a, b) in zip(x.shape, maps)]
    return x[np.ix_(*idx)] if idx else x.copy()


def _map_dims(x, maps):
    """x's dims for the kernel: size-1 dims dropped, neighbouring kept dims merged where x's strides allow; None if
    more than MAXD remain."""
    dims = []
    for n, st, (a, b) in zip(x._shape, x._stride, maps):
        if n == 1:
            continue
        if dims and (a, b) == (1, 0) and dims[-1][2:] == (1, 0) and dims[-1][1] == st * n:
            dims[-1] = (dims[-1][0] * n, st, 1, 0)
            continue
        dims.append((n, st, a, b))
    return None if len(dims) > MAXD else [(1, 0, 1, 0)] * (MAXD - len(dims)) + dims


def index_map(x, maps):
    """The copy out[c] = x[(c_d * a_d + b_d) mod n_d] (flip and roll; ``maps``: (a_d, b_d) per dim)."""
    if x._storage.device.type == "cpu":
        return wrap(_np_index_map(x._np, maps), x.dtype, x.device)
    out = empty(x._shape, x.dtype, x.device)
    n = out.numel()
    if n == 0:
        return out
    dims = _map_dims(x, maps)
    if dims is None:
        x = x.contiguous()
        dims = _map_dims(x, maps)
        if dims is None:
            raise NotImplementedError(f"flip/roll of more than {MAXD} dims that cannot be merged (shape "
                                      f"{list(x._shape)}) is not supported")
    size, stride, a, b = (list(c) for c in zip(*dims))
    block = block_for(n)
    _index_map_kernel[(triton.cdiv(n, block),)](ptr(x), ptr(out), n, *size, *stride, *a, *b, BLOCK=block)
    return out


class IndexMap(Function):
    """flip/roll: the index-map copy; its gradient is the inverse map (c -> a * c - a * b) of the output's."""

    @staticmethod
    def forward(ctx, x, maps, name):
        ctx._name = name
        ctx.inv = tuple((a, (-a * b) % n if n else 0) for n, (a, b) in zip(x._shape, maps))
        return index_map(x, maps)

    @staticmethod
    def backward(ctx, g):
        return IndexMap.apply(g, ctx.inv, ctx._name), None, None


def _dims_list(name, dims):
    if isinstance(dims, (int, np.integer)):
        raise TypeError(f"{name}(): argument 'dims' (position 2) must be tuple of ints, not int")
    return list(dims)


@register("flip")
def flip(input, dims):
    """A copy with the ``dims`` reversed."""
    dims = [input._wrap_dim(d) for d in _dims_list("flip", dims)]
    if len(set(dims)) != len(dims):
        dup = next(d for d in dims if dims.count(d) > 1)
        raise RuntimeError(f"dim {dup} appears multiple times in the list of dims")
    maps = tuple((-1, n - 1) if d in dims else (1, 0) for d, n in enumerate(input._shape))
    return IndexMap.apply(input, maps, "FlipBackward0")


@register("fliplr")
def fliplr(input):
    if input.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return flip(input, (1,))


@register("flipud")
def flipud(input):
    if input.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return flip(input, (0,))


@register("roll")
def roll(input, shifts, dims=None):
    """A copy with each of ``dims`` rotated by its shift (elements past the end come back at the start);
    ``dims=None`` rolls the flattened tensor."""
    shifts = [shifts] if isinstance(shifts, (int, np.integer)) else list(shifts)
    dims = [] if dims is None else [dims] if isinstance(dims, (int, np.integer)) else list(dims)
    if not dims and len(shifts) == 1:
        return roll(input.flatten(), shifts, 0).view(input._shape)
    if len(shifts) != len(dims):
        raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    if input.ndim == 0:
        raise IndexError("Dimension specified as 0 but tensor has no dimensions")
    shift = [0] * input.ndim
    for s, d in zip(shifts, dims):
        shift[input._wrap_dim(d)] += int(s)
    maps = tuple((1, (-s) % n if n else 0) for s, n in zip(shift, input._shape))
    return IndexMap.apply(input, maps, "RollBackward0")


# ---- repeat_interleave: an index_select with the repeated indices -------------------------------------------------

def _repeat_counts(repeats):
    """A repeats tensor's counts on the host, with PyTorch's checks."""
    if repeats.ndim > 1:
        raise RuntimeError("repeats must be 0-dim or 1-dim tensor")
    if repeats.dtype not in (D.int64, D.int32):
        raise NotImplementedError(f"\"repeat_interleave_cpu\" not implemented for '{D.scalar_name(repeats.dtype)}'")
    counts = repeats._to_host_array().reshape(-1).astype(np.int64)
    if (counts < 0).any():
        raise RuntimeError("repeats can not be negative")
    return counts


@register("repeat_interleave")
def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Each slice of ``input`` along ``dim`` repeated ``repeats`` times (an int, or a tensor with one count per
    slice); ``dim=None`` flattens first. ``repeat_interleave(counts)`` alone gives the repeated indices
    0, 0, ..., 1, ... (int64). The copy is an ``index_select`` (its backward an ``index_add``)."""
    if repeats is None:
        counts = _repeat_counts(input)
        idx = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        if output_size is not None and output_size != idx.size:
            raise RuntimeError("allocated size does not match required size")
        return Tensor._wrap_numpy(idx, input.device)
    if dim is None:
        input, d = input.reshape(-1), 0
    else:
        d = input._wrap_dim(dim)
        if input.ndim == 0:
            input = input.reshape(1)
    n = input._shape[d]
    if isinstance(repeats, Tensor):
        counts = _repeat_counts(repeats)
        if counts.size == 1:
            counts = np.full(n, counts[0], dtype=np.int64)
        elif counts.size != n:
            raise RuntimeError(f"repeats must have the same size as input along dim, but got repeats.size(0) = "
                               f"{counts.size} and input.size({d}) = {n}")
    else:
        if int(repeats) < 0:
            raise RuntimeError("Repeats must be non-negative")
        counts = np.full(n, int(repeats), dtype=np.int64)
    idx = np.repeat(np.arange(n, dtype=np.int64), counts)
    if output_size is not None and output_size != idx.size:
        raise RuntimeError("allocated size does not match required size")
    return input.index_select(d, Tensor._wrap_numpy(idx, input.device))


# ====================================================================================================================
# In-place writes through a view, recorded on its base
# ====================================================================================================================

class CopySlices(Function):
    """An in-place op ``fn`` applied to a view of ``base``, recorded on the base (PyTorch's CopySlices): backward
    runs fn's backward on the view's part of the base's gradient and passes the rest through."""

    @staticmethod
    def forward(ctx, base, geom, fn, *args):
        ctx._name = "CopySlices"
        shape, stride, rel = geom
        inner = fn._node_cls()
        inner.needs_input_grad = (base.requires_grad,) + tuple(isinstance(a, Tensor) and a.requires_grad
                                                                for a in args)
        fn.forward(inner, base._view(shape, stride, base._offset + rel), *args)
        ctx.inner, ctx.fn, ctx.geom = inner, fn, geom
        ctx.mark_dirty(base)
        return base

    @staticmethod
    def backward(ctx, g):
        shape, stride, rel = ctx.geom
        if STATE.enabled:          # create_graph: g with the view's part replaced, in differentiable tensor ops
            return CopySlices._backward_recorded(ctx, g)
        gb = copy_into(empty(g._shape, g.dtype, g.device), g)
        gview = gb._view(shape, stride, gb._offset + rel)
        grads = ctx.fn.backward(ctx.inner, copy_into(empty(shape, g.dtype, g.device), gview))
        if not isinstance(grads, tuple):
            grads = (grads,)
        if grads[0] is None:
            fill_(gview, 0)
        else:
            copy_into(gview, grads[0])
        return (gb, None, None, *grads[1:])

    @staticmethod
    def _backward_recorded(ctx, g):
        shape, stride, rel = ctx.geom

        def reapply(t):
            t = t.contiguous()
            return as_strided(t, shape, stride, t._offset + rel)
        g = g.contiguous()
        gview = reapply(g)
        grads = ctx.fn.backward(ctx.inner, gview)
        if not isinstance(grads, tuple):
            grads = (grads,)
        new = grads[0] if grads[0] is not None else gview * 0
        return (g + view_scatter(new - gview, g._shape, reapply), None, None, *grads[1:])


def apply_inplace(fn, x, *args):
    """Record the in-place Function ``fn`` on ``x`` (its args after x: ``args``). When x is a view, the write is
    recorded on its base, whose history (and x's) is rebased, so that gradients flow through both."""
    base = x._base
    if base is None or not base.is_contiguous():
        return fn.apply(x, *args)
    if base.requires_grad and base.grad_fn is None:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place operation.")
    CopySlices.apply(base, (x._shape, x._stride, x._offset - base._offset), fn, *args)
    if base.requires_grad:
        tmp = as_strided(base, x._shape, x._stride, x._offset)
        x.grad_fn, x._output_nr, x.requires_grad = tmp.grad_fn, 0, True
    return x
