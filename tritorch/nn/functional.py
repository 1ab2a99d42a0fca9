"""``tritorch.nn.functional``: the stateless forms of the layers, delegating to tritorch ops.

Ops that other modules provide (``softmax``, ``log_softmax``, the fused ``linear``) are looked up at call time, so
this module imports whatever op modules exist and picks up the faster kernels as they land.
"""
import math
import warnings

import numpy as np

import tritorch
from .._tensor import Tensor

__all__ = ["linear", "bilinear", "relu", "relu_", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh",
           "softplus", "hardtanh", "relu6", "softmax", "log_softmax", "identity",
           "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "kl_div"]

_DT_NAMES = {"float32": "Float", "float64": "Double", "float16": "Half", "bfloat16": "BFloat16"}


def _op(name):
    """``tritorch.NAME`` if some op module registered it, else None."""
    fn = getattr(tritorch, name, None)
    if fn is None:
        fn = tritorch._FUNCTIONS.get(name)
    return fn


# ---- linear ----------------------------------------------------------------------------------------------------
def _check_linear(input, weight, bias):
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError(f"linear(): argument 'input' and 'weight' must be Tensor, not "
                        f"{type(input).__name__} and {type(weight).__name__}")
    if input.ndim == 0 or weight.ndim == 0:
        raise RuntimeError(f"both arguments to linear need to be at least 1D, but they are {input.ndim}D and "
                           f"{weight.ndim}D")
    if weight.ndim > 2:
        raise RuntimeError(f"linear(): weight must be 1-D or 2-D, got {weight.ndim}-D of shape {list(weight.shape)}")
    k = input.shape[-1]
    rows = math.prod(input.shape[:-1])
    wk = weight.shape[-1]
    if k != wk:
        wt = f"{wk}x{weight.shape[0]}" if weight.ndim == 2 else f"{wk}x1"
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x{k} and {wt})")
    if input.dtype is not weight.dtype:
        a, b = (_DT_NAMES.get(t.dtype.name, t.dtype.name) for t in (input, weight))
        raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got {a} and {b}")
    if input.device != weight.device or (bias is not None and bias.device != input.device):
        devs = sorted({str(input.device), str(weight.device)} | ({str(bias.device)} if bias is not None else set()))
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"{devs[0]} and {devs[1]}!")
    if bias is not None:
        out_f = weight.shape[0] if weight.ndim == 2 else 1
        if weight.ndim == 2 and tuple(bias.shape) not in ((out_f,), (), (1,)) and \
                bias.ndim > 1 and bias.shape[-1] not in (1, out_f):
            raise RuntimeError(f"linear(): bias of shape {list(bias.shape)} does not match {out_f} output features")


def linear(input, weight, bias=None):
    """``input @ weight.T + bias``: ``input`` (*, in_features), ``weight`` (out_features, in_features)."""
    _check_linear(input, weight, bias)
    try:
        from ..kernels import matmul as _mm            # the fused-epilogue GEMM, where it exists
    except ImportError:
        _mm = None
    fused = getattr(_mm, "linear", None) if _mm is not None else None
    if fused is not None:
        return fused(input, weight, bias)
    matmul = _op("matmul")
    if weight.ndim == 1:
        out = (input * weight).sum(-1)
        return out if bias is None else out + bias
    if matmul is not None:
        addmm = _op("addmm")
        if addmm is not None and bias is not None and input.ndim == 2 and bias.ndim <= 1:
            return addmm(bias, input, weight.t())
        out = matmul(input, weight.t())
        return out if bias is None else out + bias
    # composite fallback (no GEMM op yet): broadcast multiply and reduce over in_features
    out = (input.unsqueeze(-2) * weight).sum(-1)
    return out if bias is None else out + bias


def bilinear(input1, input2, weight, bias=None):
    """``y[..., o] = sum_ij x1[..., i] W[o, i, j] x2[..., j] + b[o]``."""
    if input1.shape[:-1] != input2.shape[:-1]:
        raise RuntimeError(f"bilinear(): input batch dimensions do not match: got {list(input1.shape[:-1])} and "
                           f"{list(input2.shape[:-1])}")
    if weight.ndim != 3 or weight.shape[1] != input1.shape[-1] or weight.shape[2] != input2.shape[-1]:
        raise RuntimeError(f"bilinear(): weight of shape {list(weight.shape)} does not match inputs of "
                           f"{input1.shape[-1]} and {input2.shape[-1]} features")
    o, i, j = weight.shape
    lead = tuple(input1.shape[:-1])
    x1 = input1.reshape(-1, i)
    x2 = input2.reshape(-1, j)
    # t[n, o, j] = sum_i x1[n, i] W[o, i, j], as one GEMM with W viewed as (i, o*j)
    t = linear(x1, weight.permute(0, 2, 1).reshape(o * j, i)).reshape(-1, o, j)
    out = (t * x2.unsqueeze(1)).sum(-1)
    if bias is not None:
        out = out + bias
    return out.reshape(*lead, o)


def identity(input):
    return input


# ---- activations -----------------------------------------------------------------------------------------------
def _act(name, input, inplace, *args):
    """``tritorch.NAME(input, *args)``; with ``inplace``, the op's in-place form (or a copy back into ``input``)."""
    if not inplace:
        return _op(name)(input, *args)
    method = getattr(input, name + "_", None)
    if method is not None:
        return method(*args)
    fn = _op(name + "_")
    if fn is not None:
        return fn(input, *args)
    input.copy_(_op(name)(input, *args))
    return input


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
    return _op("gelu")(input, approximate=approximate)


def silu(input, inplace=False):
    return _act("silu", input, inplace)


def sigmoid(input):
    return _op("sigmoid")(input)


def tanh(input):
    return _op("tanh")(input)


def softplus(input, beta=1.0, threshold=20.0):
    return _op("softplus")(input, beta, threshold)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return _act("hardtanh", input, inplace, min_val, max_val)


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)


def _softmax_dim(name, ndim):
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as "
                  "an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def _host_max(x, dim):
    """The row maxima as a constant tensor (softmax is shift-invariant, so the shift needs no gradient)."""
    a = np.asarray(x.detach()._to_host_array(), dtype=np.float64)
    if a.ndim == 0:
        m = a
    else:
        m = np.max(a, axis=dim, keepdims=True) if a.shape[dim] else np.zeros_like(a.sum(dim, keepdims=True))
    m = np.where(np.isfinite(m), m, 0.0)
    return tritorch.tensor(m, dtype=x.dtype, device=x.device)


def _fallback_log_softmax(x, dim):
    shifted = x - _host_max(x, dim)
    return shifted - shifted.exp().sum(dim, keepdim=True).log()


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``exp(x) / exp(x).sum(dim)``, via the fused kernel in ``kernels/softmax.py``."""
    if dim is None:
        dim = _softmax_dim("softmax", input.ndim)
    if dtype is not None:
        input = input.to(dtype)
    fn = _op("softmax")
    if fn is not None:
        return fn(input, dim)
    e = (input - _host_max(input, dim)).exp()
    return e / e.sum(dim, keepdim=True)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``x - log(exp(x).sum(dim))``, via the fused kernel in ``kernels/softmax.py``."""
    if dim is None:
        dim = _softmax_dim("log_softmax", input.ndim)
    if dtype is not None:
        input = input.to(dtype)
    fn = _op("log_softmax")
    if fn is not None:
        return fn(input, dim)
    return _fallback_log_softmax(input, dim)


# ---- losses (kernels/loss.py: the fused cross-entropy / NLL row kernels and the pointwise loss kernels) --------
from ..kernels.loss import (cross_entropy, nll_loss, mse_loss, l1_loss, smooth_l1_loss, huber_loss,  # noqa: E402
                            binary_cross_entropy, binary_cross_entropy_with_logits, kl_div)
