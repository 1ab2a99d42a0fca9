"""``tritorch.cuda``: the GPU runtime (device memory from cuda.core's stream-ordered pool) and, under
``TRITORCH_INTERPRET=1``, the host-memory stand-in on which Triton's interpreter runs the same kernels.

The legacy constructors ``tritorch.cuda.FloatTensor``, ``LongTensor``, ... are set on this module by
tritorch/_legacy.py (this module is imported by the core, so it cannot import the constructors' module)."""
import weakref

from ._device import INTERPRET

__all__ = ["is_available", "device_count", "synchronize", "memory_allocated", "max_memory_allocated",
           "reset_peak_memory_stats", "empty_cache", "is_interpreted", "get_device_name", "get_device_capability",
           "current_device", "OutOfMemoryError"]

_NO_CUDA = ("tritorch: no CUDA GPU is available (and TRITORCH_INTERPRET=1 is not set, which would run the Triton "
            "kernels in Triton's interpreter on the CPU)")


def is_interpreted():
    """True when 'cuda' tensors live in host memory and kernels run in Triton's interpreter."""
    return INTERPRET


def _runtime():
    from . import _cuda_runtime
    return _cuda_runtime


def is_available():
    if INTERPRET:
        return True
    try:
        return _runtime().device_count() > 0
    except Exception:
        return False


def device_count():
    if INTERPRET:
        return 1
    try:
        return _runtime().device_count()
    except Exception:
        return 0


def get_device_name(device=None):
    if INTERPRET:
        return "Triton interpreter (host memory)"
    return _runtime().device_name(_index(device))


def get_device_capability(device=None):
    """``(major, minor)`` compute capability of the GPU (``(0, 0)`` for the interpreter)."""
    if INTERPRET:
        return (0, 0)
    return _runtime().compute_capability(_index(device))


def current_device():
    return 0


def __getattr__(name):
    if name == "OutOfMemoryError":            # defined with the runtime, which loads no CUDA library on import
        return _runtime().OutOfMemoryError
    raise AttributeError(f"module 'tritorch.cuda' has no attribute '{name}'")


def _index(device):
    if device is None:
        return 0
    if isinstance(device, int):
        return device
    from ._device import device as _d
    return _d(device).index or 0


def _check_device(dev):
    """Raise a clear error if ``dev`` (a cuda device) cannot be used."""
    if INTERPRET:
        if dev.index not in (None, 0):
            raise RuntimeError(f"tritorch: device {dev} is not available in interpreter mode (only cuda:0)")
        return
    n = device_count()
    if n == 0:
        raise RuntimeError(_NO_CUDA)
    if (dev.index or 0) >= n:
        raise RuntimeError(f"CUDA error: invalid device ordinal: {dev} (this machine has {n} GPU(s))")


def synchronize(device=None):
    if not INTERPRET and is_available():
        _runtime().synchronize()


# Interpreter mode: the host buffers of 'cuda' storages are counted as the device pool counts its blocks, so memory
# statistics (and the peak-memory benchmarks) mean the same thing there.
_host = {"allocated": 0, "peak": 0}


def _track_host(storage, nbytes):
    _host["allocated"] += nbytes
    _host["peak"] = max(_host["peak"], _host["allocated"])
    weakref.finalize(storage, _untrack_host, nbytes)


def _untrack_host(nbytes):
    _host["allocated"] -= nbytes


def memory_allocated(device=None):
    """Bytes held by tensors on the device now."""
    if INTERPRET:
        return _host["allocated"]
    return _runtime().memory_allocated() if is_available() else 0


def max_memory_allocated(device=None):
    """The most bytes held at once since the start or the last :func:`reset_peak_memory_stats`."""
    if INTERPRET:
        return _host["peak"]
    return _runtime().max_memory_allocated() if is_available() else 0


def reset_peak_memory_stats(device=None):
    if INTERPRET:
        _host["peak"] = _host["allocated"]
    elif is_available():
        _runtime().reset_peak_memory_stats()


def empty_cache():
    if not INTERPRET and is_available():
        _runtime().empty_cache()


def _alloc(nbytes, dev):
    _check_device(dev)
    return _runtime().alloc(nbytes, dev.index or 0)


def _memcpy_htod(dst_ptr, host_array):
    _runtime().memcpy_htod(dst_ptr, host_array)


def _memcpy_dtoh(host_array, src_ptr):
    _runtime().memcpy_dtoh(host_array, src_ptr)


def _memset_d8(ptr, byte, nbytes):
    _runtime().memset_d8(ptr, byte, nbytes)
