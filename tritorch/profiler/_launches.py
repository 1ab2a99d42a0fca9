"""The kernel-launch hook: Triton's launch method, wrapped only while a profile runs.

Every Triton kernel is launched as ``kernel[grid](*args)``; ``KernelInterface.__getitem__`` turns that into
``kernel.run(*args, grid=grid, warmup=False)``, where ``kernel`` is a ``JITFunction`` on a GPU and an
``InterpretedFunction`` in Triton's interpreter (Triton picks one when the kernel is decorated). Both classes
define ``run`` themselves (triton 3.x), so wrapping that one method of each sees every launch in both modes: the
op kernels of kernels/, tritorch's autotuned launches and the generated kernels of ``tritorch.compile`` alike.
``install`` keeps what it replaced (possibly another tool's wrapper) and the returned ``restore`` puts exactly that
back.
"""
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

from ..cuda import _runtime as cuda_runtime     # loaded on first use: importing tritorch touches no CUDA library
from ..kernels._launch import Ptr

__all__ = ["install", "kernel_name", "launch_bytes", "CudaTimer"]

LAUNCHERS = (JITFunction, InterpretedFunction)


def kernel_name(kernel):
    """The Python name of a Triton kernel (``_pointwise_kernel``, ``fused_kernel`` ...)."""
    fn = getattr(kernel, "fn", None)
    return getattr(fn, "__name__", None) or type(kernel).__name__


def launch_bytes(args, kwargs):
    """The summed extents (``Ptr.nbytes``) of a launch's pointer arguments, each view once (a kernel handed the
    same tensor twice, such as the pointwise kernel's unused second output, counts it once); raw addresses count 0."""
    total, seen = 0, set()
    for a in (*args, *kwargs.values()):
        if type(a) is Ptr:
            n = a.nbytes
            key = (a.addr, a.dtype, a.src)
            if n and key not in seen:
                seen.add(key)
                total += n
    return total


def _wrap(orig, on_launch):
    def run(self, *args, grid, warmup, **kwargs):
        if warmup:                      # a compile-only call launches nothing
            return orig(self, *args, grid=grid, warmup=warmup, **kwargs)
        return on_launch(self, grid, args, kwargs,
                         lambda a=args, k=kwargs: orig(self, *a, grid=grid, warmup=False, **k))
    run.__wrapped__ = orig
    return run


def install(on_launch):
    """Route every kernel launch through ``on_launch(kernel, grid, args, kwargs, go)`` (``go()`` launches and
    returns what Triton returns; ``go(args, kwargs)`` launches with those arguments instead). Returns
    ``restore()``, which undoes exactly this installation."""
    saved = [(cls, cls.__dict__.get("run")) for cls in LAUNCHERS]
    try:
        for cls, _ in saved:
            cls.run = _wrap(cls.run, on_launch)
    except BaseException:
        _restore(saved)
        raise
    return lambda: _restore(saved)


def _restore(saved):
    for cls, orig in saved:
        if orig is not None:
            cls.run = orig
        elif "run" in cls.__dict__:     # the class had inherited run: drop the wrapper set on it
            delattr(cls, "run")


class CudaTimer:
    """Device time of each launch, on a real GPU only: a pair of CUDA events recorded on tritorch's launch stream
    around it, read once when the profile stops (reading them earlier would synchronize every launch)."""

    def __init__(self):
        rt = cuda_runtime()
        self.cu = rt.driver()
        self.stream = self.cu.CUstream(rt.stream_handle())
        self.elapsed = getattr(self.cu, "cuEventElapsedTime", None) or self.cu.cuEventElapsedTime_v2
        self.pending = []               # (event record, start CUevent, end CUevent)

    def _ok(self, ret):
        ret = ret if isinstance(ret, tuple) else (ret,)
        if ret[0] != self.cu.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"tritorch.profiler: CUDA error {ret[0]!r}")
        return ret[1] if len(ret) > 1 else None

    def mark(self):
        """A CUDA event recorded now on the launch stream."""
        ev = self._ok(self.cu.cuEventCreate(self.cu.CUevent_flags.CU_EVENT_DEFAULT))
        self._ok(self.cu.cuEventRecord(ev, self.stream))
        return ev

    def add(self, record, start, end):
        self.pending.append((record, start, end))

    def finish(self):
        """Wait for the device, then set each launch's ``device_time_total`` (us) and free the events."""
        try:
            self._ok(self.cu.cuCtxSynchronize())
            for record, start, end in self.pending:
                record.device_time_total = float(self._ok(self.elapsed(start, end))) * 1e3
        finally:
            for _, start, end in self.pending:
                self.cu.cuEventDestroy(start)
                self.cu.cuEventDestroy(end)
            self.pending = []
