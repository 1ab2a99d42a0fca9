"""``fuse_conv_pool``: a ``conv2d`` with an activation in its epilogue (``fuse_linear_epilogue``'s work), read only by a
``max_pool2d``, becomes one ``conv2d_max_pool2d`` node (``kernels/conv_pool.py``): on the GPU one kernel forward when
the windows do not overlap (the convolution's output never stored), and the activation's derivative runs inside the
pooling's backward gather, one launch fewer (and a write and two reads of the convolution's output fewer) per pair
each way."""
import inspect

from ...jit.ir import Node, Value
from ...kernels.pool import max_pool2d
from .graph import copy_graph as _copy, uses as _uses

__all__ = ["fuse_conv_pool"]

_POOL = inspect.signature(max_pool2d)


def _window(node):
    """The window arguments of a ``max_pool2d`` node that returns no indices, as ``conv2d_max_pool2d``'s keywords,
    else None."""
    try:
        bound = _POOL.bind(*node.args, **node.kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    a = bound.arguments
    if a["return_indices"] is not False or any(isinstance(v, Value) for k, v in a.items() if k != "input"):
        return None
    return {"kernel_size": a["kernel_size"], "pool_stride": a["stride"], "pool_padding": a["padding"],
            "pool_dilation": a["dilation"], "ceil_mode": a["ceil_mode"]}


def fuse_conv_pool(graph):
    """The graph with each ``max_pool2d`` of a batched ``conv2d(..., activation=...)`` result (read by nothing
    else, not a graph output) as one ``conv2d_max_pool2d`` node at the pooling's place."""
    uses, outputs = _uses(graph), {v.name for v in graph.outputs}
    producer = {n.outputs[0].name: n for n in graph.nodes if n.op == "conv2d" and set(n.kwargs) == {"activation"}
                and not n.aliases and len(n.outputs) == 1 and len(n.outputs[0].shape) == 4}
    replaced, nodes = set(), []
    for node in graph.nodes:
        src = node.args[0] if node.op == "max_pool2d" and node.args and not node.aliases else None
        conv = producer.get(src.name) if isinstance(src, Value) else None
        window = _window(node) if conv is not None else None
        if window is None or uses.get(src.name) != 1 or src.name in outputs or id(conv) in replaced:
            nodes.append(node)
            continue
        replaced.add(id(conv))
        nodes.append(Node("conv2d_max_pool2d", conv.args, {**conv.kwargs, **window}, [node.outputs[0]], 0,
                          node.scope, node.module_type))
    return _copy(graph, [n for n in nodes if id(n) not in replaced])
