"""Kernels of the factories: ``fill`` (full, zeros, ones), ``arange``, ``linspace`` and ``eye``.

Each writes a new contiguous tensor: a Triton kernel on ``cuda``, its NumPy reference on ``cpu``. Values are
computed in float64 (int64 for integer ranges) and then cast, on both paths, so that ``cpu`` and ``cuda`` agree.
Scalars travel as int64 bit patterns because Triton passes a Python float as float32.
"""
import math
import numbers

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._device import INTERPRET
from tritorch._tensor import Tensor
from tritorch import _impl
from ._launch import ptr, block_for, cdiv

__all__ = ["fill", "arange_into", "linspace_into", "eye_into", "scalar_value"]

# PyTorch's (C++) type names in its "value cannot be converted" errors, and each type's finite range
_C_NAMES = {D.uint8: "uint8_t", D.int8: "int8_t", D.int16: "int16_t", D.int32: "int", D.int64: "int64_t",
            D.float16: "c10::Half", D.bfloat16: "c10::BFloat16", D.float32: "float", D.float64: "double"}
_FLOAT_MAX = {D.float16: 65504.0, D.bfloat16: 3.3895313892515355e38, D.float32: 3.4028234663852886e38,
              D.float64: math.inf}


@triton.jit
def _scalar(bits, IS_FLOAT: tl.constexpr):
    """The float64 (IS_FLOAT) or int64 value whose 64-bit pattern is ``bits``."""
    v = bits.to(tl.int64)
    if IS_FLOAT:
        v = v.to(tl.float64, bitcast=True)
    return v


@triton.jit(do_not_specialize=["value"])
def _fill_kernel(out_ptr, value, n, IS_FLOAT: tl.constexpr, BLOCK: tl.constexpr):
    """out[i] = value, i < n."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    v = tl.broadcast_to(_scalar(value, IS_FLOAT).to(out_ptr.dtype.element_ty), [BLOCK])
    tl.store(out_ptr + i, v, mask=i < n)


@triton.jit(do_not_specialize=["start", "step"])
def _arange_kernel(out_ptr, start, step, n, IS_FLOAT: tl.constexpr, BLOCK: tl.constexpr):
    """out[i] = start + i * step, in float64 or int64."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    if IS_FLOAT:
        v = _scalar(start, True) + i.to(tl.float64) * _scalar(step, True)
    else:
        v = _scalar(start, False) + i * _scalar(step, False)
    tl.store(out_ptr + i, v.to(out_ptr.dtype.element_ty), mask=i < n)


@triton.jit(do_not_specialize=["start", "end", "step"])
def _linspace_kernel(out_ptr, start, end, step, n, BLOCK: tl.constexpr):
    """PyTorch's symmetric linspace: the first half counts up from ``start``, the second half down from ``end``,
    so both ends are exact."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    a = _scalar(start, True)
    b = _scalar(end, True)
    h = _scalar(step, True)
    v = tl.where(i < n // 2, a + i.to(tl.float64) * h, b - (n - 1 - i).to(tl.float64) * h)
    tl.store(out_ptr + i, v.to(out_ptr.dtype.element_ty), mask=i < n)


@triton.jit
def _eye_kernel(out_ptr, n_rows, n_cols, BLOCK: tl.constexpr):
    """out[r, c] = (r == c) over an n_rows x n_cols contiguous matrix."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    v = (i // n_cols) == (i % n_cols)
    tl.store(out_ptr + i, v.to(out_ptr.dtype.element_ty), mask=i < n_rows * n_cols)


def _bits(v, is_float):
    """A scalar as the signed 64-bit pattern the kernels read (float64 or int64)."""
    if is_float:
        return int(np.float64(v).view(np.int64))
    v = int(v) % (1 << 64)
    return v - (1 << 64) if v >= 1 << 63 else v


def _target(t):
    """Where a kernel writes ``t``: ``t`` itself, or a float32 stand-in for bf16 in the interpreter (which has no
    bf16 stores); ``_finish`` rounds the stand-in into ``t``."""
    if INTERPRET and t.dtype is D.bfloat16:
        return Tensor._empty(t._shape, D.float32, t.device)
    return t


def _finish(t, out):
    if out is not t:
        t._np[...] = out._np.astype(t.dtype.np)
    return t


def _grid(n):
    block = block_for(n)
    return (cdiv(n, block),), block


@_impl.provide
def scalar_value(value, dtype):
    """The Python number a ``dtype`` tensor holds for ``value`` (a fill value, index_add's alpha), converted as
    PyTorch does: a RuntimeError when it overflows the type, NaN and inf overflowing every integer type. Floats
    truncate toward zero (anything below max + 1 fits, as in PyTorch); negative ints down to -255 wrap into uint8;
    bool takes any value. Ints beyond 64 bits are an OverflowError, as in PyTorch's argument parsing."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and not -2 ** 63 <= value < 2 ** 64:
        raise OverflowError(f"value {value} does not fit in a 64-bit integer")
    if dtype is D.bool_:
        return bool(value)
    if isinstance(value, bool):
        value = int(value)
    if dtype.is_floating_point:
        v = float(value)
        if math.isfinite(v) and abs(v) > _FLOAT_MAX[dtype]:
            raise RuntimeError(f"value cannot be converted to type {_C_NAMES[dtype]} without overflow")
        return v
    info = np.iinfo(dtype.np)
    lo, hi = int(info.min), int(info.max)
    if isinstance(value, numbers.Integral):
        ok = lo <= value <= hi or (lo == 0 and -hi <= value < 0)
    else:
        value = float(value)
        ok = math.isfinite(value) and lo <= value < hi + 1
    if not ok:
        raise RuntimeError(f"value cannot be converted to type {_C_NAMES[dtype]} without overflow")
    return int(value) % (hi + 1) if lo == 0 else int(value)


def _np_value(value, dtype):
    if dtype is D.bool_:
        return bool(value)
    if dtype.is_floating_point:
        return float(value)
    return int(value)


@_impl.provide
def fill(t, value):
    """Write ``value`` into every element of the contiguous tensor ``t``."""
    n = t.numel()
    if n == 0:
        return t
    if t._storage.device.type == "cpu":
        t._np[...] = np.asarray(_np_value(value, t.dtype)).astype(t.dtype.np)
        return t
    out = _target(t)
    is_float = out.dtype.is_floating_point
    v = _np_value(value, t.dtype)
    grid, block = _grid(n)
    _fill_kernel[grid](ptr(out), _bits(v, is_float), n, IS_FLOAT=is_float, BLOCK=block)
    return _finish(t, out)


def arange_ref(start, step, n, dtype, is_float):
    """NumPy reference of ``_arange_kernel``."""
    i = np.arange(n, dtype=np.int64)
    if is_float:
        v = np.float64(start) + i.astype(np.float64) * np.float64(step)
    else:
        with np.errstate(over="ignore"):
            v = np.int64(start) + i * np.int64(step)
    return v.astype(dtype.np)


@_impl.provide
def arange_into(t, start, step, is_float):
    n = t.numel()
    if n == 0:
        return t
    if t._storage.device.type == "cpu":
        t._np[...] = arange_ref(start, step, n, t.dtype, is_float)
        return t
    out = _target(t)
    grid, block = _grid(n)
    _arange_kernel[grid](ptr(out), _bits(start, is_float), _bits(step, is_float), n, IS_FLOAT=is_float,
                         BLOCK=block)
    return _finish(t, out)


def linspace_ref(start, end, step, n, dtype):
    """NumPy reference of ``_linspace_kernel``."""
    i = np.arange(n, dtype=np.int64)
    v = np.where(i < n // 2, np.float64(start) + i * np.float64(step),
                 np.float64(end) - (n - 1 - i) * np.float64(step))
    return v.astype(dtype.np)


@_impl.provide
def linspace_into(t, start, end, step):
    n = t.numel()
    if n == 0:
        return t
    if t._storage.device.type == "cpu":
        t._np[...] = linspace_ref(start, end, step, n, t.dtype)
        return t
    out = _target(t)
    grid, block = _grid(n)
    _linspace_kernel[grid](ptr(out), _bits(start, True), _bits(end, True), _bits(step, True), n, BLOCK=block)
    return _finish(t, out)


@_impl.provide
def eye_into(t):
    n_rows, n_cols = t._shape
    if n_rows * n_cols == 0:
        return t
    if t._storage.device.type == "cpu":
        t._np[...] = np.eye(n_rows, n_cols, dtype=t.dtype.np)
        return t
    out = _target(t)
    grid, block = _grid(n_rows * n_cols)
    _eye_kernel[grid](ptr(out), n_rows, n_cols, BLOCK=block)
    return _finish(t, out)
