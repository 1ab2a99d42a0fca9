"""Copies: strided copy (``contiguous``, ``clone``, ``copy_``), dtype casts, moves between devices, and fill.

A copy is the identity map of the elementwise unary kernel: it reads through the source strides and writes through
the destination strides, casting on the way, so one kernel covers contiguous(), clone(), to(dtype) and copy_().
"""
import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D, _impl, cuda
from tritorch._device import device as _device
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from ._launch import ACC, ptr, block_for, broadcast_shapes
from ._common import check_inplace, empty, sum_to, wrap
from ._pointwise import launch_unary, _identity
from .creation import scalar_value

__all__ = ["to", "copy_into", "fill_"]


@triton.jit
def _fill_kernel(out_ptr, value, n, CT: tl.constexpr, BLOCK: tl.constexpr):
    """out[i] = value for a contiguous block of n elements; the block is built in ``CT`` (float32 for the half types,
    whose scalar constants Triton's interpreter cannot build) and cast to out's type."""
    pid = tl.program_id(0)
    i = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    v = (tl.zeros([BLOCK], CT) + value).to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + i, v, mask=i < n)


def _cast_value(value, dtype):
    if dtype is D.bool_:
        return int(bool(value))
    if dtype.is_floating_point:
        return float(value)
    return int(value)


def fill_(t, value):
    """Write ``value`` into every element of ``t`` (any strides). No autograd, no version bump: the kernel layer
    under ``Tensor.fill_`` and the factories."""
    if t.numel() == 0:
        return t
    if t._storage.device.type == "cpu":
        t._np[...] = np.array(value).astype(t.dtype.np)
    elif t.is_contiguous():
        n = t.numel()
        block = block_for(n)
        v = _cast_value(value, t.dtype)
        if t.dtype is D.float64 and v not in (0.0, 1.0):
            src = Tensor._wrap_numpy(np.full((1,), v), t.device)
            launch_unary(_identity, src.expand(t._shape), t, ACC[D.float64])
        else:
            _fill_kernel[(triton.cdiv(n, block),)](ptr(t), v, n, CT=ACC[t.dtype], BLOCK=block)
    else:
        tmp = empty(t._shape, t.dtype, t.device)
        fill_(tmp, value)
        copy_into(t, tmp)
    return t


def copy_into(dst, src):
    """dst[...] = src (broadcast, cast, any strides, any devices). Returns dst."""
    if src._shape != dst._shape:
        src = src.expand(dst._shape)
    if dst.numel() == 0:
        return dst
    sdev, ddev = src._storage.device, dst._storage.device
    if sdev.type == "cpu" and ddev.type == "cpu":
        np.copyto(dst._np, src._np.astype(dst.dtype.np, copy=False), casting="unsafe")
    elif sdev.type == ddev.type:
        if _overlaps(dst, src):
            src = src.clone()
        # values pass through the source's compute type; the store casts (float -> int truncates toward zero,
        # anything -> bool is "!= 0", as in PyTorch)
        launch_unary(_identity, src, dst, ACC[src.dtype])
    elif ddev.type == "cpu":                     # device -> host
        np.copyto(dst._np, src._to_host_array().astype(dst.dtype.np, copy=False), casting="unsafe")
    else:                                        # host -> device: upload, then a strided copy on the device
        staged = Tensor._wrap_numpy(np.array(src._np, order="C"), ddev)      # (ascontiguousarray makes 0-d 1-d)
        copy_into(dst, staged)
    return dst


def _overlaps(a, b):
    if a._storage.data is not b._storage.data:       # (.data tensors have a Storage object of their own)
        return False
    return not (a._offset == b._offset and a._stride == b._stride)


class ToCopy(Function):
    @staticmethod
    def forward(ctx, x, dev, dt):
        ctx._name = "ToCopyBackward0"
        ctx.src = (x._storage.device, x.dtype)
        if dev.type == "cpu" and x._storage.device.type == "cpu":
            return wrap(x._np.astype(dt.np), dt, dev)
        if dev.type == "cpu":
            host = x._to_host_array()
            return wrap(host.astype(dt.np), dt, dev)
        out = empty(x._shape, dt, dev)
        return copy_into(out, x)

    @staticmethod
    def backward(ctx, g):
        dev, dt = ctx.src
        return to(g, dev, dt, False)


@_impl.provide
def to(t, dev=None, dt=None, copy=False):
    dev = t.device if dev is None else _device(dev)
    dt = t.dtype if dt is None else D.to_dtype(dt)
    if dev == t.device and dt is t.dtype and not copy:
        return t
    if dev.type == "cuda":
        cuda._check_device(dev)
    return ToCopy.apply(t, dev, dt)


class Contiguous(Function):
    @staticmethod
    def forward(ctx, x):
        ctx._name = "CloneBackward0"
        if x._storage.device.type == "cpu":
            return wrap(np.array(x._np, order="C", copy=True), x.dtype, x.device)
        return copy_into(empty(x._shape, x.dtype, x.device), x)

    @staticmethod
    def backward(ctx, g):
        return g


@register("contiguous", function=False)
def contiguous(self, memory_format=None):
    if self.is_contiguous():
        return self
    return Contiguous.apply(self)


@register("clone")
def clone(input, *, memory_format=None):
    return Contiguous.apply(input)


class CopyInplace(Function):
    @staticmethod
    def forward(ctx, dst, src):
        ctx._name = "CopyBackwards"
        ctx.src_meta = (src._shape, src._storage.device, src.dtype) if isinstance(src, Tensor) else None
        copy_into(dst, src)
        dst._storage.version += 1
        ctx.mark_dirty(dst)
        return dst

    @staticmethod
    def backward(ctx, g):
        gsrc = None
        if ctx.src_meta is not None and ctx.needs_input_grad[1]:
            shape, dev, dt = ctx.src_meta
            gsrc = to(sum_to(g, shape), dev, dt)
        return g * 0 if ctx.needs_input_grad[0] else None, gsrc


@register("copy_", function=False)
def copy_(self, src, non_blocking=False):
    """``self[...] = src``: broadcast, cast to self's dtype, across devices, through self's strides."""
    check_inplace(self)
    if not isinstance(src, Tensor):
        raise TypeError(f"copy_(): argument 'src' (position 1) must be Tensor, not {type(src).__name__}")
    check_no_internal_overlap(self)
    if broadcast_shapes(self._shape, src._shape) != self._shape:
        raise RuntimeError(f"output with shape {list(self._shape)} doesn't match the broadcast shape "
                           f"{list(broadcast_shapes(self._shape, src._shape))}")
    if STATE.enabled and (self.requires_grad or src.requires_grad):
        return CopyInplace.apply(self, src)
    copy_into(self, src)
    self._storage.version += 1
    return self


def check_no_internal_overlap(t):
    if any(s == 0 and n > 1 for n, s in zip(t._shape, t._stride)):
        raise RuntimeError("unsupported operation: more than one element of the written-to tensor refers to a single "
                           "memory location. Please clone() the tensor before performing the operation.")


class Fill(Function):
    """``t.fill_(v)`` / ``t.zero_()`` under autograd: the old values no longer matter, so their gradient is 0."""

    @staticmethod
    def forward(ctx, t, value, name):
        ctx._name = name
        fill_(t, value)
        t._storage.version += 1
        ctx.mark_dirty(t)
        return t

    @staticmethod
    def backward(ctx, g):
        return g * 0


def _fill_method(self, value, name):
    check_inplace(self)
    check_no_internal_overlap(self)
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with {value.ndim} "
                               "dimensions.")
        value = value.item()
    else:
        value = scalar_value(value, self.dtype)      # PyTorch's overflow check (a value tensor is cast unchecked)
    if self.dtype is D.bool_:
        value = bool(value)
    elif not self.dtype.is_floating_point:
        if isinstance(value, float) and value != value:
            raise RuntimeError(f"value cannot be converted to type {self.dtype.name} without overflow")
        value = int(value)
    if STATE.enabled and self.requires_grad:
        return Fill.apply(self, value, name)
    fill_(self, value)
    self._storage.version += 1
    return self


@register("fill_", function=False)
def fill_method(self, value):
    """Set every element to ``value`` (a number or a 0-d tensor)."""
    return _fill_method(self, value, "FillBackward0")


@register("zero_", function=False)
def zero_(self):
    return _fill_method(self, 0, "ZeroBackward0")


