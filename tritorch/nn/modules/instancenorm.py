"""``tritorch.nn.modules.instancenorm``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..normalization import InstanceNorm1d, InstanceNorm2d  # noqa: F401

__all__ = ["InstanceNorm1d", "InstanceNorm2d"]
from ..normalization import InstanceNorm3d  # noqa: F401,E402

__all__ += ["InstanceNorm3d"]
