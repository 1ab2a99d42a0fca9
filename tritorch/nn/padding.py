"""Padding layers: ``ZeroPad1d/2d/3d`` and ``ConstantPad1d/2d/3d`` over ``F.pad``'s constant mode
(``kernels/resize.py``: one kernel writes the copied interior and the fill; negative padding crops), and
``ReflectionPad1d/2d/3d``, ``ReplicationPad1d/2d/3d``, ``CircularPad1d/2d/3d`` over its other modes."""
from ..kernels.resize import constant_pad_nd, pad
from .module import Module

__all__ = ["ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
           "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
           "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d"]


class _ConstantPadNd(Module):
    """``padding``: an int (every side) or a tuple of 2 * nd ints (left, right, top, bottom, front, back)."""

    _nd = 2

    def __init__(self, padding, value):
        super().__init__()
        n = 2 * self._nd
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding,) * n
        padding = tuple(padding)
        if len(padding) != n:
            raise ValueError(f"{type(self).__name__}: padding must be an int or a tuple of {n} ints, got {padding}")
        self.padding = padding
        self.value = value

    def forward(self, input):
        return constant_pad_nd(input, self.padding, self.value)

    def extra_repr(self):
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    _nd = 1


class ConstantPad2d(_ConstantPadNd):
    _nd = 2


class ConstantPad3d(_ConstantPadNd):
    _nd = 3


class _ZeroPadNd(_ConstantPadNd):
    def __init__(self, padding):
        super().__init__(padding, 0.0)

    def extra_repr(self):
        return f"{self.padding}"


class ZeroPad1d(_ZeroPadNd):
    _nd = 1


class ZeroPad2d(_ZeroPadNd):
    _nd = 2


class ZeroPad3d(_ZeroPadNd):
    _nd = 3


class _ModePadNd(Module):
    """``padding``: an int (every side) or a tuple of 2 * nd ints (left, right, top, bottom, front, back); the input
    is (N, C, *) or (C, *) with nd padded dims."""

    _nd = 1
    _mode = "reflect"

    def __init__(self, padding):
        super().__init__()
        n = 2 * self._nd
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding,) * n
        padding = tuple(padding)
        if len(padding) != n:
            raise ValueError(f"{type(self).__name__}: padding must be an int or a tuple of {n} ints, got {padding}")
        self.padding = padding

    def forward(self, input):
        if self._mode == "circular" and input.ndim not in (self._nd + 1, self._nd + 2):
            raise ValueError(f"expected {self._nd + 1}D or {self._nd + 2}D input (got {input.ndim}D input)")
        return pad(input, self.padding, self._mode)

    def extra_repr(self):
        return f"{self.padding}"


class ReflectionPad1d(_ModePadNd):
    _nd, _mode = 1, "reflect"


class ReflectionPad2d(_ModePadNd):
    _nd, _mode = 2, "reflect"


class ReflectionPad3d(_ModePadNd):
    _nd, _mode = 3, "reflect"


class ReplicationPad1d(_ModePadNd):
    _nd, _mode = 1, "replicate"


class ReplicationPad2d(_ModePadNd):
    _nd, _mode = 2, "replicate"


class ReplicationPad3d(_ModePadNd):
    _nd, _mode = 3, "replicate"


class CircularPad1d(_ModePadNd):
    _nd, _mode = 1, "circular"


class CircularPad2d(_ModePadNd):
    _nd, _mode = 2, "circular"


class CircularPad3d(_ModePadNd):
    _nd, _mode = 3, "circular"
