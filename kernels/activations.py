"""More activations, PyTorch's names and rules: mish, hardswish, selu, celu, softsign and threshold as rows of the
unary table (``_u``, on the shared pointwise kernel), prelu and glu as compositions of existing ops (their gradient
comes from their parts). ``nn.functional`` and ``nn`` publish them; torch's own names (``tritorch.selu``,
``tritorch.celu_``, ``tritorch.threshold``, ``tritorch.prelu``, ``Tensor.prelu``) are registered here.
"""
import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._tensor import Tensor, register
from .elementwise import (_u, unary, unary_, where, softplus, _tanh, _sigmoid, _softplus_f, _expm1, _np_sigmoid,
                          _np_softplus)

__all__ = ["mish", "hardswish", "selu", "celu", "softsign", "threshold", "prelu", "glu"]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@triton.jit
def _mish(x, a, b):
    return x * _tanh(_softplus_f(x, 1.0, 20.0))


@triton.jit
def _mish_bwd(g, s, a, b):
    t = _tanh(_softplus_f(s, 1.0, 20.0))
    return g * (t + s * _sigmoid(s) * (1.0 - t * t))


def _np_mish_grad(x):
    t = np.tanh(_np_softplus(x, 1.0, 20.0))
    return t + x * _np_sigmoid(x) * (1 - t * t)


def _mish_grad(x):
    t = softplus(x).tanh()
    return t + x * x.sigmoid() * (1 - t * t)


@triton.jit
def _hardswish(x, a, b):
    return x * tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) / 6.0


@triton.jit
def _hardswish_bwd(g, s, a, b):
    # PyTorch's rule: 0 below -3, (2x + 3) / 6 on [-3, 3], 1 above
    return tl.where(s < -3.0, 0.0, tl.where(s > 3.0, g, g * (2.0 * s + 3.0) / 6.0))


@triton.jit
def _selu(x, a, b):
    return tl.where(x > 0, 1.0507009873554804934193349852946 * x,
                    1.0507009873554804934193349852946 * 1.6732632423543772848170429916717 * _expm1(x))


@triton.jit
def _selu_bwd(g, s, a, b):
    return tl.where(s > 0, g * 1.0507009873554804934193349852946,
                    g * 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717 * tl.exp(s))


@triton.jit
def _celu(x, a, b):
    return tl.where(x > 0, x, a * _expm1(x / a))


@triton.jit
def _celu_bwd(g, s, a, b):
    return tl.where(s > 0, g, g * tl.exp(s / a))


@triton.jit
def _softsign(x, a, b):
    return x / (1.0 + tl.abs(x))


@triton.jit
def _softsign_bwd(g, s, a, b):
    d = 1.0 + tl.abs(s)
    return g / (d * d)


@triton.jit
def _threshold(x, a, b):
    return tl.where(x <= a, b, x)          # a NaN input stays NaN, as PyTorch's ``x <= threshold ? value : x``


@triton.jit
def _threshold_bwd(g, s, a, b):
    return tl.where(s <= a, 0.0, g)


_u("mish", _mish, lambda x, a, b: x * np.tanh(_np_softplus(x, 1.0, 20.0)), bwd=_mish_bwd,
   bwd_ref=lambda g, s, a: g * _np_mish_grad(s), bwd_composite=lambda g, x, y, a: g * _mish_grad(x))
_u("hardswish", _hardswish, lambda x, a, b: x * np.clip(x + 3, 0, 6) / 6, bwd=_hardswish_bwd,
   bwd_ref=lambda g, s, a: g * np.where(s < -3, 0, np.where(s > 3, 1, (2 * s + 3) / 6)),
   bwd_composite=lambda g, x, y, a: g * where(x < -3, 0.0, where(x > 3, 1.0, (x * 2 + 3) / 6)))
_u("selu", _selu, lambda x, a, b: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0))),
   bwd=_selu_bwd, bwd_ref=lambda g, s, a: g * _SELU_SCALE * np.where(s > 0, 1, _SELU_ALPHA * np.exp(np.minimum(s, 0))),
   bwd_composite=lambda g, x, y, a: g * _SELU_SCALE * where(x > 0, 1.0, x.clamp(max=0).exp() * _SELU_ALPHA))
_u("celu", _celu, lambda x, a, b: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0) / a)), bwd=_celu_bwd,
   bwd_ref=lambda g, s, a: np.where(s > 0, g, g * np.exp(np.minimum(s, 0) / a)),
   bwd_composite=lambda g, x, y, a: where(x > 0, g, g * (x.clamp(max=0) / a).exp()))
_u("softsign", _softsign, lambda x, a, b: x / (1 + np.abs(x)), bwd=_softsign_bwd,
   grad=lambda g, s, a: g / ((1 + abs(s)) * (1 + abs(s))))
_u("threshold", _threshold, lambda x, a, b: np.where(x <= a, b, x), keep_int=True, bwd=_threshold_bwd,
   bwd_ref=lambda g, s, a: np.where(s <= a, 0, g), bwd_composite=lambda g, x, y, a: where(x <= a, 0.0, g))


@register("mish", method=False, function=False)   # routed (jit/onnx see it), not published
def mish(input, inplace=False):
    """x * tanh(softplus(x))."""
    return (unary_ if inplace else unary)("mish", input)


@register("hardswish", method=False, function=False)   # routed (jit/onnx see it), not published
def hardswish(input, inplace=False):
    """x * relu6(x + 3) / 6."""
    return (unary_ if inplace else unary)("hardswish", input)


@register("softsign", method=False, function=False)   # routed (jit/onnx see it), not published
def softsign(input):
    """x / (1 + |x|)."""
    return unary("softsign", input)


@register("selu", method=False)
def selu(input, inplace=False):
    """scale * (max(0, x) + min(0, alpha * (exp(x) - 1))), with SELU's fixed alpha and scale."""
    return (unary_ if inplace else unary)("selu", input)


@register("selu_", method=False)
def selu_(input):
    return unary_("selu", input)


def _celu_alpha(alpha):
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError: alpha cannot be 0 for CELU")
    return float(alpha)


@register("celu", method=False)
def celu(input, alpha=1.0, inplace=False):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    return (unary_ if inplace else unary)("celu", input, _celu_alpha(alpha))


@register("celu_", method=False)
def celu_(input, alpha=1.0):
    return unary_("celu", input, _celu_alpha(alpha))


@register("threshold", method=False)
def threshold(input, threshold, value, inplace=False):
    """``value`` where x <= threshold, x elsewhere."""
    return (unary_ if inplace else unary)("threshold", input, float(threshold), float(value))


@register("threshold_", method=False)
def threshold_(input, threshold, value):
    return unary_("threshold", input, float(threshold), float(value))


@register("prelu")
def prelu(input, weight):
    """max(0, x) + weight * min(0, x), the weight (1 or C values) broadcast over the channel dim 1."""
    if not isinstance(weight, Tensor):
        raise TypeError(f"prelu(): argument 'weight' (position 2) must be Tensor, not {type(weight).__name__}")
    if weight.dtype is not input.dtype:
        raise RuntimeError(f"prelu: Type promoting not supported. Got {D.scalar_name(input.dtype)} and "
                           f"{D.scalar_name(weight.dtype)}")
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.numel() != 1 and weight.numel() != channels:
        raise RuntimeError(f"Mismatch of parameter numbers and input channel size. Found parameter numbers = "
                           f"{weight.numel()} and channel size = {channels}.")
    if weight.numel() == 1:
        w = weight.reshape(())
    else:
        w = weight.reshape((channels,) + (1,) * (input.ndim - 2))
    return where(input > 0, input, w * input)


def glu(input, dim=-1):
    """a * sigmoid(b), a and b the two halves of ``input`` along ``dim``."""
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    if not -input.ndim <= dim < input.ndim:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-input.ndim}, {input.ndim - 1}], "
                         f"but got {dim})")
    d = dim % input.ndim
    n = input.shape[d]
    if n % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {d} is size {n}")
    return input.narrow(d, 0, n // 2) * input.narrow(d, n // 2, n // 2).sigmoid()
