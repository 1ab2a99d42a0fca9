"""``Dropout`` and ``Dropout2d``: the functional forms of ``kernels/dropout.py`` applied in training mode only.

``dropout`` here is ``nn.functional.dropout`` (argument ``training``); ``tritorch.dropout`` is ``torch.dropout``
(argument ``train``)."""
from ..kernels import dropout as _k
from ..kernels.dropout import dropout2d  # noqa: F401
from .module import Module

__all__ = ["Dropout", "Dropout2d", "dropout", "dropout2d"]


def dropout(input, p=0.5, training=True, inplace=False):
    """``F.dropout``: zero elements with probability ``p`` and scale the rest by 1/(1-p) when ``training``."""
    return _k.dropout(input, p, training, inplace)


class _DropoutNd(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each element with probability p in training, scaling the rest by 1/(1-p); identity in eval."""

    def forward(self, input):
        return dropout(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """Zero whole channels of (N, C, H, W) / (C, H, W) with probability p in training; identity in eval."""

    def forward(self, input):
        return dropout2d(input, self.p, self.training, self.inplace)
