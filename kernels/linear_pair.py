"""Two linear layers in a row, ``linear2(act(linear1(x)))``, as one autograd node (``tritorch.compile``'s
``fuse_linear_pair``), so that their backward is one launch shorter.

Forward runs the two ``Linear`` kernels as the separate ops would (the first with its activation and dropout in the
epilogue, the second with its own and the residual), each into a context of its own. Backward differentiates the
second layer with the first layer's activation (and dropout) derivative in the epilogue of its grad_x product
(``launch_linear_grad``'s ``epilogue``): what it stores is the gradient of the first layer's pre-activation, which
the first layer's products read directly; the separate nodes would store the gradient of the activation's result
and run ``_act_grad_kernel`` over it (a launch, a write and two reads of (M, hidden) more). On cpu and under
create_graph the two layers' own backward rules run in turn (recording, with the hidden activation recomputed as a
recorded op, so the double backward sees its dependence on the first layer).
"""
import math

from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from .dropout import draw
from .elementwise import UNARY
from .linear import ACTIVATIONS, Linear, param_grads, pre_activation_grad, residual_view

__all__ = ["linear_pair", "LinearPair"]


class LinearPair(Function):
    """``linear(act1(x @ w1.T + b1) [dropout], w2, b2, act2, dropout, residual)`` for a 2-D x; ``first`` = (act1, a1,
    drop1) with act1 not None, ``second`` = (act2, a2, drop2): activation, its parameter and dropout's counters
    (seed, offset, p) or None, as ``Linear`` takes them."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, residual, first, second):
        need = (tuple(ctx.needs_input_grad) + (False,) * 6)[:6]
        one, two = Linear._node_cls(), Linear._node_cls()
        one.needs_input_grad = (*need[:3], False, False, False, False)
        two.needs_input_grad = (any(need[:3]), need[3], need[4], False, False, need[5], False)
        h = Linear.forward(one, x, w1, b1, first[0], first[1], None, first[2])
        y = Linear.forward(two, h, w2, b2, second[0], second[1], residual, second[2])
        if any(need):
            # the first layer's inputs too: create_graph recomputes its result
            ctx.save_for_backward(*(one._to_save or (None,) * 4), *(two._to_save or (None,) * 4), x, w1, b1)
            one._to_save = two._to_save = None
            ctx.layers = (one, two)
        return y

    @staticmethod
    def backward(ctx, g):
        one, two = ctx.layers
        saved = ctx.saved_tensors
        x, w1, b1, s1 = saved[:4]
        h, w2, b2, s2 = saved[4:8]
        if STATE.enabled and two.needs_input_grad[0]:    # create_graph: the first layer's result recomputed, recorded
            h = Linear.apply(*saved[8:], one.act, one.a, None, one.drop)
            if UNARY[one.act].bwd_uses != "x" and one.drop is None:
                s1 = h                       # the first layer's derivative reads its result
            saved = (x, w1, b1, s1, h if saved[4] is not None else None, w2, b2, s2)
        one._to_save, two._to_save = saved[:4], saved[4:8]
        try:
            if STATE.enabled or g._storage.device.type == "cpu" or not two.needs_input_grad[0]:
                gh, gw2, gb2, _, _, gr, _ = Linear.backward(two, g)
                gx, gw1, gb1 = Linear.backward(one, gh)[:3] if gh is not None else (None, None, None)
            else:
                gr = g.reshape(two.res_shape) if two.needs_input_grad[5] else None
                gz2 = pre_activation_grad(two, g, s2)
                gz1, gw2, gb2 = param_grads(two, gz2, h, w2, epilogue=(s1, one.act, one.a, one.drop))
                gx, gw1, gb1 = param_grads(one, gz1, x, w1)
        finally:
            one._to_save = two._to_save = None
        return gx, gw1, gb1, gw2, gb2, gr, None, None


def _layer(kwargs, n, device):
    """(act, a, drop) of one layer from its ``linear`` keyword arguments, drawing dropout's counters for its (n
    elements) result now, as ``linear`` would."""
    act, p = kwargs.get("activation"), float(kwargs.get("dropout_p", 0.0))
    alpha = kwargs.get("alpha")
    a = float(ACTIVATIONS[act] if alpha is None else alpha) if act is not None else 0.0
    return act, a, ((*draw(n, device), p) if p else None)


def linear_pair(x, w1, b1, w2, b2, first, second):
    """``linear(linear(x, w1, b1, **first), w2, b2, **second)`` (``first`` with an activation, ``second`` with at most
    an activation, dropout and a residual; 2-D weights, biases of one element per output or None), one autograd
    node: the calls ``tritorch.compile`` found valid when it captured them."""
    lead = x._shape[:-1]
    rows = math.prod(lead)
    one = _layer(first, rows * w1._shape[0], x._storage.device)
    two = _layer(second, rows * w2._shape[0], x._storage.device)
    r = residual_view(second.get("residual"), w2)
    y = LinearPair.apply(x.reshape(rows, x._shape[-1]), w1, b1, w2, b2, r, one, two)
    return y.reshape(lead + (w2._shape[0],))
