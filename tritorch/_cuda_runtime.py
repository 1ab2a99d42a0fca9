"""The real-GPU runtime behind ``tritorch.cuda``: device memory, host<->device copies, device queries.

Memory comes from the CUDA driver's stream-ordered pool through cuda.core (``Device.allocate``): an allocation costs
a few microseconds, a buffer goes back to the pool when its owner is garbage-collected, and the pool keeps freed
memory (its release threshold is raised) so no caching allocator of our own is needed. Allocations, frees, copies
and Triton's launches all go on one stream (the one Triton launches on, the legacy default stream without torch), so
a buffer freed by the garbage collector is reused only after the kernels that read it.

Nothing here imports cuda.core or cuda.bindings until a GPU is asked for: on a machine without a driver
``device_count()`` answers 0 and ``is_available()`` False instead of raising.
"""
import ctypes
import gc
import threading

__all__ = ["alloc", "memcpy_htod", "memcpy_dtoh", "memset_d8", "device_count", "device_name",
           "compute_capability", "synchronize", "memory_allocated", "max_memory_allocated",
           "reset_peak_memory_stats", "empty_cache", "stream_handle", "driver", "OutOfMemoryError"]


class OutOfMemoryError(RuntimeError):
    """The GPU has no room for an allocation, even after collecting garbage and trimming nothing more."""


_lock = threading.RLock()
_tls = threading.local()          # .dev: the cuda.core Device made current on this thread
_count = None                     # cached device count
_drv = None                       # cuda.bindings.driver (or the older cuda.cuda)
_SUCCESS = None
_stream = None                    # cuda.core Stream used for allocations (and their stream-ordered frees)
_stream_h = None                  # the same stream as a driver CUstream
_stream_int = 0

_allocated = 0
_peak = 0


# ---- imports and the driver ------------------------------------------------------------------------------------------
def _import_driver():
    """cuda.bindings' driver module (cuda-bindings >= 12.6), or the older ``cuda.cuda``."""
    global _drv, _SUCCESS
    if _drv is None:
        try:
            from cuda.bindings import driver as d
        except ImportError:
            from cuda import cuda as d
        _SUCCESS = d.CUresult.CUDA_SUCCESS
        _drv = d
    return _drv


def driver():
    """The cuda.bindings driver module (imported on first use)."""
    return _import_driver()


def _core():
    """The cuda.core namespace that holds ``Device``: ``cuda.core`` (>= 0.4) or ``cuda.core.experimental`` (0.3)."""
    try:
        import cuda.core as core
        if hasattr(core, "Device"):
            return core
    except ImportError:
        pass
    try:
        import cuda.core.experimental as core
    except ImportError:
        raise ImportError("tritorch: using a CUDA GPU needs cuda-core and cuda-bindings "
                          "(pip install 'tritorch[gpu]' or pip install cuda-core cuda-bindings)") from None
    return core


def _check(ret, what):
    """Unpack a cuda.bindings result tuple ``(CUresult, *values)``, raising a readable error on failure."""
    err = ret[0]
    if err != _SUCCESS:
        try:
            name = _drv.cuGetErrorName(err)[1].decode()
            desc = _drv.cuGetErrorString(err)[1].decode()
        except Exception:
            name, desc = str(err), ""
        if "OUT_OF_MEMORY" in name:
            raise OutOfMemoryError(f"CUDA out of memory in {what}: {desc}")
        raise RuntimeError(f"CUDA error in {what}: {name}: {desc}")
    if len(ret) == 1:
        return None
    return ret[1] if len(ret) == 2 else ret[1:]


# ---- device queries -------------------------------------------------------------------------------------------------
def _count_with_ctypes():
    """Device count straight from libcuda, for a machine that has a driver but not cuda-bindings."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    if lib.cuInit(0) != 0:
        return 0
    n = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(n)) != 0:
        return 0
    return n.value


def device_count():
    """Number of CUDA GPUs the driver sees; 0 (never an error) without a driver or a GPU."""
    global _count
    if _count is None:
        try:
            d = _import_driver()
        except ImportError:
            _count = _count_with_ctypes()
            return _count
        try:
            (err,) = d.cuInit(0)
            if err != _SUCCESS:
                _count = 0
            else:
                err, n = d.cuDeviceGetCount()
                _count = int(n) if err == _SUCCESS else 0
        except Exception:
            _count = 0
    return _count


def device_name(index=0):
    _check_index(index)
    return str(_core().Device(index).name)


def compute_capability(index=0):
    """``(major, minor)`` of GPU ``index``."""
    _check_index(index)
    cc = _core().Device(index).compute_capability
    return int(cc[0]), int(cc[1])


def _check_index(index):
    n = device_count()
    if n == 0:
        raise RuntimeError("tritorch: no CUDA GPU is available")
    if not 0 <= index < n:
        raise RuntimeError(f"CUDA error: invalid device ordinal {index} (this machine has {n} GPU(s))")


# ---- initialisation --------------------------------------------------------------------------------------------------
def _triton_stream(index):
    """The stream Triton launches on for device ``index`` (torch's current stream, or the default stream)."""
    try:
        import triton
        return int(triton.runtime.driver.active.get_current_stream(index))
    except Exception:
        return 0


def _core_stream(core, dev, handle):
    """A cuda.core Stream for the raw handle Triton uses (0 and 1 both mean the legacy default stream)."""
    if handle in (0, 1):
        s = getattr(core, "LEGACY_DEFAULT_STREAM", None)
        if s is None:
            try:
                from cuda.core.experimental._stream import LEGACY_DEFAULT_STREAM as s
            except ImportError:
                s = None
        return s if s is not None else dev.default_stream
    if handle == 2:
        s = getattr(core, "PER_THREAD_DEFAULT_STREAM", None)
        if s is not None:
            return s
    return core.Stream.from_handle(handle)


def _raise_release_threshold(dev_index):
    """Keep freed memory in the device's current pool instead of returning it to the OS at each synchronize."""
    d = _drv
    pool = _check(d.cuDeviceGetMemPool(d.CUdevice(dev_index)), "cuDeviceGetMemPool")
    attr = d.CUmemPool_attribute.CU_MEMPOOL_ATTR_RELEASE_THRESHOLD
    _check(d.cuMemPoolSetAttribute(pool, attr, d.cuuint64_t(2 ** 64 - 1)), "cuMemPoolSetAttribute")


def _init_thread(index=0):
    """Make GPU ``index``'s primary context (the one Triton uses) current on this thread; set up the process once."""
    global _stream, _stream_h, _stream_int
    _check_index(index)
    core = _core()
    _import_driver()
    dev = core.Device(index)
    dev.set_current()
    with _lock:
        if _stream is None:
            if not _pools_supported(index):
                raise RuntimeError(f"tritorch: GPU {index} ({dev.name}) does not support stream-ordered memory "
                                   "pools (cuMemAllocAsync), which tritorch's allocator needs")
            h = _triton_stream(index)
            _stream = _core_stream(core, dev, h)
            _stream_int = int(_stream.handle)
            _stream_h = _drv.CUstream(_stream_int)
            try:
                _raise_release_threshold(index)
            except Exception:                                   # a tuning knob: never fatal
                pass
    _tls.dev = dev
    return dev


def _pools_supported(index):
    attr = _drv.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED
    try:
        return bool(_check(_drv.cuDeviceGetAttribute(attr, _drv.CUdevice(index)), "cuDeviceGetAttribute"))
    except Exception:
        return True


def _device():
    try:
        return _tls.dev
    except AttributeError:
        return _init_thread()


def stream_handle():
    """The raw CUstream (an int) that allocations and copies are ordered on: the one Triton launches on."""
    _device()
    return _stream_int


# ---- memory ---------------------------------------------------------------------------------------------------------
class _DeviceMemory:
    """Owner of one pool allocation: the memory goes back to the pool (stream-ordered) when this is collected."""

    __slots__ = ("buffer", "ptr", "nbytes", "__weakref__")

    def __init__(self, buffer, nbytes):
        self.buffer = buffer
        self.ptr = int(buffer.handle)
        self.nbytes = nbytes

    def __del__(self):
        global _allocated
        try:
            _allocated -= self.nbytes
            if not hasattr(_tls, "dev"):        # the stream-ordered free needs the context current on this thread
                _init_thread()
        except Exception:                       # interpreter shutdown
            pass

    def __repr__(self):
        return f"<tritorch device memory: {self.nbytes} bytes at 0x{self.ptr:x}>"


def alloc(nbytes, index=0):
    """``nbytes`` of device memory on GPU ``index``: returns ``(owner, address)``; freed when ``owner`` is collected."""
    global _allocated, _peak
    if index != 0:
        raise RuntimeError(f"tritorch: only cuda:0 is supported for now (asked for cuda:{index})")
    dev = _device()
    size = nbytes if nbytes > 0 else 1          # a valid, unique address even for an empty tensor
    try:
        buf = dev.allocate(size, stream=_stream)
    except Exception as e:
        if "OUT_OF_MEMORY" not in str(e) and not isinstance(e, MemoryError):
            raise
        gc.collect()                            # tensors kept alive only by reference cycles go back first
        dev.sync()
        try:
            buf = dev.allocate(size, stream=_stream)
        except Exception:
            raise OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {_fmt(nbytes)}; tritorch holds {_fmt(_allocated)} "
                f"on GPU {index}") from None
    owner = _DeviceMemory(buf, nbytes)
    _allocated += nbytes
    if _allocated > _peak:
        _peak = _allocated
    return owner, owner.ptr


def _fmt(n):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1024


def memcpy_htod(dst_ptr, host_array):
    """Copy a C-contiguous host array to device address ``dst_ptr`` (ordered on the runtime's stream).

    From pageable memory (a NumPy array) the driver stages the data before it returns, so the array may be freed
    or changed as soon as this returns.
    """
    _device()
    n = host_array.nbytes
    if n:
        _check(_drv.cuMemcpyHtoDAsync(_drv.CUdeviceptr(dst_ptr), host_array.ctypes.data, n, _stream_h),
               "cuMemcpyHtoDAsync")


def memcpy_dtoh(host_array, src_ptr):
    """Copy device memory at ``src_ptr`` into a C-contiguous host array; returns when the data is there."""
    _device()
    n = host_array.nbytes
    if n:
        _check(_drv.cuMemcpyDtoHAsync(host_array.ctypes.data, _drv.CUdeviceptr(src_ptr), n, _stream_h),
               "cuMemcpyDtoHAsync")
        _check(_drv.cuStreamSynchronize(_stream_h), "cuStreamSynchronize")


def memset_d8(ptr, byte, nbytes):
    """Set ``nbytes`` bytes at device address ``ptr`` to ``byte`` (asynchronous, on the runtime's stream)."""
    _device()
    if nbytes:
        _check(_drv.cuMemsetD8Async(_drv.CUdeviceptr(ptr), byte & 0xFF, nbytes, _stream_h), "cuMemsetD8Async")


def synchronize():
    """Wait for all work on the current GPU (``cuCtxSynchronize``)."""
    _device()
    _check(_drv.cuCtxSynchronize(), "cuCtxSynchronize")


def memory_allocated():
    """Bytes held by live tritorch tensors (what was asked for, before the pool rounds it up)."""
    return _allocated


def max_memory_allocated():
    return _peak


def reset_peak_memory_stats():
    global _peak
    _peak = _allocated


def empty_cache():
    """Return the pool's unused memory to the driver (memory of live tensors stays)."""
    if _stream is None:
        return
    gc.collect()
    synchronize()
    pool = _check(_drv.cuDeviceGetMemPool(_drv.CUdevice(0)), "cuDeviceGetMemPool")
    _check(_drv.cuMemPoolTrimTo(pool, 0), "cuMemPoolTrimTo")
