"""``tritorch.nn.modules.upsampling``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..upsampling import Upsample, UpsamplingNearest2d, UpsamplingBilinear2d  # noqa: F401

__all__ = ["Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d"]
