"""``tritorch.utils.data``: the same objects as ``tritorch.data`` (PyTorch's spelling, ``torch.utils.data``)."""
import sys

from .. import data as _data

sys.modules[__name__] = _data
