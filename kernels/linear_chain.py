"""Linear layers in a row, ``linear_n(act(... act(linear_1(x))))``, as one autograd node (``tritorch.compile``'s
``fuse_linear_chain``), so that their backward runs no activation-gradient pass of its own.

Forward runs the layers' ``Linear`` kernels as the separate ops would (each with its activation and dropout in the
epilogue, the last with its residual too), each into a context of its own; but an inner layer whose activation's
derivative reads the pre-activation (gelu, silu, elu, leaky_relu; no dropout; float32 or float64, not on cpu) stores
only that pre-activation, and the next layer's products (forward, and grad_W in the backward) apply the activation
as they load it: the activation's result, as wide as the hidden layer, is never written nor read back. Computed
again from the same float32 (float64) values, it is the same bits. Backward differentiates the last layer,
then each layer with the activation (and dropout) derivative of the layer before it in the epilogue of its grad_x
product (``launch_linear_grad``'s ``epilogue``): what it stores is the gradient of that layer's pre-activation, which
that layer's products read directly. The separate nodes would store the gradient of each activation's result and
run ``_act_grad_kernel`` over it: a launch, a write and two reads of (M, hidden) more per inner layer. On cpu and
under create_graph the layers' own backward rules run in turn (recording, with the hidden results recomputed as
recorded ops, so the double backward sees their dependence on the earlier layers).
"""
import math

from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from .dropout import draw
from .elementwise import UNARY
from .linear import ACTIVATIONS, Linear, param_grads, pre_activation_grad, residual_view

__all__ = ["linear_chain", "LinearChain"]


class LinearChain(Function):
    """The layers ``layers`` = ((act, a, drop), ...) over a 2-D x: activation (not None but in the last), its
    parameter and dropout's counters (seed, offset, p) or None, as ``Linear`` takes them; ``params`` = (w1, b1, ...,
    wn, bn); the residual (or None) is added by the last layer."""

    @staticmethod
    def forward(ctx, x, residual, layers, *params):
        n = len(layers)
        # x, residual, layers, then w and b of each layer
        need = (tuple(ctx.needs_input_grad) + (False,) * (3 + 2 * n))[:3 + 2 * n]
        subs = [Linear._node_cls() for _ in range(n)]
        h, x_act = x, None
        for i, (sub, (act, a, drop)) in enumerate(zip(subs, layers)):
            # layer i's input needs a gradient when something before it does
            below = need[0] or any(need[3:3 + 2 * i])
            last = i == n - 1
            sub.needs_input_grad = (below, need[3 + 2 * i], need[4 + 2 * i], False, False, last and need[1], False)
            # an inner layer may leave its activation to the next one's loads (``Linear``'s ``defer``)
            h = Linear.forward(sub, h, params[2 * i], params[2 * i + 1], act, a, residual if last else None, drop,
                               x_act=x_act, defer=not last)
            x_act = (act, a) if sub.deferred else None
        if any(need):
            # each layer's saved tensors, then the chain's inputs: create_graph recomputes the hidden results
            ctx.save_for_backward(*[t for sub in subs for t in (sub._to_save or (None,) * 4)], x, *params)
            for sub in subs:
                sub._to_save = None
            ctx.subs, ctx.layers = subs, layers
        return h

    @staticmethod
    def backward(ctx, g):
        subs, n = ctx.subs, len(ctx.subs)
        x_acts = [sub.x_act for sub in subs]             # (restored: a later backward reads them again)
        saved = list(ctx.saved_tensors)
        x, params = saved[4 * n], saved[4 * n + 1:]
        if STATE.enabled:                    # create_graph: the hidden results recomputed, recorded
            h = x
            for i in range(n - 1):
                act, a, drop = ctx.layers[i]
                h = Linear.apply(h, params[2 * i], params[2 * i + 1], act, a, None, drop)
                if saved[4 * (i + 1)] is not None:
                    saved[4 * (i + 1)] = h               # the next layer's input, activated
                subs[i + 1].x_act = None                 # (restored below)
                if UNARY[act].bwd_uses != "x" and drop is None and saved[4 * i + 3] is not None:
                    saved[4 * i + 3] = h                 # this layer's derivative reads its result
        for i, sub in enumerate(subs):
            sub._to_save = tuple(saved[4 * i:4 * i + 4])
        try:
            grads = [None] * (2 * n)
            last = subs[-1]
            gr = g.reshape(last.res_shape) if last.needs_input_grad[5] else None
            if STATE.enabled or g._storage.device.type == "cpu":
                for i in range(n - 1, -1, -1):
                    if g is None:
                        break
                    g, grads[2 * i], grads[2 * i + 1] = Linear.backward(subs[i], g)[:3]
                gx = g
            else:
                g_drop = last.drop if last.act is None else None     # read through its mask by the products
                gz = (g if g_drop is not None else pre_activation_grad(last, g, last._to_save[3])) \
                    if any(last.needs_input_grad[:3]) else None
                for i in range(n - 1, -1, -1):
                    if gz is None:
                        break
                    sub = subs[i]
                    prev = subs[i - 1] if i and sub.needs_input_grad[0] else None    # (then it saved its s)
                    epilogue = (prev._to_save[3], prev.act, prev.a, prev.drop) if prev is not None else None
                    gz, grads[2 * i], grads[2 * i + 1] = param_grads(sub, gz, sub._to_save[0], sub._to_save[1],
                                                                     epilogue=epilogue,
                                                                     g_drop=g_drop if i == n - 1 else None)
                gx = gz
        finally:
            for sub, x_act in zip(subs, x_acts):
                sub._to_save, sub.x_act = None, x_act
        return (gx, gr, None, *grads)


def _layer(kwargs, n, device):
    """(act, a, drop) of one layer from its ``linear`` keyword arguments, drawing dropout's counters for its (n
    elements) result now, as ``linear`` would."""
    act, p = kwargs.get("activation"), float(kwargs.get("dropout_p", 0.0))
    alpha = kwargs.get("alpha")
    a = float(ACTIVATIONS[act] if alpha is None else alpha) if act is not None else 0.0
    return act, a, ((*draw(n, device), p) if p else None)


def linear_chain(x, params, layers):
    """``linear(... linear(x, w1, b1, **layers[0]) ..., wn, bn, **layers[-1])`` (``params`` = [w1, b1, ..., wn, bn];
    each layer but the last with an activation (and dropout), the last with at most an activation, dropout and a
    residual; 2-D weights, biases of one element per output or None), one autograd node: the calls
    ``tritorch.compile`` found valid when it captured them."""
    lead = x._shape[:-1]
    rows = math.prod(lead)
    weights = params[0::2]
    specs = tuple(_layer(kw, rows * w._shape[0], x._storage.device) for kw, w in zip(layers, weights))
    r = residual_view(layers[-1].get("residual"), weights[-1])
    y = LinearChain.apply(x.reshape(rows, x._shape[-1]), r, specs, *params)
    return y.reshape(lead + (weights[-1]._shape[0],))
