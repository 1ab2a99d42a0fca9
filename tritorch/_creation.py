"""Factories: ``tensor``, ``as_tensor``, ``from_numpy``, ``empty``, ``zeros``, ``ones``, ``full`` and ``*_like``."""
import numbers

import numpy as np

from . import _dtype as D
from ._device import device as _device, CPU
from ._tensor import Tensor

__all__ = ["tensor", "as_tensor", "from_numpy", "empty", "zeros", "ones", "full", "empty_like", "zeros_like",
           "ones_like", "full_like", "scalar_tensor"]


def _size(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    out = []
    for s in size:
        if isinstance(s, Tensor):
            s = int(s)
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
            raise TypeError(f"size must be a tuple of ints, but got an element of type {type(s).__name__}")
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(size)}")
        out.append(int(s))
    return tuple(out)


def _dev(device):
    if device is None:
        return CPU
    d = _device(device)
    if d.type == "cuda":
        from . import cuda
        cuda._check_device(d)
    return d


def _finish(t, requires_grad):
    if requires_grad:
        t.requires_grad_(True)
    return t


def _infer_dtype(data):
    """PyTorch's inference: bools -> bool, ints -> int64, floats -> the default float type."""
    if isinstance(data, np.ndarray):
        return D.from_numpy_dtype(data.dtype)
    if isinstance(data, np.generic):
        return D.from_numpy_dtype(data.dtype)
    if isinstance(data, (bool, np.bool_)):
        return D.bool_
    if isinstance(data, numbers.Integral):
        return D.int64
    if isinstance(data, numbers.Real):
        return D.get_default_dtype()
    if isinstance(data, Tensor):
        return data.dtype
    if isinstance(data, (list, tuple)):
        kinds = [_infer_dtype(x) for x in data]
        res = None
        for k in kinds:
            res = k if res is None else D.promote_types(res, k) if not (
                res.is_floating_point and k.is_floating_point) else (res if res._rank >= k._rank else k)
        return res or D.get_default_dtype()
    raise TypeError(f"Could not infer dtype of {type(data).__name__}")


def _to_numpy(data, dt):
    if isinstance(data, Tensor):
        return data.detach()._to_host_array().astype(dt.np)
    if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in data):
        data = [_to_numpy(x, dt) for x in data]
    try:
        return np.array(data, dtype=dt.np)
    except ValueError as e:
        raise ValueError(f"tensor(): could not build a tensor from the data ({e})") from None


def tensor(data, *, dtype=None, device=None, requires_grad=False, pin_memory=False):
    """A new tensor holding a copy of ``data`` (nested lists, scalars, NumPy arrays or tensors)."""
    dt = D.to_dtype(dtype) if dtype is not None else _infer_dtype(data)
    arr = _to_numpy(data, dt)
    return _finish(Tensor._wrap_numpy(arr, _dev(device), dt), requires_grad)


def as_tensor(data, dtype=None, device=None):
    """Like ``tensor`` but without a copy where it can: a tensor or a NumPy array of the right type is shared."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (device or dtype) else data
    if isinstance(data, np.ndarray) and (device is None or _device(device).type == "cpu"):
        dt = D.to_dtype(dtype) if dtype is not None else D.from_numpy_dtype(data.dtype)
        if data.dtype == dt.np:
            return from_numpy(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(arr):
    """A ``cpu`` tensor sharing memory with ``arr``."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(arr).__name__})")
    dt = D.from_numpy_dtype(arr.dtype)
    isz = arr.itemsize
    if any(s < 0 or s % isz for s in arr.strides):
        raise ValueError("from_numpy: arrays with negative or unaligned strides are not supported; "
                         "use np.ascontiguousarray first")
    base = arr
    if arr.size:
        # the smallest 1-D window of memory that holds every element, shared, not copied
        span = 1 + sum((n - 1) * s for n, s in zip(arr.shape, arr.strides)) // isz
        flat = np.lib.stride_tricks.as_strided(arr, shape=(span,), strides=(isz,))
    else:
        flat = np.empty(0, dtype=arr.dtype)
    from ._storage import Storage
    st = Storage(flat, CPU, dt, flat.size, flat.ctypes.data if flat.size else 0)
    st.data = flat
    t = Tensor._make(st, 0, tuple(arr.shape), tuple(s // isz for s in arr.strides), dt)
    t._np_cache = base
    return t


def empty(*size, dtype=None, device=None, requires_grad=False, **kw):
    dt = D.to_dtype(dtype) if dtype is not None else D.get_default_dtype()
    return _finish(Tensor._empty(_size(size), dt, _dev(device)), requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False, **kw):
    if dtype is None:
        dt = D.bool_ if isinstance(fill_value, bool) else D.int64 if isinstance(fill_value, numbers.Integral) \
            else D.get_default_dtype()
    else:
        dt = D.to_dtype(dtype)
    size = _size((size,) if isinstance(size, (tuple, list)) else (size,))
    t = Tensor._empty(size, dt, _dev(device))
    from .kernels.copy import fill_
    fill_(t, fill_value)
    return _finish(t, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False, **kw):
    return full(_size(size), 0, dtype=dtype or D.get_default_dtype(), device=device, requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False, **kw):
    return full(_size(size), 1, dtype=dtype or D.get_default_dtype(), device=device, requires_grad=requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad=False, **kw):
    return empty(input._shape, dtype=dtype or input.dtype, device=device or input.device,
                 requires_grad=requires_grad)


def zeros_like(input, *, dtype=None, device=None, requires_grad=False, **kw):
    return full(input._shape, 0, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad=False, **kw):
    return full(input._shape, 1, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False, **kw):
    return full(input._shape, fill_value, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


def scalar_tensor(value, dtype=None, device=None):
    dt = D.to_dtype(dtype) if dtype is not None else _infer_dtype(value)
    return Tensor._wrap_numpy(np.asarray(value, dtype=dt.np), _dev(device), dt)
