"""tritorch.cuda without a GPU (clear errors, no crash) and the GPU runtime's plumbing against a fake CUDA driver.

The fake stands in for cuda.core and cuda.bindings with host memory, so that allocation, copies, the memory
counters, stream ordering and error paths of ``tritorch._cuda_runtime`` run on any machine. Each case runs in a
subprocess because the device mode (interpreter or not) is fixed when tritorch is imported.
"""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAKE_CUDA = r'''
import ctypes, enum, sys, types

class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_OUT_OF_MEMORY = 2

OK = (CUresult.CUDA_SUCCESS,)
LOG = []                 # (call, args) of every driver / cuda.core call that matters
LIVE = {}                # address -> ctypes buffer of live "device" allocations
STATE = {"oom": 0}       # number of coming allocations that fail with out-of-memory

class CUstream:
    def __init__(self, v=0):
        self.v = int(v)
    def __int__(self):
        return self.v

class CUdeviceptr(CUstream):
    pass

class CUdevice(CUstream):
    pass

class cuuint64_t:
    def __init__(self, v):
        self.v = int(v)
    def __int__(self):
        return self.v

class CUmemPool_attribute(enum.IntEnum):
    CU_MEMPOOL_ATTR_RELEASE_THRESHOLD = 4

class CUdevice_attribute(enum.IntEnum):
    CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED = 115

d = types.ModuleType("cuda.bindings.driver")
d.CUresult, d.CUstream, d.cuuint64_t, d.CUdeviceptr, d.CUdevice = CUresult, CUstream, cuuint64_t, CUdeviceptr, CUdevice
d.CUmemPool_attribute, d.CUdevice_attribute = CUmemPool_attribute, CUdevice_attribute
d.cuInit = lambda flags: OK
d.cuDeviceGetCount = lambda: (CUresult.CUDA_SUCCESS, 1)
d.cuGetErrorName = lambda e: (CUresult.CUDA_SUCCESS, CUresult(e).name.encode())
d.cuGetErrorString = lambda e: (CUresult.CUDA_SUCCESS, b"fake error")
d.cuDeviceGetAttribute = lambda attr, dev: (CUresult.CUDA_SUCCESS, 1)
d.cuDeviceGetMemPool = lambda dev: (CUresult.CUDA_SUCCESS, "pool%d" % int(dev))

def _log(name, *args):
    LOG.append((name, args))
    return OK

d.cuMemPoolSetAttribute = lambda pool, attr, value: _log("setattr", pool, int(attr), int(value))
d.cuMemPoolTrimTo = lambda pool, n: _log("trim", pool, n)
d.cuCtxSynchronize = lambda: _log("ctxsync")
d.cuStreamSynchronize = lambda s: _log("streamsync", int(s))

def cuMemcpyHtoDAsync(dst, src, n, s):
    ctypes.memmove(int(dst), int(src), n)
    return _log("htod", int(s))

def cuMemcpyDtoHAsync(dst, src, n, s):
    ctypes.memmove(int(dst), int(src), n)
    return _log("dtoh", int(s))

def cuMemsetD8Async(ptr, byte, n, s):
    ctypes.memset(int(ptr), byte, n)
    return _log("memset", byte, n, int(s))

d.cuMemcpyHtoDAsync, d.cuMemcpyDtoHAsync, d.cuMemsetD8Async = cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemsetD8Async

class CUevent_flags(enum.IntEnum):
    CU_EVENT_DEFAULT = 0

class CUevent:
    live = 0
    def __init__(self):
        self.t = None
        CUevent.live += 1

def cuEventCreate(flags):
    return CUresult.CUDA_SUCCESS, CUevent()

def cuEventRecord(ev, s):
    import time
    ev.t = time.perf_counter()
    return _log("record", int(s))

def cuEventElapsedTime(a, b):
    return CUresult.CUDA_SUCCESS, (b.t - a.t) * 1e3

def cuEventDestroy(ev):
    CUevent.live -= 1
    return OK

d.CUevent_flags, d.CUevent = CUevent_flags, CUevent
d.cuEventCreate, d.cuEventRecord, d.cuEventElapsedTime, d.cuEventDestroy = (cuEventCreate, cuEventRecord,
                                                                           cuEventElapsedTime, cuEventDestroy)
d.cuDriverGetVersion = lambda: (CUresult.CUDA_SUCCESS, 13000)

class Stream:
    def __init__(self, h):
        self.handle = CUstream(h)
    @staticmethod
    def from_handle(h):
        return Stream(h)

LEGACY = Stream(1)

class Buffer:
    def __init__(self, size, stream):
        self._mem = ctypes.create_string_buffer(size)
        self.handle = ctypes.addressof(self._mem)
        self.size = size
        self.stream = stream
        LIVE[self.handle] = self._mem
    def __del__(self):               # cuda.core frees on garbage collection, stream-ordered on the alloc stream
        LIVE.pop(self.handle, None)
        LOG.append(("free", (self.size, int(self.stream.handle))))

class Device:
    _inst = {}
    def __new__(cls, i=0):
        if i not in cls._inst:
            o = object.__new__(cls)
            o.device_id = i
            cls._inst[i] = o
        return cls._inst[i]
    name = "Fake GPU"
    compute_capability = (9, 0)
    default_stream = LEGACY
    def set_current(self):
        LOG.append(("set_current", (self.device_id,)))
    def allocate(self, size, *, stream):
        if STATE["oom"]:
            STATE["oom"] -= 1
            raise RuntimeError("CUDA_ERROR_OUT_OF_MEMORY: out of memory")
        LOG.append(("alloc", (size, int(stream.handle))))
        return Buffer(size, stream)
    def sync(self):
        LOG.append(("devsync", ()))

core = types.ModuleType("cuda.core")
core.Device, core.Stream, core.LEGACY_DEFAULT_STREAM = Device, Stream, LEGACY
cuda = types.ModuleType("cuda"); cuda.__path__ = []
bindings = types.ModuleType("cuda.bindings"); bindings.__path__ = []
cuda.core, cuda.bindings, bindings.driver = core, bindings, d
sys.modules.update({"cuda": cuda, "cuda.core": core, "cuda.bindings": bindings, "cuda.bindings.driver": d})
'''


def run(code, fake=False, env=None):
    """Run ``code`` in a fresh interpreter with tritorch importable and no interpreter mode."""
    e = {k: v for k, v in os.environ.items() if k not in ("TRITORCH_INTERPRET", "TRITON_INTERPRET",
                                                           "TRITORCH_TEST_GPU")}
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    src = (FAKE_CUDA if fake else "") + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, env=e, cwd=ROOT,
                          timeout=120)


def ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


# ---- no GPU: clear errors --------------------------------------------------------------------------------------------
def test_no_gpu_is_reported_not_raised():
    out = ok(run("""
        import sys
        import tritorch
        assert "tritorch._cuda_runtime" not in sys.modules      # importing tritorch touches no CUDA library
        import tritorch._cuda_runtime as rt
        if rt.device_count():
            print("HAS_GPU")
            raise SystemExit
        assert tritorch.cuda.is_available() is False
        assert tritorch.cuda.device_count() == 0
        assert tritorch.cuda.memory_allocated() == 0
        assert tritorch.cuda.max_memory_allocated() == 0
        tritorch.cuda.synchronize()
        tritorch.cuda.empty_cache()
        assert tritorch.zeros(2).tolist() == [0.0, 0.0]       # cpu keeps working
        for make in (lambda: tritorch.zeros(2, device="cuda"), lambda: tritorch.tensor([1.0], device="cuda"),
                     lambda: tritorch.ones(3).to("cuda"), lambda: tritorch.empty(0, device="cuda")):
            try:
                make()
            except RuntimeError as e:
                assert "no CUDA GPU is available" in str(e), e
                assert "TRITORCH_INTERPRET=1" in str(e), e
            else:
                raise AssertionError("no error")
        print("DONE")
    """))
    if "HAS_GPU" in out:
        pytest.skip("this machine has a GPU")
    assert "DONE" in out


def test_no_gpu_runtime_functions():
    out = ok(run("""
        import tritorch._cuda_runtime as rt
        if rt.device_count():
            print("HAS_GPU")
            raise SystemExit
        for f in (lambda: rt.alloc(16), lambda: rt.device_name(0), lambda: rt.compute_capability(0)):
            try:
                f()
            except (RuntimeError, ImportError) as e:
                assert "no CUDA GPU" in str(e) or "cuda-core" in str(e), e
            else:
                raise AssertionError("no error")
        assert rt.memory_allocated() == 0 and rt.max_memory_allocated() == 0
        rt.empty_cache()                                      # nothing set up: a no-op
        print("DONE")
    """))
    if "HAS_GPU" in out:
        pytest.skip("this machine has a GPU")
    assert "DONE" in out


# ---- the runtime against a fake driver -------------------------------------------------------------------------------
def test_fake_gpu_alloc_copy_and_counters():
    ok(run("""
        import gc
        import numpy as np
        import tritorch
        from tritorch import _cuda_runtime as rt
        assert tritorch.cuda.is_available() and tritorch.cuda.device_count() == 1
        assert tritorch.cuda.get_device_name() == "Fake GPU"
        assert rt.compute_capability(0) == (9, 0) and tritorch.cuda.get_device_capability() == (9, 0)
        assert tritorch.cuda.OutOfMemoryError is rt.OutOfMemoryError

        x = tritorch.tensor([1.5, -2.0, 3.25], device="cuda")
        assert x.device == tritorch.device("cuda:0")
        assert x.tolist() == [1.5, -2.0, 3.25]
        assert tritorch.cuda.memory_allocated() == 12
        # one stream for everything: allocations (and so their frees), copies, memsets
        streams = {a[-1] for n, a in LOG if n in ("alloc", "htod", "dtoh", "memset", "free")}
        assert streams == {1}, LOG
        assert ("set_current", (0,)) in LOG
        assert ("setattr", ("pool0", 4, 2 ** 64 - 1)) in LOG            # freed memory stays in the pool
        assert rt.stream_handle() == 1

        y = tritorch.tensor(np.arange(6, dtype=np.int64).reshape(2, 3), device="cuda")
        assert y.cpu().tolist() == [[0, 1, 2], [3, 4, 5]]
        assert tritorch.cuda.memory_allocated() == 12 + 48
        b = tritorch.tensor([0.5, 1.0], dtype=tritorch.bfloat16, device="cuda")
        assert b.tolist() == [0.5, 1.0]
        assert tritorch.cuda.max_memory_allocated() == 64
        live = len(LIVE)
        del x, y, b
        gc.collect()
        assert tritorch.cuda.memory_allocated() == 0
        assert len(LIVE) == live - 3                                     # the buffers went back to the pool
        assert tritorch.cuda.max_memory_allocated() == 64
        tritorch.cuda.reset_peak_memory_stats()
        assert tritorch.cuda.max_memory_allocated() == 0

        e = tritorch.empty(4, device="cuda")                             # TRITORCH_POISON=1: NaN until written
        assert np.isnan(np.array(e.tolist())).all()
        z = tritorch.empty(0, device="cuda")
        assert z.shape == (0,) and z.tolist() == [] and z._storage.ptr != 0
        assert ("alloc", (1, 1)) in LOG                                  # an empty tensor still gets an address

        LOG.clear()
        tritorch.cuda.synchronize()
        tritorch.cuda.empty_cache()
        assert ("ctxsync", ()) in LOG and ("trim", ("pool0", 0)) in LOG
        print("DONE")
    """, fake=True, env={"TRITORCH_POISON": "1"}))


def test_fake_gpu_out_of_memory():
    ok(run("""
        from tritorch import _cuda_runtime as rt
        STATE["oom"] = 1                       # the first try fails, the retry after collecting garbage succeeds
        owner, ptr = rt.alloc(100)
        assert ptr == owner.ptr and rt.memory_allocated() == 100
        assert ("devsync", ()) in LOG
        STATE["oom"] = 2
        try:
            rt.alloc(3 * 2 ** 30)
        except rt.OutOfMemoryError as e:
            assert "CUDA out of memory. Tried to allocate 3.00 GiB" in str(e), e
        else:
            raise AssertionError("no error")
        assert rt.memory_allocated() == 100
        try:
            rt.alloc(8, 1)
        except RuntimeError as e:
            assert "only cuda:0" in str(e)
        else:
            raise AssertionError("no error")
        print("DONE")
    """, fake=True))


def test_fake_gpu_invalid_device_index():
    ok(run("""
        import tritorch
        try:
            tritorch.empty(2, device="cuda:3")
        except RuntimeError as e:
            assert "invalid device ordinal" in str(e), e
        else:
            raise AssertionError("no error")
        print("DONE")
    """, fake=True))


def test_fake_gpu_driver_errors_are_readable():
    ok(run("""
        from tritorch import _cuda_runtime as rt
        import numpy as np
        rt.alloc(8)
        d = rt.driver()
        d.cuMemcpyDtoHAsync = lambda *a: (d.CUresult.CUDA_ERROR_OUT_OF_MEMORY,)
        try:
            rt.memcpy_dtoh(np.empty(2, np.float32), 1234)
        except rt.OutOfMemoryError as e:
            assert "cuMemcpyDtoHAsync" in str(e), e
        else:
            raise AssertionError("no error")
        print("DONE")
    """, fake=True))


# ---- the real GPU (TRITORCH_TEST_GPU=1 on a GPU machine) -------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_round_trip_and_counters():
    import gc

    import numpy as np

    import tritorch
    from tritorch import _cuda_runtime as rt
    assert tritorch.cuda.is_available() and not tritorch.cuda.is_interpreted()
    assert rt.device_count() >= 1 and rt.device_name(0) and rt.compute_capability(0)[0] >= 7
    gc.collect()
    base = tritorch.cuda.memory_allocated()
    arr = np.arange(1000, dtype=np.float32) - 500.5
    x = tritorch.tensor(arr, device="cuda")
    assert tritorch.cuda.memory_allocated() == base + 4000
    np.testing.assert_array_equal(x.cpu().numpy(), arr)
    b = tritorch.tensor(arr[:7], dtype=tritorch.bfloat16, device="cuda")
    np.testing.assert_array_equal(np.asarray(b.tolist(), np.float32), arr[:7].astype(b.dtype.np).astype(np.float32))
    owner, ptr = rt.alloc(64)
    rt.memset_d8(ptr, 0x3F, 64)
    host = np.zeros(64, np.uint8)
    rt.memcpy_dtoh(host, ptr)
    assert (host == 0x3F).all()
    del x, b, owner
    gc.collect()
    assert tritorch.cuda.memory_allocated() == base
    tritorch.cuda.synchronize()


@pytest.mark.gpu
def test_gpu_triton_writes_into_pool_memory():
    import numpy as np

    import tritorch
    x = tritorch.tensor(np.arange(300, dtype=np.float32), device="cuda")
    np.testing.assert_array_equal((x + 1).cpu().numpy(), np.arange(300, dtype=np.float32) + 1)


@pytest.mark.gpu
def test_gpu_stream_is_tritons_and_pool_keeps_memory():
    import gc
    import time

    import triton

    import tritorch
    from tritorch import _cuda_runtime as rt
    rt.alloc(1)
    assert rt.stream_handle() in (0, 1) or rt.stream_handle() == triton.runtime.driver.active.get_current_stream(0)
    d = rt.driver()
    pool = d.cuDeviceGetMemPool(d.CUdevice(0))[1]
    attr = d.CUmemPool_attribute
    assert int(d.cuMemPoolGetAttribute(pool, attr.CU_MEMPOOL_ATTR_RELEASE_THRESHOLD)[1]) == 2 ** 64 - 1
    for _ in range(3):                                   # freed buffers are reused: the pool does not grow
        bufs = [rt.alloc(64 << 20) for _ in range(8)]
        del bufs
        gc.collect()
    tritorch.cuda.synchronize()
    reserved = int(d.cuMemPoolGetAttribute(pool, attr.CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)[1])
    assert reserved >= 8 * (64 << 20)                    # kept in the pool after the sync (release threshold)
    n, t0 = 2000, time.perf_counter()
    for _ in range(n):
        rt.alloc(4096)
    per_alloc_us = (time.perf_counter() - t0) / n * 1e6
    assert per_alloc_us < 50, per_alloc_us
    tritorch.cuda.empty_cache()


@pytest.mark.gpu
def test_gpu_out_of_memory_is_clear():
    from tritorch import _cuda_runtime as rt
    with pytest.raises(RuntimeError) as err:               # 1 TiB: more than any GPU has
        rt.alloc(1 << 40)
    assert "CUDA out of memory. Tried to allocate 1024.00 GiB" in str(err.value) or "CUDA" in str(err.value)
    owner, ptr = rt.alloc(16)                            # still usable afterwards
    assert ptr


def test_fake_gpu_free_on_another_thread_makes_the_context_current():
    ok(run("""
        import gc, threading
        from tritorch import _cuda_runtime as rt
        owner, ptr = rt.alloc(32)
        box = [owner]
        del owner
        LOG.clear()
        t = threading.Thread(target=box.clear)           # the last reference dies on a thread that never used CUDA
        t.start()
        t.join()
        gc.collect()
        names = [n for n, _ in LOG]
        assert names.index("set_current") < names.index("free"), LOG
        assert rt.memory_allocated() == 0
        print("DONE")
    """, fake=True))
