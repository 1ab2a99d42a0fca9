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

With ``norm`` a layer (RMS) norm of x's rows comes first (``tritorch.compile``'s ``fuse_norm_linear``): in float32
and float64, not on cpu, the first layer's kernel normalizes the rows as it loads them (``launch_linear``'s
``x_norm``) and stores the normalized x (which its grad_W reads) and the stats, so no launch runs for the norm; its
backward is ``RowNorm``'s, run after the layers', adding the gradient already waiting for x or, in a pre-norm block
``x + mlp(norm(x))``, the residual's, in its kernel.
"""
import math

from tritorch import _dtype as D
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from ._common import empty
from .dropout import draw
from .elementwise import UNARY
from .linear import ACTIVATIONS, Linear, param_grads, pre_activation_grad, residual_view
from .norm import RowNorm, _flat_param, _stat_dtype

__all__ = ["linear_chain", "LinearChain"]


class LinearChain(Function):
    """The layers ``layers`` = ((act, a, drop), ...) over x (*, K): activation (not None but in the last), its
    parameter and dropout's counters (seed, offset, p) or None, as ``Linear`` takes them; ``norm`` = None, or (eps,
    rms) of a layer (RMS) norm of x's rows before the first layer; ``params`` = ([nw, nb,] w1, b1, ..., wn, bn), nw
    and nb the norm's weight and bias (K,) or None; the residual (or None) is added by the last layer. The norm runs
    in the first layer's loads where ``launch_linear`` takes it (``x_norm``: float32, float64, not on cpu), its own
    kernel elsewhere; its backward, ``RowNorm``'s, adds the gradient already waiting for x (``_accumulates``) or,
    where the residual is x itself (a pre-norm block's ``x + mlp(norm(x))``), the residual's, in its kernel."""

    _accumulates = (0,)

    @staticmethod
    def forward(ctx, x, residual, layers, norm, *params):
        n, off = len(layers), 0 if norm is None else 2
        # x, residual, layers, norm, [nw, nb,] then w and b of each layer
        need = (tuple(ctx.needs_input_grad) + (False,) * (4 + off + 2 * n))[:4 + off + 2 * n]
        lin = params[off:]
        subs = [Linear._node_cls() for _ in range(n)]
        h, x_act, x_norm, ns = x.reshape(-1, x._shape[-1]), None, None, None
        if norm is not None:
            ns = RowNorm._node_cls()
            ns.needs_input_grad, ns.cast = (need[0], need[4], need[5], False, False, False, False), False
            h, x_norm = _norm(ns, h, x, params[0], params[1], norm, lin[0]._shape[0])
        for i, (sub, (act, a, drop)) in enumerate(zip(subs, layers)):
            # layer i's input needs a gradient when something before it does
            below = need[0] or any(need[4:4 + off + 2 * i])
            last = i == n - 1
            sub.needs_input_grad = (below, need[4 + off + 2 * i], need[5 + off + 2 * i], False, False,
                                    last and need[1], False)
            # an inner layer may leave its activation to the next one's loads (``Linear``'s ``defer``)
            h = Linear.forward(sub, h, lin[2 * i], lin[2 * i + 1], act, a, residual if last else None, drop,
                               x_act=x_act, defer=not last, x_norm=x_norm if i == 0 else None)
            x_act = (act, a) if sub.deferred else None
        if any(need):
            # each layer's saved tensors, the norm's, then the chain's inputs: create_graph recomputes the hidden
            # results
            kept = [t for c in subs + [ns] for t in ((c and c._to_save) or (None,) * 4)]
            ctx.save_for_backward(*kept, x, *params)
            for c in subs + [ns]:
                if c is not None:
                    c._to_save = None
            ctx.subs, ctx.layers, ctx.norm, ctx.ns = subs, layers, norm, ns
            ctx.res_is_x = norm is not None and residual is x
        return h

    @staticmethod
    def backward(ctx, g):
        subs, n, ns = ctx.subs, len(ctx.subs), ctx.ns
        off = 0 if ns is None else 2
        x_acts = [sub.x_act for sub in subs]             # (restored: a later backward reads them again)
        saved = list(ctx.saved_tensors)
        x, params = saved[4 * n + 4], saved[4 * n + 5:]
        lin = params[off:]
        if STATE.enabled:                    # create_graph: the hidden results recomputed, recorded
            h = x.reshape(-1, x._shape[-1])
            if ns is not None:
                h = RowNorm.apply(h, params[0], params[1], ctx.norm[0], h._shape[-1], ctx.norm[1])
                if saved[0] is not None:
                    saved[0] = h                         # the first layer's input, normalized
            for i in range(n - 1):
                act, a, drop = ctx.layers[i]
                h = Linear.apply(h, lin[2 * i], lin[2 * i + 1], act, a, None, drop)
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
        if ns is None:
            return (gx, gr, None, None, *grads)
        gn = [None, None]
        if gx is not None:
            gx, gn[0], gn[1], gr = _norm_backward(ctx, ns, gx.reshape(x._shape), saved[4 * n:4 * n + 4], gr)
        return (gx, gr, None, None, *gn, *grads)


def _norm(ns, rows, x, nw, nb, norm, N):
    """The chain's norm of x (``rows``: x as (M, K)) into the context ``ns``: (the first layer's input, its
    ``x_norm``) where the norm runs in the first layer's loads (float32/float64, not on cpu, no empty dim), else its
    own kernel and (its result as rows, None)."""
    (M, K), (eps, rms) = rows._shape, norm
    if x._storage.device.type == "cpu" or x.dtype not in (D.float32, D.float64) or not (M and K and N):
        return RowNorm.forward(ns, x, nw, nb, eps, K, rms).reshape(M, K), None
    sd = _stat_dtype(x.dtype)
    xn, mean, rstd = empty((M, K), x.dtype, x.device), empty((M,), sd, x.device), empty((M,), sd, x.device)
    RowNorm.keep(ns, x, nw, nb, eps, K, rms, mean, rstd)
    return rows, (_flat_param(nw, K), _flat_param(nb, K), eps, rms, xn, mean, rstd)


def _norm_backward(ctx, ns, g, kept, gr):
    """(dx, dnw, dnb, the residual's gradient) of the chain's norm from the gradient g of its result: ``RowNorm``'s
    backward, adding in its kernel the gradient the engine offered for x or, where the residual is x, the
    residual's gradient ``gr`` (then None: added)."""
    offered = ctx.__dict__.get("_pending")
    fold = gr is not None and ctx.res_is_x and not (offered and 0 in offered)
    ns.__dict__["_pending"] = {0: gr} if fold else offered      # (the same dict: what it takes, the engine sees)
    ns._to_save = tuple(kept)
    try:
        dx, dnw, dnb = RowNorm.backward(ns, g)[:3]
    finally:
        ns._to_save = None
        left = ns.__dict__.pop("_pending", None)
    return dx, dnw, dnb, (gr if fold and left and 0 in left else None if fold else gr)


def _layer(kwargs, n, device):
    """(act, a, drop) of one layer from its ``linear`` keyword arguments, drawing dropout's counters for its (n
    elements) result now, as ``linear`` would."""
    act, p = kwargs.get("activation"), float(kwargs.get("dropout_p", 0.0))
    alpha = kwargs.get("alpha")
    a = float(ACTIVATIONS[act] if alpha is None else alpha) if act is not None else 0.0
    return act, a, ((*draw(n, device), p) if p else None)


def linear_chain(x, params, layers, norm=None):
    """``linear(... linear(x, w1, b1, **layers[0]) ..., wn, bn, **layers[-1])`` (``params`` = [w1, b1, ..., wn, bn];
    each layer but the last with an activation (and dropout), the last with at most an activation, dropout and a
    residual; 2-D weights, biases of one element per output or None), one autograd node: the calls
    ``tritorch.compile`` found valid when it captured them. ``norm``: None, or [nw, nb, eps, rms] of a layer norm
    (``rms``: an RMS norm, nb None) of x's last dim before the first layer, (K,) parameters of x's dtype or None."""
    lead = x._shape[:-1]
    rows = math.prod(lead)
    weights = params[0::2]
    specs = tuple(_layer(kw, rows * w._shape[0], x._storage.device) for kw, w in zip(layers, weights))
    r = residual_view(layers[-1].get("residual"), weights[-1])
    if norm is None:
        y = LinearChain.apply(x.reshape(rows, x._shape[-1]), r, specs, None, *params)
    else:       # x as it is: its gradient may be added into the one waiting for it (and a residual x's)
        y = LinearChain.apply(x, r, specs, (float(norm[2]), bool(norm[3])), norm[0], norm[1], *params)
    return y.reshape(lead + (weights[-1]._shape[0],))
