"""``tritorch.nn.modules.activation``: PyTorch's module path for these layers (the classes of ``tritorch.nn``)."""
from ..activation import (ReLU, ReLU6, LeakyReLU, ELU, GELU, SiLU, Sigmoid, Tanh, Softplus, Hardtanh,  # noqa: F401
                          Softmax, LogSoftmax)
from ..activation import Mish, Hardswish, SELU, CELU, Softsign, Threshold, PReLU, GLU, Softmin  # noqa: F401
from ..transformer import MultiheadAttention  # noqa: F401

__all__ = ["ReLU", "ReLU6", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softplus", "Hardtanh", "Softmax",
           "LogSoftmax", "MultiheadAttention"]
__all__ += ["Mish", "Hardswish", "SELU", "CELU", "Softsign", "Threshold", "PReLU", "GLU", "Softmin"]
