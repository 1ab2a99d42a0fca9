"""``tritorch._dynamo``: the names of ``torch._dynamo`` that programs set or call, ``config`` (the compiler's
settings, ``tritorch/compiler/config.py``) and ``reset()``."""
import sys

from ..compiler import config, reset

__all__ = ["config", "reset"]

sys.modules[__name__ + ".config"] = config      # ``import tritorch._dynamo.config`` as PyTorch's
