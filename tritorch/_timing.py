"""Tritorch's own timers (no torch, no triton.testing): CUDA events on the launch stream with the L2 cache flushed
before every timed run, and the host clock for the cpu device and Triton's interpreter.

Both timers have the same interface: ``time(fn, warmup, repeat, reset=None)`` returns the milliseconds of each of
``repeat`` runs of ``fn`` after ``warmup`` untimed ones; ``reset()`` runs, untimed, before every run (kernels that
write in place or accumulate start each run from the same state); ``host_us(fn)`` is the host time of one call in
a stream of calls (what a small, launch-bound op costs); ``sync()`` waits for the device.
"""
import statistics
import time

__all__ = ["EventTimer", "WallTimer", "cuda_time", "L2_FLUSH_BYTES"]

L2_FLUSH_BYTES = 256 << 20      # more than any current L2 (H100: 50 MB)


class EventTimer:
    """CUDA events (cuda.bindings) recorded on tritorch's launch stream (the one Triton launches on)."""

    _shared = None

    def __init__(self):
        from . import _cuda_runtime as rt
        self.rt = rt
        self.cu = rt.driver()
        self.stream = self.cu.CUstream(rt.stream_handle())
        self.flush_bytes = L2_FLUSH_BYTES
        self.flush_owner, self.flush_ptr = rt.alloc(self.flush_bytes)
        self.elapsed = getattr(self.cu, "cuEventElapsedTime", None) or self.cu.cuEventElapsedTime_v2

    @classmethod
    def shared(cls):
        """One timer (one flush buffer) per process."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def _ok(self, ret):
        ret = ret if isinstance(ret, tuple) else (ret,)
        if ret[0] != self.cu.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"CUDA error {ret[0]!r}")
        return ret[1] if len(ret) > 1 else None

    def sync(self):
        self._ok(self.cu.cuCtxSynchronize())

    def flush_l2(self):
        self.rt.memset_d8(self.flush_ptr, 0, self.flush_bytes)

    def time(self, fn, warmup=3, repeat=20, reset=None):
        """Milliseconds of each of ``repeat`` runs of ``fn``, each after ``reset()`` and an L2 flush."""
        for _ in range(warmup):
            if reset:
                reset()
            fn()
        self.sync()
        flag = self.cu.CUevent_flags.CU_EVENT_DEFAULT
        events = []
        try:
            for _ in range(repeat):
                events.append((self._ok(self.cu.cuEventCreate(flag)), self._ok(self.cu.cuEventCreate(flag))))
            for start, end in events:
                if reset:
                    reset()
                self.flush_l2()
                self._ok(self.cu.cuEventRecord(start, self.stream))
                fn()
                self._ok(self.cu.cuEventRecord(end, self.stream))
            self.sync()
            return [float(self._ok(self.elapsed(s, e))) for s, e in events]
        finally:
            for pair in events:
                for ev in pair:
                    self.cu.cuEventDestroy(ev)

    def host_us(self, fn, n=2000):
        """Microseconds per call of a stream of ``n`` calls (launch-bound: the host cost of one call)."""
        for _ in range(50):
            fn()
        self.sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        self.sync()
        return (time.perf_counter() - t0) / n * 1e6


class WallTimer:
    """The host clock: for the cpu device and for Triton's interpreter (which runs synchronously on the host)."""

    def sync(self):
        pass

    def time(self, fn, warmup=1, repeat=5, reset=None):
        for _ in range(warmup):
            if reset:
                reset()
            fn()
        out = []
        for _ in range(repeat):
            if reset:
                reset()
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        return out

    def host_us(self, fn, n=2000):
        for _ in range(50):
            fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n * 1e6


def cuda_time(fn, reset=None, warmup=3, repeat=20):
    """Median milliseconds of ``fn()`` on the GPU (CUDA events, L2 flushed, ``reset()`` untimed before each run)."""
    return statistics.median(EventTimer.shared().time(fn, warmup, repeat, reset))
