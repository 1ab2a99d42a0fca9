"""``fuse_norm_linear``: a layer norm (or an RMS norm, ``rms_norm_rows``) over the last dim read only by a linear
(or the first layer of a ``linear_chain``), as its input, becomes that chain's ``norm=``: the first layer's kernel
normalizes x's rows as it loads them and stores the normalized x for the backward, so the norm takes no launch of
its own (``kernels/linear_chain.py``). A pre-norm transformer block's ``qkv(ln_1(x))`` and ``mlp(ln_2(x))``: two
launches fewer per block. On ``cuda``, float32 and float64 (where ``launch_linear`` takes ``x_norm``)."""
from ...jit.ir import Node, Value
from .chain import _LAYER, _plain_linear
from .graph import copy_graph as _copy, uses as _uses

__all__ = ["fuse_norm_linear"]

_DTYPES = ("float32", "float64")


def _norm(node):
    """(x, nw, nb, eps, rms) where ``node`` is a norm over the last dim of a float32/float64 x with (K,) parameters
    of its dtype (or none), else None."""
    if node.op == "layer_norm" and not node.aliases and len(node.outputs) == 1:
        names = ("input", "normalized_shape", "weight", "bias", "eps")
        given = dict(zip(names, node.args), **node.kwargs)
        x, shape = given.get("input"), given.get("normalized_shape")
        if not set(given) <= set(names) or not isinstance(x, Value) or not isinstance(shape, (tuple, list)) or \
                len(shape) != 1 or not x.shape or shape[0] != x.shape[-1]:
            return None
        found = (x, given.get("weight"), given.get("bias"), given.get("eps", 1e-5), False)
    elif node.op == "rms_norm_rows" and len(node.args) == 3 and not node.kwargs and len(node.outputs) == 1:
        found = (node.args[0], node.args[1], None, node.args[2], True)
    else:
        return None
    x, nw, nb, eps = found[:4]
    ok = isinstance(x, Value) and x.dtype.name in _DTYPES and type(eps) in (int, float) and \
        all(p is None or isinstance(p, Value) and tuple(p.shape) == tuple(x.shape[-1:]) and p.dtype == x.dtype
            for p in (nw, nb))
    return found if ok else None


def fuse_norm_linear(graph):
    """The graph (on ``cuda``) with each norm read only by a linear or a ``linear_chain`` (as its input; not a
    graph output) as the chain's ``norm``, at the reader's place."""
    if graph.device is None or graph.device.type != "cuda":
        return graph
    uses, outputs = _uses(graph), {v.name for v in graph.outputs}
    norms = {n.outputs[0].name: (n, _norm(n)) for n in graph.nodes if _norm(n) is not None}
    gone, nodes = set(), []
    for node in graph.nodes:
        src = node.args[0] if node.args and isinstance(node.args[0], Value) else None
        norm, found = norms.get(src.name, (None, None)) if src is not None else (None, None)
        if norm is None or uses.get(src.name) != 1 or src.name in outputs:
            nodes.append(node)
            continue
        if node.op == "linear_chain" and "norm" not in node.kwargs:
            args, kwargs = node.args, dict(node.kwargs)
        elif _plain_linear(node, _LAYER | {"residual"}):
            args = (node.args[0], [node.args[1], node.args[2] if len(node.args) == 3 else None])
            kwargs = {"layers": [dict(node.kwargs)]}
        else:
            nodes.append(node)
            continue
        x, nw, nb, eps, rms = found
        gone.add(id(norm))
        nodes.append(Node("linear_chain", (x, args[1]), {**kwargs, "norm": [nw, nb, float(eps), rms]},
                          node.outputs, 0, node.scope, node.module_type))
    return _copy(graph, [n for n in nodes if id(n) not in gone])
