"""Tritorch's own GPU timer (no torch, no triton.testing): CUDA events on the launch stream, the L2 cache flushed
before every timed run, the median of the repeats."""
import statistics

__all__ = ["cuda_time"]

_L2_FLUSH_BYTES = 256 << 20      # larger than any current L2 (H100: 50 MB)
_flush = [None]


def _check(res):
    err = res[0] if isinstance(res, tuple) else res
    if int(err) != 0:
        raise RuntimeError(f"CUDA driver error {err}")
    return res[1:] if isinstance(res, tuple) and len(res) > 2 else (res[1] if isinstance(res, tuple) else None)


def cuda_time(fn, reset=None, warmup=3, repeat=20, flush_l2=True):
    """Median milliseconds of ``fn()`` on the GPU; ``reset()`` runs (untimed) before each run."""
    from cuda.bindings import driver as cu
    from . import _cuda_runtime as rt
    stream = rt.stream_handle()
    if flush_l2 and _flush[0] is None:
        _flush[0] = rt.alloc(_L2_FLUSH_BYTES)
    for _ in range(warmup):
        if reset:
            reset()
        fn()
    start = _check(cu.cuEventCreate(cu.CUevent_flags.CU_EVENT_DEFAULT))
    end = _check(cu.cuEventCreate(cu.CUevent_flags.CU_EVENT_DEFAULT))
    times = []
    try:
        for _ in range(repeat):
            if reset:
                reset()
            if flush_l2:
                rt.memset_d8(_flush[0][1], 0, _L2_FLUSH_BYTES)
            _check(cu.cuEventRecord(start, stream))
            fn()
            _check(cu.cuEventRecord(end, stream))
            _check(cu.cuEventSynchronize(end))
            times.append(float(_check(cu.cuEventElapsedTime(start, end))))
    finally:
        cu.cuEventDestroy(start)
        cu.cuEventDestroy(end)
    return statistics.median(times)
