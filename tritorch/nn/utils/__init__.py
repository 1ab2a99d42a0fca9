"""``tritorch.nn.utils``: gradient clipping and the padded/packed sequence helpers (``rnn``)."""
from . import clip_grad, rnn  # noqa: F401
from .clip_grad import (clip_grad_norm_, clip_grad_norm, clip_grad_value_, get_total_norm,  # noqa: F401
                        clip_grads_with_norm_)
