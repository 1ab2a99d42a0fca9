"""``fuse_linear_chain``: ``linear`` nodes in a row, each but the last with an activation (and dropout) and read only
by the next, as its input, become one ``linear_chain`` node: the same kernels forward, and in the backward each
layer's activation derivative runs in the epilogue of the next one's grad_x product, one launch fewer per inner
layer (``kernels/linear_chain.py``)."""
from ...jit.ir import Node, Value
from .graph import copy_graph as _copy, uses as _uses

__all__ = ["fuse_linear_chain"]


_LAYER = {"activation", "alpha", "dropout_p"}


def _plain_linear(node, kwargs):
    """Whether ``node`` is a ``linear(input, weight[, bias])`` with at most ``kwargs``, a 2-D weight, a bias of one
    element per output (or none) and one floating result: what ``kernels/linear_chain.py`` takes."""
    if node.op != "linear" or not set(node.kwargs) <= kwargs or node.aliases or len(node.outputs) != 1 or \
            not 2 <= len(node.args) <= 3 or not node.outputs[0].dtype.is_floating_point:
        return False
    w = node.args[1]
    b = node.args[2] if len(node.args) == 3 else None
    return isinstance(node.args[0], Value) and isinstance(w, Value) and len(w.shape) == 2 and \
        (b is None or isinstance(b, Value) and tuple(b.shape) == (w.shape[0],))


def fuse_linear_chain(graph):
    """The graph with each run of ``linear`` nodes, every one but the last with an activation (and dropout) and
    read only by the next, as its input, as one ``linear_chain`` node at the last one's place
    (``kernels/linear_chain.py``: each layer's activation backward runs in the epilogue of the next one's grad_x
    product). A layer with dropout chains only with the node right after it, so that its dropout draws its counters
    where it did."""
    uses, outputs = _uses(graph), {v.name for v in graph.outputs}
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    first = {n.outputs[0].name: n for n in graph.nodes if _plain_linear(n, _LAYER) and "activation" in n.kwargs}
    chained, at = set(), {}
    for node in graph.nodes:
        if not _plain_linear(node, _LAYER | {"residual"}) or id(node) in chained:
            continue
        prev = first.get(node.args[0].name)
        if prev is None or uses.get(prev.outputs[0].name) != 1 or prev.outputs[0].name in outputs or \
                ("dropout_p" in prev.kwargs and index[id(prev)] != index[id(node)] - 1):
            continue
        run = at.pop(id(prev), None) or ([prev] if id(prev) not in chained else None)   # the chain at prev grows
        if run is None:
            continue
        chained.update(id(n) for n in run + [node])
        at[id(node)] = run + [node]
    nodes = []
    for node in graph.nodes:
        run = at.get(id(node))
        if run is not None:
            params = [a for n in run for a in (n.args[1], n.args[2] if len(n.args) == 3 else None)]
            nodes.append(Node("linear_chain", (run[0].args[0], params), {"layers": [dict(n.kwargs) for n in run]},
                              [node.outputs[0]], 0, node.scope, node.module_type))
        elif id(node) not in chained:
            nodes.append(node)
    return _copy(graph, nodes)
