"""Elementwise ops: unary, binary (with broadcasting and Python scalars), ``where``, and their backward rules.

The ops are declared here, one row each (``_u(...)`` for a unary op, ``_b(...)`` for a binary one); one strided,
autotuned Triton kernel serves them all (``_pointwise.py``: ``_pointwise_kernel``, launched by ``launch_pointwise``
with one, two or three inputs). The math of each op is written twice, side by side: a Triton function and its
NumPy reference (the ``cpu`` path). Arithmetic runs in float32 for half types (``ACC``), whatever the storage type.
The ``cpu`` fast path of the common small cases is ``_host.py``'s: ``unary`` and ``binary`` ask it first.
"""
import math

import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._creation import scalar_tensor
from tritorch._device import INTERPRET, CPU
from tritorch._tensor import Tensor, register, FUNCTIONS
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from ._launch import ACC, broadcast_shapes
from ._common import (check_inplace, check_out, check_same_device, empty, host_result, mark_written, np_ct, quiet,
                      sum_to, wrap)
from ._pointwise import launch_pointwise, _where
from ._host import host_unary, host_binary, host_values
from .copy import copy_into
from . import views

# ====================================================================================================================
# Unary ops
# ====================================================================================================================

@triton.jit
def _expm1(x):
    # Kahan's trick: exact to a few ulp near 0, where exp(x) - 1 cancels.
    u = tl.exp(x)
    um1 = u - 1.0
    small = tl.where(u == 1.0, x, um1 * x / tl.log(u))
    return tl.where(tl.abs(x) < 0.5, small, um1)


@triton.jit
def _log1p(x):
    u = 1.0 + x
    small = tl.where(u == 1.0, x, tl.log(u) * x / (u - 1.0))
    return tl.where(tl.abs(x) < 0.5, small, tl.log(u))


@triton.jit
def _tanh(x):
    e = _expm1(-2.0 * tl.abs(x))
    t = -e / (2.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _sigmoid(x):
    e = tl.exp(-tl.abs(x))
    s = 1.0 / (1.0 + e)
    return tl.where(x >= 0, s, e * s)


@triton.jit
def _softplus_f(x, beta, threshold):
    bx = x * beta
    return tl.where(bx > threshold, x, (tl.maximum(bx, 0.0) + _log1p(tl.exp(-tl.abs(bx)))) / beta)


@triton.jit
def _rint(x):
    # round half to even without libdevice
    r = tl.floor(x + 0.5)
    tie = (r - x) == 0.5
    odd = (r - 2.0 * tl.floor(r * 0.5)) != 0.0
    r = tl.where(tie & odd, r - 1.0, r)
    return tl.where(tl.abs(x) >= 4503599627370496.0, x, r)


@triton.jit
def _signbit(x):
    """Whether the sign bit of float32/float64 ``x`` is set (so for -0.0 too), read without dividing by zero."""
    if x.dtype == tl.float64:
        bits = x.to(tl.int64, bitcast=True)
    else:
        bits = x.to(tl.int32, bitcast=True)
    return bits < 0


@triton.jit
def _pow_f(x, y):
    """x ** y for floating x, y with C's (IEEE 754) pow special cases: exp(y * log|x|) gives the magnitude for zeros
    and infinities too; the sign is the base's (-0.0 included) for odd integral y; a finite negative base with a
    finite non-integral y is NaN; pow(-1, +-inf), pow(x, +-0) (x NaN too) and pow(1, y) (y NaN too) are 1."""
    y = y + tl.zeros_like(x)          # a scalar exponent becomes a block, so that the masks below combine
    ax = tl.abs(x)
    r = tl.exp(y * tl.log(ax))
    y_fin = tl.abs(y) < float("inf")
    y_int = (tl.floor(y) == y) & y_fin
    y_odd = y_int & ((y - 2.0 * tl.floor(y * 0.5)) != 0.0)
    x_neg = (x < 0) | ((x == 0) & _signbit(x))               # -0.0 included
    r = tl.where(x_neg & y_odd, -r, r)
    r = tl.where((x < 0) & (ax < float("inf")) & y_fin & ~y_int, float("nan"), r)
    r = tl.where((x == -1.0) & (tl.abs(y) == float("inf")), 1.0, r)
    r = tl.where(y == 0, 1.0, r)
    r = tl.where(x == 1.0, 1.0, r)
    return r


# -- the math of each unary op: Triton and NumPy side by side ---------------------------------------------------------
@triton.jit
def _neg(x, a, b):
    return -x


@triton.jit
def _abs(x, a, b):
    return tl.abs(x)


@triton.jit
def _exp(x, a, b):
    return tl.exp(x)


@triton.jit
def _log(x, a, b):
    return tl.log(x)


@triton.jit
def _log1p_op(x, a, b):
    return _log1p(x)


@triton.jit
def _expm1_op(x, a, b):
    return _expm1(x)


@triton.jit
def _sqrt(x, a, b):
    return tl.sqrt(x)


@triton.jit
def _rsqrt(x, a, b):
    return 1.0 / tl.sqrt(x)


@triton.jit
def _sin(x, a, b):
    return tl.sin(x)


@triton.jit
def _cos(x, a, b):
    return tl.cos(x)


@triton.jit
def _tanh_op(x, a, b):
    return _tanh(x)


@triton.jit
def _sigmoid_op(x, a, b):
    return _sigmoid(x)


@triton.jit
def _relu(x, a, b):
    return tl.where(x < 0, tl.zeros_like(x), x)       # NaN stays NaN, as PyTorch's clamp_min(0)


@triton.jit
def _leaky_relu(x, a, b):
    return tl.where(x > 0, x, x * a)


@triton.jit
def _elu(x, a, b):
    return tl.where(x > 0, x, a * _expm1(x))


@triton.jit
def _erf(x, a, b):
    return tl.erf(x)


@triton.jit
def _gelu(x, a, b):
    return 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))


@triton.jit
def _gelu_tanh(x, a, b):
    return 0.5 * x * (1.0 + _tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


@triton.jit
def _silu(x, a, b):
    return x * _sigmoid(x)


@triton.jit
def _softplus(x, a, b):
    return _softplus_f(x, a, b)


@triton.jit
def _sign(x, a, b):
    return (x > 0).to(x.dtype) - (x < 0).to(x.dtype)


@triton.jit
def _floor(x, a, b):
    return tl.floor(x)


@triton.jit
def _ceil(x, a, b):
    return tl.ceil(x)


@triton.jit
def _round(x, a, b):
    return _rint(x)


@triton.jit
def _trunc(x, a, b):
    return tl.where(x < 0, tl.ceil(x), tl.floor(x))


@triton.jit
def _clamp(x, a, b):
    # a = min, b = max: min(max(x, a), b) where a NaN in x, a or b propagates, as in PyTorch
    y = tl.where(a != a, a, tl.where(x < a, a, x))
    return tl.where(b != b, b, tl.where(y > b, b, y))


@triton.jit
def _reciprocal(x, a, b):
    return 1.0 / x


@triton.jit
def _pow_scalar(x, a, b):
    return _pow_f(x, a)


@triton.jit
def _square(x, a, b):
    return x * x


@triton.jit
def _logical_not(x, a, b):
    return x == 0


@triton.jit
def _isnan(x, a, b):
    return x != x


@triton.jit
def _isinf(x, a, b):
    return tl.abs(x) == float("inf")


@triton.jit
def _isfinite(x, a, b):
    return tl.abs(x) < float("inf")


def _np_erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[x.dtype])(x) if x.size else x.copy()


def _np_gelu(x, a, b):
    from math import erf
    return 0.5 * x * (1.0 + np.vectorize(erf, otypes=[x.dtype])(x / math.sqrt(2.0))) if x.size else x


def _np_softplus(x, beta, threshold):
    bx = x * beta
    with np.errstate(over="ignore"):
        return np.where(bx > threshold, x, (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta)


def _np_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _np_clamp(x, lo, hi):
    y = np.where((x < lo) | (lo != lo), lo, x)
    return np.where((y > hi) | (hi != hi), hi, y)


# the activations PyTorch implements for floating inputs only (by its kernel's name), and the ops it refuses bools
_FLOAT_ONLY = {"leaky_relu": "leaky_relu", "elu": "elu", "gelu": "gelu", "gelu_tanh": "gelu", "silu": "silu",
               "softplus": "softplus", "mish": "mish", "hardswish": "hardswish", "selu": "elu", "celu": "elu"}
_NO_BOOL = {"relu": "Boolean inputs not supported for relu", "abs": "\"abs_{dev}\" not implemented for 'Bool'",
            **{n: f"\"{n}_{{dev}}\" not implemented for 'Bool'" for n in ("floor", "ceil", "round", "trunc")}}

# autograd node names that do not follow from the op's name
_UNARY_NAMES = {"log1p": "Log1PBackward0", "gelu_tanh": "GeluBackward0", "pow_scalar": "PowBackward0",
                "square": "PowBackward0", "selu": "EluBackward0", "softsign": "DivBackward0"}


class UnaryOp:
    """One unary op, declared in one ``_u(...)`` row: its Triton math, NumPy reference and backward: ``bwd``, a
    Triton function of (grad, saved, a, b) fused into the backward kernel, where saved is the input or, with
    ``bwd_uses="y"``, the output; and the same rule for the host and for a recorded (double) backward. A rule
    written in operators only is given once, as ``grad(g, s, a)``: it runs on NumPy arrays (``cpu``) and on tensors
    alike. One that needs a function (np.cos / Tensor.cos, np.where / where) is given twice: ``bwd_ref(g, s, a)``
    on NumPy arrays and ``bwd_composite(g, x, y, a)`` in tensor ops."""

    def __init__(self, name, tfn, ref, *, floating=True, keep_int=False, out_bool=False, bwd=None, grad=None,
                 bwd_ref=None, bwd_uses="x", bwd_composite=None):
        self.name, self.tfn, self.ref = name, tfn, ref
        self.floating = floating          # integer inputs are promoted to the default float type
        self.keep_int = keep_int          # integer inputs keep their type (abs, neg, relu...)
        self.out_bool = out_bool
        if grad is not None:
            bwd_ref = grad
            bwd_composite = ((lambda g, x, y, a: grad(g, y, a)) if bwd_uses == "y" else
                             (lambda g, x, y, a: grad(g, x, a)))
        self.bwd, self.bwd_ref, self.bwd_uses, self.bwd_composite = bwd, bwd_ref, bwd_uses, bwd_composite
        self.int_identity = name in ("floor", "ceil", "round", "trunc")
        self.node_name = _UNARY_NAMES.get(name, "".join(w.capitalize() for w in name.split("_")) + "Backward0")

    def out_dtype(self, d):
        if self.out_bool:
            return D.bool_
        if d is D.bool_ and self.name == "square":          # bool * bool in PyTorch's promotion: int64
            return D.int64
        if d.is_floating_point or self.keep_int:
            return d
        return D.get_default_dtype()

    def check_input(self, d, device):
        """PyTorch's NotImplementedError for the input types its kernel of the op has no version of."""
        if d.is_floating_point:
            return
        if self.name in _FLOAT_ONLY:
            raise NotImplementedError(f"\"{_FLOAT_ONLY[self.name]}_{device.type}\" not implemented for "
                                      f"'{D.scalar_name(d)}'")
        if d is D.bool_ and self.name in _NO_BOOL:
            raise NotImplementedError(_NO_BOOL[self.name].format(dev=device.type))

    def compute_dtype(self, x_dtype, out_dtype):
        return out_dtype if not self.out_bool else x_dtype

    def save(self, ctx, a, x, out):
        """What the backward reads, on ``ctx`` (a ``Unary`` node or the cpu fast path's ``HostUnary``)."""
        if self.out_bool:
            return
        if self.bwd is None:
            raise RuntimeError(f"the derivative for '{self.name}' is not implemented")
        d = ctx.__dict__
        d["op"] = self
        d["a"] = a
        d["in_dtype"] = x.dtype
        d["_to_save"] = (x, None) if self.bwd_uses == "x" else (None, out)

    def backward(self, ctx, g):
        """The gradient of a saved node: the fused backward kernel, or recorded tensor ops under create_graph."""
        x, y = ctx.saved_tensors
        if STATE.enabled and self.bwd_composite is not None:      # create_graph: a differentiable backward
            gx = self.bwd_composite(g, x, y, ctx.a)
        else:
            s = x if self.bwd_uses == "x" else y
            gx = grad_kernel(self.bwd, self.bwd_ref, g, s, ctx.a, ctx.in_dtype)
        return gx.to(ctx.in_dtype) if gx.dtype is not ctx.in_dtype else gx


# -- backward math: d(out)/d(in) * g, as Triton functions of (g, s, a) where s is the saved input or output ----------
@triton.jit
def _neg_bwd(g, s, a, b):
    return -g


@triton.jit
def _abs_bwd(g, s, a, b):
    return tl.where(s > 0, g, tl.where(s < 0, -g, 0.0))


@triton.jit
def _mul_bwd(g, s, a, b):
    return g * s


@triton.jit
def _div_bwd(g, s, a, b):
    return g / s


@triton.jit
def _sqrt_bwd(g, s, a, b):
    return g * 0.5 / s


@triton.jit
def _rsqrt_bwd(g, s, a, b):
    return -0.5 * g * s * s * s


@triton.jit
def _sin_bwd(g, s, a, b):
    return g * tl.cos(s)


@triton.jit
def _cos_bwd(g, s, a, b):
    return -g * tl.sin(s)


@triton.jit
def _tanh_bwd(g, s, a, b):
    return g * (1.0 - s * s)


@triton.jit
def _sigmoid_bwd(g, s, a, b):
    return g * s * (1.0 - s)


@triton.jit
def _relu_bwd(g, s, a, b):
    return tl.where(s <= 0, 0.0, g)                 # a NaN output passes the gradient, as PyTorch


@triton.jit
def _leaky_relu_bwd(g, s, a, b):
    return tl.where(s > 0, g, g * a)


@triton.jit
def _elu_bwd(g, s, a, b):
    return tl.where(s <= 0, g * a * tl.exp(s), g)   # a NaN input passes the gradient, as PyTorch


@triton.jit
def _erf_bwd(g, s, a, b):
    return g * 1.1283791670955126 * tl.exp(-s * s)


@triton.jit
def _gelu_bwd(g, s, a, b):
    cdf = 0.5 * (1.0 + tl.erf(s * 0.7071067811865476))
    pdf = tl.exp(-0.5 * s * s) * 0.3989422804014327
    return g * (cdf + s * pdf)


@triton.jit
def _gelu_tanh_bwd(g, s, a, b):
    # constants written inline: a float literal bound to a local would be an fp32 scalar, even in float64
    t = _tanh(0.7978845608028654 * (s + 0.044715 * s * s * s))
    return g * (0.5 * (1.0 + t) + 0.5 * s * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * s * s))


@triton.jit
def _silu_bwd(g, s, a, b):
    sg = _sigmoid(s)
    return g * sg * (1.0 + s * (1.0 - sg))


@triton.jit
def _log1p_bwd(g, s, a, b):
    return g / (1.0 + s)


@triton.jit
def _expm1_bwd(g, s, a, b):
    return g * (s + 1.0)


@triton.jit
def _recip_bwd(g, s, a, b):
    return -g * s * s


@triton.jit
def _zero_bwd(g, s, a, b):
    return tl.zeros_like(g)


@triton.jit
def _clamp_bwd(g, s, a, b):
    # s is the mask "x was inside [min, max]" computed at forward time, passed as 0/1
    return g * s


@triton.jit
def _pow_scalar_bwd(g, s, a, b):
    return tl.where(a == 0.0, 0.0, g * a * _pow_f(s, a - 1.0))


@triton.jit
def _square_bwd(g, s, a, b):
    return 2.0 * g * s


def _sigmoid_t(x):
    return x.sigmoid()


UNARY = {}


def _u(name, tfn, ref, **kw):
    UNARY[name] = UnaryOp(name, tfn, ref, **kw)


_u("neg", _neg, lambda x, a, b: -x, keep_int=True, bwd=_neg_bwd, grad=lambda g, s, a: -g)
_u("abs", _abs, lambda x, a, b: np.abs(x), keep_int=True, bwd=_abs_bwd, bwd_ref=lambda g, s, a: g * np.sign(s),
   bwd_composite=lambda g, x, y, a: g * x.sign())
_u("exp", _exp, lambda x, a, b: np.exp(x), bwd=_mul_bwd, grad=lambda g, s, a: g * s, bwd_uses="y")
_u("log", _log, lambda x, a, b: np.log(x), bwd=_div_bwd, grad=lambda g, s, a: g / s)
_u("log1p", _log1p_op, lambda x, a, b: np.log1p(x), bwd=_log1p_bwd, grad=lambda g, s, a: g / (s + 1))
_u("expm1", _expm1_op, lambda x, a, b: np.expm1(x), bwd=_expm1_bwd, grad=lambda g, s, a: g * (s + 1), bwd_uses="y")
_u("sqrt", _sqrt, lambda x, a, b: np.sqrt(x), bwd=_sqrt_bwd, grad=lambda g, s, a: g * 0.5 / s, bwd_uses="y")
_u("rsqrt", _rsqrt, lambda x, a, b: 1 / np.sqrt(x), bwd=_rsqrt_bwd, bwd_ref=lambda g, s, a: -0.5 * g * s ** 3,
   bwd_uses="y", bwd_composite=lambda g, x, y, a: g * -0.5 * y * y * y)
_u("sin", _sin, lambda x, a, b: np.sin(x), bwd=_sin_bwd, bwd_ref=lambda g, s, a: g * np.cos(s),
   bwd_composite=lambda g, x, y, a: g * x.cos())
_u("cos", _cos, lambda x, a, b: np.cos(x), bwd=_cos_bwd, bwd_ref=lambda g, s, a: -g * np.sin(s),
   bwd_composite=lambda g, x, y, a: -g * x.sin())
_u("tanh", _tanh_op, lambda x, a, b: np.tanh(x), bwd=_tanh_bwd, grad=lambda g, s, a: g * (1 - s * s), bwd_uses="y")
_u("sigmoid", _sigmoid_op, lambda x, a, b: _np_sigmoid(x), bwd=_sigmoid_bwd, grad=lambda g, s, a: g * s * (1 - s),
   bwd_uses="y")
_u("relu", _relu, lambda x, a, b: np.maximum(x, 0).astype(x.dtype), keep_int=True, bwd=_relu_bwd,
   bwd_ref=lambda g, s, a: np.where(s <= 0, 0, g), bwd_uses="y",
   bwd_composite=lambda g, x, y, a: g * (y <= 0).logical_not())
_u("leaky_relu", _leaky_relu, lambda x, a, b: np.where(x > 0, x, x * a), bwd=_leaky_relu_bwd,
   bwd_ref=lambda g, s, a: np.where(s > 0, g, g * a),
   bwd_composite=lambda g, x, y, a: g * ((x > 0) + (x <= 0) * a))
_u("elu", _elu, lambda x, a, b: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))), bwd=_elu_bwd,
   bwd_ref=lambda g, s, a: np.where(s <= 0, g * a * np.exp(np.minimum(s, 0)), g),
   bwd_composite=lambda g, x, y, a: where(x <= 0, g * a * x.clamp(max=0).exp(), g))
_u("erf", _erf, lambda x, a, b: _np_erf(x), bwd=_erf_bwd,
   bwd_ref=lambda g, s, a: g * 1.1283791670955126 * np.exp(-s * s),
   bwd_composite=lambda g, x, y, a: g * 1.1283791670955126 * (x * x * -1).exp())
_u("gelu", _gelu, _np_gelu, bwd=_gelu_bwd,
   bwd_ref=lambda g, s, a: g * (_np_norm_cdf(s) + s * np.exp(-0.5 * s * s) * 0.3989422804014327),
   bwd_composite=lambda g, x, y, a: g * (0.5 * (1 + (x * 0.7071067811865476).erf())
                                         + x * (x * x * -0.5).exp() * 0.3989422804014327))
_u("gelu_tanh", _gelu_tanh,
   lambda x, a, b: 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))), bwd=_gelu_tanh_bwd,
   bwd_ref=lambda g, s, a: g * (0.5 * (1 + np.tanh(0.7978845608028654 * (s + 0.044715 * s ** 3)))
                                + 0.5 * s * (1 - np.tanh(0.7978845608028654 * (s + 0.044715 * s ** 3)) ** 2)
                                * 0.7978845608028654 * (1 + 3 * 0.044715 * s * s)),
   bwd_composite=lambda g, x, y, a: g * _gelu_tanh_grad(x))
_u("silu", _silu, lambda x, a, b: x * _np_sigmoid(x), bwd=_silu_bwd,
   bwd_ref=lambda g, s, a: g * _np_sigmoid(s) * (1 + s * (1 - _np_sigmoid(s))),
   bwd_composite=lambda g, x, y, a: g * x.sigmoid() * (1 + x * (1 - x.sigmoid())))
_u("softplus", _softplus, _np_softplus, bwd=None)
_u("sign", _sign, lambda x, a, b: (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype), keep_int=True, bwd=_zero_bwd,
   grad=lambda g, s, a: g * 0)
_u("floor", _floor, lambda x, a, b: np.floor(x), keep_int=True, bwd=_zero_bwd, grad=lambda g, s, a: g * 0)
_u("ceil", _ceil, lambda x, a, b: np.ceil(x), keep_int=True, bwd=_zero_bwd, grad=lambda g, s, a: g * 0)
_u("round", _round, lambda x, a, b: np.round(x), keep_int=True, bwd=_zero_bwd, grad=lambda g, s, a: g * 0)
_u("trunc", _trunc, lambda x, a, b: np.trunc(x), keep_int=True, bwd=_zero_bwd, grad=lambda g, s, a: g * 0)
_u("reciprocal", _reciprocal, lambda x, a, b: 1 / x, bwd=_recip_bwd, grad=lambda g, s, a: -g * s * s, bwd_uses="y")
_u("square", _square, lambda x, a, b: x * x, keep_int=True, bwd=_square_bwd, grad=lambda g, s, a: g * 2 * s)
_u("pow_scalar", _pow_scalar, lambda x, a, b: _np_powf(x, a), bwd=_pow_scalar_bwd,
   bwd_ref=lambda g, s, a: np.where(a == 0, 0, g * a * _np_powf(s, a - 1)),
   bwd_composite=lambda g, x, y, a: g * 0 if a == 0 else g * a * x.pow(a - 1))
_u("logical_not", _logical_not, lambda x, a, b: x == 0, out_bool=True)
_u("isnan", _isnan, lambda x, a, b: np.isnan(x), out_bool=True)
_u("isinf", _isinf, lambda x, a, b: np.isinf(x), out_bool=True)
_u("isfinite", _isfinite, lambda x, a, b: np.isfinite(x), out_bool=True)
_u("clamp", _clamp, lambda x, a, b: _np_clamp(x, a, b), keep_int=True, bwd=None)


def _gelu_tanh_grad(x):
    k = 0.7978845608028654
    t = ((x + x * x * x * 0.044715) * k).tanh()
    return (t + 1) * 0.5 + x * 0.5 * (1 - t * t) * k * (x * x * (3 * 0.044715) + 1)


def _np_norm_cdf(s):
    from math import erf
    return 0.5 * (1 + np.vectorize(erf, otypes=[s.dtype])(s / math.sqrt(2.0))) if s.size else s


class Unary(Function):
    _tensor_ctx_attrs = False

    @staticmethod
    def forward(ctx, x, op, a=0.0, b=0.0):
        out = unary_compute(op, x, a, b)
        ctx._name = op.node_name
        if any(ctx.needs_input_grad):
            op.save(ctx, a, x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        return ctx.op.backward(ctx, g)


class UnaryInplace(Unary):
    """``x.exp_()`` and friends: the result is written through ``x``'s strides; ``x`` gets the new history."""

    @staticmethod
    def forward(ctx, x, op, a=0.0, b=0.0):
        check_inplace(x, ctx)
        ctx._name = op.node_name
        saved_x = x.clone() if any(ctx.needs_input_grad) and op.bwd_uses == "x" and op.bwd is not None else x
        unary_compute(op, x, a, b, out=x)
        mark_written(ctx, x)
        if any(ctx.needs_input_grad):
            op.save(ctx, a, saved_x, x)
        return x


def unary_compute(op, x, a=0.0, b=0.0, out=None, out_dtype=None):
    """``op(x, a, b)`` into a new tensor, or into ``out`` (same shape; any strides; cast to its dtype)."""
    op.check_input(x.dtype, x._storage.device)
    if out_dtype is None:
        out_dtype = op.out_dtype(x.dtype)
    if x.dtype is D.bool_ and op.name == "neg":
        raise NotImplementedError("Negation, the `-` operator, on a bool tensor is not supported. If you are trying "
                                  "to invert a mask, use the `~` or `logical_not()` operator instead.")
    if out is not None:
        check_out(out, out_dtype, x._shape)
    if op.int_identity and not x.dtype.is_floating_point:
        # floor/ceil/round/trunc of an integer tensor: the values themselves
        return copy_values(x, out) if out is not None else x.clone()
    ct = op.compute_dtype(x.dtype, out_dtype)
    if x._storage.device.type == "cpu":
        xa = x._np.astype(np_ct(ct), copy=False)
        res = quiet(op.ref, xa, a, b)
        if out is None:
            return host_result(res, out_dtype, xa, None, x._storage.device)
        out._np[...] = np.asarray(res).astype(out.dtype.np, copy=False)
        return out
    return launch_pointwise(op.tfn, (x,), empty(x._shape, out_dtype, x.device) if out is None else out, ACC[ct], a, b)


def copy_values(src, dst):
    return copy_into(dst, src)


def apply_inplace(fn, x, *args):
    """An in-place Function on ``x``; on a view that takes part in autograd the write is recorded on its base."""
    if x._base is not None and (x.requires_grad or any(isinstance(a, Tensor) and a.requires_grad for a in args)):
        return views.apply_inplace(fn, x, *args)
    return fn.apply(x, *args)


def grad_kernel(tfn, ref, g, s, a, dtype, b=None):
    """A fused backward: ``tfn(g, s, a, b)`` in one pass, written in ``dtype`` (``ref(g, s, a[, b])`` on cpu)."""
    ct = dtype if dtype.is_floating_point else D.get_default_dtype()
    if g._storage.device.type == "cpu":
        ga, sa = g._np.astype(np_ct(ct), copy=False), s._np.astype(np_ct(ct), copy=False)
        res = quiet(ref, ga, sa, a) if b is None else quiet(ref, ga, sa, a, b)
        if g._shape != s._shape or np.shape(res) != g._shape:
            res = np.broadcast_to(np.asarray(res), broadcast_shapes(g._shape, s._shape))
        return host_result(res, dtype, ga, sa, g._storage.device)
    shape = broadcast_shapes(g._shape, s._shape)
    return launch_pointwise(tfn, (g, s), empty(shape, dtype, g.device), ACC[ct], a, 0.0 if b is None else b)


def unary(name, x, a=0.0, b=0.0):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not {type(x).__name__}")
    op = UNARY[name]
    out = host_unary(op, x, a, b)                 # the cpu fast path (_host.py), where it applies
    return out if out is not None else Unary.apply(x, op, a, b)


def unary_(name, x, a=0.0, b=0.0):
    return apply_inplace(UnaryInplace, x, UNARY[name], a, b)


def _def_unary(name, *aliases):
    @register(name, *aliases)
    def fn(input):
        return unary(name, input)
    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name}."
    if UNARY[name].bwd is not None or UNARY[name].out_bool:
        @register(name + "_", *(al + "_" for al in aliases))
        def fn_(input):
            return unary_(name, input)
        fn_.__name__ = name + "_"
        fn_.__doc__ = f"In-place elementwise {name}."
    return fn


for _name in ("neg", "abs", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid",
              "relu", "sign", "floor", "ceil", "trunc", "reciprocal", "square", "logical_not", "isnan", "isinf",
              "isfinite", "silu", "erf"):
    _def_unary(_name)
for _name in ("isnan_", "isinf_", "isfinite_"):
    delattr(Tensor, _name)
    FUNCTIONS.pop(_name, None)
register("negative")(Tensor.neg)
register("absolute")(Tensor.abs)
register("negative_")(Tensor.neg_)
register("fix")(Tensor.trunc)
register("fix_")(Tensor.trunc_)


@register("round")
def round(input, decimals=0):
    if decimals:
        s = 10.0 ** decimals
        return unary("round", input * s) / s
    return unary("round", input)


@register("round_")
def round_(input, decimals=0):
    if decimals:
        s = 10.0 ** decimals
        return input.mul_(s).round_().div_(s)
    return unary_("round", input)


@register("leaky_relu", method=False)
def leaky_relu(input, negative_slope=0.01, inplace=False):
    return (unary_ if inplace else unary)("leaky_relu", input, float(negative_slope))


@register("leaky_relu_", method=False)
def leaky_relu_(input, negative_slope=0.01):
    return unary_("leaky_relu", input, float(negative_slope))


@register("elu", method=False)
def elu(input, alpha=1.0, inplace=False):
    return (unary_ if inplace else unary)("elu", input, float(alpha))


@register("elu_", method=False)
def elu_(input, alpha=1.0):
    return unary_("elu", input, float(alpha))


@register("gelu", method=False)
def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise RuntimeError(f"approximate argument must be either none or tanh, but got {approximate}")
    return unary("gelu" if approximate == "none" else "gelu_tanh", input)


@triton.jit
def _softplus_bwd(g, x, beta, threshold):
    bx = x * beta
    return tl.where(bx > threshold, g, g * _sigmoid(bx))


class Softplus(Function):
    @staticmethod
    def forward(ctx, x, beta, threshold):
        ctx._name = "SoftplusBackward0"
        ctx.save_for_backward(x)
        ctx.beta, ctx.threshold = beta, threshold
        return unary_compute(UNARY["softplus"], x, beta, threshold)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        # d softplus / dx = sigmoid(beta * x), the identity beyond the threshold
        if not STATE.enabled:
            return grad_kernel(_softplus_bwd, _np_softplus_bwd, g, x, ctx.beta, x.dtype, ctx.threshold)
        bx = x * ctx.beta
        return where(bx > ctx.threshold, g, g * bx.sigmoid())


def _np_softplus_bwd(g, x, beta, threshold):
    bx = x * beta
    return np.where(bx > threshold, g, g * _np_sigmoid(bx))


@register("softplus", method=False)
def softplus(input, beta=1.0, threshold=20.0):
    return Softplus.apply(input, float(beta), float(threshold))


def _clamp_bound(v, name):
    check_int_scalar("clamp", v)
    if isinstance(v, Tensor):
        if v.numel() != 1:
            raise NotImplementedError(f"clamp with a tensor '{name}' of more than one element: use "
                                      "tritorch.maximum/minimum")
        return v.item()
    return v


def _hardtanh_dtype(d, lo, hi):
    """hardtanh (and relu6) keeps its input's type, an integer one too (its bounds truncated), as PyTorch."""
    if d is D.bool_:
        raise NotImplementedError("Bool inputs not supported for hardtanh")
    if d is D.uint8 and (lo < 0 or hi < 0):
        raise RuntimeError("cannot do hardtanh on an unsigned type with negative limits")
    return d


_C_INT_NAMES = {"int8": "int8_t", "int16": "int16_t", "int32": "int", "int64": "int64_t", "uint8": "uint8_t"}


def _int_bound(v, dtype=D.int64):
    """A clamp bound of an integer result, truncated toward zero and converted to ``dtype`` as PyTorch's scalar
    conversion: RuntimeError out of range, a negative value wrapped for an unsigned type (down to -max)."""
    name = _C_INT_NAMES.get(np.dtype(dtype.np).name, "int64_t")
    info = np.iinfo(dtype.np) if dtype.np.kind in "iu" else np.iinfo(np.int64)
    try:
        v = int(v)
    except (ValueError, OverflowError):
        v = None
    lo = -info.max if info.min == 0 else info.min
    if v is None or not lo <= v <= info.max:
        raise RuntimeError(f"value cannot be converted to type {name} without overflow")
    return v % (info.max + 1) if v < 0 and info.min == 0 else v


_CLAMP_NAMES = {(True, True): "ClampBackward1", (True, False): "ClampMinBackward0",
                (False, True): "ClampMaxBackward0"}


class Clamp(Function):
    @staticmethod
    def forward(ctx, x, lo, hi, name=None, inplace=False):
        if lo is None and hi is None:
            raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
        lo, hi = _clamp_bound(lo, "min"), _clamp_bound(hi, "max")
        ctx._name = name or _CLAMP_NAMES[(lo is not None, hi is not None)]
        # both pass the gradient strictly inside the bounds; a NaN input gets it from hardtanh only (PyTorch's rules)
        ctx.hardtanh = ctx._name == "HardtanhBackward0"
        if ctx.hardtanh:
            out_dtype = _hardtanh_dtype(x.dtype, lo, hi)
        else:
            out_dtype = D.result_type(x, *(v for v in (lo, hi) if v is not None))
        fl = out_dtype.is_floating_point
        a = (float(lo) if fl else _int_bound(lo, out_dtype)) if lo is not None else (-math.inf if fl else -2 ** 63)
        b = (float(hi) if fl else _int_bound(hi, out_dtype)) if hi is not None else (math.inf if fl else 2 ** 63 - 1)
        if inplace:
            check_inplace(x, ctx)
            if any(ctx.needs_input_grad):
                ctx.save_for_backward(x.clone())
                ctx.lo, ctx.hi = a, b
            unary_compute(UNARY["clamp"], x, a, b, out=x, out_dtype=out_dtype)
            mark_written(ctx, x)
            return x
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(x)
            ctx.lo, ctx.hi = a, b
        return unary_compute(UNARY["clamp"], x, a, b, out_dtype=out_dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if not STATE.enabled:
            if ctx.hardtanh:
                return grad_kernel(_hardtanh_bwd, _np_hardtanh_bwd, g, x, ctx.lo, x.dtype, ctx.hi)
            return grad_kernel(_clamp_bwd, _np_clamp_bwd, g, x, ctx.lo, x.dtype, ctx.hi)
        if ctx.hardtanh:        # a NaN input takes the gradient: zero only on and beyond the bounds
            return g * binary("logical_or", x <= ctx.lo, x >= ctx.hi).logical_not()
        return g * binary("logical_and", x > ctx.lo, x < ctx.hi)


@triton.jit
def _clamp_bwd(g, x, lo, hi):
    return tl.where((x > lo) & (x < hi), g, 0.0)


def _np_clamp_bwd(g, x, lo, hi):
    return np.where((x > lo) & (x < hi), g, 0)


@triton.jit
def _hardtanh_bwd(g, x, lo, hi):
    return tl.where((x <= lo) | (x >= hi), 0.0, g)       # a NaN input takes the gradient, as in PyTorch


def _np_hardtanh_bwd(g, x, lo, hi):
    return np.where((x <= lo) | (x >= hi), 0, g)


class ClampTensor(Function):
    """clamp with tensor bounds: everything cast to the promoted type, broadcast, NaN from any operand; one bound is
    maximum/minimum's gradient rule (ties split), both PyTorch's clamp.Tensor rule."""
    _tensor_ctx_attrs = False

    @staticmethod
    def forward(ctx, x, lo, hi, name=None):
        ctx._name = name or "ClampBackward0"
        given = [v for v in (x, lo, hi) if v is not None]
        check_same_device("clamp", *given)
        dt = D.result_type(*given)
        if dt is D.bool_ and lo is not None and hi is not None:
            raise NotImplementedError(f"\"clamp_{x.device.type}\" not implemented for 'Bool'")
        xc, lc, hc = (None if v is None else v.to(dt) for v in (x, lo, hi))
        out = xc if lc is None else binary("maximum", xc, lc)
        out = out if hc is None else binary("minimum", out, hc)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(x, lo, hi)
            ctx.metas = tuple(None if v is None else (v._shape, v.dtype) for v in (x, lo, hi))
        return out

    @staticmethod
    def backward(ctx, g):
        x, lo, hi = ctx.saved_tensors
        if hi is None:
            gx, gl, gh = *_minmax_grads(g, x, lo, True), None
        elif lo is None:
            gx, gh = _minmax_grads(g, x, hi, False)
            gl = None
        else:
            lt, le = lo < hi, lo <= hi
            gx = g * where((x < lo) | (x > hi), 0.0, where(((x == lo) | (x == hi)) & lt, 0.5, 1.0))
            gl = g * where((x < lo) & le, 1.0, where((x == lo) & lt, 0.5, 0.0))
            gh = g * where(((x > hi) & le) | (lo > hi), 1.0, where((x == hi) & lt, 0.5, 0.0))
        needs = ctx.needs_input_grad
        return tuple(_finish_grad(gv, m) if need else None for gv, m, need in zip((gx, gl, gh), ctx.metas, needs))


def _tensor_bounds(lo, hi):
    """True where clamp's bounds are tensors (PyTorch's TypeError where a tensor and a number are mixed)."""
    lt, ht = isinstance(lo, Tensor), isinstance(hi, Tensor)
    if (lt and hi is not None and not ht) or (ht and lo is not None and not lt):
        raise TypeError(f"clamp() received an invalid combination of arguments - got (Tensor, max="
                        f"{type(hi).__name__}, min={type(lo).__name__})")
    return lt or ht


def _clamp_tensor_(x, lo, hi):
    out = ClampTensor.apply(x, lo, hi)
    if out._shape != x._shape:
        raise RuntimeError(f"output with shape {list(x._shape)} doesn't match the broadcast shape {list(out._shape)}")
    if not D.can_cast(out.dtype, x.dtype):
        raise RuntimeError(f"result type {D.scalar_name(out.dtype)} can't be cast to the desired output type "
                           f"{D.scalar_name(x.dtype)}")
    return x.copy_(out)


@register("clamp", "clip")
def clamp(input, min=None, max=None):
    if _tensor_bounds(min, max):
        return ClampTensor.apply(input, min, max)
    return Clamp.apply(input, min, max)


@register("clamp_", "clip_")
def clamp_(input, min=None, max=None):
    if _tensor_bounds(min, max):
        return _clamp_tensor_(input, min, max)
    return apply_inplace(Clamp, input, min, max, None, True)


@register("clamp_min")
def clamp_min(input, min):
    if isinstance(min, Tensor):
        return ClampTensor.apply(input, min, None, "ClampMinBackward1")
    return Clamp.apply(input, min, None)


@register("clamp_max")
def clamp_max(input, max):
    if isinstance(max, Tensor):
        return ClampTensor.apply(input, None, max, "ClampMaxBackward1")
    return Clamp.apply(input, None, max)


@register("clamp_min_")
def clamp_min_(input, min):
    if isinstance(min, Tensor):
        return _clamp_tensor_(input, min, None)
    return apply_inplace(Clamp, input, min, None, None, True)


@register("clamp_max_")
def clamp_max_(input, max):
    if isinstance(max, Tensor):
        return _clamp_tensor_(input, None, max)
    return apply_inplace(Clamp, input, None, max, None, True)


@register("hardtanh", method=False)
def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    if inplace:
        return apply_inplace(Clamp, input, min_val, max_val, "HardtanhBackward0", True)
    return Clamp.apply(input, min_val, max_val, "HardtanhBackward0")


# ====================================================================================================================
# Binary ops
# ====================================================================================================================

@triton.jit
def _add(x, y, a, b):
    return x + y * a


@triton.jit
def _add1(x, y, a, b):
    return x + y


@triton.jit
def _sub(x, y, a, b):
    return x - y * a


@triton.jit
def _mul(x, y, a, b):
    return x * y


@triton.jit
def _div(x, y, a, b):
    return x / y


@triton.jit
def _floor_div_f(x, y, a, b):
    # PyTorch's (and NumPy's) div_floor: from fmod, so that the quotient is exact where x / y would round
    mod = x % y
    div = (x - mod) / y
    div = tl.where((mod != 0) & ((y < 0) != (mod < 0)), div - 1.0, div)
    fl = tl.floor(div)
    fl = tl.where(div - fl > 0.5, fl + 1.0, fl)
    q = x / y
    fl = tl.where(div != 0, fl, tl.where(q < 0, -0.0, 0.0))
    return tl.where(y == 0, q, fl)


@triton.jit
def _trunc_div_f(x, y, a, b):
    q = x / y
    return tl.where(q < 0, tl.ceil(q), tl.floor(q))


# integer division by zero (which the host does not check for a divisor tensor on the device) gives 0: the kernels
# divide by 1 there instead, so that no lane divides by zero (undefined in LLVM), and select 0
@triton.jit
def _floor_div_i(x, y, a, b):
    ys = tl.where(y == 0, 1, y)
    q = x // ys
    r = x % ys
    return tl.where(y == 0, 0, tl.where((r != 0) & ((r < 0) != (ys < 0)), q - 1, q))


@triton.jit
def _trunc_div_i(x, y, a, b):
    ys = tl.where(y == 0, 1, y)
    return tl.where(y == 0, 0, x // ys)


@triton.jit
def _remainder_f(x, y, a, b):
    r = x % y           # fmod: the sign of x
    return tl.where((r != 0) & ((r < 0) != (y < 0)), r + y, r)


@triton.jit
def _remainder_i(x, y, a, b):
    ys = tl.where(y == 0, 1, y)
    r = x % ys
    return tl.where(y == 0, 0, tl.where((r != 0) & ((r < 0) != (ys < 0)), r + ys, r))


@triton.jit
def _fmod_f(x, y, a, b):
    return x % y


@triton.jit
def _fmod_i(x, y, a, b):
    ys = tl.where(y == 0, 1, y)
    return tl.where(y == 0, 0, x % ys)


@triton.jit
def _pow_t(x, y, a, b):
    return _pow_f(x, y)


@triton.jit
def _pow_i(x, y, a, b):
    """Integer x ** y by repeated squaring (wrapping on overflow, as PyTorch); y < 0 gives 0 unless |x| == 1."""
    r = tl.full(x.shape, 1, x.dtype)
    base = x
    e = tl.where(y < 0, 0, y)
    for _ in range(64):
        r = tl.where((e & 1) != 0, r * base, r)
        base = base * base
        e = e >> 1
    neg = tl.where((x == -1) & ((y & 1) != 0), -1, tl.where((x == 1) | (x == -1), 1, 0)).to(x.dtype)
    return tl.where(y < 0, neg, r)


@triton.jit
def _maximum(x, y, a, b):
    return tl.where((x > y) | (x != x), x, y)


@triton.jit
def _minimum(x, y, a, b):
    return tl.where((x < y) | (x != x), x, y)


@triton.jit
def _eq(x, y, a, b):
    return x == y


@triton.jit
def _ne(x, y, a, b):
    return x != y


@triton.jit
def _lt(x, y, a, b):
    return x < y


@triton.jit
def _le(x, y, a, b):
    return x <= y


@triton.jit
def _gt(x, y, a, b):
    return x > y


@triton.jit
def _ge(x, y, a, b):
    return x >= y


@triton.jit
def _logical_and(x, y, a, b):
    return (x != 0) & (y != 0)


@triton.jit
def _logical_or(x, y, a, b):
    return (x != 0) | (y != 0)


@triton.jit
def _logical_xor(x, y, a, b):
    return (x != 0) != (y != 0)


@triton.jit
def _bitwise_and(x, y, a, b):
    return x & y


@triton.jit
def _bitwise_or(x, y, a, b):
    return x | y


@triton.jit
def _bitwise_xor(x, y, a, b):
    return x ^ y


@triton.jit
def _mul_gx(g, x, y, a, b):
    return g * y


@triton.jit
def _mul_gy(g, x, y, a, b):
    return g * x


class BinaryOp:
    """One binary op, declared in one ``_b(...)`` row:

    - ``tfn`` / ``tfn_int``: the Triton math (float and, where it differs, integer), ``ref``: its NumPy reference;
    - ``kind``: the result-type rule (arith, true_div, compare, logical);
    - ``grad(g, x, y, out, alpha) -> (gx, gy)``: the gradient rule, in operators and tensor ops only, so that the
      same function runs on tensors (recorded under create_graph) and, for the ``ufunc`` ops, on the cpu fast
      path's NumPy arrays; None: the forward records a node whose backward raises (as PyTorch);
    - ``saves`` = (x, y, out): what ``grad`` reads; 0: never, 1: always, 2: only when the other argument needs its
      gradient (mul's gx is g * y, its gy is g * x); x is the input before an in-place write;
    - ``pair``: Triton functions of (g, x, y, a, b) giving gx and gy, where the two gradients can come from one
      launch (one read of g, x, y) when both are needed, not recorded, on ``cuda``, in one dtype;
    - ``ufunc``: the NumPy ufunc the cpu fast path calls (alpha 1); its cpu nodes are plain (``_host.py``);
    - ``nodes``: the autograd node names, as PyTorch's: (tensor op tensor-or-scalar, scalar op tensor).
    """

    def __init__(self, name, tfn, ref, *, tfn_int=None, kind="arith", grad=None, saves=(0, 0, 0), pair=None,
                 ufunc=None, nodes=("", "")):
        self.name, self.tfn, self.ref, self.tfn_int, self.kind = name, tfn, ref, tfn_int or tfn, kind
        self.grad, self.saves, self.pair, self.ufunc, self.nodes = grad, saves, pair, ufunc, nodes
        self.plain = ufunc is not None
        self.host = {}                    # dtype -> what the cpu fast path needs (_host.py)
        self.int_div = name in ("floor_divide", "trunc_divide", "remainder", "fmod")

    def dtypes(self, common):
        """(compute dtype, output dtype) for inputs promoted to ``common``."""
        if self.kind == "compare":
            return common, D.bool_
        if self.kind == "logical":
            return common, D.bool_
        if self.kind == "true_div" and not common.is_floating_point:
            f = D.get_default_dtype()
            return f, f
        return common, common

    def save(self, ctx, alpha, x, y, out):
        """What ``grad`` reads, on ``ctx`` (a ``Binary`` node or the cpu fast path's ``HostBinary``)."""
        if not out.dtype.is_floating_point:       # comparisons, logical and integer ops: no gradient flows
            return
        if self.grad is None:
            # as PyTorch: the forward runs and records a node whose backward raises
            ctx._name, ctx.not_implemented = "NotImplemented", self.name
            return
        d = ctx.__dict__
        d["op"] = self
        d["alpha"] = alpha
        x_is_t, y_is_t = isinstance(x, Tensor), isinstance(y, Tensor)      # a Python number is kept as is
        d["x_scalar"] = None if x_is_t else x
        d["y_scalar"] = None if y_is_t else y
        sx, sy, so = self.saves
        needs = ctx.needs_input_grad
        d["_to_save"] = (x if x_is_t and (sx == 1 or sx == 2 and len(needs) > 1 and needs[1]) else None,
                         y if y_is_t and (sy == 1 or sy == 2 and needs[0]) else None, out if so else None)

    def backward(self, ctx, g, x_meta, y_meta):
        """The gradients by ``grad`` in tensor ops (recorded under create_graph), summed back to each input's
        shape and cast to its dtype (``*_meta``: (shape, dtype, ...) of the input)."""
        x, y, out = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if self.pair is not None and x is not None and y is not None and not STATE.enabled and \
                g._storage.device.type == "cuda" and x.dtype is y.dtype is g.dtype:
            gx, gy = launch_pointwise(self.pair, (g, x, y), (empty(g._shape, g.dtype, g.device),
                                                              empty(g._shape, g.dtype, g.device)), ACC[g.dtype])
        else:
            gx, gy = self.grad(g, ctx.x_scalar if x is None else x, ctx.y_scalar if y is None else y, out, ctx.alpha)
        return (_finish_grad(gx, x_meta) if needs[0] else None,
                _finish_grad(gy, y_meta) if len(needs) > 1 and needs[1] else None)


BINARY = {}


def _np_remainder(x, y):
    r = np.fmod(x, y) if np.asarray(x).dtype.kind == "f" else np.mod(x, y)
    if np.asarray(r).dtype.kind != "f":
        return r
    return np.where((r != 0) & ((r < 0) != (y < 0)), r + y, r)


def _np_powf(x, y):
    """np.power of floats with C's special cases: for an exponent 0.5 broadcast over x NumPy takes sqrt instead,
    which gives NaN for -inf and -0.0 for -0.0 (C's pow: inf and +0.0)."""
    r = np.power(x, y)
    half = np.equal(y, 0.5)
    if np.any(half):
        r = np.where(half & (x == 0), 0.0, np.where(half & (x == -np.inf), np.inf, r)).astype(r.dtype, copy=False)
    return r


def _np_pow(x, y):
    if np.asarray(x).dtype.kind == "f":
        return _np_powf(x, y)
    x, y = np.broadcast_arrays(np.asarray(x), np.asarray(y, dtype=np.asarray(x).dtype))
    r = np.power(x, np.maximum(y, 0))
    neg = np.where((x == -1) & (y % 2 != 0), -1, np.where(np.abs(x) == 1, 1, 0)).astype(x.dtype)
    return np.where(y < 0, neg, r)


def _b(name, tfn, ref, **kw):
    BINARY[name] = BinaryOp(name, tfn, ref, **kw)


# -- the gradient rules that do not fit on a row ----------------------------------------------------------------------
def _div_grads(g, x, y, out, alpha):
    gx = g / y
    gy = -g * x / (y * y) if x is not None and not _scalar_ok(y) else None
    return gx, gy


def _pow_grads(g, x, y, out, alpha):
    # PyTorch's pow_backward: zero where the exponent is 0; for the exponent, zero where x == 0 and y >= 0
    if isinstance(y, Tensor):
        gx = where(y == 0, 0.0, g * y * x.pow(y - 1))
    else:
        gx = g * 0 if y == 0 else g * y * x.pow(y - 1)
    gy = None
    if isinstance(y, Tensor):
        gy = where(binary("logical_and", x == 0, y >= 0), 0.0, g * out * x.log())
    return gx, gy


def _minmax_grads(g, x, y, is_max):
    # PyTorch's rule: ties split the gradient evenly; elsewhere an input gets it unless it lost the comparison, so
    # where either is NaN (every comparison false) both get it
    x_lost, y_lost = (x < y, x > y) if is_max else (x > y, x < y)
    tie = x == y
    return g * where(tie, 0.5, where(x_lost, 0.0, 1.0)), g * where(tie, 0.5, where(y_lost, 0.0, 1.0))


def _zero_grads(g, x, y, out, alpha):
    return g * 0, g * 0


_DIV1 = ("DivBackward1", "DivBackward1")
_b("add", _add, lambda x, y, a: x + y * a if a != 1 else x + y, ufunc=np.add, nodes=("AddBackward0", "AddBackward0"),
   grad=lambda g, x, y, out, alpha: (g, g * alpha if alpha != 1 else g))
_b("sub", _sub, lambda x, y, a: x - y * a if a != 1 else x - y, ufunc=np.subtract,
   nodes=("SubBackward0", "RsubBackward1"), grad=lambda g, x, y, out, alpha: (g, -g * alpha if alpha != 1 else -g))
_b("mul", _mul, lambda x, y, a: x * y, ufunc=np.multiply, nodes=("MulBackward0", "MulBackward0"), saves=(2, 2, 0),
   grad=lambda g, x, y, out, alpha: (None if y is None else g * y, None if x is None else g * x),
   pair=(_mul_gx, _mul_gy))
_b("div", _div, lambda x, y, a: x / y, kind="true_div", ufunc=np.true_divide, nodes=("DivBackward0", "DivBackward0"),
   saves=(2, 1, 0), grad=_div_grads)
# floor_divide has no gradient (PyTorch's "derivative for floor_divide is not implemented"); div(rounding_mode=
# "floor") is the same math with zero gradients (as PyTorch)
_b("floor_divide", _floor_div_f, lambda x, y, a: np.floor_divide(x, y), tfn_int=_floor_div_i, nodes=_DIV1)
BINARY["div_floor"] = BinaryOp("floor_divide", _floor_div_f, BINARY["floor_divide"].ref, tfn_int=_floor_div_i,
                               nodes=_DIV1, grad=_zero_grads)
_b("trunc_divide", _trunc_div_f, lambda x, y, a: np.trunc(x / y).astype(x.dtype) if x.dtype.kind == "f" else
   (np.sign(x) * np.sign(y) * (np.abs(x) // np.maximum(np.abs(y), 1))).astype(x.dtype), tfn_int=_trunc_div_i,
   nodes=_DIV1, grad=_zero_grads)
_b("remainder", _remainder_f, lambda x, y, a: _np_remainder(x, y), tfn_int=_remainder_i, saves=(1, 1, 0),
   nodes=("RemainderBackward0", "RemainderBackward0"),
   grad=lambda g, x, y, out, alpha: (g, -g * div(x, y, rounding_mode="floor") if isinstance(y, Tensor) else None))
_b("fmod", _fmod_f, lambda x, y, a: np.fmod(x, y), tfn_int=_fmod_i, saves=(1, 1, 0),
   nodes=("FmodBackward0", "FmodBackward0"),
   grad=lambda g, x, y, out, alpha: (g, -g * div(x, y, rounding_mode="trunc") if isinstance(y, Tensor) else None))
_b("pow", _pow_t, lambda x, y, a: _np_pow(x, y), tfn_int=_pow_i, saves=(1, 1, 1),
   nodes=("PowBackward1", "PowBackward2"), grad=_pow_grads)
_b("maximum", _maximum, lambda x, y, a: np.maximum(x, y), saves=(1, 1, 0), nodes=("MaximumBackward0",) * 2,
   grad=lambda g, x, y, out, alpha: _minmax_grads(g, x, y, True))
_b("minimum", _minimum, lambda x, y, a: np.minimum(x, y), saves=(1, 1, 0), nodes=("MinimumBackward0",) * 2,
   grad=lambda g, x, y, out, alpha: _minmax_grads(g, x, y, False))
# comparisons, logical and bitwise ops: bool or integer results, through which no gradient flows
_b("eq", _eq, lambda x, y, a: x == y, kind="compare")
_b("ne", _ne, lambda x, y, a: x != y, kind="compare")
_b("lt", _lt, lambda x, y, a: x < y, kind="compare")
_b("le", _le, lambda x, y, a: x <= y, kind="compare")
_b("gt", _gt, lambda x, y, a: x > y, kind="compare")
_b("ge", _ge, lambda x, y, a: x >= y, kind="compare")
_b("logical_and", _logical_and, lambda x, y, a: (x != 0) & (y != 0), kind="logical")
_b("logical_or", _logical_or, lambda x, y, a: (x != 0) | (y != 0), kind="logical")
_b("logical_xor", _logical_xor, lambda x, y, a: (x != 0) != (y != 0), kind="logical")
_b("bitwise_and", _bitwise_and, lambda x, y, a: x & y)
_b("bitwise_or", _bitwise_or, lambda x, y, a: x | y)
_b("bitwise_xor", _bitwise_xor, lambda x, y, a: x ^ y)


def _scalar_ok(v):
    return isinstance(v, (bool, int, float, np.number, np.bool_))


def binary_compute(op, x, y, alpha=1, out=None):
    """``op(x, y)`` with PyTorch's promotion and broadcasting, into a new tensor or into ``out`` (cast to its type,
    written through its strides). ``x`` is a tensor; ``y`` a tensor or a Python scalar."""
    if out is None and x._storage.device is CPU and type(alpha) is int and alpha == 1:
        res = host_values(op, x, y)
        if res is not None:
            return res
    common = D.result_type(x, y)
    ct, out_dtype = op.dtypes(common)
    _check_bool_operands(op, x, y, common)
    if op.name.startswith("bitwise") and common.is_floating_point:
        raise NotImplementedError(f"\"{op.name}_{x._storage.device.type}\" not implemented for "
                                  f"'{D.scalar_name(common)}'")
    if isinstance(alpha, float) and op.name in ("add", "sub") and not common.is_floating_point:
        raise RuntimeError("For integral input tensors, argument alpha must not be a floating point number.")
    if not (type(alpha) is int and alpha == 1) and not common.is_floating_point:
        # alpha converted to the integer type as PyTorch's scalar conversion (checked, an unsigned type wrapping)
        alpha = bool(alpha) if common is D.bool_ else _int_bound(alpha, common)
    y_is_t = isinstance(y, Tensor)
    if y_is_t:
        if x._storage.device != y._storage.device:
            if y.ndim == 0 and y.device.type == "cpu":          # a cpu scalar tensor goes with any device
                y, y_is_t = y.item(), False
            elif x.ndim == 0 and x.device.type == "cpu" and out is None:
                x = Tensor._wrap_numpy(np.array(x._np), y.device)
            else:
                check_same_device(op.name, x, y)
    if (common is D.float16 or common is D.bfloat16) and not (out is x or out is y):
        # a half result: each tensor operand is first rounded to it, as PyTorch (int32 -2**31 is -inf in float16)
        x = x if x.dtype is common else x.to(common)
        y = y.to(common) if y_is_t and y.dtype is not common else y
    if y_is_t:
        shape = broadcast_shapes(x._shape, y._shape) if x._shape != y._shape else x._shape
    else:
        shape = x._shape
    if out is not None:
        check_out(out, out_dtype, shape)
    if op.int_div and not ct.is_floating_point:
        _check_int_divisor(op, y, y_is_t, shape)
    if x._storage.device.type == "cpu":
        npct = np_ct(ct)
        xa = x._np.astype(npct, copy=False)
        ya = y._np.astype(npct, copy=False) if y_is_t else np.array(y).astype(npct)[()]
        res = np.asarray(quiet(op.ref, xa, ya, alpha))
        if out is not None:
            out._np[...] = res.astype(out.dtype.np, copy=False)
            return out
        if res.shape != shape:
            res = np.broadcast_to(res, shape)
        return host_result(res, out_dtype, xa, ya, x._storage.device)
    fn = op.tfn if ct.is_floating_point else op.tfn_int
    if ct is D.float64 and isinstance(alpha, float) and float(np.float32(alpha)) != alpha:
        # Triton passes Python floats as fp32: fold a float64 alpha into y first
        y, alpha = (y * alpha if y_is_t else float(y) * alpha), 1
    if out is not None and isinstance(y, Tensor) and _overlaps(out, y):
        y = y.clone()
    if out is None:
        out = empty(shape, out_dtype, x.device)
    return launch_pointwise(_add1 if op.name == "add" and alpha == 1 else fn, (x, y), out, ACC[ct], alpha)


# the kernels PyTorch has no bool version of, by op: their names in its error
_NO_BOOL_KERNEL = {"floor_divide": "div_floor_{dev}", "trunc_divide": "div_trunc_{dev}",
                   "remainder": "remainder_{dev}", "fmod": "fmod_{dev}", "pow": "pow"}


def _check_bool_operands(op, x, y, common):
    """PyTorch's NotImplementedError for ``-`` with a bool operand and for the rounding divisions, remainders and
    tensor ** tensor of bools."""
    if op.name == "sub":
        xb, yb = (v.dtype is D.bool_ if isinstance(v, Tensor) else isinstance(v, (bool, np.bool_)) for v in (x, y))
        if xb and yb:
            raise NotImplementedError("Subtraction, the `-` operator, with two bool tensors is not supported. Use the "
                                      "`^` or `logical_xor()` operator instead.")
        if xb or yb:
            raise NotImplementedError(_BOOL_SUB)
    elif common is D.bool_ and op.name in _NO_BOOL_KERNEL and (op.name != "pow" or isinstance(y, Tensor)):
        name = _NO_BOOL_KERNEL[op.name].format(dev=x._storage.device.type)
        raise NotImplementedError(f"\"{name}\" not implemented for 'Bool'")


_BOOL_SUB = ("Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying to invert a mask, "
             "use the `~` or `logical_not()` operator instead.")


def _check_int_divisor(op, y, y_is_t, shape):
    """PyTorch's error for an integer division (//, %, fmod, div with a rounding mode) by zero: for a Python-number
    divisor on every device, for a divisor tensor on ``cpu`` (on a device that check would wait for the device: as
    PyTorch's CUDA, the kernels do not raise there, and define the result as 0)."""
    if not math.prod(shape):
        return
    if (not y_is_t and y == 0) or (y_is_t and y._storage.device.type == "cpu" and not y._np.all()):
        name = "div(rounding_mode='trunc')" if op.name == "trunc_divide" else op.name
        raise RuntimeError(f"ZeroDivisionError: integer division by zero in {name}")


def _overlaps(a, b):
    """Whether writing ``a`` elementwise could change ``b`` before it is read (same memory, another layout)."""
    return a._storage.data is b._storage.data and not (a._offset == b._offset and a._stride == b._stride
                                             and a._shape == b._shape)


class Binary(Function):
    _tensor_ctx_attrs = False

    @staticmethod
    def forward(ctx, x, y, op, alpha=1, name=None):
        out = binary_compute(op, x, y, alpha)
        ctx._name = name or op.nodes[0] or None
        if any(ctx.needs_input_grad):
            op.save(ctx, alpha, x, y, out)
            ctx.metas = _metas(x, y)
        return out

    @staticmethod
    def backward(ctx, g):
        missing = ctx.__dict__.get("not_implemented")
        if missing:
            raise RuntimeError(f"the derivative for '{missing}' is not implemented")
        return ctx.op.backward(ctx, g, *ctx.metas)


def _finish_grad(g, meta):
    """A broadcast gradient summed back to the input's shape, in the input's dtype."""
    if g is None or meta is None:
        return None
    shape, dtype = meta[0], meta[1]
    g = sum_to(g, shape)
    return g.to(dtype) if g.dtype is not dtype else g


def _metas(x, y):
    return (x._shape, x.dtype), (y._shape, y.dtype) if isinstance(y, Tensor) else None


class BinaryInplace(Binary):
    """``x.add_(y)`` and friends: the result, cast to ``x``'s dtype, is written through ``x``'s strides."""

    @staticmethod
    def forward(ctx, x, y, op, alpha=1, name=None):
        check_inplace(x, ctx)
        ctx._name = name or op.nodes[0] or None
        grad = any(ctx.needs_input_grad)
        sx = op.saves[0]
        saved_x = x.clone() if grad and (sx == 1 or sx == 2 and ctx.needs_input_grad[1]) else x
        if grad and isinstance(y, Tensor) and y._storage.data is x._storage.data:
            y = saved_x if y is x and saved_x is not x else y.clone()
        binary_compute(op, x, y, alpha, out=x)
        mark_written(ctx, x)
        if grad:
            op.save(ctx, alpha, saved_x, y, x)
            ctx.metas = _metas(x, y)
        return x


def _check_other(name, other):
    if not (isinstance(other, Tensor) or _scalar_ok(other)):
        raise TypeError(f"{name}(): argument 'other' (position 2) must be Tensor or Number, not "
                        f"{type(other).__name__}")
    check_int_scalar(name, other)


def check_int_scalar(name, v):
    """PyTorch's OverflowError for a Python int that no 64-bit scalar holds (it takes [-2**63, 2**64))."""
    if type(v) is int and not -2 ** 63 <= v < 2 ** 64:
        raise OverflowError(f"{name}(): Python int {v} too big to convert to a 64-bit scalar")


def binary(name, x, y, alpha=1):
    op = BINARY[name]
    if type(alpha) is int and alpha == 1:
        out = host_binary(op, x, y)               # the cpu fast path (_host.py), where it applies
        if out is not None:
            return out
    if isinstance(x, Tensor):
        _check_other(name, y)
        return Binary.apply(x, y, op, alpha)
    if isinstance(y, Tensor) and _scalar_ok(x):
        check_int_scalar(name, x)
        if name == "sub" and isinstance(x, (bool, np.bool_)):
            raise NotImplementedError(_BOOL_SUB)
        # scalar (op) tensor: run with the scalar as a 0-d tensor on y's device
        xt = scalar_tensor(x, D.result_type(x, y), y.device)
        return Binary.apply(xt, y, op, alpha, op.nodes[1] or None)
    raise TypeError(f"{name}(): expected a Tensor, got {type(x).__name__} and {type(y).__name__}")


def binary_(name, x, y, alpha=1):
    """The in-place form: ``x`` is overwritten with ``op(x, y)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}_(): 'self' must be a Tensor, not {type(x).__name__}")
    _check_other(name + "_", y)
    return apply_inplace(BinaryInplace, x, y, BINARY[name], alpha)


def _def_binary(name, *aliases):
    @register(name, *aliases)
    def fn(input, other):
        return binary(name, input, other)
    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} with broadcasting."

    @register(name + "_", *(al + "_" for al in aliases), function=False)
    def fn_(self, other):
        return binary_(name, self, other)
    fn_.__name__ = name + "_"
    fn_.__doc__ = f"In-place elementwise {name} with broadcasting."
    return fn


for _name, _al in (("mul", ("multiply",)), ("maximum", ()), ("minimum", ()), ("remainder", ()), ("fmod", ()),
                   ("floor_divide", ()), ("eq", ()), ("ne", ("not_equal",)), ("lt", ("less",)),
                   ("le", ("less_equal",)), ("gt", ("greater",)), ("ge", ("greater_equal",)),
                   ("logical_and", ()), ("logical_or", ()), ("logical_xor", ()), ("bitwise_and", ()),
                   ("bitwise_or", ()), ("bitwise_xor", ())):
    _def_binary(_name, *_al)
for _name in ("maximum_", "minimum_"):        # PyTorch has no in-place maximum/minimum
    delattr(Tensor, _name)


@register("add")
def add(input, other, *, alpha=1):
    return binary("add", input, other, alpha)


@register("sub", "subtract")
def sub(input, other, *, alpha=1):
    return binary("sub", input, other, alpha)


@register("rsub")
def rsub(input, other, *, alpha=1):
    return binary("sub", other, input, alpha) if not isinstance(other, Tensor) else \
        Binary.apply(other, input, BINARY["sub"], alpha, "RsubBackward0")


@register("add_", function=False)
def add_(self, other, *, alpha=1):
    return binary_("add", self, other, alpha)


@register("sub_", "subtract_", function=False)
def sub_(self, other, *, alpha=1):
    return binary_("sub", self, other, alpha)


def _div_op(rounding_mode):
    if rounding_mode is None:
        return "div"
    if rounding_mode == "floor":
        return "div_floor"
    if rounding_mode == "trunc":
        return "trunc_divide"
    raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
                       f"'{rounding_mode}'")


@register("div", "divide", "true_divide")
def div(input, other, *, rounding_mode=None):
    return binary(_div_op(rounding_mode), input, other)


@register("div_", "divide_", "true_divide_", function=False)
def div_(self, other, *, rounding_mode=None):
    return binary_(_div_op(rounding_mode), self, other)


def _pow_scalar_checked(input, exponent):
    check_int_scalar("pow", exponent)
    if not input.dtype.is_floating_point and isinstance(exponent, (int, np.integer)) and exponent < 0:
        raise RuntimeError("Integers to negative integer powers are not allowed.")


@register("pow")
def pow(input, exponent):
    if isinstance(input, Tensor) and _scalar_ok(exponent) and not isinstance(exponent, bool):
        _pow_scalar_checked(input, exponent)
        if exponent == 2:
            return unary("square", input)
        if not input.dtype.is_floating_point and isinstance(exponent, (int, np.integer)):
            return binary("pow", input, int(exponent))
        return unary("pow_scalar", input, float(exponent))
    return binary("pow", input, exponent)


@register("pow_", function=False)
def pow_(self, exponent):
    if _scalar_ok(exponent) and not isinstance(exponent, bool):
        _pow_scalar_checked(self, exponent)
        if self.dtype.is_floating_point or not isinstance(exponent, (int, np.integer)):
            return unary_("pow_scalar", self, float(exponent))
    return binary_("pow", self, exponent)


# ====================================================================================================================
# where
# ====================================================================================================================

class Where(Function):
    @staticmethod
    def forward(ctx, cond, x, y):
        tensors = [t for t in (cond, x, y) if isinstance(t, Tensor)]
        check_same_device("where", *tensors)
        if cond.dtype is not D.bool_ and cond.dtype is not D.uint8:
            raise RuntimeError(f"where expected condition to be a boolean tensor, but got a tensor with dtype "
                               f"{D.scalar_name(cond.dtype)}")
        ctx._name = "WhereBackward0"
        dev = cond.device
        out_dtype = D.result_type(*(v for v in (x, y)))
        if isinstance(x, Tensor) and isinstance(y, Tensor) is False and isinstance(y, float) and \
                not x.dtype.is_floating_point:
            out_dtype = D.get_default_dtype()
        shape = broadcast_shapes(*(t._shape for t in tensors))
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(cond)
            ctx.metas = tuple((t._shape, t.dtype) if isinstance(t, Tensor) else None for t in (cond, x, y))
        if dev.type == "cpu":
            xa = x._np if isinstance(x, Tensor) else x
            ya = y._np if isinstance(y, Tensor) else y
            res = np.where(cond._np.astype(bool, copy=False), xa, ya).astype(out_dtype.np, copy=False)
            return wrap(np.broadcast_to(res, shape), out_dtype, dev)
        if INTERPRET and out_dtype is D.bfloat16:
            # the interpreter reads another type's bits as bf16 in the kernel's cast: the host's exact cast first
            x, y = (v.to(D.bfloat16) if isinstance(v, Tensor) and v.dtype is not D.bfloat16 else v for v in (x, y))
        return launch_pointwise(_where, (cond, x, y), empty(shape, out_dtype, dev), ACC[out_dtype])

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        gx = gy = None
        if ctx.needs_input_grad[1]:
            gx = _finish_grad(where(cond, g, 0.0), ctx.metas[1])
        if ctx.needs_input_grad[2]:
            gy = _finish_grad(where(cond, 0.0, g), ctx.metas[2])
        return None, gx, gy


@register("where", method=False)
def where(condition, input=None, other=None):
    if input is None and other is None:
        return condition.nonzero(as_tuple=True)
    if not isinstance(condition, Tensor):
        raise TypeError("where(): argument 'condition' must be a Tensor")
    check_int_scalar("where", input)
    check_int_scalar("where", other)
    if isinstance(input, Tensor) and input.dtype is D.float64 and not isinstance(other, Tensor):
        other = Tensor._wrap_numpy(np.asarray(other, dtype=np.float64), input.device)
    if isinstance(other, Tensor) and other.dtype is D.float64 and not isinstance(input, Tensor):
        input = Tensor._wrap_numpy(np.asarray(input, dtype=np.float64), other.device)
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = scalar_tensor(input, D.result_type(input, other), condition.device)
    return Where.apply(condition, input, other)


def _tensor_where(self, condition, y):
    return where(condition, self, y)


Tensor.where = _tensor_where


# ====================================================================================================================
# Python operators
# ====================================================================================================================

def _rbin(name):
    def fn(self, other):
        return binary(name, other, self)
    return fn


Tensor.__add__ = lambda self, other: binary("add", self, other)
Tensor.__radd__ = lambda self, other: binary("add", self, other)
Tensor.__sub__ = lambda self, other: binary("sub", self, other)
Tensor.__rsub__ = _rbin("sub")
Tensor.__mul__ = lambda self, other: binary("mul", self, other)
Tensor.__rmul__ = lambda self, other: binary("mul", self, other)
Tensor.__truediv__ = lambda self, other: binary("div", self, other)
Tensor.__rtruediv__ = _rbin("div")
Tensor.__floordiv__ = lambda self, other: binary("floor_divide", self, other)
Tensor.__rfloordiv__ = _rbin("floor_divide")
Tensor.__mod__ = lambda self, other: binary("remainder", self, other)
Tensor.__rmod__ = _rbin("remainder")
Tensor.__pow__ = lambda self, other: pow(self, other)
Tensor.__rpow__ = _rbin("pow")
Tensor.__neg__ = lambda self: unary("neg", self)
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = lambda self: unary("abs", self)


def _invert(self):
    """``~x``: logical not of a bool tensor, bitwise not of an integer one; PyTorch's TypeError for floats."""
    if self.dtype is D.bool_:
        return unary("logical_not", self)
    if self.dtype.is_floating_point:
        raise TypeError("~ (operator.invert) is only implemented on integer and Boolean-type tensors")
    return binary("bitwise_xor", self, -1)


Tensor.__invert__ = _invert
# &, |, ^ are the bitwise ops for bool tensors too: bool & uint8 promotes to uint8, as in PyTorch
Tensor.__and__ = lambda self, other: binary("bitwise_and", self, other)
Tensor.__or__ = lambda self, other: binary("bitwise_or", self, other)
Tensor.__xor__ = lambda self, other: binary("bitwise_xor", self, other)
Tensor.__rand__ = Tensor.__and__
Tensor.__ror__ = Tensor.__or__
Tensor.__rxor__ = Tensor.__xor__
Tensor.__eq__ = lambda self, other: binary("eq", self, other) if isinstance(other, Tensor) or _scalar_ok(other) \
    else NotImplemented
Tensor.__ne__ = lambda self, other: binary("ne", self, other) if isinstance(other, Tensor) or _scalar_ok(other) \
    else NotImplemented
Tensor.__lt__ = lambda self, other: binary("lt", self, other)
Tensor.__le__ = lambda self, other: binary("le", self, other)
Tensor.__gt__ = lambda self, other: binary("gt", self, other)
Tensor.__ge__ = lambda self, other: binary("ge", self, other)
Tensor.__hash__ = lambda self: id(self)


def _iop(name):
    def fn(self, other):
        return binary_(name, self, other)
    fn.__name__ = f"__i{name}__"
    return fn


Tensor.__iadd__ = _iop("add")
Tensor.__isub__ = _iop("sub")
Tensor.__imul__ = _iop("mul")
Tensor.__itruediv__ = _iop("div")
Tensor.__ifloordiv__ = _iop("floor_divide")
Tensor.__imod__ = _iop("remainder")
Tensor.__ipow__ = lambda self, other: pow_(self, other)
Tensor.__iand__ = lambda self, other: binary_("bitwise_and", self, other)
Tensor.__ior__ = lambda self, other: binary_("bitwise_or", self, other)
Tensor.__ixor__ = lambda self, other: binary_("bitwise_xor", self, other)
register("can_cast", method=False)(D.can_cast)
