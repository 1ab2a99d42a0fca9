"""PyTorch's legacy constructors: ``tritorch.Tensor(*sizes)`` / ``Tensor(data)`` / ``Tensor()`` and the typed
``FloatTensor``, ``LongTensor``, ... (sizes or data), with ``isinstance(x, tritorch.FloatTensor)`` answered as PyTorch
does (a ``cpu`` tensor of that dtype); ``tritorch.cuda.FloatTensor`` and its kind the same on the ``cuda`` device
(set on ``tritorch.cuda`` from here: the core imports cuda.py, so cuda.py cannot import this module)."""
import numpy as np

from . import _creation as C
from . import _dtype as D
from . import cuda as _cuda
from ._device import device as _device
from ._tensor import Tensor, Size

__all__ = ["FloatTensor", "DoubleTensor", "HalfTensor", "BFloat16Tensor", "ByteTensor", "CharTensor", "ShortTensor",
           "IntTensor", "LongTensor", "BoolTensor"]


def _is_size(args):
    return all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in args)


def _legacy_new(dtype, args, device, name):
    """``new(*sizes)``, ``new(data)``, ``new(tensor)`` (an alias) or ``new()`` (empty), as PyTorch's legacy
    constructors; ``dtype`` None: the default dtype (``Tensor(...)``), where a tensor argument keeps its own."""
    dev = _device(device) if device is not None else _device("cpu")
    if len(args) == 1 and isinstance(args[0], Tensor):
        t = args[0]
        if dtype is not None and t.dtype is not dtype:
            raise TypeError(f"expected {name}'s dtype {dtype} (got {t.dtype})")
        if t.device != dev and device is not None:
            raise RuntimeError(f"{name}(): expected a tensor on {dev} (got {t.device})")
        return t.detach()
    dt = dtype if dtype is not None else D.get_default_dtype()
    if len(args) == 1 and isinstance(args[0], Size):
        args = tuple(args[0])
    if not args:
        return C.empty(0, dtype=dt, device=dev)
    if _is_size(args):
        return C.empty(*args, dtype=dt, device=dev)
    if len(args) == 1 and not isinstance(args[0], (int, float, bool)):
        return C.tensor(args[0], dtype=dt, device=dev)
    bad = next(a for a in args if not (isinstance(a, (int, np.integer)) and not isinstance(a, bool)))
    raise TypeError(f"new(): argument 'size' must be tuple of ints, but found element of type "
                    f"{type(bad).__name__} at pos {args.index(bad)}")


def _tensor_new(cls, *args, device=None):
    return _legacy_new(None, args, device, "Tensor")


Tensor.__new__ = _tensor_new


class _LegacyTensorType(type):
    """The metaclass of ``FloatTensor`` and its kind: calling one builds a tensor of its dtype on its device type
    (``cpu``, or ``cuda`` for ``tritorch.cuda.FloatTensor``...); ``isinstance`` asks whether a tensor is a tensor of
    that dtype on that device type."""

    def __call__(cls, *args, device=None):
        if device is None and cls.device_type == "cuda":
            device = "cuda"
        return _legacy_new(cls.dtype, args, device, cls.__name__)

    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj.dtype is cls.dtype and obj.device.type == cls.device_type

    def __repr__(cls):
        return f"<class '{cls.__module__}.{cls.__name__}'>"


def _legacy_type(name, dtype, device_type="cpu"):
    return _LegacyTensorType(name, (), {"dtype": dtype, "device_type": device_type, "is_cuda": device_type == "cuda",
                                        "is_sparse": False,
                                        "__module__": "tritorch" if device_type == "cpu" else "tritorch.cuda",
                                        "__doc__": f"Legacy constructor of {dtype} {device_type} tensors: sizes or "
                                                   "data."})


FloatTensor = _legacy_type("FloatTensor", D.float32)
DoubleTensor = _legacy_type("DoubleTensor", D.float64)
HalfTensor = _legacy_type("HalfTensor", D.float16)
BFloat16Tensor = _legacy_type("BFloat16Tensor", D.bfloat16)
ByteTensor = _legacy_type("ByteTensor", D.uint8)
CharTensor = _legacy_type("CharTensor", D.int8)
ShortTensor = _legacy_type("ShortTensor", D.int16)
IntTensor = _legacy_type("IntTensor", D.int32)
LongTensor = _legacy_type("LongTensor", D.int64)
BoolTensor = _legacy_type("BoolTensor", D.bool_)

for _name in __all__:
    setattr(_cuda, _name, _legacy_type(_name, globals()[_name].dtype, "cuda"))
