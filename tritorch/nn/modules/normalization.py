"""``tritorch.nn.modules.normalization``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..normalization import LayerNorm, GroupNorm  # noqa: F401

__all__ = ["LayerNorm", "GroupNorm"]
