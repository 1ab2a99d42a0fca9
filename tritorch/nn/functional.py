"""``tritorch.nn.functional``: the stateless forms of the layers, with PyTorch's names and arguments. Each one is
the op of the kernels module that computes it (the fused linear, the softmax row kernels, the loss kernels)."""
import warnings

import tritorch
from ..kernels.conv import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d  # noqa: F401
from ..kernels.linear import linear, bilinear  # noqa: F401
from ..kernels.attention import scaled_dot_product_attention  # noqa: F401
from ..kernels.embedding import embedding, embedding_bag  # noqa: F401
from ..kernels.resize import interpolate, pad, pixel_shuffle, pixel_unshuffle  # noqa: F401
from ..kernels.pool import (max_pool1d, max_pool2d, avg_pool1d, avg_pool2d, adaptive_avg_pool1d,  # noqa: F401
                            adaptive_avg_pool2d, adaptive_max_pool1d, adaptive_max_pool2d)
from ..kernels.norm import batch_norm, layer_norm, rms_norm, group_norm, instance_norm  # noqa: F401
from ..kernels.pool import max_pool3d, avg_pool3d, adaptive_avg_pool3d, adaptive_max_pool3d  # noqa: F401
from ..kernels.fold import fold, unfold  # noqa: F401
from ..kernels.grid import affine_grid, grid_sample  # noqa: F401
from .dropout import dropout, dropout2d  # noqa: F401  (F.dropout takes ``training``)
from ..kernels.loss import (cross_entropy, nll_loss, mse_loss, l1_loss, smooth_l1_loss, huber_loss,  # noqa: F401
                            binary_cross_entropy, binary_cross_entropy_with_logits, kl_div)
from ..kernels.activations import (mish, hardswish, selu, celu, softsign, threshold, threshold_,  # noqa: F401
                                   prelu, glu)
from ..kernels.distance import (one_hot, normalize, cosine_similarity, pairwise_distance,  # noqa: F401
                                triplet_margin_loss, cosine_embedding_loss, margin_ranking_loss)

__all__ = ["linear", "bilinear", "relu", "relu_", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh",
           "softplus", "hardtanh", "relu6", "softmax", "log_softmax", "identity",
           "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "kl_div", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
           "conv_transpose2d",
           "interpolate", "pad", "pixel_shuffle", "pixel_unshuffle", "max_pool1d", "max_pool2d", "avg_pool1d",
           "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
           "batch_norm", "layer_norm", "rms_norm", "group_norm", "instance_norm", "dropout", "dropout2d",
           "scaled_dot_product_attention", "embedding", "embedding_bag"]
__all__ += ["mish", "hardswish", "selu", "celu", "softsign", "threshold", "threshold_", "prelu", "glu", "softmin"]
__all__ += ["max_pool3d", "avg_pool3d", "adaptive_avg_pool3d", "adaptive_max_pool3d", "fold", "unfold", "affine_grid",
            "grid_sample"]
__all__ += ["one_hot", "normalize", "cosine_similarity", "pairwise_distance", "triplet_margin_loss",
            "cosine_embedding_loss", "margin_ranking_loss"]


# ---- activations -----------------------------------------------------------------------------------------------
def identity(input):
    return input


def _act(name, input, inplace, *args):
    """``tritorch.NAME(input, *args)``, or its in-place form ``tritorch.NAME_`` with ``inplace``."""
    return getattr(tritorch, name + "_" if inplace else name)(input, *args)


def relu(input, inplace=False):
    return _act("relu", input, inplace)


def relu_(input):
    return _act("relu", input, True)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _act("leaky_relu", input, inplace, negative_slope)


def elu(input, alpha=1.0, inplace=False):
    return _act("elu", input, inplace, alpha)


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise RuntimeError(f"approximate argument must be either none or tanh. (got '{approximate}')")
    return tritorch.gelu(input, approximate=approximate)


def silu(input, inplace=False):
    return _act("silu", input, inplace)


def sigmoid(input):
    return tritorch.sigmoid(input)


def tanh(input):
    return tritorch.tanh(input)


def softplus(input, beta=1.0, threshold=20.0):
    return tritorch.softplus(input, beta, threshold)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return tritorch.hardtanh(input, min_val, max_val, inplace)


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)


def _softmax_dim(name, ndim):
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as "
                  "an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``exp(x) / exp(x).sum(dim)``: the fused row kernel of ``kernels/softmax.py``."""
    if dim is None:
        dim = _softmax_dim("softmax", input.ndim)
    return tritorch.softmax(input, dim) if dtype is None else tritorch.softmax(input, dim, dtype=dtype)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    """``softmax(-x)``: the fused row kernel of ``kernels/softmax.py`` on the negated input."""
    if dim is None:
        dim = _softmax_dim("softmin", input.ndim)
    return tritorch.softmax(-(input if dtype is None else input.to(dtype)), dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``x - log(exp(x).sum(dim))``: the fused row kernel of ``kernels/softmax.py``."""
    if dim is None:
        dim = _softmax_dim("log_softmax", input.ndim)
    return tritorch.log_softmax(input, dim) if dtype is None else tritorch.log_softmax(input, dim, dtype=dtype)
