"""``matmul_as_linear``: a layer written as a product, ``x @ w`` (``matmul``, ``__matmul__``) with ``w`` of shape
(K, N) and ``x`` of shape (..., K), becomes ``linear(x, w.t())``, which computes the same: ``w.t()`` is a view (the
linear kernels read W through its strides, and its gradient reaches ``w`` through the view's backward, laid out as
``w``). A (N,) bias added to the product, the product's only reader, of the product's dtype, becomes the linear's
bias. The epilogue passes then fuse the activation, dropout and residual add that follow, as for ``nn.Linear``.
Not under autocast, where the add of a float32 bias runs in float32 and the linear's bias would not.
"""
from ...jit.ir import Node, Value
from .graph import copy_graph as _copy, uses as _uses

__all__ = ["matmul_as_linear"]

_MATMUL = ("matmul", "__matmul__")
_ADD = ("add", "__add__", "__radd__")


def _product(node):
    """(x, w) where ``node`` is a product a linear computes, else None."""
    if node.op not in _MATMUL or len(node.args) != 2 or node.kwargs or node.aliases or len(node.outputs) != 1:
        return None
    x, w = node.args
    if not (isinstance(x, Value) and isinstance(w, Value) and len(w.shape) == 2 and len(x.shape) >= 2 and
            x.shape[-1] == w.shape[0] and x.dtype == w.dtype and x.dtype.is_floating_point):
        return None
    return x, w


def _fresh(graph, base):
    name, i = f"{base}_t", 1
    while name in graph.values:
        name, i = f"{base}_t{i}", i + 1
    return name


def matmul_as_linear(graph):
    """The graph with each ``x @ w`` of a 2-D ``w`` as ``linear(x, w.t()[, bias])``, the bias taken from an add
    that is the product's only reader (not a graph output)."""
    uses, outputs = _uses(graph), {v.name for v in graph.outputs}
    products = {n.outputs[0].name: n for n in graph.nodes if _product(n)}
    bias_of = {}                        # product output name -> (the add node, the bias Value)
    for node in graph.nodes:
        if node.op in _ADD and len(node.args) == 2 and not node.kwargs and not node.aliases:
            for y, b in (node.args, node.args[::-1]):
                if (isinstance(y, Value) and y.name in products and isinstance(b, Value) and
                        uses.get(y.name) == 1 and y.name not in outputs and b.shape == (y.shape[-1],) and
                        b.dtype == y.dtype == node.outputs[0].dtype and y.name not in bias_of):
                    bias_of[y.name] = (node, b)
                    break
    adds = {id(add): (y, b) for y, (add, b) in bias_of.items()}
    nodes, operands = [], {}            # product output name -> (x, w.t()) for its add
    for node in graph.nodes:
        if id(node) in adds:            # at the add's place, where the bias is computed
            y, b = adds[id(node)]
            nodes.append(Node("linear", (*operands[y], b), {}, node.outputs, 0, node.scope, node.module_type))
            continue
        if not _product(node):
            nodes.append(node)
            continue
        x, w = _product(node)
        wt = graph.add_value(_fresh(graph, w.name), (w.shape[1], w.shape[0]), w.dtype, "node")
        nodes.append(Node("t", (w,), {}, [wt], 0, node.scope, node.module_type))
        if node.outputs[0].name in bias_of:
            operands[node.outputs[0].name] = (x, wt)
        else:
            nodes.append(Node("linear", (x, wt), {}, node.outputs, 0, node.scope, node.module_type))
    return _copy(graph, nodes)
