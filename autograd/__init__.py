"""``tritorch.autograd``: the engine (graph nodes, the backward pass), grad mode, custom Functions, gradcheck."""
from .grad_mode import (no_grad, enable_grad, set_grad_enabled, inference_mode, is_grad_enabled,  # noqa: F401
                        is_inference_mode_enabled)
from .function import Function, once_differentiable  # noqa: F401
from .engine import backward, grad, detect_anomaly, set_detect_anomaly, is_anomaly_enabled  # noqa: F401
from . import engine, function, grad_mode  # noqa: F401
# the functions shadow the submodule of the same name, as in PyTorch
from .gradcheck import gradcheck, gradgradcheck, GradcheckError  # noqa: F401
