"""Settings of ``tritorch.compile``, by PyTorch's ``torch._dynamo.config`` names (also reachable as
``tritorch._dynamo.config``):

- ``recompile_limit`` (8; ``cache_size_limit`` is its older name): how many signatures a compiled function keeps.
  With ``dynamic=False`` a new signature past the limit runs eagerly, with one warning, as PyTorch's does; with
  ``dynamic=None`` or ``True`` it replaces the least recently used one, which keeps the memory of a function called
  with ever new shapes (sequence lengths) bounded: a capture costs tens of milliseconds of host time (the GPT block's
  training step: 36 ms against 9 for a replay, cpu), and the generated kernels' sources depend on no size, so a new
  shape generates none.
"""
import sys
import types

__all__ = ["recompile_limit", "cache_size_limit"]

recompile_limit = 8


class _Config(types.ModuleType):
    """This module's class: ``cache_size_limit`` reads and writes ``recompile_limit``."""

    @property
    def cache_size_limit(self):
        return self.recompile_limit

    @cache_size_limit.setter
    def cache_size_limit(self, value):
        self.recompile_limit = value


sys.modules[__name__].__class__ = _Config
