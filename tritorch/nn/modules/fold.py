"""``tritorch.nn.modules.fold``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..fold import Fold, Unfold  # noqa: F401

__all__ = ["Fold", "Unfold"]
