"""``tritorch.nn.utils``: gradient clipping."""
from . import clip_grad  # noqa: F401
from .clip_grad import (clip_grad_norm_, clip_grad_norm, clip_grad_value_, get_total_norm,  # noqa: F401
                        clip_grads_with_norm_)
