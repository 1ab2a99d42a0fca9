"""``tritorch.nn.modules.transformer``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..transformer import (TransformerEncoderLayer, TransformerEncoder, TransformerDecoderLayer,  # noqa: F401
                           TransformerDecoder, Transformer)

__all__ = ["TransformerEncoderLayer", "TransformerEncoder", "TransformerDecoderLayer", "TransformerDecoder",
           "Transformer"]
