"""Storage: one flat buffer of elements on one device, shared by every view of it.

On ``cpu`` and on interpreted ``cuda`` the buffer is a 1-D NumPy array in host memory; on a GPU it is device memory
from cuda.core's stream-ordered pool. ``version`` counts in-place writes (autograd's saved-tensor check).
"""
import os

import numpy as np

from ._device import INTERPRET

# Tests set TRITORCH_POISON=1: new buffers start as NaN (floats) or 0xA5 bytes, so an element a kernel forgets to
# write fails the comparison with the reference instead of passing by luck.
POISON = os.environ.get("TRITORCH_POISON", "0") not in ("", "0")

__all__ = ["Storage"]


class Storage:
    __slots__ = ("data", "device", "dtype", "size", "_ptr", "version", "__weakref__")

    def __init__(self, data, device, dtype, size, ptr=None):
        self.data = data          # numpy array (host) or the owner of device memory (GPU)
        self.device = device
        self.dtype = dtype
        self.size = size          # in elements
        self._ptr = ptr           # address of element 0; looked up on first use for host arrays
        self.version = 0
        if INTERPRET and device.type == "cuda":
            from . import cuda
            cuda._track_host(self, size * dtype.itemsize)

    @property
    def ptr(self):
        p = self._ptr
        if p is None:
            p = self._ptr = self.data.ctypes.data
        return p

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
            from . import cuda
            cuda._memcpy_htod(st.ptr, np.ascontiguousarray(flat))
        return st

    @classmethod
    def empty(cls, n, device, dtype):
        if device.type == "cpu" or INTERPRET:
            if device.type == "cuda":
                from . import cuda
                cuda._check_device(device)
            flat = np.empty(n, dtype=dtype.np)
            if POISON:
                if dtype.is_floating_point:
                    flat.fill(np.nan)
                else:
                    flat.view(np.uint8).fill(0xA5)
            return cls(flat, device, dtype, n)
        from . import cuda
        owner, ptr = cuda._alloc(n * dtype.itemsize, device)
        if POISON and n:
            cuda._memset_d8(ptr, 0xFF, n * dtype.itemsize)       # 0xFF.. is NaN in every float type
        return cls(owner, device, dtype, n, ptr)

    def host_array(self):
        """The elements as a 1-D host array: the buffer itself on the host, a download from a GPU."""
        if self.on_host:
            return self.data
        from . import cuda
        out = np.empty(self.size, dtype=self.dtype.np)
        if self.size:
            cuda._memcpy_dtoh(out, self.ptr)
        return out
