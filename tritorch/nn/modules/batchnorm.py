"""``tritorch.nn.modules.batchnorm``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..normalization import BatchNorm1d, BatchNorm2d  # noqa: F401

__all__ = ["BatchNorm1d", "BatchNorm2d"]
from ..normalization import BatchNorm3d  # noqa: F401,E402

__all__ += ["BatchNorm3d"]
