"""``tritorch.nn.modules.pooling``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..pooling import (MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d, AdaptiveAvgPool2d,  # noqa: F401
                       AdaptiveMaxPool1d, AdaptiveMaxPool2d)

__all__ = ["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
           "AdaptiveMaxPool1d", "AdaptiveMaxPool2d"]
