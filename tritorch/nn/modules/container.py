"""``tritorch.nn.modules.container``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..containers import Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict  # noqa: F401

__all__ = ["Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"]
