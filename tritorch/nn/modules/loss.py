"""``tritorch.nn.modules.loss``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..loss import (L1Loss, MSELoss, SmoothL1Loss, HuberLoss, NLLLoss, CrossEntropyLoss, BCELoss,  # noqa: F401
                    BCEWithLogitsLoss, KLDivLoss)

__all__ = ["L1Loss", "MSELoss", "SmoothL1Loss", "HuberLoss", "NLLLoss", "CrossEntropyLoss", "BCELoss",
           "BCEWithLogitsLoss", "KLDivLoss"]
from ..loss import TripletMarginLoss, CosineEmbeddingLoss, MarginRankingLoss  # noqa: F401,E402
__all__ += ["TripletMarginLoss", "CosineEmbeddingLoss", "MarginRankingLoss"]
