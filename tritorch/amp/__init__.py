"""``tritorch.amp``: automatic mixed precision, as ``torch.amp``: ``autocast`` (an op mode that casts each op's
inputs by PyTorch's policy table) and ``GradScaler`` (loss scaling for float16 training), ``custom_fwd`` /
``custom_bwd`` for ``autograd.Function``. Also publishes ``tritorch.cuda.amp``, the deprecated spellings."""
import sys as _sys

from .. import cuda as _cuda
from . import cuda_amp as _cuda_amp
from .autocast_mode import (POLICY, autocast, clear_autocast_cache, custom_bwd, custom_fwd,  # noqa: F401
                            get_autocast_dtype, is_autocast_available, is_autocast_cache_enabled,
                            is_autocast_enabled, set_autocast_cache_enabled, set_autocast_dtype,
                            set_autocast_enabled)
from .grad_scaler import GradScaler, OptState  # noqa: F401

__all__ = ["GradScaler", "autocast", "custom_bwd", "custom_fwd", "is_autocast_available"]

_cuda.amp = _cuda_amp
_sys.modules[_cuda.__name__ + ".amp"] = _cuda_amp
