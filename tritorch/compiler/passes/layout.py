"""The layout pass of ``tritorch.compile``: ``plan_layouts`` has a batched product write its result in the memory
order of the view its reader takes, so that a reshape which would copy becomes a view.

Attention written in ops ends in ``(p @ v).transpose(1, 2).reshape(b, t, d)``: the product is a contiguous
(b, h, t, dh), its transpose is not contiguous, and the reshape copies it (a launch, a read and a write of the
result). Laid out as (b, t, h, dh) from the start, the transpose is contiguous and the reshape a view; the product's
kernel writes through strides anyway (``matmul``'s ``order``: ``kernels/_common.empty_ordered``).
"""
from ..._tensor import contiguous_strides
from ...jit.ir import Node, Value
from ...kernels.views import view_strides
from .graph import copy_graph, uses

__all__ = ["plan_layouts"]

_MATMUL = ("matmul", "__matmul__")
_TRANSPOSE = ("transpose", "swapaxes", "swapdims")
_RESHAPE = ("reshape", "view")


def _batched_product(node):
    """Whether ``node`` is ``a @ b`` of two tensors of at least 3 dims (one product of the batch, its result
    contiguous), else False."""
    return node.op in _MATMUL and len(node.args) == 2 and not node.kwargs and not node.aliases and \
        all(isinstance(a, Value) and len(a.shape) >= 3 for a in node.args) and len(node.outputs) == 1


def _swap(node, rank):
    """The two dims (non-negative) a ``transpose(x, i, j)`` node swaps, or None."""
    if node.op not in _TRANSPOSE or len(node.args) != 3 or node.kwargs or \
            not all(isinstance(d, int) and not isinstance(d, bool) and -rank <= d < rank for d in node.args[1:]):
        return None
    return node.args[1] % rank, node.args[2] % rank


def plan_layouts(graph):
    """The graph with each batched product read only by a transpose, itself read only by a reshape (or view) that
    would copy it, computing its result in the transpose's contiguous order (``matmul(a, b, order=strides)``): the
    reshape is then a view. Returns (graph, how many products it laid out)."""
    counts, outputs = uses(graph), {v.name for v in graph.outputs}
    reader = {}
    for node in graph.nodes:
        for a in node.args:
            if isinstance(a, Value):
                reader.setdefault(a.name, node)

    def only_reader(v):
        return reader.get(v.name) if counts.get(v.name) == 1 and v.name not in outputs else None
    nodes, planned = [], 0
    for node in graph.nodes:
        order = None
        if _batched_product(node):
            out = node.outputs[0]
            tr = only_reader(out)
            dims = _swap(tr, len(out.shape)) if tr is not None and isinstance(tr.args[0], Value) and \
                tr.args[0].name == out.name else None
            rs = only_reader(tr.outputs[0]) if dims is not None and len(tr.outputs) == 1 else None
            if rs is not None and rs.op in _RESHAPE and isinstance(rs.args[0], Value) and \
                    rs.args[0].name == tr.outputs[0].name and len(rs.outputs) == 1:
                i, j = dims
                strides = list(contiguous_strides(out.shape))
                strides[i], strides[j] = strides[j], strides[i]     # the transpose's strides of a contiguous product
                if view_strides(tr.outputs[0].shape, tuple(strides), rs.outputs[0].shape) is None:
                    order = list(contiguous_strides(tr.outputs[0].shape))
                    order[i], order[j] = order[j], order[i]         # contiguous once transposed
        if order is None:
            nodes.append(node)
        else:
            planned += 1
            nodes.append(Node("matmul", node.args, {"order": tuple(order)}, node.outputs, 0, node.scope,
                              node.module_type))
    return copy_graph(graph, nodes), planned
