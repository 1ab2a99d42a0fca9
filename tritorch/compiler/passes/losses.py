"""Losses read as the cross-entropy kernels of ``kernels/loss.py``.

``fuse_log_softmax_nll``: ``nll_loss(log_softmax(x, dim=class dim), target, ...)``, the log-probabilities read by
nothing else, becomes ``cross_entropy(x, target, ...)`` (PyTorch's definition of it): one fused kernel each way
instead of a softmax kernel and the loss's (and its mean's), and no (rows, classes) log-probabilities written, read
back, nor their gradient. Not under autocast (its policy runs each of the two in float32 separately).

``fuse_loss_cast``: half logits cast to float32 (``x.float()``, ``x.to(torch.float32)``) and read only by a
``cross_entropy`` with class-index targets, as its input, become ``cross_entropy(x, ..., dtype=float32)``: the
loss kernels read the half logits and compute in float32 as they would on the cast ones (the same loss and
gradient, bit for bit), so neither the float32 copy of the logits nor that of their gradient is made
(``kernels/loss.py``). For a language model's logits those copies are the step's largest tensors."""
from ... import _dtype as D
from ...jit.ir import Node, Value
from .graph import copy_graph as _copy, uses as _uses

__all__ = ["fuse_log_softmax_nll", "fuse_loss_cast"]

_HALF = (D.float16, D.bfloat16)


def _cast_to_float32(node):
    """The half Value a node casts to float32 and does nothing else to (``float()``, ``to(float32)``,
    ``to(dtype=float32)``), else None."""
    x = node.args[0] if node.args else None
    if not isinstance(x, Value) or x.dtype not in _HALF or node.aliases or len(node.outputs) != 1 or \
            node.outputs[0].dtype is not D.float32:
        return None
    if node.op == "float" and len(node.args) == 1 and not node.kwargs:
        return x
    given = list(node.args[1:]) + [v for k, v in node.kwargs.items() if k == "dtype"]
    if node.op == "to" and set(node.kwargs) <= {"dtype"} and len(given) == 1 and given[0] is D.float32:
        return x
    return None


def fuse_loss_cast(graph):
    """The graph with each float32 cast of half logits read only by a class-index ``cross_entropy`` (as its input,
    not a graph output) folded into it as ``dtype=float32``."""
    casts = {n.outputs[0].name: (n, x) for n in graph.nodes if (x := _cast_to_float32(n)) is not None}
    return _into_cross_entropy(graph, "cross_entropy", casts, lambda node: "dtype" not in node.kwargs,
                               {"dtype": D.float32})


def _class_log_softmax(node):
    """x where ``node`` is ``log_softmax(x, dim)`` over x's class dim (1, or 0 for a 1-D x), no other argument."""
    x = node.args[0] if node.op == "log_softmax" and node.args else None
    if not isinstance(x, Value) or node.aliases or len(node.outputs) != 1 or len(x.shape) == 0:
        return None
    given = dict(zip(("dim",), node.args[1:]), **node.kwargs)
    dim = given.get("dim")
    if set(given) != {"dim"} or len(node.args) > 2 or type(dim) is not int:
        return None
    nd = len(x.shape)
    return x if -nd <= dim < nd and dim % nd == (1 if nd > 1 else 0) else None


def fuse_log_softmax_nll(graph):
    """The graph with each ``nll_loss`` of class-dim log-probabilities (read by nothing else, not a graph output;
    class-index targets) as ``cross_entropy`` of the logits, with the same arguments."""
    logs = {n.outputs[0].name: (n, x) for n in graph.nodes if (x := _class_log_softmax(n)) is not None}
    return _into_cross_entropy(graph, "nll_loss", logs, lambda node: True, {})


def _into_cross_entropy(graph, op, producers, accept, extra):
    """The graph with each ``op`` node (a loss with class-index targets, ``accept``ed) whose input is made by one of
    ``producers`` (output name -> (node, x)) and read by nothing else, not a graph output, as ``cross_entropy`` of
    that x with the loss's arguments and ``extra`` keywords; the producer dropped."""
    uses, outputs = _uses(graph), {v.name for v in graph.outputs}
    dropped, nodes = set(), []
    for node in graph.nodes:
        src = node.args[0] if node.op == op and node.args else None
        found = producers.get(src.name) if isinstance(src, Value) else None
        target = node.args[1] if len(node.args) > 1 else node.kwargs.get("target")
        if found is None or uses.get(src.name) != 1 or src.name in outputs or node.aliases or \
                not isinstance(target, Value) or target.dtype.is_floating_point or not accept(node):
            nodes.append(node)
            continue
        producer, x = found
        dropped.add(id(producer))
        nodes.append(Node("cross_entropy", (x,) + tuple(node.args[1:]), {**node.kwargs, **extra}, node.outputs,
                          node.out_struct, node.scope, node.module_type, node.aliases, node.draws))
    return _copy(graph, [n for n in nodes if id(n) not in dropped])
