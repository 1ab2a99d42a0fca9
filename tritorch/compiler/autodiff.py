"""The backward of a fused pointwise group, derived from its members' own gradient rules.

Each member is a row of kernels/elementwise.py (or ``where``): a unary row's ``bwd_composite(g, x, y, a)`` and a
binary row's ``grad(g, x, y, out, alpha)`` are written in tensor ops (``where`` routes g by its condition), so
running them in reverse order over the members gives the group's input gradients as a chain of published ops:
``codegen.Fused`` captures that chain once, fuses it like a forward graph and runs it as the backward of
``FusedFunction``. The members' values are recomputed from the group's
inputs (cheap for pointwise math) instead of being saved by the forward kernel.
"""
from .._tensor import Tensor
from ..autograd.function import Function, pending_grad
from ..autograd.grad_mode import is_grad_enabled
from ..kernels._common import sum_to
from ..kernels.elementwise import BINARY, UNARY

__all__ = ["member_values", "input_grads", "with_pending", "FusedFunction"]


def _operand(kind, k, tensors, scalars, values):
    return values[k] if kind == "t" else tensors[k] if kind == "x" else scalars[k]


def _op(table, row):
    """The published op that computes ``row`` (its name, but for gelu's tanh approximation and x ** a)."""
    if row == "gelu_tanh":
        return lambda x: table["gelu"](x, approximate="tanh")
    return table["pow"] if row == "pow_scalar" else table[row]


def member_values(fused, tensors, scalars, table):
    """Every member's result, computed by the published ops of ``table`` (name -> callable)."""
    values = []
    for row, member in zip(fused.rows, fused.program):
        values.append(_op(table, row)(*[_operand(kind, k, tensors, scalars, values) for kind, k in member]))
    return values


def input_grads(fused, tensors, scalars, g, table):
    """The gradient of the group's result (``g``) with respect to each tensor input (None where none flows).
    Every member's gradient is taken at the result's shape (the kernel computes each member there); an input that
    broadcasts gets its gradient summed back to its own shape."""
    values = member_values(fused, tensors, scalars, table)
    grads = {len(values) - 1: g}
    out = [None] * len(tensors)
    for j in range(len(values) - 1, -1, -1):
        gj = grads.pop(j, None)
        if gj is None:
            continue
        member, row = fused.program[j], fused.rows[j]
        ops = [_operand(kind, k, tensors, scalars, values) for kind, k in member]
        if row == "where":
            parts = (None, table["where"](ops[0], gj, 0.0), table["where"](ops[0], 0.0, gj))
        elif row in UNARY:                # ops[1]: the row's parameter (leaky_relu's slope, elu's alpha), if any
            rule = UNARY[row].bwd_composite
            parts = [rule(gj, ops[0], values[j], ops[1] if len(ops) > 1 else 0.0) if rule is not None else None]
        else:
            rule = BINARY[row].grad       # None for the comparisons: their results are bool, no gradient flows
            parts = rule(gj, ops[0], ops[1], values[j], 1) if rule is not None else (None, None)
        for (kind, k), part in zip(member, parts):
            if part is None or kind in ("s", "a"):
                continue
            if kind == "t":
                grads[k] = part if k not in grads else grads[k] + part
            else:
                out[k] = part if out[k] is None else out[k] + part
    return tuple(None if o is None else sum_to(o, t.shape) for o, t in zip(out, tensors))


def with_pending(grads, slots, pending):
    """``grads`` with ``pending[j]`` added into the gradient of input ``slots[j]`` (the one already waiting for it
    from the input's other readers, which the engine would otherwise add in a launch of its own)."""
    grads = list(grads)
    for k, p in zip(slots, pending):
        grads[k] = p if grads[k] is None else grads[k] + p
    return tuple(grads)


class FusedFunction(Function):
    """A fused group as one autograd node: the generated kernel forward, the derived backward (captured and fused
    itself) on the saved inputs; under ``create_graph`` the backward runs as recorded ops instead. The engine offers
    it the gradients already waiting for its inputs (``_accumulates``): the derived backward adds them in its own
    kernels."""
    _accumulates = tuple(range(1, 65))

    @staticmethod
    def forward(ctx, fused, *operands):
        ctx.fused, ctx.is_tensor = fused, [isinstance(o, Tensor) for o in operands]
        ctx.scalars = [float(o) for o in operands if not isinstance(o, Tensor)]
        out = fused.launch(*operands)
        saved = [o for o in operands if isinstance(o, Tensor)]
        ctx.save_for_backward(*saved, *([out] if fused.saves_output else []))    # a softmax's result
        return out

    @staticmethod
    def backward(ctx, g):
        tensors, y = ctx.saved_tensors, None
        if ctx.fused.saves_output:
            tensors, y = tensors[:-1], tensors[-1]
        if is_grad_enabled():                # create_graph: differentiable, op by op
            grads = ctx.fused.backward_eager(tensors, ctx.scalars, g, y)
        else:
            at = [1 + i for i, m in enumerate(ctx.is_tensor) if m]      # argument index of each saved tensor
            pending = {k: pending_grad(ctx, a, t) for k, (a, t) in enumerate(zip(at, tensors))}
            pending = {k: p for k, p in pending.items() if p is not None}
            grads = ctx.fused.backward(tensors, ctx.scalars, g, y, pending)
        it = iter(grads)
        return (None,) + tuple(next(it) if m else None for m in ctx.is_tensor)
