"""``tritorch.utils``: ``tritorch.utils.data`` is ``tritorch.data`` under PyTorch's name."""
from . import data  # noqa: F401
