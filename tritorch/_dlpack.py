"""DLPack: zero-copy exchange of tensors with NumPy, CuPy, JAX, PyTorch and anything else that speaks it.

Export: ``Tensor.__dlpack__`` returns a PyCapsule holding a ``DLManagedTensor`` (``DLManagedTensorVersioned`` when
the consumer passes ``max_version >= (1, 0)``) built with ctypes; the capsule keeps the tensor alive until the
consumer calls the deleter (or the capsule dies unconsumed). ``cpu`` tensors are exported as ``kDLCPU``, ``cuda``
tensors on a GPU as ``kDLCUDA``. In interpreter mode (TRITORCH_INTERPRET=1) a ``cuda`` tensor lives in host memory
and is exported as ``kDLCPU``, so ``np.from_dlpack`` accepts it.

Import: ``tritorch.from_dlpack(obj)`` takes an object with ``__dlpack__`` or a capsule, and wraps the memory without
a copy: a ``cpu`` tensor for ``kDLCPU`` / ``kDLCUDAHost`` memory, a ``cuda`` tensor for ``kDLCUDA`` memory (on a
GPU). The producer's deleter runs when the last tensor viewing the memory is gone. Two cases copy: negative strides
(tritorch views never have them) and read-only memory (versioned ``READ_ONLY`` flag), since tritorch tensors are
writable. bfloat16 travels as ``kDLBfloat`` (code 4, 16 bits), bool as ``kDLBool``.
"""
import ctypes
from ctypes import POINTER, CFUNCTYPE, Structure, c_char_p, c_int, c_int32, c_int64, c_uint8, c_uint16, c_uint32, \
    c_uint64, c_void_p

import numpy as np

from . import _dtype as D
from ._device import device as _device, CPU, INTERPRET
from ._storage import Storage
from ._tensor import Tensor, register, contiguous_strides
from ._creation import from_numpy
from . import cuda

__all__ = ["from_dlpack", "to_dlpack"]

kDLCPU, kDLCUDA, kDLCUDAHost = 1, 2, 3
kDLInt, kDLUInt, kDLFloat, kDLBfloat, kDLBool = 0, 1, 2, 4, 6
READ_ONLY = 1


class DLDevice(Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(Structure):
    _fields_ = [("data", c_void_p), ("device", DLDevice), ("ndim", c_int32), ("dtype", DLDataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


_Deleter = CFUNCTYPE(None, c_void_p)


class DLManagedTensor(Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", _Deleter)]


class DLPackVersion(Structure):
    _fields_ = [("major", c_uint32), ("minor", c_uint32)]


class DLManagedTensorVersioned(Structure):
    _fields_ = [("version", DLPackVersion), ("manager_ctx", c_void_p), ("deleter", _Deleter), ("flags", c_uint64),
                ("dl_tensor", DLTensor)]


# capsule names: module constants, since a capsule keeps a pointer to its name
_NAME = b"dltensor"
_USED = b"used_dltensor"
_NAME_V = b"dltensor_versioned"
_USED_V = b"used_dltensor_versioned"

_api = ctypes.pythonapi
_CapsuleDestructor = CFUNCTYPE(None, c_void_p)
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [c_void_p, c_char_p, _CapsuleDestructor]
_api.PyCapsule_IsValid.restype = c_int
_api.PyCapsule_IsValid.argtypes = [c_void_p, c_char_p]
_api.PyCapsule_GetPointer.restype = c_void_p
_api.PyCapsule_GetPointer.argtypes = [c_void_p, c_char_p]
_api.PyCapsule_GetName.restype = c_char_p
_api.PyCapsule_GetName.argtypes = [ctypes.py_object]
_api.PyCapsule_SetName.restype = c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, c_char_p]


# ====================================================================================================================
# Export
# ====================================================================================================================

# address of an exported DLManagedTensor[Versioned] -> what it keeps alive (the struct, its shape and strides, the
# tensor); the deleter drops the entry
_LIVE = {}


@_Deleter
def _deleter(addr):
    _LIVE.pop(addr, None)


@_CapsuleDestructor
def _capsule_destructor(capsule):
    """An unconsumed capsule (still named dltensor) owns its tensor: release it."""
    for name in (_NAME, _NAME_V):
        if _api.PyCapsule_IsValid(capsule, name):
            _LIVE.pop(_api.PyCapsule_GetPointer(capsule, name), None)


_CODES = {D.bool_: (kDLBool, 8), D.uint8: (kDLUInt, 8), D.int8: (kDLInt, 8), D.int16: (kDLInt, 16),
          D.int32: (kDLInt, 32), D.int64: (kDLInt, 64), D.float16: (kDLFloat, 16), D.bfloat16: (kDLBfloat, 16),
          D.float32: (kDLFloat, 32), D.float64: (kDLFloat, 64)}
_FROM_CODE = {v: k for k, v in _CODES.items()}


def _dl_device(t):
    dev = t._storage.device
    if dev.type == "cpu" or INTERPRET:
        return kDLCPU, 0
    return kDLCUDA, dev.index or 0


def to_dlpack(t, versioned=False):
    """A capsule holding ``t`` (see the module docstring)."""
    dtype_code, bits = _CODES[t.dtype]
    ndim = t.ndim
    shape = (c_int64 * ndim)(*t._shape)
    strides = (c_int64 * ndim)(*t._stride)
    m = DLManagedTensorVersioned() if versioned else DLManagedTensor()
    if versioned:
        m.version = DLPackVersion(1, 0)
        m.flags = 0
    dl = m.dl_tensor
    dl.data = t.data_ptr() or None
    dl.device = DLDevice(*_dl_device(t))
    dl.ndim = ndim
    dl.dtype = DLDataType(dtype_code, bits, 1)
    dl.shape = ctypes.cast(shape, POINTER(c_int64))
    dl.strides = ctypes.cast(strides, POINTER(c_int64))
    dl.byte_offset = 0
    m.manager_ctx = None
    m.deleter = _deleter
    addr = ctypes.addressof(m)
    _LIVE[addr] = (m, shape, strides, t)
    return _api.PyCapsule_New(addr, _NAME_V if versioned else _NAME, _capsule_destructor)


@register("__dlpack__", function=False)
def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
    """Export through DLPack. On a GPU, a ``stream`` other than -1 makes the export wait for tritorch's pending
    work (a device synchronize), so the consumer's stream sees finished data."""
    if self.requires_grad:
        raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")
    t = self.detach()
    if dl_device is not None and tuple(dl_device) != _dl_device(t):
        if copy is False or tuple(dl_device)[0] != kDLCPU:
            raise BufferError(f"__dlpack__: cannot export a {t.device} tensor to DLPack device {tuple(dl_device)}")
        t = t.cpu()
        copy = False
    if copy:
        t = t.clone()
    if _dl_device(t)[0] == kDLCUDA:
        if stream is not None and stream != -1:
            cuda.synchronize()
    elif stream is not None and stream != -1:
        raise BufferError(f"__dlpack__: stream must be None for a {_dl_device(t)} (kDLCPU) tensor, got {stream}")
    versioned = max_version is not None and tuple(max_version)[0] >= 1
    return to_dlpack(t, versioned)


@register("__dlpack_device__", function=False)
def __dlpack_device__(self):
    """(device type, index): (kDLCPU=1, 0) for cpu and interpreted cuda, (kDLCUDA=2, index) on a GPU."""
    return _dl_device(self)


# ====================================================================================================================
# Import
# ====================================================================================================================

class _Owner:
    """Holds an imported DLManagedTensor and calls its producer's deleter when the last view is gone."""

    __slots__ = ("addr", "deleter")

    def __init__(self, addr, deleter):
        self.addr = addr
        self.deleter = deleter

    def __del__(self):
        if self.deleter:
            self.deleter(self.addr)


class _HostBuffer:
    """A host memory range as a 1-D NumPy array that keeps its owner alive (``np.asarray`` makes this the base)."""

    def __init__(self, addr, nbytes, owner):
        self.owner = owner
        self.__array_interface__ = {"data": (addr, False), "shape": (nbytes,), "typestr": "|u1", "version": 3}


def _is_capsule(obj):
    return type(obj).__name__ == "PyCapsule"


@register("from_dlpack", method=False)
def from_dlpack(ext_tensor, *, device=None, copy=None):
    """A tensor sharing memory with ``ext_tensor`` (an object with ``__dlpack__``, or a DLPack capsule)."""
    if isinstance(ext_tensor, Tensor):
        return ext_tensor.clone() if copy else ext_tensor
    if isinstance(ext_tensor, np.ndarray) and ext_tensor.dtype == D.bfloat16.np:
        return from_numpy(ext_tensor)              # NumPy cannot export ml_dtypes' bfloat16 through DLPack
    if _is_capsule(ext_tensor):
        capsule = ext_tensor
    elif hasattr(ext_tensor, "__dlpack__"):
        dev_type = ext_tensor.__dlpack_device__()[0] if hasattr(ext_tensor, "__dlpack_device__") else kDLCPU
        stream = 1 if dev_type == kDLCUDA else None     # 1: the legacy default stream, on which tritorch launches
        try:
            capsule = ext_tensor.__dlpack__(stream=stream, max_version=(1, 0))
        except TypeError:
            capsule = ext_tensor.__dlpack__(stream=stream)
    else:
        raise TypeError(f"from_dlpack: expected an object with __dlpack__ or a DLPack capsule, got "
                        f"{type(ext_tensor).__name__}")
    t = _import_capsule(capsule)
    if device is not None and _device(device) != t.device:
        return t.to(device)
    return t.clone() if copy else t


def _import_capsule(capsule):
    name = _api.PyCapsule_GetName(capsule)
    if name not in (_NAME, _NAME_V):
        raise ValueError(f"from_dlpack: the capsule is named {name!r}: it was already consumed (a DLPack capsule "
                         "can be imported once)")
    versioned = name == _NAME_V
    addr = _api.PyCapsule_GetPointer(id(capsule), name)      # id(): the object's address in CPython
    m = (DLManagedTensorVersioned if versioned else DLManagedTensor).from_address(addr)
    if versioned and m.version.major != 1:
        raise BufferError(f"from_dlpack: unsupported DLPack version {m.version.major}.{m.version.minor}")
    dl = m.dl_tensor
    code = (dl.dtype.code, dl.dtype.bits)
    if code not in _FROM_CODE or dl.dtype.lanes != 1:
        raise BufferError(f"from_dlpack: unsupported DLPack dtype (code {dl.dtype.code}, {dl.dtype.bits} bits, "
                          f"{dl.dtype.lanes} lanes)")
    dt = _FROM_CODE[code]
    dev_type, dev_id = dl.device.device_type, dl.device.device_id
    if dev_type in (kDLCPU, kDLCUDAHost):
        dev = CPU
    elif dev_type == kDLCUDA and not INTERPRET:
        dev = _device("cuda", dev_id)
        cuda._check_device(dev)
    else:
        raise BufferError(f"from_dlpack: unsupported DLPack device type {dev_type}"
                          + (" (interpreter mode: cuda tensors live in host memory)" if dev_type == kDLCUDA else ""))
    ndim = dl.ndim
    shape = tuple(dl.shape[i] for i in range(ndim))
    strides = tuple(dl.strides[i] for i in range(ndim)) if dl.strides else None
    if strides is None:
        strides = contiguous_strides(shape)
    # the consumer owns the struct from here on: rename the capsule so that its destructor leaves it alone
    _api.PyCapsule_SetName(capsule, _USED_V if versioned else _USED)
    owner = _Owner(addr, m.deleter)
    read_only = versioned and bool(m.flags & READ_ONLY)

    isz = dt.itemsize
    numel = int(np.prod(shape, dtype=np.int64))
    lo = sum((n - 1) * s for n, s in zip(shape, strides) if s < 0) if numel else 0
    hi = sum((n - 1) * s for n, s in zip(shape, strides) if s > 0) if numel else 0
    span = hi - lo + 1 if numel else 0
    base = (dl.data or 0) + dl.byte_offset + lo * isz
    if dev.type == "cpu":
        if span:
            flat = np.asarray(_HostBuffer(base, span * isz, owner)).view(dt.np)
        else:
            flat = np.empty(0, dtype=dt.np)
        st = Storage(flat, dev, dt, flat.size, flat.ctypes.data if span else 0)
    else:
        st = Storage(owner, dev, dt, span, base)
    t = Tensor._make(st, -lo, shape, strides, dt)
    return t.clone() if lo < 0 or read_only else t
