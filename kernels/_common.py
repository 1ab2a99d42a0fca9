"""The op layer's shared helpers: allocation (``empty``), NumPy results as tensors (``wrap``, ``host_result``), the
references' compute type (``np_ct``), quiet NumPy (``quiet``), broadcast gradients (``sum_to``), and the checks every
op family makes (``check_same_device``, ``check_out``, ``check_inplace``, ``mark_written``, ``host_check``).

A leaf of kernels/: it imports only the core, so every op module can import it and none of it imports back.
"""
import math

import numpy as np

from tritorch import _dtype as D, _impl
from tritorch._device import CPU
from tritorch._tensor import Tensor
from tritorch.autograd.grad_mode import STATE


def copy_host(dst, src):
    """Interpreter only: dst[...] = src through NumPy (host memory), rounding to dst's type (bf16)."""
    dst._np[...] = src._np.astype(dst.dtype.np)
    return dst


CHECK_OBSERVERS = []
"""Who runs ``host_check``'s checks instead of it (the innermost one): a launch recording of ``tritorch.compile``'s
reduce-overhead mode, which replays each check after the launch it follows."""


def host_check(t, check):
    """``check(t.tolist())``: an op's input validated from a few values its kernel computed (the one small read to
    the host that such a check needs), ``check`` raising on bad input. A check, not a branch: nothing the op does
    next may depend on the values."""
    if CHECK_OBSERVERS:
        return CHECK_OBSERVERS[-1](t, check)
    return check(t.tolist())


def check_same_device(name, *tensors):
    devs = {t._storage.device for t in tensors if isinstance(t, Tensor)}
    if len(devs) > 1:
        raise RuntimeError(f"{name}: expected all tensors to be on the same device, but found at least two devices, "
                           + " and ".join(sorted(str(d) for d in devs)) + "!")


def empty(shape, dtype, device):
    return Tensor._empty(shape, dtype, device)


def empty_ordered(shape, dtype, device, stride):
    """An uninitialised dense tensor of ``shape`` whose dims lie in memory in the order of ``stride`` (a tensor of
    that shape's strides: the largest outermost; ties keep the dim order), as PyTorch's ``empty_like`` preserves a
    layout. A gradient laid out as its input (a head-split, transposed view) then reads back through the input's
    views without a copy. Contiguous where ``stride`` is."""
    order = sorted(range(len(shape)), key=lambda k: (-stride[k], k))
    dense, step = [0] * len(shape), 1
    for k in reversed(order):
        dense[k] = step
        step *= max(shape[k], 1)
    t = empty((math.prod(shape),), dtype, device)
    return t._view(tuple(shape), tuple(dense), 0)


def wrap(arr, dtype, device):
    """The result of a NumPy reference as a tensor of ``dtype`` on the ``cpu`` device (copied when ``arr`` is a
    read-only or strided view, e.g. from ``np.broadcast_to``, so that the tensor owns writable memory)."""
    arr = np.asarray(arr)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, dtype=dtype.np, order="C")
    return Tensor._wrap_numpy(arr, device, dtype)


def np_ct(dtype):
    """The NumPy type the references compute in (mirrors ``ACC``)."""
    if dtype is D.float64:
        return np.float64
    if dtype.is_floating_point:
        return np.float32
    if dtype is D.bool_:
        return np.int8
    return dtype.np


# ---- the host fast path: what a small op on ``cpu`` costs beyond NumPy's own work ------------------------------------
try:
    # NumPy >= 2 keeps its error state in a context variable: setting it directly costs a fraction of np.errstate()
    from numpy._core._ufunc_config import _extobj_contextvar as _ERRSTATE
    with np.errstate(all="ignore"):
        _QUIET = _ERRSTATE.get()
except (ImportError, AttributeError):
    _ERRSTATE = None


def quiet(fn, *args):
    """``fn(*args)`` with NumPy's floating-point warnings off (overflow, division by zero: PyTorch warns about
    none of them)."""
    if _ERRSTATE is None:
        with np.errstate(all="ignore"):
            return fn(*args)
    token = _ERRSTATE.set(_QUIET)
    try:
        return fn(*args)
    finally:
        _ERRSTATE.reset(token)


_adopt = Tensor._host_result


def host_result(res, dtype, xa, ya=None, device=CPU):
    """The tensor of a NumPy reference's result on ``cpu``, cast to ``dtype``; copied only when it is not a fresh
    C-contiguous array of its own (a strided result, a view, an input ``xa``/``ya`` handed back)."""
    if type(res) is not np.ndarray:
        res = np.asarray(res)
    npd = dtype.np
    if res.dtype is not npd and res.dtype != npd:
        res = res.astype(npd, order="C")
    elif res.base is not None or res is xa or res is ya or not res.flags.c_contiguous:
        res = np.array(res, order="C")
    return _adopt(res, dtype, device)


@_impl.provide
def sum_to(g, shape):
    """Reduce a broadcast gradient back to ``shape``: leading dims dropped, size-1 dims kept (one reduction kernel,
    reached through the Tensor methods that kernels/reduce.py and kernels/views.py register)."""
    shape = tuple(shape)
    if g._shape == shape:
        return g
    lead = g.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g._shape[lead + i] != 1)
    if dims and dims[-1] < lead:
        return g.sum(dims)          # leading dims only: the sum has ``shape`` and is no view (``.grad`` adopts it)
    out = g.sum(dims, keepdim=True) if dims else g
    return out if out._shape == shape else out.reshape(shape)


def check_out(out, result_dtype, shape):
    """PyTorch's checks on the tensor an in-place op writes: castable result type, the shape, no self-overlap."""
    if not D.can_cast(result_dtype, out.dtype):
        raise RuntimeError(f"result type {D.scalar_name(result_dtype)} can't be cast to the desired output type "
                           f"{D.scalar_name(out.dtype)}")
    if tuple(shape) != out._shape:
        raise RuntimeError(f"output with shape {list(out._shape)} doesn't match the broadcast shape {list(shape)}")
    if any(s == 0 and n > 1 for n, s in zip(out._shape, out._stride)):
        raise RuntimeError("unsupported operation: more than one element of the written-to tensor refers to a single "
                           "memory location. Please clone() the tensor before performing the operation.")


def check_inplace(t, ctx=None):
    """PyTorch's rule: an in-place op on a leaf that requires grad is refused while grad mode is on. Called before
    anything is written; inside a Function's forward (pass its ``ctx``) grad mode is off, so ask whether it records."""
    if not (STATE.enabled if ctx is None else any(ctx.needs_input_grad)):
        return
    if t.requires_grad and t.grad_fn is None:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
    b = t._base
    if b is not None and b.requires_grad and b.grad_fn is None:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place operation.")


def mark_written(ctx, t):
    """After an in-place write: bump the version counter (saved-tensor checks) and mark ``t`` dirty."""
    t._storage.version += 1
    t._np_cache = None if not t._storage.on_host else t._np_cache
    ctx.mark_dirty(t)


def read_as(input, dtype):
    """(input, dtype) for an op whose ``dtype=`` asks for the result of ``input.to(dtype)``: dtype None where it is
    the input's own; float32 of a half input kept as it is (the op's kernels read the half input and compute in
    float32, as they do for it anyway, so no float32 copy is made: autocast's float32 policy passes it); any other
    dtype casts the input, and None."""
    if dtype is None:
        return input, None
    dtype = D.to_dtype(dtype)
    if dtype is input.dtype:
        return input, None
    if input.dtype in (D.float16, D.bfloat16) and dtype is D.float32:
        return input, dtype
    return input.to(dtype), None
