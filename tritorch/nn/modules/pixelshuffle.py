"""``tritorch.nn.modules.pixelshuffle``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..upsampling import PixelShuffle, PixelUnshuffle  # noqa: F401

__all__ = ["PixelShuffle", "PixelUnshuffle"]
