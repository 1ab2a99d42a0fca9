"""``tritorch.nn.modules.padding``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..padding import ConstantPad1d, ConstantPad2d, ConstantPad3d, ZeroPad1d, ZeroPad2d, ZeroPad3d  # noqa: F401

__all__ = ["ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d"]
