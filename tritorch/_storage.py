"""Storage: one flat buffer of elements on one device, shared by every view of it.

On ``cpu`` and on interpreted ``cuda`` the buffer is a 1-D NumPy array in host memory; on a GPU it is device memory
from cuda.core's stream-ordered pool. ``version`` counts in-place writes (autograd's saved-tensor check); a second
Storage object over the same buffer (``same_buffer``) carries a version counter of its own, as ``Tensor.data`` needs.
"""
import os

import numpy as np

from . import cuda
from ._device import INTERPRET

# Tests set TRITORCH_POISON=1: new buffers start as NaN (floats) or 0xA5 bytes, so an element a kernel forgets to
# write fails the comparison with the reference instead of passing by luck.
POISON = os.environ.get("TRITORCH_POISON", "0") not in ("", "0")

__all__ = ["Storage"]


_MAX_BYTES = 2 ** 63          # a storage's size in bytes must fit in int64, as in PyTorch


def _shape_list(n, shape):
    return [n] if shape is None else list(shape)


def _alloc_error(n, device, dtype, shape):
    """The error for an allocation of ``n`` elements that cannot be made: a negative size, a byte count past int64
    (PyTorch's messages), or more than memory holds (``OutOfMemoryError`` on ``cuda``, as PyTorch raises there)."""
    sizes = _shape_list(n, shape)
    neg = [s for s in sizes if s < 0]
    if neg:
        return RuntimeError(f"Trying to create tensor with negative dimension {neg[0]}: {sizes}")
    nbytes = n * dtype.itemsize
    if nbytes >= _MAX_BYTES:
        return RuntimeError(f"Storage size calculation overflowed with sizes={sizes}")
    what = f"{nbytes} bytes ({nbytes / 2 ** 30:.2f} GiB) for a tensor of shape {sizes} and dtype {dtype} on {device}"
    if device.type == "cuda":
        return cuda.OutOfMemoryError(f"CUDA out of memory (interpreted: in host memory): you tried to allocate {what}")
    return RuntimeError(f"DefaultCPUAllocator: not enough memory: you tried to allocate {what}")


class Storage:
    __slots__ = ("data", "device", "dtype", "size", "_ptr", "version", "_root", "__weakref__")

    def __init__(self, data, device, dtype, size, ptr=None):
        self.data = data          # numpy array (host) or the owner of device memory (GPU)
        self.device = device
        self.dtype = dtype
        self.size = size          # in elements
        self._ptr = ptr           # address of element 0; looked up on first use for host arrays
        self.version = 0
        if INTERPRET and device.type == "cuda":
            cuda._track_host(self, size * dtype.itemsize)

    @property
    def ptr(self):
        p = self._ptr
        if p is None:
            p = self._ptr = self.data.ctypes.data
        return p

    def same_buffer(self):
        """This buffer under a new version counter (at 0): in-place writes through it are not seen by the saved-tensor
        checks of tensors on ``self``. Aliasing checks compare ``storage.data``, which both share."""
        st = object.__new__(Storage)
        st.data, st.device, st.dtype, st.size, st._ptr, st.version = (self.data, self.device, self.dtype, self.size,
                                                                      self._ptr, 0)
        st._root = getattr(self, "_root", self)     # keeps the allocation (and its memory accounting) alive
        return st

    @property
    def on_host(self):
        return self.device.type == "cpu" or INTERPRET

    @classmethod
    def from_numpy(cls, flat, device, dtype):
        """Wrap a 1-D host array (no copy) for ``cpu`` or interpreted ``cuda``; upload it on a GPU."""
        if device.type == "cpu" or INTERPRET:
            return cls(flat, device, dtype, flat.size)
        st = cls.empty(flat.size, device, dtype)
        if flat.size:
            cuda._memcpy_htod(st.ptr, np.ascontiguousarray(flat))
        return st

    @classmethod
    def empty(cls, n, device, dtype, shape=None):
        """``n`` uninitialised elements; ``shape`` (default ``(n,)``) is what an allocation error reports."""
        if device.type == "cpu" or INTERPRET:
            if device.type == "cuda":
                cuda._check_device(device)
            try:
                flat = np.empty(n, dtype=dtype.np)
            except (MemoryError, ValueError):
                raise _alloc_error(n, device, dtype, shape) from None
            if POISON:
                if dtype.is_floating_point:
                    flat.fill(np.nan)
                else:
                    flat.view(np.uint8).fill(0xA5)
            return cls(flat, device, dtype, n)
        if not 0 <= n * dtype.itemsize < _MAX_BYTES:
            raise _alloc_error(n, device, dtype, shape)
        try:
            owner, ptr = cuda._alloc(n * dtype.itemsize, device)
        except cuda.OutOfMemoryError as e:
            raise cuda.OutOfMemoryError(f"{e} (for a tensor of shape {_shape_list(n, shape)} and dtype {dtype})") \
                from None
        if POISON and n:
            cuda._memset_d8(ptr, 0xFF, n * dtype.itemsize)       # 0xFF.. is NaN in every float type
        return cls(owner, device, dtype, n, ptr)

    def host_array(self):
        """The elements as a 1-D host array: the buffer itself on the host, a download from a GPU."""
        if self.on_host:
            return self.data
        out = np.empty(self.size, dtype=self.dtype.np)
        if self.size:
            cuda._memcpy_dtoh(out, self.ptr)
        return out
