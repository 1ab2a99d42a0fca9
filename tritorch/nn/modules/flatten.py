"""``tritorch.nn.modules.flatten``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..linear import Flatten, Unflatten  # noqa: F401

__all__ = ["Flatten", "Unflatten"]
