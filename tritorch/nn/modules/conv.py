"""``tritorch.nn.modules.conv``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d  # noqa: F401

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d"]
