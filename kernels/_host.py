"""The ``cpu`` fast path of the elementwise ops: the common small case in one step, with the engine's own cost per
graph node and nothing more.

A floating unary op on ``cpu``, and add/sub/mul/div (any binary op without autograd) on ``cpu`` operands of one
floating dtype (or with a Python number on either side) skip ``Function.apply``: the NumPy reference runs on the
host arrays, ``record_plain`` records the node when a gradient is needed, and the node is *plain* (``Node._plain``):
the engine calls its backward without ``_call``'s checks, and the backward runs the op's gradient rule on the host
arrays too. Hooks, anomaly mode, create_graph and a tensor changed in place take the op's general backward
(``op.backward``). ``elementwise.py`` asks this module first: ``host_unary`` and ``host_binary`` return the result,
or None where the general route must run (its promotions, its errors).
"""
import numpy as np

from tritorch import _dtype as D
from tritorch._device import CPU
from tritorch._tensor import Tensor
from tritorch.autograd.function import Function, record_plain
from tritorch.autograd.grad_mode import STATE
from ._launch import broadcast_shapes
from ._common import host_result, np_ct, quiet, sum_to

__all__ = ["host_unary", "host_binary", "host_values"]


class HostUnary(Function):
    """A floating unary op's node on ``cpu``: unless the backward must itself be recorded, the op's NumPy gradient
    rule (``bwd_ref``) runs on the host arrays."""
    _plain_backward = True
    _tensor_ctx_attrs = False

    @staticmethod
    def backward(ctx, g):
        saved = ctx._saved
        dtype = ctx.in_dtype
        if STATE.enabled or saved is None or not (dtype is D.float32 or dtype is D.float64):
            return (ctx.op.backward(ctx, g),)
        t, version, _ = saved[0] if ctx.op.bwd_uses == "x" else saved[1]
        if t._storage.version != version:
            return (ctx.op.backward(ctx, g),)           # raises the in-place modification error
        ga = g._np_cache
        if ga is None:
            ga = g._np
        sa = t._np_cache
        if sa is None:
            sa = t._np
        return (host_result(quiet(ctx.op.bwd_ref, ga, sa, ctx.a), dtype, ga, sa),)


def host_unary(op, x, a, b):
    """``op(x, a, b)`` of a floating ``cpu`` tensor (its type kept; bool for isnan and the other tests), recorded
    when ``x`` needs its gradient; None for any other input."""
    d = x.dtype
    if x._storage.device is not CPU or not d.is_floating_point:
        return None
    xa = x._np if d is D.float32 or d is D.float64 else x._np.astype(np.float32)
    out = host_result(quiet(op.ref, xa, a, b), D.bool_ if op.out_bool else d, xa)
    if not (x._requires_grad and STATE.enabled) or op.out_bool:
        return out
    ctx = HostUnary._node_cls()
    dct = ctx.__dict__
    dct["needs_input_grad"] = (True,)
    dct["_name"] = op.node_name
    op.save(ctx, a, x, out)
    return record_plain(ctx, (x,), out)


class HostBinary(Function):
    """A floating add/sub/mul/div's node on ``cpu`` (operands of one dtype, or a Python number on either side):
    unless the backward must itself be recorded (create_graph), the op's gradient rule runs on the host arrays.
    This is the path whose cost per graph node the engine's overhead is measured by."""
    _plain_backward = True
    _tensor_ctx_attrs = False

    @staticmethod
    def backward(ctx, g):
        saved = ctx._saved
        op = ctx.op
        # the host rule, where the forward computed in the dtype itself (not float16 widened) and nothing changed
        if STATE.enabled or saved is None or op.host[g.dtype][0] is not None:
            return op.backward(ctx, g, *ctx._in_meta)
        (x, xv, _), (y, yv, _), _ = saved
        if x is not None and x._storage.version != xv or y is not None and y._storage.version != yv:
            return op.backward(ctx, g, *ctx._in_meta)       # raises the in-place modification error
        ga = g._np_cache
        if ga is None:
            ga = g._np
        gx, gy = quiet(op.grad, ga, ctx.x_scalar if x is None else x._np,
                       ctx.y_scalar if y is None else y._np, None, 1)
        needs = ctx.needs_input_grad
        in_meta = ctx._in_meta
        return (_host_grad(gx, g, ga, in_meta[0][0]) if needs[0] else None,
                _host_grad(gy, g, ga, in_meta[1][0]) if needs[1] else None)


def _host_grad(r, g, ga, shape):
    """A host gradient as a tensor of the input's ``shape`` (summed over the broadcast dims): ``g`` itself where the
    rule handed its array back."""
    if r is None:
        return None
    r = g if r is ga else host_result(r, g.dtype, ga)
    return r if r._shape == shape else sum_to(r, shape)


def _record_binary(op, x, y, out, needs, name=None):
    ctx = HostBinary._node_cls()
    d = ctx.__dict__
    d["needs_input_grad"] = needs
    d["_name"] = name or op.nodes[0]
    op.save(ctx, 1, x, y, out)
    return record_plain(ctx, (x, y), out)


def host_binary(op, x, y):
    """``op(x, y)`` (alpha 1) on the fast path, recorded when an operand needs its gradient (add/sub/mul/div only:
    ``op.plain``); None where the general route must run."""
    if isinstance(x, Tensor):
        if x._storage.device is not CPU:
            return None
        needs = None
        if STATE.enabled:
            needs = (x._requires_grad, isinstance(y, Tensor) and y._requires_grad)
            if needs == (False, False):
                needs = None
            elif not op.plain:
                return None
        out = host_values(op, x, y)
        if out is None or needs is None:
            return out
        return _record_binary(op, x, y, out, needs)
    if op.plain and isinstance(y, Tensor) and y._storage.device is CPU:
        out = host_values(op, y, x, swap=True)        # a Python number (op) a cpu tensor
        if out is None or not (STATE.enabled and y._requires_grad):
            return out
        return _record_binary(op, x, y, out, (False, True), op.nodes[1])
    return None


def host_values(op, x, y, swap=False):
    """``op(x, y)``'s values in one step, or None for the general path: ``x`` a floating tensor on ``cpu``, ``y`` a
    tensor of the same dtype (broadcasting with ``x``) or a Python float/int (which does not change the result
    type). ``swap``: compute ``y op x`` (a Python number first)."""
    d = x.dtype
    if type(y) is float or type(y) is int:
        if not d.is_floating_point or type(y) is int and not -2 ** 53 <= y <= 2 ** 53:
            return None
        ya = y
    elif isinstance(y, Tensor) and y.dtype is d and y._storage.device is CPU:
        ya = y._np_cache
        if ya is None:
            ya = y._np
    else:
        return None
    fast = op.host.get(d)
    if fast is None:
        fast = op.host[d] = _host_types(op, d)
    if fast is False:
        return None
    if type(ya) is np.ndarray and y._shape != x._shape:
        broadcast_shapes(x._shape, y._shape)          # PyTorch's error where they do not broadcast
    ct, out_dtype = fast
    xa = x._np_cache
    if xa is None:
        xa = x._np
    if ct is not None:
        xa = xa.astype(ct)
        ya = ya.astype(ct) if type(ya) is np.ndarray else ct.type(ya)
    elif type(ya) is not np.ndarray:
        ya = d.np.type(ya)
    if swap:
        xa, ya = ya, xa
    res = quiet(op.ufunc, xa, ya) if op.ufunc is not None else quiet(op.ref, xa, ya, 1)
    return host_result(res, out_dtype, xa, ya)


def _host_types(op, d):
    """(NumPy type to compute in where it is not ``d``'s own, result dtype) of ``op`` on ``d``; False where the
    general path must run (its errors, its promotions)."""
    ct, out_dtype = op.dtypes(d)
    if not d.is_floating_point or ct is not d or op.name.startswith("bitwise"):
        return False
    npct = np.dtype(np_ct(ct))
    return (None if npct == d.np else npct), out_dtype
