"""``tritorch.nn.modules.distance``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..distance import CosineSimilarity, PairwiseDistance  # noqa: F401

__all__ = ["CosineSimilarity", "PairwiseDistance"]
