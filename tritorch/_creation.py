"""Factories: ``tensor``, ``as_tensor``, ``from_numpy``, ``from_dlpack``, ``empty``, ``zeros``, ``ones``, ``full``,
``arange``, ``linspace``, ``eye``, the random ``rand``, ``randn``, ``randint``, and their ``*_like`` forms
(``from_dlpack`` lives in ``_dlpack.py``).

The kernels live in ``kernels/creation.py`` (fill, arange, linspace, eye) and ``kernels/random.py`` (Philox); this
module calls them through ``_impl`` (the core does not import kernels/).
"""
import math
import numbers

import numpy as np

from . import _dtype as D
from ._device import device as _device, CPU
from ._tensor import Tensor, register
from . import _impl, cuda
from ._storage import Storage

__all__ = ["tensor", "as_tensor", "from_numpy", "empty", "zeros", "ones", "full", "empty_like", "zeros_like",
           "ones_like", "full_like", "scalar_tensor", "arange", "linspace", "eye", "rand", "randn", "randint",
           "rand_like", "randn_like", "randint_like"]


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
    elif isinstance(data, (list, tuple, numbers.Number)) and np.dtype(dt.np).kind in "iu":
        return _int_array(data, dt)
    try:
        with np.errstate(over="ignore"):
            return np.array(data, dtype=dt.np)
    except ValueError as e:
        raise ValueError(f"tensor(): could not build a tensor from the data ({e})") from None


def _int_array(data, dt):
    """Python numbers as an integer type, converted as PyTorch: a float truncated within [min, max + 1), an int
    within the type's range (an unsigned type also takes down to -max, wrapped); RuntimeError otherwise."""
    info = np.iinfo(dt.np)
    lo = -info.max if info.min == 0 else info.min
    try:
        a = np.array(data)
    except OverflowError:
        raise ValueError("Overflow when unpacking long long") from None
    except ValueError as e:
        raise ValueError(f"tensor(): could not build a tensor from the data ({e})") from None
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            ok = bool(np.all((a >= info.min) & (a < info.max + 1.0)))
    elif a.dtype.kind in "iu":
        ok = bool(np.all((a >= lo) & (a <= info.max)))
    else:
        ok = a.dtype.kind == "b"
    if ok:
        return a.astype(dt.np)
    flat = []                   # mixed Python types (or out of range): each element by its own type

    def walk(v):
        if isinstance(v, (list, tuple)):
            for e in v:
                walk(e)
        elif isinstance(v, (bool, np.bool_)):
            flat.append(int(v))
        elif isinstance(v, (int, np.integer)):
            if not -2 ** 63 <= v < 2 ** 63:
                raise ValueError("Overflow when unpacking long long")
            flat.append(int(v) if lo <= v <= info.max else None)
        elif isinstance(v, numbers.Real):
            v = float(v)
            flat.append(int(v) if info.min <= v < info.max + 1.0 else None)     # NaN and inf: None
        else:
            raise TypeError(f"tensor(): could not build a tensor from an element of type {type(v).__name__}")
    walk(data)
    if any(v is None for v in flat):
        raise RuntimeError(f"value cannot be converted to type {np.dtype(dt.np).name} without overflow")
    return np.array([v % (info.max + 1) if v < 0 and info.min == 0 else v for v in flat],
                    dtype=dt.np).reshape(a.shape)


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
    st = Storage(flat, CPU, dt, flat.size, flat.ctypes.data if flat.size else 0)
    st.data = flat
    t = Tensor._make(st, 0, tuple(arr.shape), tuple(s // isz for s in arr.strides), dt)
    t._np_cache = base
    return t


def empty(*size, dtype=None, device=None, requires_grad=False, **kw):
    dt = D.to_dtype(dtype) if dtype is not None else D.get_default_dtype()
    return _finish(Tensor._empty(_size(size), dt, _dev(device)), requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False, **kw):
    """A tensor of ``size`` filled with ``fill_value`` (dtype bool, int64 or the default float type from the value
    when not given); a value the dtype cannot hold is a RuntimeError, as in PyTorch (even for a size-0 tensor)."""
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    if dtype is None:
        dt = D.bool_ if isinstance(fill_value, (bool, np.bool_)) else D.int64 if isinstance(
            fill_value, numbers.Integral) else D.get_default_dtype()
    else:
        dt = D.to_dtype(dtype)
    fill_value = _impl.scalar_value(fill_value, dt)
    size = _size((size,) if isinstance(size, (tuple, list)) else (size,))
    t = Tensor._empty(size, dt, _dev(device))
    _impl.fill(t, fill_value)
    return _finish(t, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False, **kw):
    return full(_size(size or (kw.pop("size", ()),)), 0, dtype=dtype or D.get_default_dtype(), device=device,
                requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False, **kw):
    return full(_size(size or (kw.pop("size", ()),)), 1, dtype=dtype or D.get_default_dtype(), device=device,
                requires_grad=requires_grad)


def _like(input, dtype, device):
    if not isinstance(input, Tensor):
        raise TypeError(f"expected a Tensor as input, got {type(input).__name__}")
    return (D.to_dtype(dtype) if dtype is not None else input.dtype), (device or input.device)


def empty_like(input, *, dtype=None, device=None, requires_grad=False, **kw):
    dt, dev = _like(input, dtype, device)
    return empty(input._shape, dtype=dt, device=dev, requires_grad=requires_grad)


def zeros_like(input, *, dtype=None, device=None, requires_grad=False, **kw):
    dt, dev = _like(input, dtype, device)
    return full(input._shape, 0, dtype=dt, device=dev, requires_grad=requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad=False, **kw):
    dt, dev = _like(input, dtype, device)
    return full(input._shape, 1, dtype=dt, device=dev, requires_grad=requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False, **kw):
    dt, dev = _like(input, dtype, device)
    return full(input._shape, fill_value, dtype=dt, device=dev, requires_grad=requires_grad)


def scalar_tensor(value, dtype=None, device=None):
    """A 0-d tensor holding ``value``: the default float type unless ``dtype`` is given, as in PyTorch."""
    dt = D.to_dtype(dtype) if dtype is not None else D.get_default_dtype()
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and dt.np.kind in "iu":
        bits = 8 * np.dtype(dt.np).itemsize          # an integer wraps into the type, as PyTorch's cast
        value = int(value) % 2 ** bits
        value = value - 2 ** bits if dt.np.kind == "i" and value >= 2 ** (bits - 1) else value
    return Tensor._wrap_numpy(np.asarray(value, dtype=dt.np), _dev(device), dt)


# ---- ranges ----------------------------------------------------------------------------------------------------------

def _number(x, name):
    if isinstance(x, Tensor):
        x = x.item()
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    return x.item() if isinstance(x, np.generic) else x


@register("arange", method=False)
def arange(start, end=None, step=1, *, out=None, dtype=None, device=None, requires_grad=False, **kw):
    """Values ``start, start + step, ...`` up to (excluding) ``end``: int64 when every argument is an integer,
    the default float type otherwise (or ``dtype``). The length is ``ceil((end - start) / step)``."""
    if end is None:
        start, end = 0, start
    start, end, step = (_number(v, n) for v, n in ((start, "start"), (end, "end"), (step, "step")))
    float_args = any(isinstance(v, float) for v in (start, end, step))
    dt = D.to_dtype(dtype) if dtype is not None else (D.get_default_dtype() if float_args else D.int64)
    if dt is D.bool_:
        raise RuntimeError('"arange_cpu" not implemented for \'Bool\'')
    if float_args and not all(math.isfinite(v) for v in (start, end, step)):
        raise RuntimeError(f"unsupported range: {start} -> {end}")
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if not ((step > 0 and end >= start) or (step < 0 and end <= start)):
        raise RuntimeError("upper bound and larger bound inconsistent with step sign")
    if float_args:
        n = math.ceil((end - start) / step)
    else:
        n = -((start - end) // step)
    if n >= 2 ** 63:
        raise RuntimeError(f"invalid size, possible overflow? (arange from {start} to {end} by {step})")
    if float_args and not dt.is_floating_point:
        start, step = int(start), int(step)         # PyTorch: an integer type truncates start and step (not end)
    t = Tensor._empty((n,), dt, _dev(device))
    _impl.arange_into(t, start, step, dt.is_floating_point)
    return _finish(t, requires_grad)


@register("linspace", method=False)
def linspace(start, end, steps, *, out=None, dtype=None, device=None, requires_grad=False, **kw):
    """``steps`` values evenly spaced from ``start`` to ``end`` inclusive (computed in float64, then cast)."""
    start, end = _number(start, "start"), _number(end, "end")
    if isinstance(steps, Tensor):
        steps = int(steps)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"linspace(): argument 'steps' must be int, not {type(steps).__name__}")
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    dt = D.to_dtype(dtype) if dtype is not None else D.get_default_dtype()
    for v in (start, end)[:steps]:
        _impl.scalar_value(v, dt)              # PyTorch refuses an endpoint the dtype cannot hold (one it writes)
    t = Tensor._empty((int(steps),), dt, _dev(device))
    step = (float(end) - float(start)) / (steps - 1) if steps > 1 else 0.0
    _impl.linspace_into(t, start, end if steps > 1 else start, step)
    return _finish(t, requires_grad)


@register("eye", method=False)
def eye(n, m=None, *, out=None, dtype=None, device=None, requires_grad=False, **kw):
    """An ``n x m`` matrix (``m = n`` by default) with ones on the diagonal."""
    m = n if m is None else m
    for v, name in ((n, "n"), (m, "m")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"eye(): argument '{name}' must be int, not {type(v).__name__}")
        if v < 0:
            raise RuntimeError(f"{name} must be greater or equal to 0, got {v}")
    dt = D.to_dtype(dtype) if dtype is not None else D.get_default_dtype()
    t = Tensor._empty((int(n), int(m)), dt, _dev(device))
    _impl.eye_into(t)
    return _finish(t, requires_grad)


# ---- random ----------------------------------------------------------------------------------------------------------

def _float_dtype(dtype, name):
    dt = D.to_dtype(dtype) if dtype is not None else D.get_default_dtype()
    if not dt.is_floating_point:
        raise RuntimeError(f"{name}: expected a floating point dtype, but got {dt}")
    return dt


def _random_size(size, kw):
    if not size and "size" in kw:
        size = (kw.pop("size"),)
    return _size(size)


@register("rand", method=False)
def rand(*size, generator=None, dtype=None, device=None, requires_grad=False, **kw):
    """Uniform samples in [0, 1) from ``generator`` (the default one of the device if None)."""
    t = Tensor._empty(_random_size(size, kw), _float_dtype(dtype, "rand"), _dev(device))
    return _finish(_impl.fill_random(t, _impl.UNIFORM, 0.0, 1.0, generator), requires_grad)


@register("randn", method=False)
def randn(*size, generator=None, dtype=None, device=None, requires_grad=False, **kw):
    """Standard normal samples (Box-Muller on Philox uniforms)."""
    t = Tensor._empty(_random_size(size, kw), _float_dtype(dtype, "randn"), _dev(device))
    return _finish(_impl.fill_random(t, _impl.NORMAL, 0.0, 1.0, generator), requires_grad)


def _check_randint_range(low, high, dt):
    for v, name in ((low, "low"), (high, "high")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"randint(): argument '{name}' must be int, not {type(v).__name__}")
    _impl.check_int_range("randint", int(low), int(high), dt)


@register("randint", method=False)
def randint(*args, generator=None, dtype=None, device=None, requires_grad=False, **kw):
    """``randint(high, size)`` or ``randint(low, high, size)``: integers uniform in [low, high), int64 unless
    ``dtype`` says otherwise."""
    low, high, size = kw.pop("low", None), kw.pop("high", None), kw.pop("size", None)
    pos = list(args)
    size = pos.pop() if size is None and pos else size
    high = pos.pop() if high is None and pos else high
    low = (pos.pop() if pos else 0) if low is None else low
    if pos or size is None or high is None:
        raise TypeError("randint() expects (high, size) or (low, high, size)")
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"randint(): argument 'size' must be tuple of ints, not {type(size).__name__}")
    low, high = (int(v) if isinstance(v, Tensor) else v for v in (low, high))
    dt = D.to_dtype(dtype) if dtype is not None else D.int64
    _check_randint_range(low, high, dt)
    t = Tensor._empty(_size(tuple(size)), dt, _dev(device))
    return _finish(_impl.fill_random(t, _impl.RANDINT, int(low), int(high) - int(low), generator), requires_grad)


@register("rand_like", method=False)
def rand_like(input, *, generator=None, dtype=None, device=None, requires_grad=False, **kw):
    dt, dev = _like(input, dtype, device)
    return rand(input._shape, generator=generator, dtype=dt, device=dev, requires_grad=requires_grad)


@register("randn_like", method=False)
def randn_like(input, *, generator=None, dtype=None, device=None, requires_grad=False, **kw):
    dt, dev = _like(input, dtype, device)
    return randn(input._shape, generator=generator, dtype=dt, device=dev, requires_grad=requires_grad)


@register("randint_like", method=False)
def randint_like(input, low=0, high=None, *, generator=None, dtype=None, device=None, requires_grad=False, **kw):
    """``randint_like(input, high)`` or ``randint_like(input, low, high)``."""
    if high is None:
        low, high = 0, low
    dt, dev = _like(input, dtype, device)
    return randint(low, high, input._shape, generator=generator, dtype=dt, device=dev, requires_grad=requires_grad)



# ---- Tensor.new_*: factories on a tensor's dtype and device ----------------------------------------------------------
@register("new_empty", function=False)
def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
    return empty(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


@register("new_zeros", function=False)
def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
    return zeros(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


@register("new_ones", function=False)
def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
    return ones(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


@register("new_full", function=False)
def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
    return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


@register("new_tensor", function=False)
def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
    return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)
