"""``tritorch.nn.modules.module``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..module import Module  # noqa: F401

__all__ = ["Module"]
