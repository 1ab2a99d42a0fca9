"""``tritorch.backends.cudnn`` (``import tritorch.backends.cudnn as cudnn``): ``allow_tf32`` (TF32 for float32
convolutions on the GPU, default True as in PyTorch) drives the conv kernels; ``benchmark`` (False),
``deterministic`` (False) and ``enabled`` (True) are kept as set."""
import sys
import types
from contextlib import contextmanager

from .. import cuda as _cuda
from ..kernels import conv as _conv

__all__ = ["allow_tf32", "benchmark", "deterministic", "enabled", "is_available", "version", "flags"]

benchmark = False
deterministic = False
enabled = True


def is_available():
    """Whether the GPU convolutions can run (tritorch's are Triton kernels, not cuDNN)."""
    return _cuda.is_available()


def version():
    """No cuDNN library is used: None, as PyTorch answers without one."""
    return None


@contextmanager
def flags(enabled=False, benchmark=False, deterministic=False, allow_tf32=True):
    """Set the switches for the ``with`` block, then restore them."""
    mod = sys.modules[__name__]
    old = (mod.enabled, mod.benchmark, mod.deterministic, mod.allow_tf32)
    mod.enabled, mod.benchmark, mod.deterministic, mod.allow_tf32 = enabled, benchmark, deterministic, allow_tf32
    try:
        yield
    finally:
        mod.enabled, mod.benchmark, mod.deterministic, mod.allow_tf32 = old


class CudnnModule(types.ModuleType):
    """This module, with ``allow_tf32`` a property over the conv kernels' switch."""

    @property
    def allow_tf32(self):
        return _conv.ALLOW_TF32[0]

    @allow_tf32.setter
    def allow_tf32(self, value):
        _conv.ALLOW_TF32[0] = bool(value)


sys.modules[__name__].__class__ = CudnnModule
