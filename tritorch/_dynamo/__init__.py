"""``tritorch._dynamo``: the names of ``torch._dynamo`` that programs set or call: ``config`` (the compiler's
settings, ``tritorch/compiler/config.py``), ``reset()``, ``is_compiling()`` and ``disable``."""
import sys

from ..compiler import config, disable, is_compiling, reset

__all__ = ["config", "reset", "is_compiling", "disable"]

sys.modules[__name__ + ".config"] = config      # ``import tritorch._dynamo.config`` as PyTorch's
