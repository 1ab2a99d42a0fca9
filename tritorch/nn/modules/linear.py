"""``tritorch.nn.modules.linear``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..linear import Identity, Linear, Bilinear  # noqa: F401

__all__ = ["Identity", "Linear", "Bilinear"]
