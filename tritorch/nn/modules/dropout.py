"""``tritorch.nn.modules.dropout``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..dropout import Dropout, Dropout2d  # noqa: F401

__all__ = ["Dropout", "Dropout2d"]
