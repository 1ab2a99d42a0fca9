"""More pointwise ops, each one row on the shared pointwise kernel: ``logaddexp`` and ``xlogy`` in the binary table
(``_b``), and the ops of up to three operands in the table here (``_t``): ``lerp`` (scalar or tensor weight),
``addcmul`` / ``addcdiv`` (``value=``) and ``nan_to_num`` (its replacements passed as scalar operands), with their
in-place forms. A three-operand row is its Triton math ``tfn(x, y, z, a, b)``, its NumPy reference and its gradient
rule in tensor ops (recorded under create_graph, so the same rule serves every device).
"""
import numpy as np
import triton
import triton.language as tl

from tritorch import _dtype as D
from tritorch._tensor import Tensor, register
from tritorch.autograd.function import Function
from ._launch import ACC, broadcast_shapes
from ._common import check_inplace, check_out, check_same_device, empty, host_result, mark_written, np_ct, quiet
from ._pointwise import launch_pointwise
from .elementwise import _b, _def_binary, _finish_grad, _log1p, binary, apply_inplace, where

__all__ = ["logaddexp", "xlogy", "lerp", "addcmul", "addcdiv", "nan_to_num"]


# ---- binary rows ------------------------------------------------------------------------------------------------
@triton.jit
def _logaddexp(x, y, a, b):
    m = tl.where(x > y, x, y)
    both_inf = (tl.abs(x) == float("inf")) & (x == y)           # log(e^inf + e^inf), log(0 + 0): x itself
    return tl.where(both_inf, x, m + _log1p(tl.exp(-tl.abs(x - y))))


def _np_logaddexp(x, y):
    return np.logaddexp(x, y)


@triton.jit
def _xlogy(x, y, a, b):
    # 0 where x == 0 (whatever y is, but NaN), as PyTorch
    return tl.where(y != y, y, tl.where(x == 0, 0.0, x * tl.log(y)))


def _np_xlogy(x, y):
    with np.errstate(all="ignore"):
        r = np.where(x == 0, 0.0, x * np.log(y))
    return np.where(np.isnan(y), y, r).astype(np.result_type(x, y), copy=False)


_b("logaddexp", _logaddexp, lambda x, y, a: _np_logaddexp(x, y), saves=(1, 1, 0),
   nodes=("LogaddexpBackward0", "LogaddexpBackward0"),
   grad=lambda g, x, y, out, alpha: (g * (x - y).sigmoid(), g * (y - x).sigmoid()))
_b("xlogy", _xlogy, lambda x, y, a: _np_xlogy(x, y), kind="true_div", saves=(1, 1, 0),
   nodes=("XlogyBackward0", "XlogyBackward2"),
   grad=lambda g, x, y, out, alpha: (g * binary("xlogy", x != 0, y),
                                     g * x / y if isinstance(y, Tensor) else None))
xlogy = _def_binary("xlogy")                    # tritorch.xlogy, Tensor.xlogy and Tensor.xlogy_


@register("logaddexp")
def logaddexp(input, other):
    """log(exp(x) + exp(y)), without overflow; floating types only, as PyTorch."""
    common = D.result_type(input, other)
    if not common.is_floating_point:
        raise NotImplementedError(f"\"logaddexp_{input.device.type}\" not implemented for "
                                  f"'{D.scalar_name(common)}'")
    return binary("logaddexp", input, other)


# ---- rows of up to three operands --------------------------------------------------------------------------------
class TernaryOp:
    """One op of three operands (``y`` and ``z`` may be Python numbers), one ``_t(...)`` row: ``tfn(x, y, z, a, b)``
    the Triton math, ``ref(x, y, z, a)`` its NumPy reference, ``grad(g, x, y, z, a) -> (gx, gy, gz)`` in tensor ops,
    ``nodes``: its autograd node's name with a scalar / a tensor ``z``."""

    def __init__(self, name, tfn, ref, grad, nodes):
        self.name, self.tfn, self.ref, self.grad, self.nodes = name, tfn, ref, grad, nodes


TERNARY = {}


def _t(name, tfn, ref, grad, nodes):
    TERNARY[name] = TernaryOp(name, tfn, ref, grad, nodes)


class Ternary(Function):
    """``op(x, y, z, a)`` with broadcasting, into a new tensor or (``inplace``) into ``x``."""
    _tensor_ctx_attrs = False

    @staticmethod
    def forward(ctx, x, y, z, op, a, dtype, inplace=False):
        check_same_device(op.name, x, y, z)
        tensors = [t for t in (x, y, z) if isinstance(t, Tensor)]
        shape = broadcast_shapes(*(t._shape for t in tensors))
        ctx._name = op.nodes[isinstance(z, Tensor)]
        if inplace:
            check_inplace(x, ctx)
            check_out(x, dtype, shape)
        if any(ctx.needs_input_grad):
            ctx.op, ctx.a = op, a
            ctx.metas = tuple((t._shape, t.dtype) if isinstance(t, Tensor) else None for t in (x, y, z))
            ctx.scalars = tuple(None if isinstance(t, Tensor) else t for t in (x, y, z))
            ctx.save_for_backward(*(t.clone() if inplace and t is x else t if isinstance(t, Tensor) else None
                                    for t in (x, y, z)))
        out = x if inplace else empty(shape, dtype, x.device)
        if x._storage.device.type == "cpu":
            ct = np_ct(dtype)
            xa, ya, za = (t._np.astype(ct, copy=False) if isinstance(t, Tensor) else t for t in (x, y, z))
            res = np.broadcast_to(np.asarray(quiet(op.ref, xa, ya, za, a)), shape)
            if inplace:
                out._np[...] = res.astype(out.dtype.np, copy=False)
            else:
                out = host_result(res, dtype, xa, None, x._storage.device)
        else:
            ins = [t.clone() if inplace and isinstance(t, Tensor) and t is not x and t._storage is x._storage else t
                   for t in (x, y, z)]
            launch_pointwise(op.tfn, ins, out, ACC[dtype], a)
        if inplace:
            mark_written(ctx, x)
        return out

    @staticmethod
    def backward(ctx, g):
        saved = ctx.saved_tensors
        args = [s if s is not None else v for s, v in zip(saved, ctx.scalars)]
        grads = ctx.op.grad(g, *args, ctx.a)
        needs = ctx.needs_input_grad
        return tuple(_finish_grad(gv, m) if k < len(needs) and needs[k] else None
                     for k, (gv, m) in enumerate(zip(grads, ctx.metas))) + (None,) * 4


@triton.jit
def _lerp(x, y, w, a, b):
    d = y - x
    return tl.where(tl.abs(w) < 0.5, x + w * d, y - d * (1.0 - w))         # PyTorch's two-sided formula


def _np_lerp(x, y, w):
    d = y - x
    return np.where(np.abs(w) < 0.5, x + w * d, y - d * (1 - w))


@triton.jit
def _addcmul(x, y, z, a, b):
    return x + a * y * z


@triton.jit
def _addcdiv(x, y, z, a, b):
    return x + a * (y / z)


@triton.jit
def _nan_to_num(x, nan, posinf, neginf, b):
    return tl.where(x != x, nan, tl.where(x == float("inf"), posinf, tl.where(x == -float("inf"), neginf, x)))


def _np_nan_to_num(x, nan, posinf, neginf):
    return np.where(x != x, nan, np.where(x == np.inf, posinf, np.where(x == -np.inf, neginf, x)))


_t("lerp", _lerp, lambda x, y, w, a: _np_lerp(x, y, w),
   lambda g, x, y, w, a: (g * (1 - w), g * w, g * (y - x) if isinstance(w, Tensor) else None),
   ("LerpBackward0", "LerpBackward1"))
_t("addcmul", _addcmul, lambda x, y, z, a: x + a * y * z,
   lambda g, x, y, z, a: (g, g * z * a, g * y * a), ("AddcmulBackward0",) * 2)
_t("addcdiv", _addcdiv, lambda x, y, z, a: x + a * (y / z),
   lambda g, x, y, z, a: (g, g * a / z, -g * a * y / (z * z)), ("AddcdivBackward0",) * 2)
_t("nan_to_num", _nan_to_num, _np_nan_to_num,
   lambda g, x, nan, posinf, neginf: (where(x.isfinite(), g, 0.0), None, None), ("NanToNumBackward0",) * 2)


def _lerp_args(input, end, weight):
    for t, what in ((end, "end"), (weight, "weight")):
        if isinstance(t, Tensor) and t.dtype is not input.dtype:
            raise RuntimeError(f"expected dtype {D.scalar_name(input.dtype).lower()} for `{what}` but got dtype "
                               f"{D.scalar_name(t.dtype).lower()}")
    if not input.dtype.is_floating_point:
        kind = "tensor" if isinstance(weight, Tensor) else "scalar"
        raise NotImplementedError(f"\"lerp_kernel_{kind}\" not implemented for '{D.scalar_name(input.dtype)}'")
    return weight if isinstance(weight, Tensor) else float(weight)


@register("lerp")
def lerp(input, end, weight):
    """input + weight * (end - input); ``weight`` a number or a tensor (all of input's dtype)."""
    w = _lerp_args(input, end, weight)
    return Ternary.apply(input, end, w, TERNARY["lerp"], 0.0, input.dtype)


@register("lerp_", function=False)
def lerp_(self, end, weight):
    w = _lerp_args(self, end, weight)
    return apply_inplace(Ternary, self, end, w, TERNARY["lerp"], 0.0, self.dtype, True)


def _addc_args(name, input, tensor1, tensor2, value):
    for t, what in ((tensor1, "tensor1"), (tensor2, "tensor2")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}(): argument '{what}' must be Tensor, not {type(t).__name__}")
    dtype = D.result_type(input, tensor1, tensor2)
    if name.startswith("addcdiv") and not dtype.is_floating_point:
        raise RuntimeError("Integer division with addcdiv is no longer supported, and in a future  release addcdiv "
                           "will perform a true division of tensor1 and tensor2. The historic addcdiv behavior can be "
                           "implemented as (input + value * torch.trunc(tensor1 / tensor2)).to(input.dtype) for "
                           "integer inputs and as (input + value * tensor1 / tensor2) for float inputs. The future "
                           "addcdiv behavior is just the latter implementation: (input + value * tensor1 / tensor2), "
                           "for all dtypes.")
    return dtype, (float(value) if dtype.is_floating_point else int(value))


def _addc(name, input, tensor1, tensor2, value, inplace):
    dtype, a = _addc_args(name + ("_" if inplace else ""), input, tensor1, tensor2, value)
    if inplace:
        return apply_inplace(Ternary, input, tensor1, tensor2, TERNARY[name], a, dtype, True)
    return Ternary.apply(input, tensor1, tensor2, TERNARY[name], a, dtype)


@register("addcmul")
def addcmul(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 * tensor2."""
    return _addc("addcmul", input, tensor1, tensor2, value, False)


@register("addcmul_", function=False)
def addcmul_(self, tensor1, tensor2, *, value=1):
    return _addc("addcmul", self, tensor1, tensor2, value, True)


@register("addcdiv")
def addcdiv(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 / tensor2."""
    return _addc("addcdiv", input, tensor1, tensor2, value, False)


@register("addcdiv_", function=False)
def addcdiv_(self, tensor1, tensor2, *, value=1):
    return _addc("addcdiv", self, tensor1, tensor2, value, True)


def _nan_to_num_args(input, nan, posinf, neginf):
    hi = float(np.finfo(input.dtype.np).max)
    return (float(nan), hi if posinf is None else float(posinf), -hi if neginf is None else float(neginf))


@register("nan_to_num")
def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """NaN, +inf and -inf replaced by ``nan``, ``posinf`` and ``neginf`` (by default the type's largest finite
    values); integer and bool tensors come back as a copy."""
    if not input.dtype.is_floating_point:
        return input.clone()
    n, p, m = _nan_to_num_args(input, nan, posinf, neginf)
    return Ternary.apply(input, n, p, TERNARY["nan_to_num"], m, input.dtype)


@register("nan_to_num_")
def nan_to_num_(input, nan=0.0, posinf=None, neginf=None):
    if not input.dtype.is_floating_point:
        return input
    n, p, m = _nan_to_num_args(input, nan, posinf, neginf)
    return apply_inplace(Ternary, input, n, p, TERNARY["nan_to_num"], m, input.dtype, True)
