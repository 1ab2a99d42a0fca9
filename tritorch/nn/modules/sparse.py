"""``tritorch.nn.modules.sparse``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..sparse import Embedding, EmbeddingBag  # noqa: F401

__all__ = ["Embedding", "EmbeddingBag"]
